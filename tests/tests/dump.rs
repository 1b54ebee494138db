//! `pg_dump` of a pgshot database keeps its jobs and results: the extension marks its tables as
//! configuration, without which pg_dump would silently leave every job behind.

use std::process::Command;

use pgshot_tests::{as_postgres, cluster, pg_bin};
use serde_json::{json, Value};

#[test]
fn pg_dump_and_restore_keep_queued_jobs_claimable_and_results_readable() {
    let cl = cluster();
    let source = cl.fresh_db();
    let mut c = cl.connect(&source);
    let ids: Vec<String> = c
        .query(
            "SELECT * FROM screenshot_enqueue_bulk($1)",
            &[&json!([{"url": "https://example.com/1"}, {"url": "https://example.com/2", "priority": -1},
                      {"url": "https://example.com/3"}])],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let done: String = c.query_one("SELECT id FROM screenshot_claim('w', 1)", &[]).unwrap().get(0);
    assert_eq!(done, ids[1], "priority -1 is claimed first");
    c.execute(
        "SELECT screenshot_complete($1, 'w', 1, '{\"format\": \"PNG\"}',
                ARRAY[ROW('screenshot', 'screenshot', 'image/png', '\\x89504e470d0a1a0a'::bytea, '{}')::pgshot.output])",
        &[&done],
    )
    .unwrap();

    let dump = cl.dir().join(format!("{source}.dump"));
    let status = as_postgres(&pg_bin("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &cl.port().to_string(), "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(&source)
        .status()
        .expect("run pg_dump");
    assert!(status.success(), "pg_dump failed");

    let target = format!("{source}_restored");
    cl.connect("postgres").batch_execute(&format!("CREATE DATABASE {target}")).unwrap();
    let out = Command::new(pg_bin("pg_restore"))
        .args(["-h", "127.0.0.1", "-p", &cl.port().to_string(), "-U", "postgres", "--exit-on-error", "-d", &target])
        .arg(&dump)
        .output()
        .expect("run pg_restore");
    assert!(out.status.success(), "pg_restore failed: {}", String::from_utf8_lossy(&out.stderr));

    let mut r = cl.connect(&target);
    let restored: Value = r.query_one("SELECT screenshot_job($1)", &[&done]).unwrap().get(0);
    assert_eq!(restored["status"], "COMPLETED");
    let bytes: Vec<u8> = r.query_one("SELECT bytes FROM screenshot_result($1)", &[&done]).unwrap().get(0);
    assert_eq!(bytes, b"\x89PNG\r\n\x1a\n");
    let claimed: Vec<String> =
        r.query("SELECT id FROM screenshot_claim('w2', 10)", &[]).unwrap().iter().map(|row| row.get(0)).collect();
    assert_eq!(claimed, [ids[0].clone(), ids[2].clone()], "the queued jobs survive the dump, in enqueue order");
    // The sequence that numbers jobs as they are enqueued is dumped as well: restarted at 1, it
    // would put a new job ahead of the restored ones.
    let newer: String = r.query_one("SELECT screenshot_enqueue('https://example.com/4')", &[]).unwrap().get(0);
    let (seq, restored_max): (i64, i64) = r
        .query_one(
            "SELECT (SELECT enqueue_seq FROM pgshot.jobs WHERE id = $1), \
                    (SELECT max(enqueue_seq) FROM pgshot.jobs WHERE id <> $1)",
            &[&newer],
        )
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert!(
        seq > restored_max,
        "a job enqueued after the restore is numbered {seq}, the restored ones up to {restored_max}"
    );
}
