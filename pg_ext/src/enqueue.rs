//! `screenshot_enqueue` and `screenshot_enqueue_bulk`: validate in Rust, insert in one statement.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgshot_job::{new_job_id, parse_bulk, InvalidOption, JobRequest, NetworkPolicy, MAX_BULK};

use crate::settings::ALLOW_PRIVATE_NETWORKS;

/// Enqueues a screenshot of `url` and returns the new job's id. The job exists only if the
/// caller's transaction commits; workers are woken at commit by a NOTIFY.
#[pg_extern(volatile, parallel_unsafe)]
fn screenshot_enqueue(url: Option<&str>, options: default!(Option<JsonB>, "'{}'")) -> String {
    let Some(url) = url else {
        raise(InvalidOption::new("url", "url must not be null"));
    };
    let options = options.map_or_else(|| serde_json::json!({}), |o| o.0);
    let request = JobRequest::parse(url, &options, policy()).unwrap_or_else(|e| raise(e));
    insert(None, None, vec![request]).pop().expect("one request gives one id")
}

/// Enqueues many screenshots in one statement (one NOTIFY), from a JSON array of objects that each
/// hold a `url` and its options, and returns the new ids in the order of the requests. If any
/// request is invalid, none is enqueued.
#[pg_extern(volatile, parallel_unsafe)]
fn screenshot_enqueue_bulk(requests: Option<JsonB>) -> SetOfIterator<'static, String> {
    let Some(JsonB(requests)) = requests else {
        raise(InvalidOption::new("requests", "requests must not be null"));
    };
    let requests = parse_bulk(&requests, "requests", MAX_BULK, policy()).unwrap_or_else(|e| raise(e));
    SetOfIterator::new(insert(None, None, requests))
}

#[pg_schema]
mod pgshot {
    use super::*;

    /// `screenshot_enqueue` for pgshot-api: the job belongs to the API key `owner`, and its
    /// idempotency key is that owner's.
    #[pg_extern(volatile, parallel_unsafe)]
    fn enqueue_owned(owner: &str, url: &str, options: JsonB) -> String {
        let request = JobRequest::parse(url, &options.0, policy()).unwrap_or_else(|e| raise(e));
        insert(Some(owner), None, vec![request]).pop().expect("one request gives one id")
    }

    /// A bulk request for pgshot-api: at most `max` jobs under one new bulk id, which it returns.
    /// The webhook is the bulk's own (one BULK_COMPLETED delivery), not each job's.
    #[pg_extern(volatile, parallel_unsafe)]
    fn enqueue_bulk_owned(
        owner: &str,
        requests: JsonB,
        max: i32,
        webhook_url: Option<&str>,
        webhook_secret: Option<&str>,
    ) -> String {
        let max = usize::try_from(max).unwrap_or(0);
        let requests = parse_bulk(&requests.0, "urls", max, policy()).unwrap_or_else(|e| raise(e));
        pgshot_job::check_bulk_webhook(webhook_url, webhook_secret, policy()).unwrap_or_else(|e| raise(e));
        let bulk_id = new_job_id();
        Spi::run_with_args(
            "INSERT INTO pgshot.bulks (id, owner, webhook_url, webhook_secret) VALUES ($1, $2, $3, $4)",
            &[bulk_id.clone().into(), owner.into(), webhook_url.into(), webhook_secret.into()],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot record the bulk request: {e}"));
        insert(Some(owner), Some(&bulk_id), requests);
        bulk_id
    }
}

fn policy() -> NetworkPolicy {
    NetworkPolicy { allow_private_networks: ALLOW_PRIVATE_NETWORKS.get() }
}

/// Inserts through `pgshot.insert_jobs`, which owns the INSERT and the idempotency-key rules.
fn insert(owner: Option<&str>, bulk_id: Option<&str>, requests: Vec<JobRequest>) -> Vec<String> {
    let n = requests.len();
    let mut ids = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    let mut options = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut run_ats = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut webhook_urls = Vec::with_capacity(n);
    let mut webhook_secrets = Vec::with_capacity(n);
    for r in requests {
        ids.push(new_job_id());
        options.push(JsonB(r.options_json()));
        urls.push(r.url);
        priorities.push(r.priority);
        run_ats.push(r.run_at);
        max_attempts.push(r.max_attempts);
        keys.push(r.idempotency_key);
        webhook_urls.push(r.webhook_url);
        webhook_secrets.push(r.webhook_secret);
    }
    Spi::get_one_with_args::<Vec<String>>(
        "SELECT pgshot.insert_jobs($1, $2, $3, $4, $5, $6, $7::timestamptz[], $8, $9, $10, $11)",
        &[
            owner.into(),
            bulk_id.into(),
            ids.into(),
            urls.into(),
            options.into(),
            priorities.into(),
            run_ats.into(),
            max_attempts.into(),
            keys.into(),
            webhook_urls.into(),
            webhook_secrets.into(),
        ],
    )
    .unwrap_or_else(|e| pgrx::error!("pgshot.insert_jobs failed: {e}"))
    .expect("pgshot.insert_jobs returns an id per request")
}

/// Raises an invalid request as SQLSTATE 22023, with its detail and hint.
fn raise(e: InvalidOption) -> ! {
    raise_invalid(e, "screenshot_enqueue")
}

/// Raises an invalid argument of `function` as SQLSTATE 22023, with its detail and hint.
pub(crate) fn raise_invalid(e: InvalidOption, function: &'static str) -> ! {
    let mut report = ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.message, function);
    if let Some(detail) = e.detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = e.hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
