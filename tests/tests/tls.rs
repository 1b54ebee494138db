//! Every process reaches Postgres over TLS with libpq's `sslmode`s: the test cluster runs with
//! `ssl = on`, a certificate for `localhost` from the test's own CA, and one database that refuses
//! connections without TLS (`hostnossl … reject` in pg_hba.conf).

use std::process::Command;
use std::time::Duration;

use pgshot_tests::api_process::{create_key, run_job, ApiProcess};
use pgshot_tests::site::Site;
use pgshot_tests::worker_process::{binary, WorkerProcess};
use pgshot_tests::{cluster, tls};
use serde_json::json;

/// `pgshot-api keys list` against `database_url`: (succeeded, stderr).
fn keys_list(database_url: &str) -> (bool, String) {
    let out = Command::new(binary("pgshot-api"))
        .env("DATABASE_URL", database_url)
        .args(["keys", "list"])
        .output()
        .expect("run pgshot-api keys list");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_sslmode_means_what_it_means_in_libpq_against_a_tls_only_database() {
    let cluster = cluster();
    let base = cluster.tls_only_db();
    let ca = cluster.ca_file();
    let ca = ca.display();

    // pg_hba.conf refuses this database without TLS: sslmode=disable cannot connect, and says why.
    let (ok, stderr) = keys_list(&format!("host=127.0.0.1 {base} sslmode=disable"));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("no encryption"), "{stderr}");

    // Encrypted without checking the certificate (prefer, the default, and require).
    for mode in ["", "sslmode=prefer", "sslmode=require"] {
        let (ok, stderr) = keys_list(&format!("host=127.0.0.1 {base} {mode}"));
        assert!(ok, "{mode}: {stderr}");
    }
    // verify-ca checks the chain and not the name: 127.0.0.1 is fine.
    let (ok, stderr) = keys_list(&format!("host=127.0.0.1 {base} sslmode=verify-ca sslrootcert={ca}"));
    assert!(ok, "{stderr}");
    // verify-full checks the name too: the certificate names localhost, not 127.0.0.1.
    let (ok, stderr) = keys_list(&format!("host=127.0.0.1 {base} sslmode=verify-full sslrootcert={ca}"));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("cannot connect to DATABASE_URL") && stderr.contains("certificate"), "{stderr}");
    assert!(stderr.to_lowercase().contains("mismatch"), "the reason is the host name: {stderr}");
    // The URL form, by the name the certificate has.
    let url = format!(
        "postgresql://postgres@localhost:{}/{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
        cluster.port(),
        pgshot_tests::TLS_ONLY_DB
    );
    let (ok, stderr) = keys_list(&url);
    assert!(ok, "{stderr}");

    // A CA that did not sign the server's certificate: refused by verify-ca and verify-full,
    // and by require, which checks the chain when it is given a root (as libpq does).
    let other_dir = std::env::temp_dir().join(format!("pgshot-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = tls::authority(&other_dir, "other");
    for mode in ["require", "verify-ca", "verify-full"] {
        let (ok, stderr) = keys_list(&format!(
            "host=localhost hostaddr=127.0.0.1 {base} sslmode={mode} sslrootcert={}",
            other.cert.display()
        ));
        assert!(!ok, "{mode}: {stderr}");
        assert!(stderr.contains("certificate verify failed"), "{mode}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[test]
fn the_api_and_a_worker_run_a_job_over_verify_full_and_every_connection_is_encrypted() {
    let cluster = cluster();
    let url = format!(
        "host=localhost hostaddr=127.0.0.1 {} sslmode=verify-full sslrootcert={}",
        cluster.tls_only_db(),
        cluster.ca_file().display()
    );
    let site = Site::start();
    let key = create_key(&url, "tls");
    let api = ApiProcess::start(&url, &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);
    let worker = WorkerProcess::start(&url, "tls-worker", &[("PGSHOT_ALLOW_PRIVATE_NETWORKS", "true".into())]);

    let body = json!({"url": site.url("/plain"), "format": "png"});
    let job = run_job(&api, &key, body, Duration::from_secs(60), || worker.log());
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", worker.log());
    let result =
        ureq::get(&api.url(&format!("/v1/screenshots/jobs/{id}/result"))).set("X-API-Key", &key).call().unwrap();
    let mut png = Vec::new();
    std::io::Read::read_to_end(&mut result.into_reader(), &mut png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG came back");

    // Seen from the server: every connection the API and the worker hold (pool and LISTEN) is
    // encrypted, and there is at least one of each.
    let mut admin = cluster.connect("postgres");
    let rows = admin
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name LIKE 'pgshot-%'",
            &[&pgshot_tests::TLS_ONLY_DB],
        )
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for program in ["pgshot-api", "pgshot-api listen", "pgshot-worker", "pgshot-worker listen"] {
        assert!(seen.iter().any(|(name, _)| name == program), "no {program} connection among {seen:?}");
    }
    assert!(seen.iter().all(|(_, ssl)| *ssl), "a connection without TLS: {seen:?}");
}
