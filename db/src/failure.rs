//! What a database error means to a caller, decided once: the API turns a `Failure` into an HTTP
//! status and the worker into "give up the attempt" or "retry later", and both agree on which
//! SQLSTATE is which (they used to disagree on 57014).

use tokio_postgres::error::SqlState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 22xxx: a value the caller sent is not acceptable (the extension names the field).
    Invalid,
    /// P0002: no such job, bulk or key (or not the caller's).
    NotFound,
    /// 55000: the row is not in the state the call needs; for a worker, the lease was lost.
    WrongState,
    /// 23505: a unique key (an idempotency key) is taken.
    Duplicate,
    /// PS410: the result expired and was purged.
    Gone,
    /// 53400 with a `retry after N s` DETAIL: an API key's limit (jobs per minute or in flight);
    /// see [`retry_after`].
    Limited,
    /// Try again shortly: no connection, the server is shutting down or out of resources, a
    /// serialization failure, deadlock, lock timeout or statement timeout (57014).
    Transient,
    /// Permission denied (42501): the role lacks a grant; an operator's mistake, not a client's.
    Denied,
    /// Anything else: a bug or a broken installation.
    Other,
}

pub fn classify(e: &tokio_postgres::Error) -> Failure {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed.
        return Failure::Transient;
    };
    match code.code() {
        "P0002" => Failure::NotFound,
        "55000" => Failure::WrongState,
        "23505" => Failure::Duplicate,
        "PS410" => Failure::Gone,
        "53400" if retry_after(e).is_some() => Failure::Limited,
        "42501" => Failure::Denied,
        c if c.starts_with("22") => Failure::Invalid,
        c if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57") =>
        {
            Failure::Transient
        }
        _ => Failure::Other,
    }
}

/// The server's own message when there is one (without tokio-postgres's "db error: " prefix).
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The seconds a limit's error (53400) asks the caller to wait: its DETAIL reads `retry after N s`.
pub fn retry_after(e: &tokio_postgres::Error) -> Option<u32> {
    let detail = e.as_db_error()?.detail()?;
    detail.strip_prefix("retry after ")?.strip_suffix(" s")?.parse().ok()
}
