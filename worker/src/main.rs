//! pgshot-worker: claims screenshot jobs from Postgres and renders them in headless Chromium.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{watch, Notify};

mod blocklist;
mod browser;
mod change;
mod config;
mod deliver;
mod devtools_pipe;
mod dns;
mod document;
mod egress;
mod jobs;
mod launcher;
mod own_addresses;
mod render;
mod signing;
mod thumbnail;

use config::Config;
use pgshot_db::worker_queue::{self as queue, Queue};

fn main() -> std::process::ExitCode {
    // `pgshot-worker convert-document ...`: a document conversion, in a process of its own.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(document::CHILD_ARGUMENT) {
        return document::child_main(&args[1..]);
    }
    worker_main()
}

#[tokio::main]
async fn worker_main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,chromiumoxide=error".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::parse();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let worker_id = config.worker_id();
    let launcher = launcher::Launcher::new(&config.chromium, config.render_user.as_deref(), config.chromium_sandbox)?;
    let database = pgshot_db::Database::parse(&config.database_url)?.application_name("pgshot-worker");
    let queue = Queue::new(&database, &worker_id, config.lease(), config.concurrency as usize + 2)?;
    // PGSHOT_STORAGE=s3://bucket/prefix puts results in object storage; unset, in Postgres.
    let storage = pgshot_storage::ObjectStore::from_env()?;
    // Fails early, with what to do, when the database lacks the extension or has another version.
    database.check_extension().await?;
    tracing::info!(
        worker_id,
        concurrency = config.concurrency,
        allow_private_networks = config.allow_private_networks,
        storage = storage.as_ref().map_or("postgres".to_string(), |s| format!("{s:?}")),
        "pgshot-worker started"
    );

    let wake = Arc::new(Notify::new());
    let webhooks_wake = Arc::new(Notify::new());
    let listener = tokio::spawn(queue::listen(
        database.clone().application_name("pgshot-worker listen"),
        vec![(queue::JOBS_CHANNEL, wake.clone()), (queue::WEBHOOKS_CHANNEL, webhooks_wake.clone())],
    ));
    let rules = egress::Rules {
        allow_private_networks: config.allow_private_networks,
        block_ads: false,
        allowed: config.allow_destinations.clone().into(),
    };
    let deliverer = Arc::new(deliver::Deliverer::new(queue.clone(), rules)?);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop requested");
        let _ = stop_tx.send(true);
    });

    let delivering = tokio::spawn(deliverer.run(webhooks_wake, config.poll_interval(), stop_rx.clone()));
    let worker = jobs::Worker::new(&config, launcher, queue.clone(), storage.clone(), wake);
    let maintenance = tokio::spawn(jobs::maintain(
        worker.clone(),
        queue.clone(),
        storage,
        Duration::from_secs(config.maintenance_interval_seconds.max(1)),
    ));
    let scheduling = tokio::spawn(jobs::run_schedules(
        queue.clone(),
        Duration::from_millis(config.schedule_interval_ms.clamp(100, 60_000)),
    ));
    worker.run(config.poll_interval(), Duration::from_secs(config.shutdown_grace_seconds), stop_rx).await;
    // Deliveries in flight finish within their own timeout.
    let _ = tokio::time::timeout(Duration::from_secs(20), delivering).await;
    listener.abort();
    maintenance.abort();
    scheduling.abort();
    if let Err(e) = queue.stopped().await {
        tracing::warn!(error = %e, "could not record the stop");
    }
    tracing::info!("pgshot-worker stopped");
    Ok(())
}

async fn wait_for_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
