//! The invariants of a `pgshot.jobs` row: what the state machine of DESIGN §2 guarantees about
//! any row, however it was written. The extension checks them through one CHECK constraint,
//! `jobs_rules`, which calls `pgshot.job_row_check` (pg_ext/src/job_rules.rs) with the whole
//! row; each rule keeps the name it had as a constraint of its own, and a row that breaks one
//! is refused with SQLSTATE 23514 and that name.
//!
//! Why one constraint and not one per rule: Postgres 15 reads every CHECK expression of a table
//! back from its stored text and compiles it again at every UPDATE statement, whichever columns
//! it changes. With these rules as 21 separate expressions that was 40% of the instructions a claim
//! plus a complete cost (measured with callgrind, see BENCHMARKS.md); one function call is read and
//! compiled in a fraction of that, and the rules run as Rust. Since 0.6.0 the call takes the row as
//! one whole-row argument, whose stored text is a tenth of twenty column arguments'.

/// The columns the rules read. Columns whose rules only ask whether they are set are booleans.
#[derive(Debug, Clone, Default)]
pub struct JobRow<'a> {
    pub id: Option<&'a str>,
    pub has_bulk_id: bool,
    pub has_bulk_position: bool,
    pub status: Option<&'a str>,
    pub url: Option<&'a str>,
    pub priority: Option<i32>,
    pub attempt: Option<i32>,
    pub max_attempts: Option<i32>,
    pub has_worker: bool,
    pub has_lease: bool,
    pub cancel_requested: Option<bool>,
    pub webhook_url: Option<&'a str>,
    pub has_webhook_secret: bool,
    pub has_started_at: bool,
    pub has_completed_at: bool,
    pub has_expires_at: bool,
    pub has_purged_at: bool,
    pub error_code: Option<&'a str>,
    /// `jsonb_typeof(options)` and `jsonb_typeof(errors)`
    pub options_type: Option<&'a str>,
    pub errors_type: Option<&'a str>,
    pub watched: Option<bool>,
    /// None where the table has no `told` column (before 0.7.0).
    pub told: Option<bool>,
    /// The job is a schedule's run (since 1.0.0): its end is the run's end.
    pub has_schedule_id: bool,
}

/// One rule: its name (the former constraint's) and what it demands, for the error's detail.
pub struct Rule {
    pub name: &'static str,
    pub demands: &'static str,
}

/// Every rule, in the order they are checked (the first broken one is reported).
pub const RULES: [Rule; 22] = [
    Rule { name: "jobs_id_shape", demands: "id is 10 to 32 characters of [0-9a-z]" },
    Rule { name: "jobs_bulk_position_iff_bulk", demands: "bulk_position is set exactly when bulk_id is" },
    Rule { name: "jobs_status_known", demands: "status is QUEUED, PROCESSING, COMPLETED, FAILED or CANCELLED" },
    Rule {
        name: "jobs_terminal_iff_completed_at",
        demands: "completed_at is set exactly when status is COMPLETED, FAILED or CANCELLED",
    },
    Rule { name: "jobs_processing_iff_leased", demands: "lease_expires_at is set exactly when status is PROCESSING" },
    Rule { name: "jobs_processing_has_worker", demands: "a PROCESSING job has a worker_id" },
    Rule { name: "jobs_attempt_within_max", demands: "attempt is between 0 and max_attempts" },
    Rule { name: "jobs_max_attempts_range", demands: "max_attempts is between 1 and 25" },
    Rule { name: "jobs_priority_range", demands: "priority is between -100 and 100" },
    Rule { name: "jobs_started_iff_attempted", demands: "started_at is set exactly when attempt is above 0" },
    Rule { name: "jobs_failed_iff_error", demands: "error_code is set exactly when status is FAILED" },
    Rule { name: "jobs_error_code_shape", demands: "error_code is an upper-case code of at most 64 characters" },
    Rule { name: "jobs_expires_only_completed", demands: "only a COMPLETED job has expires_at" },
    Rule { name: "jobs_completed_expires", demands: "a COMPLETED job has expires_at" },
    Rule { name: "jobs_purged_only_completed", demands: "only a COMPLETED job has purged_at" },
    Rule {
        name: "jobs_cancel_requested_only_processing",
        demands: "cancel_requested is true only while PROCESSING or once CANCELLED",
    },
    Rule { name: "jobs_secret_needs_webhook", demands: "a webhook_secret comes with a webhook_url" },
    Rule { name: "jobs_url_http", demands: "url starts with http:// or https://" },
    Rule { name: "jobs_webhook_url_http", demands: "webhook_url starts with http:// or https://" },
    Rule { name: "jobs_options_object", demands: "options is a JSON object" },
    Rule { name: "jobs_errors_array", demands: "errors is a JSON array" },
    Rule {
        name: "jobs_told_iff_listened",
        demands: "told is true exactly when the job is watched, has a webhook_url, a bulk_id or a schedule_id",
    },
];

