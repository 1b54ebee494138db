//! The `pgshot.*` settings. Registering them gives `SET` type and range checks with the
//! setting's name in the error, instead of a failed cast deep inside a queue function.

use std::ffi::CString;

use pgrx::datum::Interval;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

pub static ALLOW_PRIVATE_NETWORKS: GucSetting<bool> = GucSetting::<bool>::new(false);
static PUBLIC_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static RESULT_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
static JOB_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 3600);
pub(crate) static NOTIFY_ALL_DONE: GucSetting<bool> = GucSetting::<bool>::new(false);
static RETRY_BACKOFF_MS: GucSetting<i32> = GucSetting::<i32>::new(2000);
static WEBHOOK_RETRY_SCHEDULE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"0,5,300,1800,7200,18000,36000,36000"));

pub fn register() {
    GucRegistry::define_bool_guc(
        c"pgshot.allow_private_networks",
        c"Allow jobs whose URL is a loopback, private or link-local address.",
        c"Off by default: a screenshot service that fetches internal addresses is an SSRF hole. \
          Turn it on for local development and tests only.",
        &ALLOW_PRIVATE_NETWORKS,
        // Only a superuser may open the internal network to whoever can enqueue.
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pgshot.public_url",
        c"Base URL of the pgshot API, for absolute resultUrl values.",
        c"When unset, resultUrl is the path /v1/screenshots/jobs/{id}/result.",
        &PUBLIC_URL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgshot.result_retention",
        c"How long a completed job's result bytes are kept.",
        c"expiresAt is completedAt plus this; screenshot_purge deletes the bytes after it.",
        &RESULT_RETENTION_S,
        60,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgshot.job_retention",
        c"How long finished jobs are kept before screenshot_purge deletes them; 0 keeps them forever.",
        c"Counted from completedAt; a completed job is never deleted before its expiresAt.",
        &JOB_RETENTION_S,
        0,
        i32::MAX,
        // The database owner sets it (ALTER DATABASE … SET) on managed Postgres, without superuser;
        // only a role that may call screenshot_purge (a worker's) acts on it.
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pgshot.notify_all_done",
        c"NOTIFY pgshot_job_done for every job that finishes, not only for watched ones.",
        c"Off by default: a NOTIFY makes commits wait for one another, which costs the queue most \
          of its throughput with many workers. screenshot_watch(id) and sync captures watch a job.",
        &NOTIFY_ALL_DONE,
        // Read in the session that finishes the job (a worker's): set it with ALTER DATABASE.
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgshot.retry_backoff",
        c"Delay before the second attempt of a failed job; each later one waits four times longer.",
        c"Spread by 20 percent either way and capped at one hour.",
        &RETRY_BACKOFF_MS,
        0,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pgshot.webhook_retry_schedule",
        c"Delays, in seconds, before each webhook attempt: one entry per attempt.",
        c"The first entry is the delay before the first attempt; each is spread by 10 percent.",
        &WEBHOOK_RETRY_SCHEDULE,
        GucContext::Userset,
        GucFlags::default(),
    );
    unsafe {
        // Refuse misspelt pgshot.* settings instead of silently keeping them as placeholders.
        pgrx::pg_sys::MarkGUCPrefixReserved(c"pgshot".as_ptr());
    }
}

#[pg_schema]
mod pgshot {
    use super::*;

    /// How long results are kept (`pgshot.result_retention`).
    #[pg_extern(stable, parallel_safe)]
    fn result_retention() -> Interval {
        Interval::from_micros(i64::from(RESULT_RETENTION_S.get()) * 1_000_000)
    }

    /// How long finished jobs are kept (`pgshot.job_retention`), or NULL to keep them forever.
    #[pg_extern(stable, parallel_safe)]
    fn job_retention() -> Option<Interval> {
        let seconds = JOB_RETENTION_S.get();
        (seconds > 0).then(|| Interval::from_micros(i64::from(seconds) * 1_000_000))
    }

    /// Whether every finished job is notified (`pgshot.notify_all_done`).
    #[pg_extern(stable, parallel_safe)]
    fn notify_all_done() -> bool {
        NOTIFY_ALL_DONE.get()
    }

    /// The delay before the next webhook attempt after attempt `attempt` failed, or NULL when
    /// `pgshot.webhook_retry_schedule` has no more attempts.
    #[pg_extern(volatile, parallel_safe)]
    fn webhook_retry_delay(attempt: i32) -> Option<Interval> {
        let raw = WEBHOOK_RETRY_SCHEDULE.get();
        let raw = raw.as_ref().map(|s| s.to_string_lossy().into_owned());
        let schedule = raw.as_deref().unwrap_or(pgshot_job::DEFAULT_WEBHOOK_SCHEDULE);
        let delays = pgshot_job::parse_webhook_schedule(schedule).unwrap_or_else(|e| {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid value for pgshot.webhook_retry_schedule: {e}"),
                "use comma-separated seconds, such as 0,5,300"
            );
        });
        let ms = pgshot_job::webhook_retry_delay_ms(&delays, attempt, pgshot_job::random_unit())?;
        Some(Interval::from_micros(i64::try_from(ms).unwrap_or(i64::MAX / 1000) * 1000))
    }

    /// The backoff before attempt `attempt + 1`, after attempt `attempt` failed.
    #[pg_extern(volatile, parallel_safe)]
    fn retry_delay(attempt: i32) -> Interval {
        let base = u64::try_from(RETRY_BACKOFF_MS.get()).unwrap_or(0);
        let ms = pgshot_job::retry_delay_ms(attempt, base, pgshot_job::random_unit());
        Interval::from_micros(i64::try_from(ms).unwrap_or(i64::MAX / 1000) * 1000)
    }
}
