//! The binaries and the extension's SQL are released together: a worker or API of version X
//! speaks to extension version X only, and says what to run when they differ.

use tokio_postgres::Client;

use crate::connect::{connect_error, Database};

/// The extension version these binaries need (the workspace's version, as the extension's).
pub const EXTENSION_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Ok when the connected database has the pgshot extension at `EXTENSION_VERSION`; otherwise
/// what is wrong and what to do about it.
pub async fn check_extension(client: &Client) -> Result<(), String> {
    let found = client
        .query_opt("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgshot'", &[])
        .await
        .map_err(|e| format!("cannot query the database: {e}"))?;
    let installed: String = match found {
        Some(row) => row.get(0),
        None => return Err("the database has no pgshot extension: run CREATE EXTENSION pgshot".into()),
    };
    if installed != EXTENSION_VERSION {
        return Err(format!(
            "the pgshot extension in this database is version {installed}, these binaries need \
             {EXTENSION_VERSION}: install the extension's files of this release and run \
             ALTER EXTENSION pgshot UPDATE"
        ));
    }
    Ok(())
}

impl Database {
    /// [`check_extension`] on a connection of its own, for startup and the CLI: a connection
    /// error comes with its cause (a certificate that does not name the host, say).
    pub async fn check_extension(&self) -> Result<(), String> {
        let (client, connection) = self.connect().await.map_err(|e| connect_error(&e))?;
        let driver = tokio::spawn(connection);
        let checked = check_extension(&client).await;
        driver.abort();
        checked
    }
}
