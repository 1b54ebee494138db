use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// pgshot-worker: claims screenshot jobs from Postgres and renders them in headless Chromium.
/// Any number of workers may run against one database.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Postgres connection URL of the database with the pgshot extension.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Jobs rendered at the same time, each in its own browser context.
    #[arg(long, env = "PGSHOT_WORKER_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// The Chromium (or Chrome) binary.
    #[arg(long, env = "PGSHOT_CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,

    /// This worker's name in the queue; defaults to host-pid-random.
    #[arg(long, env = "PGSHOT_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Lease taken on each job; renewed every third of it while the job renders.
    #[arg(long, env = "PGSHOT_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_seconds: u64,

    /// How often to look for work when no notification arrives.
    #[arg(long, env = "PGSHOT_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,

    /// Restart Chromium after this many renders, to bound its memory.
    #[arg(long, env = "PGSHOT_RECYCLE_AFTER", default_value_t = 200)]
    pub recycle_after: u32,

    /// Allow pages, subresources and redirects to reach loopback, private and link-local
    /// addresses. For local development and tests only.
    #[arg(long, env = "PGSHOT_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_networks: bool,

    /// Non-public destinations allowed even when private networks are refused: IP or IP:port,
    /// comma-separated (an internal service the deployment trusts).
    #[arg(long, env = "PGSHOT_ALLOW_DESTINATIONS", value_delimiter = ',')]
    pub allow_destinations: Vec<crate::egress::Allowed>,

    /// On SIGTERM or SIGINT, how long running jobs may take to finish before they are released.
    #[arg(long, env = "PGSHOT_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Largest single output, in bytes; a larger one fails the job with OUTPUT_TOO_LARGE.
    #[arg(long, env = "PGSHOT_MAX_OUTPUT_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_output_bytes: usize,

    /// Largest screenshot in device pixels (width x height x deviceScaleFactor squared); a larger
    /// capture fails with CAPTURE_TOO_LARGE instead of exhausting the browser's memory.
    #[arg(long, env = "PGSHOT_MAX_CAPTURE_PIXELS", default_value_t = 64_000_000)]
    pub max_capture_pixels: u64,

    /// Largest JavaScript heap of one page's renderer, in MiB (V8's old space): a page that wants
    /// more crashes alone, with PAGE_CRASHED, instead of taking the machine's memory.
    #[arg(long, env = "PGSHOT_PAGE_HEAP_MB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=16384))]
    pub page_heap_mb: u32,

    /// Whom Chromium runs as when the worker runs as root (never root itself); default
    /// pgshot-render, or nobody when that user does not exist.
    #[arg(long, env = "PGSHOT_RENDER_USER")]
    pub render_user: Option<String>,

    /// Chromium's sandbox (user namespaces and seccomp). Turn it off only where the machine
    /// cannot give an unprivileged process user namespaces (some containers).
    #[arg(long, env = "PGSHOT_CHROMIUM_SANDBOX", default_value_t = true, action = clap::ArgAction::Set)]
    pub chromium_sandbox: bool,

    /// How often one worker (under an advisory lock) rescues expired leases and purges results.
    #[arg(long, env = "PGSHOT_MAINTENANCE_INTERVAL_SECONDS", default_value_t = 10)]
    pub maintenance_interval_seconds: u64,

    /// How often the worker starts the runs of due schedules, in milliseconds (100 to 60000).
    #[arg(long, env = "PGSHOT_SCHEDULE_INTERVAL_MS", default_value_t = 1000)]
    pub schedule_interval_ms: u64,
}

impl Config {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.lease_seconds) / 3
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let suffix = &pgshot_job::new_job_id()[..4];
            format!("{}-{}-{suffix}", host.trim(), std::process::id())
        })
    }
}
