//! schemathesis (from PyPI, installed by `make test`) against the spec that pgshot-api serves:
//! every operation, every check (no 5xx, status codes, content types, headers and bodies that
//! match the spec), with a fixed seed so that a run can be repeated.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgshot_tests::api_process::{create_key, ApiProcess};
use pgshot_tests::cluster;
use pgshot_tests::worker_process::WorkerProcess;

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_spec() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = workspace.join(".pgshot/venv/bin/st");
    assert!(st.exists(), "{} is missing: scripts/setup.sh installs schemathesis (make test runs it)", st.display());
    // Default policies: no private networks. A worker finishes what the sync captures wait for
    // (the fuzzed URLs do not resolve on a closed network, so jobs fail fast).
    let (_db, url) = {
        let name = cluster().fresh_db();
        let mut admin = cluster().connect("postgres");
        admin.batch_execute(&format!("ALTER DATABASE {name} SET pgshot.retry_backoff = 0")).unwrap();
        (cluster().connect(&name), cluster().url(&name))
    };
    let key = create_key(&url, "fuzz");
    // Sync captures wait a second at most: the run's own async and bulk jobs queue ahead of them,
    // and a hundred generated captures each waiting for a render would cost the run minutes.
    let api = ApiProcess::start(
        &url,
        &[("PGSHOT_SYNC_WAIT_SECONDS", "1".into()), ("PGSHOT_SYNC_MAX_WAIT_SECONDS", "1".into())],
    );
    let worker = WorkerProcess::start(&url, "fuzz", &[]);

    let report = std::env::temp_dir().join(format!("pgshot-schemathesis-{}.log", std::process::id()));
    let mut child = Command::new(&st)
        .current_dir(std::env::temp_dir())
        .args(["--no-color", "--config-file"])
        .arg(workspace.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(api.url("/openapi.json"))
        .args(["--max-examples", "100", "--seed", "20261127", "--generation-deterministic"])
        .args(["--workers", "1", "--request-timeout", "30", "-H"])
        .arg(format!("X-API-Key: {key}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start schemathesis");
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis did not finish in 15 minutes:\n{}", tail(&report, 80));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let output = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    assert!(status.success(), "schemathesis found problems ({status}):\n{}", last_lines(&output, 150));
    // Every operation of the served spec was exercised, and passed.
    let spec: serde_json::Value = ureq::get(&api.url("/openapi.json")).call().unwrap().into_json().unwrap();
    let operations: usize = spec["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert!(operations >= 12, "the spec lists {operations} operations");
    let summary = last_lines(&output, 40);
    assert!(
        summary.contains(&format!("Selected: {operations}/{operations}"))
            && summary.contains(&format!("Tested: {operations}")),
        "not every one of the {operations} operations ran:\n{summary}"
    );
    let log = api.log();
    assert!(!log.contains("panicked") && !log.contains(" ERROR "), "the API logged server errors:\n{log}");
    drop(worker);
}

fn tail(path: &std::path::Path, n: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
