//! pgshot's one way to Postgres. The worker, the API and its CLI reach the database only through
//! this crate: a `DATABASE_URL` with libpq's TLS modes (`connect`), the pool and the dedicated
//! LISTEN connection built on it, one classification of SQLSTATEs (`failure`), and the check that
//! the installed extension is the version these binaries speak (`extension`).

mod connect;
mod extension;
mod failure;
mod listen;
pub mod worker_queue;

pub use connect::{connect_error, Database, SslMode};
pub use extension::{check_extension, EXTENSION_VERSION};
pub use failure::{classify, message, Failure};
pub use listen::listen_forever;

/// Re-exported so that callers name the pool types of the same versions this crate builds.
pub use deadpool_postgres;
pub use tokio_postgres;
