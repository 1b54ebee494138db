//! pgshot-api: the allscreenshots async-jobs REST contract over the pgshot queue.

// An error is the body the client receives (about 200 bytes with its strings' headers), built once
// per refused request and returned straight to poem: boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use pgshot_db::Database;
use pgshot_job::NetworkPolicy;
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Response, Route, Server};
use poem_openapi::OpenApiService;

mod admission;
mod body;
mod completion;
mod dashboard;
mod db;
mod error;
mod result;
mod schedules;
mod schema;
mod screenshots;
mod spec;

use db::Db;
use error::ApiError;
use screenshots::{ScreenshotsApi, State};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (the default).
    Serve,
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI spec (the committed openapi/openapi.json is this output).
    Openapi,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed alone on the last line, and never shown again.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        limits: KeyLimits,
    },
    List,
    Revoke {
        id: String,
    },
    /// Set a key's limits; a limit left out is removed.
    Limit {
        id: String,
        #[command(flatten)]
        limits: KeyLimits,
    },
}

/// Per-key limits, enforced in SQL wherever jobs are created under the key: beyond them, 429
/// with Retry-After.
#[derive(clap::Args)]
struct KeyLimits {
    /// Jobs the key may create per minute (a bucket of this many, refilled continuously).
    #[arg(long)]
    rate: Option<i32>,
    /// Jobs the key may have queued or processing at once.
    #[arg(long)]
    max_in_flight: Option<i32>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "PGSHOT_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    listen: String,
    /// Public base URL for statusUrl and resultUrl; defaults to http://<listen>.
    #[arg(long, env = "PGSHOT_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// Sync captures that may wait at once; more get 429.
    #[arg(long, env = "PGSHOT_MAX_SYNC_WAITING", default_value_t = 64, global = true)]
    max_sync_waiting: usize,
    /// Sync captures that one API key may have waiting at once; its next gets 429.
    #[arg(long, env = "PGSHOT_MAX_SYNC_WAITING_PER_KEY", default_value_t = 8, global = true)]
    max_sync_waiting_per_key: usize,
    /// Dashboard event streams open at once, for one API key and in all; more get 429.
    #[arg(long, env = "PGSHOT_MAX_EVENT_STREAMS_PER_KEY", default_value_t = 4, global = true)]
    max_event_streams_per_key: usize,
    #[arg(long, env = "PGSHOT_MAX_EVENT_STREAMS", default_value_t = 100, global = true)]
    max_event_streams: usize,
    /// Besides a page's timeout and delay, seconds a sync capture waits for a worker to finish it.
    #[arg(long, env = "PGSHOT_SYNC_WAIT_SECONDS", default_value_t = 60, global = true)]
    sync_wait_seconds: u64,
    /// The longest, in seconds, that any sync capture waits before answering 503 NOT_FINISHED.
    #[arg(long, env = "PGSHOT_SYNC_MAX_WAIT_SECONDS", default_value_t = 180, global = true)]
    sync_max_wait_seconds: u64,
    /// Largest request body, in bytes; a larger one gets 413 PAYLOAD_TOO_LARGE.
    #[arg(long, env = "PGSHOT_MAX_BODY_BYTES", default_value_t = body::DEFAULT_MAX_BODY_BYTES, global = true)]
    max_body_bytes: usize,
    /// Accept jobs whose URL or webhook is a loopback or private address.
    #[arg(long, env = "PGSHOT_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    allow_private_networks: bool,
    /// When set, GET /metrics wants `Authorization: Bearer <this token>` (401 otherwise).
    #[arg(long, env = "PGSHOT_METRICS_TOKEN", global = true, hide_env_values = true)]
    metrics_token: Option<String>,
    /// The operator's token for /dashboard: with it, the dashboard shows every owner's jobs,
    /// the workers and the queue (API keys see only their own jobs). Unset: no operator.
    #[arg(long, env = "PGSHOT_ADMIN_TOKEN", global = true, hide_env_values = true)]
    admin_token: Option<String>,
    /// With PGSHOT_STORAGE=s3://...: `proxy` streams results through the API, `redirect` answers
    /// 307 to a presigned URL of the object.
    #[arg(long, env = "PGSHOT_STORAGE_SERVE", default_value = "proxy", global = true)]
    storage_serve: screenshots::StorageServe,
    /// How long a presigned storageUrl (and a redirect) stays valid, in seconds.
    #[arg(long, env = "PGSHOT_STORAGE_URL_SECONDS", default_value_t = 3600, global = true)]
    storage_url_seconds: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            println!("{}", spec());
            Ok(())
        }
        Command::Serve => serve(cli.serve).await,
        Command::Keys { command } => keys(cli.serve, command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgshot-api: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn public_url(args: &ServeArgs) -> String {
    args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen)).trim_end_matches('/').to_string()
}

