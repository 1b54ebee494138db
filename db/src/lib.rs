//! pgshot's one way to Postgres. The worker, the API and its CLI reach the database only through
//! this crate: a `DATABASE_URL` with libpq's TLS modes (`connect`), the pool and the dedicated
//! LISTEN connection built on it, one classification of SQLSTATEs (`failure`), the check that
//! the installed extension is the version these binaries speak (`extension`), and the worker's
//! typed calls of the SQL queue API (`worker_queue`). pgshot-api's queries stay in
//! api/src/db.rs, where each is shaped by the HTTP operation it serves.

mod connect;
mod extension;
mod failure;
mod listen;
pub mod worker_queue;

pub use connect::{connect_error, Database, SslMode};
pub use extension::{check_extension, EXTENSION_VERSION};
pub use failure::{classify, message, retry_after, Failure};
pub use listen::listen_forever;
