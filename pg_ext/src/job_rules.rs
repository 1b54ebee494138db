//! `pgshot.job_row_check(pgshot.jobs)` and `pgshot.output_row_check(pgshot.outputs)`: the CHECK
//! constraints `jobs_rules` and `outputs_rules` (queue.sql), and 0.6.0's WHEN clause of `jobs_ended`.
//! The rules themselves are `pgshot_job::broken_rule`, with their unit tests; why they are one
//! function and not one constraint each is written there.

use pgrx::prelude::*;

#[pg_schema]
mod pgshot {
    use super::*;

    /// True when the row keeps every rule; otherwise raises 23514 (check_violation) naming the
    /// first rule it breaks (`holds`). It takes the whole row (`jobs_rules` is
    /// `CHECK (pgshot.job_row_check(jobs))`): Postgres reads a CHECK expression back from its stored
    /// text at every UPDATE statement, and one whole-row argument is a tenth of the text of the
    /// twenty columns 0.5.0 passed one by one.
    #[pg_extern(name = "job_row_check", immutable, parallel_safe)]
    fn job_row_check_whole(row: pgrx::composite_type!("pgshot.jobs")) -> bool {
        let r = Columns::read(row, &JOB_COLUMNS);
        let text = |k: usize| r.text(k);
        let int = |k: usize| r.datum(k).map(|d| d.value() as i32);
        let set = |k: usize| r.datum(k).is_some();
        let row = pgshot_job::JobRow {
            id: text(0),
            has_bulk_id: set(1),
            has_bulk_position: set(2),
            status: text(3),
            url: text(4),
            priority: int(5),
            attempt: int(6),
            max_attempts: int(7),
            has_worker: set(8),
            has_lease: set(9),
            cancel_requested: r.datum(10).map(|d| d.value() != 0),
            webhook_url: text(11),
            has_webhook_secret: set(12),
            has_started_at: set(13),
            has_completed_at: set(14),
            has_expires_at: set(15),
            has_purged_at: set(16),
            error_code: text(17),
            options_type: r.json_type(18),
            errors_type: r.json_type(19),
            watched: r.datum(20).map(|d| d.value() != 0),
            told: r.datum(21).map(|d| d.value() != 0),
            has_schedule_id: set(22),
        };
        holds("jobs", pgshot_job::broken_rule(&row))
    }

    /// `outputs_rules`, as `job_row_check` is `jobs_rules`: `CHECK (pgshot.output_row_check(outputs))`.
    #[pg_extern(name = "output_row_check", immutable, parallel_safe)]
    fn output_row_check_whole(row: pgrx::composite_type!("pgshot.outputs")) -> bool {
        let r = Columns::read(row, &OUTPUT_COLUMNS);
        let row = pgshot_job::OutputRow {
            output_id: r.text(0),
            output_type: r.text(1),
            size: r.datum(2).map(|d| d.value() as i64),
            bytes_length: r.octet_length(3),
            has_storage_key: r.datum(4).is_some(),
            sha256_length: r.octet_length(5),
            metadata_type: r.json_type(6),
        };
        holds("outputs", pgshot_job::broken_output_rule(&row))
    }

    /// 0.6.0's WHEN clause of `jobs_ended` past "completed_at was not set": the job has ended
    /// (its completed_at is set) and someone is told, by a notification (watched, or
    /// `pgshot.notify_all_done`), a webhook or its bulk's. Since 0.7.0 the clause reads the
    /// `told` column instead; kept in the library as 0.5.0's `job_row_check` is, for a server
    /// that runs it before `ALTER EXTENSION pgshot UPDATE`.
    #[pg_extern(stable, parallel_safe, sql = false)]
    fn job_end_is_told(row: pgrx::composite_type!("pgshot.jobs")) -> bool {
        let r = Columns::read(row, &END_COLUMNS);
        r.datum(0).is_some()
            && (r.datum(1).is_some_and(|d| d.value() != 0)
                || r.datum(2).is_some()
                || r.datum(3).is_some()
                || crate::settings::NOTIFY_ALL_DONE.get())
    }

    /// 0.5.0's `job_row_check`, column by column. Not in the SQL of 0.6.0, but kept in the
    /// library: a server runs this library with the 0.5.0 definitions between installing 0.6.0
    /// and `ALTER EXTENSION pgshot UPDATE`, and the 0.5.0 `jobs_rules` calls this symbol.
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(immutable, parallel_safe, sql = false)]
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
            watched: None,
            told: None,
            has_schedule_id: false,
        };
        holds("jobs", pgshot_job::broken_rule(&row))
    }

    /// 0.5.0's `output_row_check`, kept in the library as `job_row_check` is.
    #[pg_extern(immutable, parallel_safe, sql = false)]
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

/// The columns of pgshot.jobs that `job_row_check` reads, in the order it reads them.
static JOB_COLUMNS: [&str; 23] = [
    "id",
    "bulk_id",
    "bulk_position",
    "status",
    "url",
    "priority",
    "attempt",
    "max_attempts",
    "worker_id",
    "lease_expires_at",
    "cancel_requested",
    "webhook_url",
    "webhook_secret",
    "started_at",
    "completed_at",
    "expires_at",
    "purged_at",
    "error_code",
    "options",
    "errors",
    "watched",
    "told",
    "schedule_id",
];