fn state(args: &ServeArgs, database: &Database) -> Result<Arc<State>, String> {
    let public_url = public_url(args);
    Ok(Arc::new(State {
        db: Db::new(database, &public_url, 16)?,
        completions: Arc::new(completion::Completions::default()),
        sync_slots: admission::Admission::new(args.max_sync_waiting_per_key, args.max_sync_waiting),
        event_streams: admission::Admission::new(args.max_event_streams_per_key, args.max_event_streams),
        stream_checks: dashboard::StreamChecks::default(),
        failed_logins: dashboard::FailedLogins::default(),
        sync_allowance: std::time::Duration::from_secs(args.sync_wait_seconds),
        sync_limit: std::time::Duration::from_secs(args.sync_max_wait_seconds),
        public_url,
        policy: NetworkPolicy { allow_private_networks: args.allow_private_networks },
        max_body_bytes: args.max_body_bytes,
        jobs_created: AtomicU64::new(0),
        storage: pgshot_storage::ObjectStore::from_env()?,
        storage_serve: args.storage_serve,
        storage_url_ttl: std::time::Duration::from_secs(args.storage_url_seconds.clamp(1, 7 * 24 * 3600)),
    }))
}

fn openapi_service(state: Arc<State>) -> OpenApiService<(ScreenshotsApi, schedules::SchedulesApi), ()> {
    let apis = (ScreenshotsApi(state.clone()), schedules::SchedulesApi(state));
    OpenApiService::new(apis, "pgshot", env!("CARGO_PKG_VERSION")).description(
        "Postgres-native screenshot jobs, speaking the allscreenshots async-jobs API. \
         Authenticate with X-API-Key (or Authorization: Bearer).",
    )
}

/// The spec, independent of any deployment (no servers, no database).
pub fn spec() -> String {
    let args = ServeArgs {
        database_url: None,
        listen: "127.0.0.1:8080".into(),
        public_url: None,
        allow_private_networks: false,
        max_sync_waiting: 64,
        max_sync_waiting_per_key: 8,
        max_event_streams_per_key: 4,
        max_event_streams: 100,
        sync_wait_seconds: 60,
        sync_max_wait_seconds: 180,
        max_body_bytes: body::DEFAULT_MAX_BODY_BYTES,
        metrics_token: None,
        admin_token: None,
        storage_serve: screenshots::StorageServe::Proxy,
        storage_url_seconds: 3600,
    };
    let database = Database::parse("host=localhost").expect("a plain connection string");
    let state = state(&args, &database).expect("a pool can be built without connecting");
    spec::finish(&openapi_service(state).spec())
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    check_token("PGSHOT_ADMIN_TOKEN", args.admin_token.as_ref())?;
    check_token("PGSHOT_METRICS_TOKEN", args.metrics_token.as_ref())?;
    let database = Database::parse(args.database_url.as_deref().ok_or("DATABASE_URL is required")?)?;
    let state = state(&args, &database)?;
    state.db.check().await.map_err(|e| format!("database not ready: {e}"))?;
    tokio::spawn(state.completions.clone().listen(database.application_name("pgshot-api listen")));
    let api = openapi_service(state.clone());
    let spec_json = spec::finish(&api.spec());
    let docs = api.swagger_ui();
    let counters = Arc::new(Counters::default());
    let routes = Arc::new(Routes::from_spec(&spec_json));
    let state_for_limits = state.clone();
    let app = Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", get(poem::endpoint::make_sync(move |_| spec_response(&spec_json))))
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .nest("/dashboard", dashboard::routes())
        // Failures before a handler runs (a missing key, a bad parameter, a body that is not
        // JSON) leave poem-openapi as plain errors: give them the same body as every other one.
        .catch_all_error(|err| async move {
            if err.is_from_response() {
                // Already one of our ApiError responses, returned by a handler.
                err.into_response()
            } else if err.status() == StatusCode::METHOD_NOT_ALLOWED {
                ApiError::method_not_allowed()
            } else {
                ApiError::from_poem(err).into_response()
            }
        })
        .data(state.clone())
        .data(counters.clone())
        .data(MetricsToken(args.metrics_token.clone().filter(|t| !t.is_empty())))
        .data(dashboard::AdminToken(args.admin_token.clone().filter(|t| !t.is_empty())))
        .around(move |ep, req| {
            let counters = counters.clone();
            let routes = routes.clone();
            let state = state_for_limits.clone();
            async move {
                let path = req.uri().path().to_string();
                // Only the API's own operations take keys (not /metrics and its token).
                let key = if path.starts_with("/v1/") { api_key_of(&req) } else { None };
                let mut resp = ep.get_response(req).await;
                // X-RateLimit-* on every answer to a live key with a rate limit, as it stands
                // after this request.
                if let Some((limit, remaining, reset)) = match key {
                    Some(key) if resp.status() != StatusCode::UNAUTHORIZED => state.db.rate_limit(&key).await,
                    _ => None,
                } {
                    let headers = resp.headers_mut();
                    headers.insert("X-RateLimit-Limit", limit.into());
                    headers.insert("X-RateLimit-Remaining", remaining.max(0).into());
                    headers.insert("X-RateLimit-Reset", reset.max(0).into());
                }
                if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = routes.allow(&path) {
                        resp.headers_mut().insert(poem::http::header::ALLOW, allow);
                    }
                }
                counters.count(resp.status());
                Ok(resp)
            }
        });
    tracing::info!(listen = %args.listen, public_url = %state.public_url, "pgshot-api listening");
    Server::new(TcpListener::bind(args.listen.clone()))
        .run_with_graceful_shutdown(
            app,
            // SIGTERM (what systemd, Kubernetes and `docker stop` send) or Ctrl-C: stop accepting,
            // let requests in flight finish (a sync capture waits at most its bound), then exit.
            async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler can be installed");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("shutting down");
            },
            Some(std::time::Duration::from_secs(args.sync_max_wait_seconds + 5)),
        )
        .await
        .map_err(|e| format!("cannot serve on {}: {e}", args.listen))
}

