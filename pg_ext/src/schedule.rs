//! What the schedules' SQL (queue.sql, "Schedules") asks of Rust: a request validated against the
//! shared `pgshot-job` definition, and the cron arithmetic (a maintained crate, time zones and
//! DST included), so that SQL never parses a pattern.

use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pgrx::JsonB;
use pgshot_job::{NetworkPolicy, ScheduleRequest};

use crate::enqueue::raise_invalid;
use crate::settings::ALLOW_PRIVATE_NETWORKS;

/// Postgres counts microseconds from 2000-01-01 00:00 UTC.
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

#[pg_schema]
mod pgshot {
    use super::*;

    /// A complete schedule request (a create, or an update merged onto the stored request),
    /// validated and in its canonical form; 22023 naming the field otherwise.
    #[pg_extern(stable, parallel_safe)]
    fn schedule_check(spec: JsonB) -> JsonB {
        let policy = NetworkPolicy { allow_private_networks: ALLOW_PRIVATE_NETWORKS.get() };
        let canonical = ScheduleRequest::from_json(&spec.0)
            .and_then(|r| r.canonical(policy))
            .unwrap_or_else(|e| raise_invalid(e, "screenshot_schedule_create"));
        JsonB(canonical)
    }

    /// An update `changes` over a schedule's canonical request `stored` (pgshot-job's
    /// `ScheduleRequest::merged`), validated and canonical; 22023 naming the field otherwise.
    #[pg_extern(stable, parallel_safe)]
    fn schedule_merge(stored: JsonB, changes: JsonB) -> JsonB {
        let policy = NetworkPolicy { allow_private_networks: ALLOW_PRIVATE_NETWORKS.get() };
        let canonical = ScheduleRequest::merged(&stored.0, &changes.0)
            .and_then(|r| r.canonical(policy))
            .unwrap_or_else(|e| raise_invalid(e, "screenshot_schedule_update"));
        JsonB(canonical)
    }

    /// The first run of `pattern` in time zone `tz` strictly after `after`; NULL when the pattern
    /// never matches again.
    #[pg_extern(immutable, parallel_safe)]
    fn schedule_next(pattern: &str, tz: &str, after: TimestampWithTimeZone) -> Option<TimestampWithTimeZone> {
        let micros: i64 = after.into_inner();
        let after = DateTime::<Utc>::from_timestamp_micros(micros.checked_add(PG_EPOCH_UNIX_SECONDS * 1_000_000)?)?;
        let next =
            pgshot_job::next_run(pattern, tz, after).unwrap_or_else(|e| raise_invalid(e, "pgshot.schedule_next"))?;
        let micros = next.timestamp_micros() - PG_EPOCH_UNIX_SECONDS * 1_000_000;
        TimestampWithTimeZone::try_from(micros).ok()
    }

    /// A new id, as a job's: 16 characters of [0-9a-z] from the CSPRNG.
    #[pg_extern(volatile, parallel_safe)]
    fn new_id() -> String {
        pgshot_job::new_job_id()
    }
}