/// The first rule `row` breaks, or None. As in a CHECK constraint, a rule whose columns are NULL
/// where it needs a value is not broken (the NOT NULL constraints see to those).
pub fn broken_rule(row: &JobRow<'_>) -> Option<&'static Rule> {
    let status = row.status;
    let is = |s: &str| status == Some(s);
    let processing = is("PROCESSING");
    let completed = is("COMPLETED");
    let terminal = completed || is("FAILED") || is("CANCELLED");
    let known = terminal || processing || is("QUEUED");
    let holds = [
        row.id.is_none_or(is_job_id),
        row.has_bulk_id == row.has_bulk_position,
        status.is_none() || known,
        status.is_none() || terminal == row.has_completed_at,
        status.is_none() || processing == row.has_lease,
        !processing || row.has_worker,
        match (row.attempt, row.max_attempts) {
            (Some(a), Some(m)) => a >= 0 && a <= m,
            (Some(a), None) => a >= 0,
            _ => true,
        },
        row.max_attempts.is_none_or(|m| (1..=25).contains(&m)),
        row.priority.is_none_or(|p| (-100..=100).contains(&p)),
        row.attempt.is_none_or(|a| (a > 0) == row.has_started_at),
        status.is_none() || is("FAILED") == row.error_code.is_some(),
        row.error_code.is_none_or(is_error_code),
        !row.has_expires_at || status.is_none() || completed,
        !completed || row.has_expires_at,
        !row.has_purged_at || status.is_none() || completed,
        row.cancel_requested != Some(true) || status.is_none() || processing || is("CANCELLED"),
        !row.has_webhook_secret || row.webhook_url.is_some(),
        row.url.is_none_or(is_http_url),
        row.webhook_url.is_none_or(is_http_url),
        row.options_type.is_none_or(|t| t == "object"),
        row.errors_type.is_none_or(|t| t == "array"),
        row.told.is_none_or(|t| {
            t == (row.watched == Some(true) || row.webhook_url.is_some() || row.has_bulk_id || row.has_schedule_id)
        }),
    ];
    holds.iter().position(|held| !held).map(|i| &RULES[i])
}

/// The columns of a `pgshot.outputs` row the rules read (constraint `outputs_rules`, checked by
/// `pgshot.output_row_check`); lengths are `octet_length`, which Postgres reads from the stored
/// value's header without fetching the bytes.
#[derive(Debug, Clone, Default)]
pub struct OutputRow<'a> {
    pub output_id: Option<&'a str>,
    pub output_type: Option<&'a str>,
    pub size: Option<i64>,
    pub bytes_length: Option<i32>,
    pub has_storage_key: bool,
    pub sha256_length: Option<i32>,
    /// `jsonb_typeof(metadata)`
    pub metadata_type: Option<&'a str>,
}

pub const OUTPUT_RULES: [Rule; 6] = [
    Rule { name: "outputs_type_known", demands: "output_type is screenshot, pdf, html, markdown, json or text" },
    Rule { name: "outputs_id_shape", demands: "output_id is 1 to 64 characters of [A-Za-z0-9_-]" },
    Rule { name: "outputs_size_matches_bytes", demands: "size is the length of bytes" },
    Rule { name: "outputs_metadata_object", demands: "metadata is a JSON object" },
    Rule { name: "outputs_bytes_or_stored", demands: "an output has bytes or a storage_key, not both" },
    Rule { name: "outputs_sha256_shape", demands: "sha256 is 32 bytes" },
];