/// The API key a request carries, as the API's security schemes read it (the dashboard reads its
/// bearer token the same way).
pub(crate) fn api_key_of(req: &poem::Request) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("X-API-Key")
        .or_else(|| header("Authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .map(str::to_string)
        .filter(|k| !k.is_empty())
}

/// Whether a token sent equals the one configured, compared in constant time, so that a wrong
/// token's answer time says nothing of the right one.
pub(crate) fn same_token(sent: &str, token: &str) -> bool {
    sent.len() == token.len() && sent.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn spec_response(spec: &str) -> Response {
    Response::builder().content_type("application/json").body(spec.to_string())
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn readyz(state: Data<&Arc<State>>) -> Response {
    match state.db.ready().await {
        Ok(()) => "ready".into_response(),
        // Anyone may ask: the reason (a host name, a role, a TLS error) goes to the log only.
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database is unavailable").into_response()
        }
    }
}

/// Shortest operator or metrics token accepted: a token that people choose is guessed online
/// (failed logins are throttled too, dashboard.rs).
const MIN_TOKEN_CHARS: usize = 24;

fn check_token(name: &str, token: Option<&String>) -> Result<(), String> {
    match token {
        Some(t) if !t.is_empty() && t.chars().count() < MIN_TOKEN_CHARS => Err(format!(
            "{name} must be at least {MIN_TOKEN_CHARS} characters (it is {}); for example `openssl rand -hex 32`",
            t.chars().count()
        )),
        _ => Ok(()),
    }
}

/// The spec's paths and their methods, for the `Allow` header of a 405 (RFC 9110).
struct Routes(Vec<(Vec<String>, String)>);

impl Routes {
    fn from_spec(spec: &str) -> Routes {
        let spec: serde_json::Value = serde_json::from_str(spec).expect("the generated spec is JSON");
        let paths = spec["paths"].as_object().cloned().unwrap_or_default();
        Routes(
            paths
                .iter()
                .map(|(path, methods)| {
                    let segments = path.split('/').map(str::to_string).collect();
                    let methods: Vec<String> =
                        methods.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()).collect();
                    (segments, methods.join(", "))
                })
                .collect(),
        )
    }

    fn allow(&self, path: &str) -> Option<poem::http::HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        let (_, methods) = self.0.iter().find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })?;
        poem::http::HeaderValue::from_str(methods).ok()
    }
}

/// Responses by status class, for /metrics.
#[derive(Default)]
struct Counters {
    by_class: [AtomicU64; 6],
}

