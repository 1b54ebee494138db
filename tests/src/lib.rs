//! A real Postgres 15 cluster for integration tests, started from the distribution's binaries on
//! a free port, with the installed `pgshot` extension in a template database. Each test gets its
//! own database cloned from the template, so tests run in parallel without seeing each other.
//!
//! Nothing here is mocked: when Postgres or the extension is missing, the first test panics with
//! what to install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub mod api_process;
pub mod receiver;
pub mod s3;
pub mod site;
pub mod tls;
pub mod worker_process;

pub use postgres::error::SqlState;
pub use postgres::{Client, NoTls};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const TEMPLATE: &str = "pgshot_template";
/// The one database of the test cluster that refuses connections without TLS (pg_hba.conf).
pub const TLS_ONLY_DB: &str = "tls_only";

pub struct Cluster {
    dir: PathBuf,
    port: u16,
    next_db: AtomicUsize,
    create_db: Mutex<()>,
    tls_only: OnceLock<()>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster of this test process, started on first use and stopped when the process exits.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// Runs `cmd` to its end; a failure panics with what it printed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
    fn atexit(callback: extern "C" fn()) -> i32;
}

/// A command run as the `postgres` OS user when we are root: Postgres refuses to run as root.
pub fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn pg_bin(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

extern "C" fn stop_cluster_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop();
    }
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(&pg_bin("initdb")).exists(),
            "{PG_BIN}/initdb is missing: install postgresql-15 (make test does)"
        );
        remove_stale_clusters();
        let dir = std::env::temp_dir().join(format!("pgshot-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if is_root() {
            run(Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]));
        }
        let port = free_port();
        run(as_postgres(&pg_bin("initdb")).args([
            "-D",
            dir.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]));
        // Tests trade durability for speed; the benchmarks ask for a durable cluster.
        let durability = if std::env::var_os("PGSHOT_CLUSTER_DURABLE").is_some() {
            ""
        } else {
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        };
        // TLS on, with a certificate for `localhost` from the tests' own CA; one database
        // (TLS_ONLY_DB) takes TLS connections only.
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).expect("create the TLS directory");
        let ca = tls::authority(&tls_dir, "ca");
        let (cert, key) = tls::server_certificate(&tls_dir, &ca, "server", "localhost");
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres:postgres", tls_dir.to_str().unwrap()]));
        }
        run(Command::new("chmod").args(["0600", key.to_str().unwrap()]));
        let hba = dir.join("pg_hba.conf");
        let default_hba = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostnossl {TLS_ONLY_DB} all all reject\nhostssl {TLS_ONLY_DB} all 127.0.0.1/32 trust\n{default_hba}"
            ),
        )
        .expect("write pg_hba.conf");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 100\n{durability}ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            dir.display(),
            cert.display(),
            key.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .expect("write postgresql.conf");
        let log = dir.join("server.log");
        run(as_postgres(&pg_bin("pg_ctl"))
            // pgrx appends a Rust backtrace to every error's DETAIL when backtraces are enabled.
            .env("RUST_LIB_BACKTRACE", "0")
            .args(["-D", dir.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start"]));
        let cluster =
            Cluster { dir, port, next_db: AtomicUsize::new(0), create_db: Mutex::new(()), tls_only: OnceLock::new() };
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { atexit(stop_cluster_at_exit) };
        let mut admin = cluster.connect("postgres");
        admin.batch_execute(&format!("CREATE DATABASE {TEMPLATE}")).unwrap();
        let mut template = cluster.connect(TEMPLATE);
        template.batch_execute("CREATE EXTENSION pgshot").unwrap_or_else(|e| {
            panic!("CREATE EXTENSION pgshot failed: {e}; build and install it first (make test does)")
        });
        drop(template);
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection string for `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port)
    }

    pub fn connect(&self, db: &str) -> Client {
        connect_url(&self.url(db))
    }

    /// A new database with the extension created, for one test.
    pub fn fresh_db(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::SeqCst));
        let _serial = self.create_db.lock().unwrap_or_else(|e| e.into_inner());
        self.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .expect("clone the template database");
        name
    }

    /// Drops a database made by `fresh_db`, closing its connections first.
    pub fn drop_db(&self, name: &str) {
        self.connect("postgres")
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .expect("drop the database");
    }

    /// The CA that signed the cluster's server certificate (for `sslrootcert`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// TLS_ONLY_DB, created on first use from the template with local pages allowed; the
    /// connection string without any TLS parameter (the caller adds `sslmode` and the host).
    pub fn tls_only_db(&self) -> String {
        self.tls_only.get_or_init(|| {
            let _serial = self.create_db.lock().unwrap_or_else(|e| e.into_inner());
            let mut admin = self.connect("postgres");
            admin.batch_execute(&format!("CREATE DATABASE {TLS_ONLY_DB} TEMPLATE {TEMPLATE}")).unwrap();
            admin
                .batch_execute(&format!("ALTER DATABASE {TLS_ONLY_DB} SET pgshot.allow_private_networks = on"))
                .unwrap();
        });
        format!("port={} user=postgres dbname={TLS_ONLY_DB}", self.port)
    }

    /// A fresh database whose jobs may point at 127.0.0.1 (the tests' pages and receivers; the
    /// worker applies its own policy), with `settings` (`name = value`) for its sessions.
    /// Returns a connection and the connection string.
    pub fn fresh_local_db(&self, settings: &[&str]) -> (Client, String) {
        let name = self.fresh_db();
        let mut admin = self.connect("postgres");
        for setting in ["pgshot.allow_private_networks = on"].iter().chain(settings) {
            admin.batch_execute(&format!("ALTER DATABASE {name} SET {setting}")).expect("a database setting");
        }
        (self.connect(&name), self.url(&name))
    }

    fn stop(&self) {
        let _ =
            as_postgres(&pg_bin("pg_ctl")).args(["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn connect_url(url: &str) -> Client {
    let mut last = None;
    for _ in 0..50 {
        match Client::connect(url, NoTls) {
            Ok(client) => return client,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot connect to {url}: {}", last.unwrap());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// Stops clusters left behind by test processes that were killed before their exit handler ran.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("pgshot-test-").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .args(["-D", entry.path().to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// The SQLSTATE of a failed statement, or a panic naming what succeeded instead.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => match e.code() {
            Some(code) => code.code().to_string(),
            None => panic!("expected a database error, got {e}"),
        },
    }
}

/// The message of a failed statement's database error.
pub fn db_message<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> (String, String) {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("expected a database error, got {e}"));
            (db.code().code().to_string(), db.message().to_string())
        }
    }
}

/// Destinations that must never be rendered or called with private networks refused (issue 7's
/// list): each is refused at enqueue, as a page URL and as a webhook URL. Names that resolve to a
/// private address are judged after resolution by the worker, and tested there.
pub const SSRF_CORPUS: &[&str] = &[
    "http://127.0.0.1/",
    "http://127.8.9.10:8080/x",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::1]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:0:127.0.0.1]/",
    "http://168.63.129.16/machine?comp=goalstate",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://localhost/",
    "http://metadata.localhost/",
    "file:///etc/passwd",
    "view-source:http://127.0.0.1/",
    "chrome://settings",
    "javascript:alert(document.domain)",
    "data:text/html,<script>fetch('http://127.0.0.1/')</script>",
];
