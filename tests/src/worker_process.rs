//! `pgshot-worker` run as a real process, so that tests can kill it like an operator (or the OOM
//! killer) would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Builds pgshot's service binaries once per test process (cargo is free again once tests run)
/// and returns the path of `name`. `PGSHOT_BINARIES` names a directory of binaries built already
/// (the benchmarks use release ones).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let target = BUILT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PGSHOT_BINARIES") {
            return PathBuf::from(dir);
        }
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's chromium package (make test does)"
        );
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "pgshot-worker", "-p", "pgshot-api"])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p pgshot-worker -p pgshot-api failed");
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from).join("debug")
    });
    target.join(name)
}

pub struct WorkerProcess {
    child: Option<Child>,
    pub id: String,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts a worker on `database_url` with quick polling and maintenance, and `env` on top.
    pub fn start(database_url: &str, id: &str, env: &[(&str, String)]) -> WorkerProcess {
        WorkerProcess::spawn(Command::new(binary("pgshot-worker")), database_url, id, env)
    }

    /// Like [`WorkerProcess::start`], in a private mount namespace where `/etc/hosts` holds
    /// `hosts`: a public-looking name then resolves where the test says, for the worker alone.
    pub fn start_with_hosts(database_url: &str, id: &str, env: &[(&str, String)], hosts: &str) -> WorkerProcess {
        let file = std::env::temp_dir().join(format!("pgshot-hosts-{}-{id}", std::process::id()));
        std::fs::write(&file, format!("127.0.0.1 localhost\n{hosts}\n")).expect("write the hosts file");
        let mut cmd = Command::new("unshare");
        // unshare and sh exec in turn, so the worker keeps this process's pid and takes its signals.
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$1\""])
            .arg(&file)
            .arg(binary("pgshot-worker"));
        WorkerProcess::spawn(cmd, database_url, id, env)
    }

    /// Like [`WorkerProcess::start`], in a network namespace of its own where `address` is an
    /// address of the (loopback) interface, as a public address of the machine would be: the
    /// worker's pages reach nothing else. `database_url` must use the cluster's Unix socket.
    pub fn start_in_network_namespace(
        database_url: &str,
        id: &str,
        env: &[(&str, String)],
        address: &str,
    ) -> WorkerProcess {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "sh", "-c", "ip link set lo up && ip addr add \"$0/32\" dev lo && exec \"$1\""])
            .arg(address)
            .arg(binary("pgshot-worker"));
        WorkerProcess::spawn(cmd, database_url, id, env)
    }

    fn spawn(mut cmd: Command, database_url: &str, id: &str, env: &[(&str, String)]) -> WorkerProcess {
        let log = std::env::temp_dir().join(format!("pgshot-worker-{}-{id}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("create the worker log");
        cmd.env("DATABASE_URL", database_url)
            .env("PGSHOT_WORKER_ID", id)
            .env("PGSHOT_POLL_INTERVAL_MS", "200")
            .env("PGSHOT_MAINTENANCE_INTERVAL_SECONDS", "1")
            .env("RUST_LOG", "info,chromiumoxide=error")
            .env_remove("PGSHOT_ALLOW_PRIVATE_NETWORKS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pgshot-worker");
        WorkerProcess { child: Some(child), id: id.to_string(), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the worker process started by this handle is still running (it was not replaced:
    /// the handle holds the one process it started).
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no release, no heartbeat any more.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(15));
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Processes whose parent chain leads to `pid` (Chromium and its helpers, for a worker).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The command name is in parentheses and may contain spaces: the parent follows the last ')'.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        // Zombies count too: a Chromium that nobody reaped was left behind all the same.
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|f| f.parse::<u32>().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (p, ppid) in &parents {
            if *ppid == parent && !found.contains(p) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Every live process whose command line mentions `needle` (for example a user-data-dir).
pub fn processes_named(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}