impl Counters {
    fn count(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).min(5) as usize;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// `PGSHOT_METRICS_TOKEN`, when set.
#[derive(Clone)]
struct MetricsToken(Option<String>);

impl MetricsToken {
    /// Whether `req` may read the metrics: any request when no token is set, else one that sends
    /// it as a bearer token (compared in constant time).
    fn admits(&self, req: &poem::Request) -> bool {
        let Some(token) = &self.0 else { return true };
        let sent = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        same_token(sent, token)
    }
}

#[handler]
async fn metrics(
    req: &poem::Request,
    state: Data<&Arc<State>>,
    counters: Data<&Arc<Counters>>,
    token: Data<&MetricsToken>,
) -> Response {
    if !token.admits(req) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Bearer")
            .body("the metrics token is required: Authorization: Bearer <PGSHOT_METRICS_TOKEN>");
    }
    let mut out = String::from("# HELP pgshot_http_responses_total HTTP responses by status class.\n# TYPE pgshot_http_responses_total counter\n");
    for class in 1..=5 {
        let n = counters.by_class[class].load(Ordering::Relaxed);
        out.push_str(&format!("pgshot_http_responses_total{{class=\"{class}xx\"}} {n}\n"));
    }
    out.push_str("# HELP pgshot_jobs_created_total Jobs created through this API process.\n# TYPE pgshot_jobs_created_total counter\n");
    out.push_str(&format!("pgshot_jobs_created_total {}\n", state.jobs_created.load(Ordering::Relaxed)));
    out.push_str("# HELP pgshot_dashboard_event_streams Dashboard event streams open.\n# TYPE pgshot_dashboard_event_streams gauge\n");
    out.push_str(&format!("pgshot_dashboard_event_streams {}\n", state.event_streams.held()));
    out.push_str("# HELP pgshot_dashboard_stream_checks_total Checks of a viewer's jobs made for its event streams (one a tick per viewer, shared by its streams).\n# TYPE pgshot_dashboard_stream_checks_total counter\n");
    out.push_str(&format!("pgshot_dashboard_stream_checks_total {}\n", state.stream_checks.made()));
    match state.db.stats().await {
        Ok(stats) => {
            out.push_str("# HELP pgshot_jobs Jobs queued or processing.\n# TYPE pgshot_jobs gauge\n");
            out.push_str(&format!("pgshot_jobs{{status=\"QUEUED\"}} {}\n", stats.queued));
            out.push_str(&format!("pgshot_jobs{{status=\"PROCESSING\"}} {}\n", stats.processing));
            out.push_str("# HELP pgshot_oldest_queued_seconds Age of the oldest queued job.\n# TYPE pgshot_oldest_queued_seconds gauge\n");
            out.push_str(&format!("pgshot_oldest_queued_seconds {}\n", stats.oldest_queued_seconds));
            out.push_str("# HELP pgshot_job_rows Rows of pgshot.jobs, every status, as the planner's statistics estimate them.\n# TYPE pgshot_job_rows gauge\n");
            out.push_str(&format!("pgshot_job_rows {}\n", stats.job_rows_estimate));
        }
        Err(e) => tracing::warn!(error = %e, "queue statistics unavailable"),
    }
    Response::builder().content_type("text/plain; version=0.0.4").body(out)
}

async fn keys(args: ServeArgs, command: KeysCommand) -> Result<(), String> {
    let database = Database::parse(args.database_url.as_deref().ok_or("DATABASE_URL is required")?)?;
    let db = Db::new(&database, &public_url(&args), 1)?;
    db.check().await?;
    match command {
        KeysCommand::Create { name, limits } => {
            let (id, key) = db.create_key(&name, limits.rate, limits.max_in_flight).await?;
            eprintln!("created API key {id} ({name}); it is shown only now:");
            println!("{key}");
        }
        KeysCommand::List => {
            for k in db.list_keys().await? {
                let state = k.revoked_at.map_or("active".to_string(), |at| format!("revoked {at}"));
                let limit = |v: Option<i32>| v.map_or("none".to_string(), |v| v.to_string());
                println!(
                    "{}\t{}\tcreated {}\t{state}\trate {}/min\tin flight {}",
                    k.id,
                    k.name,
                    k.created_at,
                    limit(k.rate_limit),
                    limit(k.max_in_flight)
                );
            }
        }
        KeysCommand::Limit { id, limits } => {
            db.set_key_limits(&id, limits.rate, limits.max_in_flight).await?;
            eprintln!("limits of {id} set");
        }
        KeysCommand::Revoke { id } => {
            db.revoke_key(&id).await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_spec_is_the_generated_one() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json"))
            .expect("openapi/openapi.json is committed");
        assert!(
            committed.trim_end() == super::spec().trim_end(),
            "openapi/openapi.json is stale: run `cargo run -p pgshot-api -- openapi > openapi/openapi.json`"
        );
    }

    #[test]
    fn every_operation_has_an_operation_id_and_a_tag() {
        let spec: serde_json::Value = serde_json::from_str(&super::spec()).unwrap();
        let mut count = 0;
        for (path, methods) in spec["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                count += 1;
                assert!(op["operationId"].is_string(), "{method} {path} has no operationId");
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
            }
        }
        assert!(count >= 6);
    }
}
