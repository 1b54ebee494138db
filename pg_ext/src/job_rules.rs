//! `pgshot.job_row_check(...)` and `pgshot.output_row_check(...)`: the CHECK constraints
//! `jobs_rules` and `outputs_rules` (queue.sql). The rules themselves are `pgshot_job::broken_rule`,
//! with their unit tests; why they are one function and not one constraint each is written there.

use pgrx::prelude::*;

#[pg_schema]
mod pgshot {
    use super::*;

    /// True when the row keeps every rule; otherwise raises 23514 (check_violation) naming the
    /// first rule it breaks (`holds`).
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(immutable, parallel_safe)]
    fn job_row_check(
        id: Option<&str>,
        bulk_id: Option<&str>,
        bulk_position: Option<i32>,
        status: Option<&str>,
        url: Option<&str>,
        priority: Option<i32>,
        attempt: Option<i32>,
        max_attempts: Option<i32>,
        worker_id: Option<&str>,
        lease_expires_at: Option<TimestampWithTimeZone>,
        cancel_requested: Option<bool>,
        webhook_url: Option<&str>,
        webhook_secret: Option<&str>,
        started_at: Option<TimestampWithTimeZone>,
        completed_at: Option<TimestampWithTimeZone>,
        expires_at: Option<TimestampWithTimeZone>,
        purged_at: Option<TimestampWithTimeZone>,
        error_code: Option<&str>,
        options_type: Option<&str>,
        errors_type: Option<&str>,
    ) -> bool {
        let row = pgshot_job::JobRow {
            id,
            has_bulk_id: bulk_id.is_some(),
            has_bulk_position: bulk_position.is_some(),
            status,
            url,
            priority,
            attempt,
            max_attempts,
            has_worker: worker_id.is_some(),
            has_lease: lease_expires_at.is_some(),
            cancel_requested,
            webhook_url,
            has_webhook_secret: webhook_secret.is_some(),
            has_started_at: started_at.is_some(),
            has_completed_at: completed_at.is_some(),
            has_expires_at: expires_at.is_some(),
            has_purged_at: purged_at.is_some(),
            error_code,
            options_type,
            errors_type,
        };
        holds("jobs", pgshot_job::broken_rule(&row))
    }

    /// `outputs_rules`, as `job_row_check` is `jobs_rules`.
    #[pg_extern(immutable, parallel_safe)]
    fn output_row_check(
        output_id: Option<&str>,
        output_type: Option<&str>,
        size: Option<i64>,
        bytes_length: Option<i32>,
        storage_key: Option<&str>,
        sha256_length: Option<i32>,
        metadata_type: Option<&str>,
    ) -> bool {
        let row = pgshot_job::OutputRow {
            output_id,
            output_type,
            size,
            bytes_length,
            has_storage_key: storage_key.is_some(),
            sha256_length,
            metadata_type,
        };
        holds("outputs", pgshot_job::broken_output_rule(&row))
    }
}

/// True when no rule of `table` is broken; otherwise raises 23514 with the message Postgres gives
/// for a CHECK constraint named like the rule, and what the rule demands as the detail.
fn holds(table: &str, broken: Option<&pgshot_job::Rule>) -> bool {
    if let Some(rule) = broken {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            format!("new row for relation \"{table}\" violates check constraint \"{}\"", rule.name),
            format!("{}: {}", rule.name, rule.demands)
        );
    }
    true
}
