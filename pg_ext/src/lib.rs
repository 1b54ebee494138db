//! `pgshot`: the screenshot job queue inside Postgres.
//!
//! The tables and the state machine are SQL (`sql/schema.sql`, `sql/queue.sql`); Rust owns what
//! SQL is poor at: validating a request against the shared `pgshot-job` definition, minting job
//! ids from a CSPRNG, and the typed settings.

use pgrx::prelude::*;

mod caller;
mod complete_args;
mod enqueue;
mod job_rules;
mod schedule;
mod settings;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/queue.sql", name = "queue", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
}
