//! `pgshot-api` run as a real process on a free port of 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::worker_process::binary;

pub struct ApiProcess {
    child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl ApiProcess {
    pub fn start(database_url: &str, env: &[(&str, String)]) -> ApiProcess {
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
        let api = ApiProcess { child, base: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/healthz", api.base)).call().is_err() {
            assert!(Instant::now() < deadline, "pgshot-api did not come up:\n{}", api.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