/// The columns of pgshot.outputs that `output_row_check` reads.
static OUTPUT_COLUMNS: [&str; 7] = ["output_id", "output_type", "size", "bytes", "storage_key", "sha256", "metadata"];

/// The columns of pgshot.jobs that `job_end_is_told` reads.
static END_COLUMNS: [&str; 4] = ["completed_at", "watched", "webhook_url", "bulk_id"];

/// Some columns of a row passed whole, by name: a table updated from an older version has its
/// later columns in another order than a fresh install's.
struct Columns<const N: usize> {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    /// Where each named column is among `values`.
    at: [Option<usize>; N],
}

impl<const N: usize> Columns<N> {
    fn read(row: PgHeapTuple<'_, pgrx::AllocatedByRust>, names: &'static [&'static str; N]) -> Self {
        let tuple = row.into_pg();
        // SAFETY: `tuple` is the detoasted row datum Postgres passed. Its type is a table's row
        // type (typmod -1), whose descriptor the type cache holds; no catalog invalidation can be
        // processed before heap_deform_tuple has read the row with it.
        unsafe {
            let header = (*tuple).t_data;
            let entry = pg_sys::lookup_type_cache(
                pgrx::heap_tuple_header_get_type_id(header),
                pg_sys::TYPECACHE_TUPDESC as i32,
            );
            let desc = (*entry).tupDesc;
            let at = positions(names, (*entry).tupDesc_identifier, desc);
            // Every column at once: one walk of the row, where one heap_getattr per column walks
            // it from the start each time past the first variable-length column.
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::null(); natts];
            let mut nulls = vec![true; natts];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            Columns { values, nulls, at }
        }
    }

    /// The k-th named column, unless it is NULL (or missing).
    fn datum(&self, k: usize) -> Option<pg_sys::Datum> {
        self.at[k].filter(|&i| !self.nulls[i]).map(|i| self.values[i])
    }

    fn text(&self, k: usize) -> Option<&str> {
        // SAFETY: the named column is of type text.
        self.datum(k).and_then(|d| unsafe { <&str>::from_polymorphic_datum(d, false, pg_sys::TEXTOID) })
    }

    /// `octet_length` of a bytea column, without detoasting it.
    fn octet_length(&self, k: usize) -> Option<i32> {
        // SAFETY: the named column is a varlena.
        self.datum(k).map(|d| unsafe { pg_sys::toast_raw_datum_size(d) as i32 - pg_sys::VARHDRSZ as i32 })
    }

    fn json_type(&self, k: usize) -> Option<&'static str> {
        // SAFETY: the named column is of type jsonb.
        self.datum(k).map(|d| unsafe { jsonb_root_type(d) })
    }
}

/// Where a list of names is in one row descriptor.
struct Positions {
    /// The list's address (each is a static).
    list: usize,
    /// The descriptor's identifier in the type cache, new whenever its table changes.
    identifier: u64,
    at: Vec<Option<usize>>,
}

std::thread_local! {
    /// Finding the columns by name was a third of a rule check's time: done once per list and
    /// table shape.
    static POSITIONS: std::cell::RefCell<Vec<Positions>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where each of `names` is among the attributes of `desc` (None if absent or dropped).
///
/// # Safety
/// `desc` is a valid tuple descriptor whose type cache identifier is `identifier`.
unsafe fn positions<const N: usize>(
    names: &'static [&'static str; N],
    identifier: u64,
    desc: pg_sys::TupleDesc,
) -> [Option<usize>; N] {
    let list = names.as_ptr() as usize;
    let cached = POSITIONS
        .with_borrow(|cache| cache.iter().find(|p| p.list == list && p.identifier == identifier).map(|p| p.at.clone()));
    if let Some(at) = cached {
        return at.try_into().expect("cached for this list of names");
    }
    let mut at = [None; N];
    // SAFETY: the caller passes a valid descriptor; its attributes are `natts` long.
    unsafe {
        let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
        for (i, att) in attrs.iter().enumerate() {
            if !att.attisdropped {
                // The raw bytes: pgrx's `name()` checks them as UTF-8 first.
                let name = std::ffi::CStr::from_ptr(att.attname.data.as_ptr()).to_bytes();
                if let Some(k) = names.iter().position(|c| c.as_bytes() == name) {
                    at[k] = Some(i);
                }
            }
        }
    }
    POSITIONS.with_borrow_mut(|cache| {
        // A few lists and their tables: an old entry is one whose table has changed since.
        cache.retain(|p| p.list != list);
        cache.push(Positions { list, identifier, at: at.to_vec() });
    });
    at
}

/// What `jsonb_typeof` says of a jsonb value, as far as the rules ask ("object", "array", or
/// "scalar" for any other): read from the root container's header, without parsing the value.
///
/// # Safety
/// `d` is a non-null jsonb datum.
unsafe fn jsonb_root_type(d: pg_sys::Datum) -> &'static str {
    // SAFETY: the caller passes a jsonb datum; detoasted, it starts with the root's header.
    let header = unsafe { (*(pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *const pg_sys::Jsonb)).root.header };
    if header & pg_sys::JB_FOBJECT != 0 {
        "object"
    } else if header & pg_sys::JB_FARRAY != 0 && header & pg_sys::JB_FSCALAR == 0 {
        "array"
    } else {
        "scalar"
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
