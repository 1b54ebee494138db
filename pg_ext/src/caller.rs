//! `pgshot.caller()`: the role a statement runs as at its outer level, which SQL cannot name
//! from inside a SECURITY DEFINER function (there `current_user` is the function's owner and
//! `session_user` ignores SET ROLE). Every pgshot function is SECURITY DEFINER, so this is how
//! a job records who enqueued it and how a pgshot_app member is shown only its own jobs.

use std::ffi::CStr;

use pgrx::prelude::*;

#[pg_schema]
mod pgshot {
    use super::*;

    /// The outer role of the calling statement (after SET ROLE, before SECURITY DEFINER).
    #[pg_extern(stable, parallel_safe)]
    fn caller() -> String {
        // SAFETY: GetOuterUserId reads backend state that is always set inside a transaction;
        // GetUserNameFromId with noerr = false raises a Postgres error rather than returning
        // NULL, and returns a palloc'd string that lives until the end of this call's context.
        unsafe {
            let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), false);
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}
