//! `pgshot-api` run as a real process on a free port of 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::worker_process::binary;

pub struct ApiProcess {
    child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl ApiProcess {
    pub fn start(database_url: &str, env: &[(&str, String)]) -> ApiProcess {
        // A free port is found by binding and releasing it: two APIs starting at once could pick
        // the same one, and a test would then talk to the other test's API. Starts are serialised
        // in this process, and an API that exits (its port taken after all) is started again.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..5 {
            if let Some(api) = ApiProcess::try_start(database_url, env) {
                return api;
            }
        }
        panic!("pgshot-api did not start on any of five ports");
    }

    fn try_start(database_url: &str, env: &[(&str, String)]) -> Option<ApiProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("pgshot-api-{}-{port}.log", std::process::id()));
        let mut cmd = Command::new(binary("pgshot-api"));
        cmd.env("DATABASE_URL", database_url)
            .env("PGSHOT_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("PGSHOT_PUBLIC_URL")
            .env_remove("PGSHOT_ALLOW_PRIVATE_NETWORKS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pgshot-api");
        let mut api = ApiProcess { child, base: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = api.child.try_wait() {
                return None;
            }
            if ureq::get(&format!("{}/healthz", api.base)).call().is_ok() {
                // Still ours: a process that lost the port would have exited by now.
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(None) = api.child.try_wait() {
                    return Some(api);
                }
                return None;
            }
            assert!(Instant::now() < deadline, "pgshot-api did not come up:\n{}", api.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM; the exit status if the API exits within `limit` (it is killed otherwise).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `pgshot-api keys <args>`: its stdout, after asserting success.
pub fn keys_command(database_url: &str, args: &[&str]) -> String {
    let out = Command::new(binary("pgshot-api"))
        .env("DATABASE_URL", database_url)
        .arg("keys")
        .args(args)
        .output()
        .expect("run pgshot-api keys");
    assert!(out.status.success(), "pgshot-api keys {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A new API key: the last line that `pgshot-api keys create` prints.
pub fn create_key(database_url: &str, name: &str) -> String {
    keys_command(database_url, &["create", "--name", name]).lines().last().expect("the key").trim().to_string()
}

/// Creates a job through `POST /v1/screenshots/async` with `body`, polls it until it finishes
/// (within `limit`), and returns the finished job; `logs` says what the processes did on a timeout.
pub fn run_job(
    api: &ApiProcess,
    key: &str,
    body: serde_json::Value,
    limit: Duration,
    logs: impl Fn() -> String,
) -> serde_json::Value {
    let created: serde_json::Value = ureq::post(&api.url("/v1/screenshots/async"))
        .set("X-API-Key", key)
        .send_json(body)
        .expect("create a job")
        .into_json()
        .expect("the created job is JSON");
    let id = created["id"].as_str().expect("a job id").to_string();
    let deadline = Instant::now() + limit;
    loop {
        let job: serde_json::Value = ureq::get(&api.url(&format!("/v1/screenshots/jobs/{id}")))
            .set("X-API-Key", key)
            .call()
            .expect("get the job")
            .into_json()
            .expect("the job is JSON");
        if ["COMPLETED", "FAILED", "CANCELLED"].iter().any(|s| job["status"] == *s) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}\n{}\n{}", logs(), api.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}