/// The first rule `row` breaks, or None (NULLs as in a CHECK constraint).
pub fn broken_output_rule(row: &OutputRow<'_>) -> Option<&'static Rule> {
    const TYPES: [&str; 6] = ["screenshot", "pdf", "html", "markdown", "json", "text"];
    let holds = [
        row.output_type.is_none_or(|t| TYPES.contains(&t)),
        row.output_id.is_none_or(is_output_id),
        match (row.bytes_length, row.size) {
            (Some(length), Some(size)) => i64::from(length) == size,
            _ => true,
        },
        row.metadata_type.is_none_or(|t| t == "object"),
        row.bytes_length.is_none() || !row.has_storage_key,
        row.sha256_length.is_none_or(|l| l == 32),
    ];
    holds.iter().position(|held| !held).map(|i| &OUTPUT_RULES[i])
}

/// `^[A-Za-z0-9_-]{1,64}$`
fn is_output_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `^[0-9a-z]{10,32}$`
fn is_job_id(id: &str) -> bool {
    (10..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `^[A-Z][A-Z0-9_]{0,63}$`
fn is_error_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_uppercase()
        && bytes.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// `^https?://`, case-sensitive as the worker's own check is: the browser is never sent to
/// `file:`, `chrome:` or `javascript:`.
fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as screenshot_enqueue leaves it.
    fn queued() -> JobRow<'static> {
        JobRow {
            id: Some("abcdefghij0123"),
            status: Some("QUEUED"),
            url: Some("https://example.com/"),
            priority: Some(0),
            attempt: Some(0),
            max_attempts: Some(3),
            cancel_requested: Some(false),
            options_type: Some("object"),
            errors_type: Some("array"),
            told: Some(false),
            ..JobRow::default()
        }
    }

    fn processing() -> JobRow<'static> {
        JobRow {
            status: Some("PROCESSING"),
            attempt: Some(1),
            has_worker: true,
            has_lease: true,
            has_started_at: true,
            ..queued()
        }
    }

    fn broken(row: JobRow<'_>) -> Option<&'static str> {
        broken_rule(&row).map(|r| r.name)
    }

    #[test]
    fn every_state_the_machine_reaches_keeps_the_rules() {
        let completed = JobRow {
            status: Some("COMPLETED"),
            has_lease: false,
            has_completed_at: true,
            has_expires_at: true,
            ..processing()
        };
        let purged = JobRow { has_purged_at: true, ..completed.clone() };
        let failed = JobRow {
            status: Some("FAILED"),
            has_lease: false,
            has_completed_at: true,
            error_code: Some("NAVIGATION_FAILED"),
            ..processing()
        };
        let cancelling = JobRow { cancel_requested: Some(true), ..processing() };
        let cancelled =
            JobRow { status: Some("CANCELLED"), has_lease: false, has_completed_at: true, ..cancelling.clone() };
        let retrying = JobRow { has_worker: true, has_started_at: true, attempt: Some(1), ..queued() };
        let webhook = JobRow {
            webhook_url: Some("http://hooks.example/x"),
            has_webhook_secret: true,
            has_bulk_id: true,
            has_bulk_position: true,
            told: Some(true),
            ..queued()
        };
        let watched = JobRow { watched: Some(true), told: Some(true), ..processing() };
        let before_told = JobRow { webhook_url: Some("http://hooks.example/x"), told: None, ..queued() };
        for row in [
            queued(),
            processing(),
            completed,
            purged,
            failed,
            cancelling,
            cancelled,
            retrying,
            webhook,
            watched,
            before_told,
        ] {
            assert_eq!(broken(row.clone()), None, "{row:?}");
        }
    }

    #[test]
    fn each_rule_is_named_when_broken() {
        let cases: [(JobRow<'static>, &str); 24] = [
            (JobRow { id: Some("ABCDEFGHIJ0123"), ..queued() }, "jobs_id_shape"),
            (JobRow { has_bulk_id: true, ..queued() }, "jobs_bulk_position_iff_bulk"),
            (JobRow { status: Some("queued"), ..queued() }, "jobs_status_known"),
            (JobRow { has_completed_at: true, ..queued() }, "jobs_terminal_iff_completed_at"),
            (JobRow { has_lease: false, ..processing() }, "jobs_processing_iff_leased"),
            (JobRow { has_worker: false, ..processing() }, "jobs_processing_has_worker"),
            (JobRow { attempt: Some(4), has_started_at: true, ..queued() }, "jobs_attempt_within_max"),
            (JobRow { max_attempts: Some(26), ..queued() }, "jobs_max_attempts_range"),
            (JobRow { priority: Some(-101), ..queued() }, "jobs_priority_range"),
            (JobRow { has_started_at: true, ..queued() }, "jobs_started_iff_attempted"),
            (JobRow { error_code: Some("TIMEOUT"), ..processing() }, "jobs_failed_iff_error"),
            (
                JobRow {
                    status: Some("FAILED"),
                    has_lease: false,
                    has_completed_at: true,
                    error_code: Some("timeout"),
                    ..processing()
                },
                "jobs_error_code_shape",
            ),
            (JobRow { has_expires_at: true, ..queued() }, "jobs_expires_only_completed"),
            (
                JobRow { status: Some("COMPLETED"), has_lease: false, has_completed_at: true, ..processing() },
                "jobs_completed_expires",
            ),
            (JobRow { has_purged_at: true, ..queued() }, "jobs_purged_only_completed"),
            (JobRow { cancel_requested: Some(true), ..queued() }, "jobs_cancel_requested_only_processing"),
            (JobRow { has_webhook_secret: true, ..queued() }, "jobs_secret_needs_webhook"),
            (JobRow { url: Some("file:///proc/self/environ"), ..queued() }, "jobs_url_http"),
            (JobRow { webhook_url: Some("javascript:alert(1)"), ..queued() }, "jobs_webhook_url_http"),
            (JobRow { options_type: Some("array"), ..queued() }, "jobs_options_object"),
            (JobRow { errors_type: Some("object"), ..queued() }, "jobs_errors_array"),
            (JobRow { webhook_url: Some("http://hooks.example/x"), ..queued() }, "jobs_told_iff_listened"),
            (JobRow { watched: Some(true), ..queued() }, "jobs_told_iff_listened"),
            (JobRow { told: Some(true), watched: Some(false), ..queued() }, "jobs_told_iff_listened"),
        ];
        for (row, rule) in cases {
            assert_eq!(broken(row.clone()), Some(rule), "{row:?}");
        }
        let names: std::collections::HashSet<_> = RULES.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), RULES.len(), "each rule has a name of its own");
    }

    #[test]
    fn outputs_keep_their_rules_and_each_is_named_when_broken() {
        let stored = OutputRow {
            output_id: Some("screenshot"),
            output_type: Some("screenshot"),
            size: Some(5),
            has_storage_key: true,
            sha256_length: Some(32),
            metadata_type: Some("object"),
            ..OutputRow::default()
        };
        let inline = OutputRow { bytes_length: Some(5), has_storage_key: false, sha256_length: None, ..stored.clone() };
        let purged = OutputRow { bytes_length: None, ..inline.clone() };
        for row in [stored.clone(), inline.clone(), purged] {
            assert_eq!(broken_output_rule(&row).map(|r| r.name), None, "{row:?}");
        }
        let cases = [
            (OutputRow { output_type: Some("gif"), ..inline.clone() }, "outputs_type_known"),
            (OutputRow { output_id: Some("a b"), ..inline.clone() }, "outputs_id_shape"),
            (OutputRow { output_id: Some(""), ..inline.clone() }, "outputs_id_shape"),
            (OutputRow { size: Some(6), ..inline.clone() }, "outputs_size_matches_bytes"),
            (OutputRow { metadata_type: Some("array"), ..inline.clone() }, "outputs_metadata_object"),
            (OutputRow { has_storage_key: true, ..inline.clone() }, "outputs_bytes_or_stored"),
            (OutputRow { sha256_length: Some(20), ..stored }, "outputs_sha256_shape"),
        ];
        for (row, rule) in cases {
            assert_eq!(broken_output_rule(&row).map(|r| r.name), Some(rule), "{row:?}");
        }
        assert!(is_output_id(&"a".repeat(64)) && !is_output_id(&"a".repeat(65)) && is_output_id("A-z_09"));
    }

    #[test]
    fn the_shapes_match_the_former_regular_expressions() {
        for (id, ok) in [
            ("abcdefghij", true),
            ("0123456789abcdefghijklmnopqrstuv", true),
            ("abcdefghi", false),
            ("0123456789abcdefghijklmnopqrstuvw", false),
            ("abcdefghij-", false),
            ("abcdéfghij", false),
        ] {
            assert_eq!(is_job_id(id), ok, "{id}");
        }
        for (code, ok) in [
            ("A", true),
            ("NAVIGATION_FAILED", true),
            ("E2", true),
            ("", false),
            ("_A", false),
            ("2A", false),
            ("Aa", false),
            (&"A".repeat(64), true),
            (&"A".repeat(65), false),
        ] {
            assert_eq!(is_error_code(code), ok, "{code}");
        }
        for (url, ok) in [
            ("http://a", true),
            ("https://a", true),
            ("HTTP://a", false),
            ("httpx://a", false),
            ("chrome://settings", false),
            ("", false),
            (" https://a", false),
        ] {
            assert_eq!(is_http_url(url), ok, "{url}");
        }
    }
}
