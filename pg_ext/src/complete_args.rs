//! `pgshot.check_outputs` and `pgshot.check_stored_outputs`: the checks of what a worker hands
//! `screenshot_complete` and `screenshot_complete_stored` (queue.sql), before either writes.
//!
//! Why Rust and not the PL/pgSQL loop they were until 0.6.0: PL/pgSQL compiles each expression of
//! a function again in every transaction that runs it, and a complete is a transaction of its own.
//! The loop's dozen expressions (copying each output into a variable, growing the list of ids seen)
//! cost about 29 k of the 0.59 M backend instructions a job took to claim and complete (callgrind,
//! claiming 10 and completing each); one call is one expression.
//!
//! Both are created in queue.sql, after the composite types they take (`sql = false` here): the
//! types are SQL of the extension, which pgrx writes after the functions it generates.

use pgrx::prelude::*;
use pgshot_job::InvalidOption;

use crate::enqueue::raise_invalid;

#[pg_schema]
mod pgshot {
    use super::*;

    /// Raises 22023 unless `outputs` is a non-empty list of complete outputs with distinct ids and
    /// `metadata_type` (`jsonb_typeof` of the complete's metadata) is that of an object or NULL.
    #[pg_extern(immutable, parallel_safe, sql = false)]
    fn check_outputs<'a>(
        outputs: Option<Array<'a, pgrx::composite_type!('a, "pgshot.output")>>,
        metadata_type: Option<&str>,
    ) -> bool {
        let outputs: Vec<_> = outputs.as_ref().map(|a| a.iter().collect()).unwrap_or_default();
        check_list(&outputs, metadata_type);
        let mut seen = Vec::with_capacity(outputs.len());
        for (i, output) in outputs.iter().enumerate() {
            let id = text(output, 1);
            let complete = id.is_some() && text(output, 2).is_some() && text(output, 3).is_some() && set(output, 4);
            check_one(
                i,
                id,
                complete,
                &mut seen,
                "each output needs a unique output_id, an output_type, a content_type and bytes",
            );
        }
        true
    }

    /// As `check_outputs`, for outputs uploaded to object storage; returns their storage keys.
    #[pg_extern(immutable, parallel_safe, sql = false)]
    fn check_stored_outputs<'a>(
        outputs: Option<Array<'a, pgrx::composite_type!('a, "pgshot.stored_output")>>,
        metadata_type: Option<&str>,
    ) -> Vec<String> {
        let outputs: Vec<_> = outputs.as_ref().map(|a| a.iter().collect()).unwrap_or_default();
        check_list(&outputs, metadata_type);
        let mut seen = Vec::with_capacity(outputs.len());
        let mut keys = Vec::with_capacity(outputs.len());
        for (i, output) in outputs.iter().enumerate() {
            let id = text(output, 1);
            let key = text(output, 4);
            let size = output.as_ref().and_then(|o| o.get_by_index::<i64>(nth(5)).ok().flatten());
            let complete = id.is_some()
                && text(output, 2).is_some()
                && text(output, 3).is_some()
                && key.is_some()
                && size.is_some_and(|s| s >= 0)
                && set(output, 6);
            check_one(
                i,
                id,
                complete,
                &mut seen,
                "each output needs a unique output_id, an output_type, a content_type, a storage_key, a size and a sha256",
            );
            keys.extend(key.map(str::to_owned));
        }
        keys
    }
}

type Output<'a> = PgHeapTuple<'a, pgrx::AllocatedByRust>;

/// The list is not empty and the metadata is an object (or NULL). A NULL element counts as an
/// incomplete output.
fn check_list(outputs: &[Option<Output<'_>>], metadata_type: Option<&str>) {
    if outputs.is_empty() {
        raise(InvalidOption::new("outputs", "outputs must not be empty"));
    }
    if metadata_type.is_some_and(|t| t != "object") {
        raise(InvalidOption::new("metadata", "metadata must be a JSON object"));
    }
}

/// The i-th output (0-based here, 1-based in the message as in SQL arrays) is complete and its id
/// not one of `seen`'s.
fn check_one<'s>(i: usize, id: Option<&'s str>, complete: bool, seen: &mut Vec<&'s str>, hint: &str) {
    if !complete || id.is_some_and(|id| seen.contains(&id)) {
        let field = format!("outputs[{}]", i + 1);
        let message = format!("{field} is incomplete or repeats output_id \"{}\"", id.unwrap_or("<NULL>"));
        raise(InvalidOption::new(field, message).with_hint(hint));
    }
    seen.extend(id);
}

fn nth(attno: usize) -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(attno).expect("attribute numbers start at 1")
}

/// The text attribute `attno` of an output (the types' attribute order is queue.sql's).
fn text<'a>(output: &'a Option<Output<'_>>, attno: usize) -> Option<&'a str> {
    output.as_ref().and_then(|o| o.get_by_index::<&str>(nth(attno)).ok().flatten())
}

/// Whether the bytea attribute `attno` is set.
fn set(output: &Option<Output<'_>>, attno: usize) -> bool {
    output.as_ref().is_some_and(|o| o.get_by_index::<&[u8]>(nth(attno)).ok().flatten().is_some())
}

fn raise(e: InvalidOption) -> ! {
    raise_invalid(e, "screenshot_complete")
}
