//! Waiting for jobs to finish, for sync captures: one dedicated connection LISTENs on
//! `pgshot_job_done` (pooled connections drop notifications) and wakes the request waiting for
//! that job. Notifications are only a hint: a waiter also re-reads its job now and then, so a
//! notification lost while the listener reconnects delays an answer but never loses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

const CHANNEL: &str = "pgshot_job_done";

#[derive(Default)]
pub struct Completions {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

/// Deregisters its job when the request finishes, however it finishes.
pub struct Waiter<'a> {
    completions: &'a Completions,
    job_id: String,
    pub notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.completions.waiting.lock().unwrap().remove(&self.job_id);
    }
}

impl Completions {
    pub fn wait_for(&self, job_id: &str) -> Waiter<'_> {
        let notify = Arc::new(Notify::new());
        self.waiting.lock().unwrap().insert(job_id.to_string(), notify.clone());
        Waiter { completions: self, job_id: job_id.to_string(), notify }
    }

    fn finished(&self, job_id: &str) {
        if let Some(notify) = self.waiting.lock().unwrap().get(job_id) {
            notify.notify_one();
        }
    }

    /// Keeps the LISTEN connection up for as long as the API runs.
    pub async fn listen(self: Arc<Self>, database_url: String) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if let Err(e) = self.listen_once(&database_url).await {
                tracing::warn!(error = %e, "completion listener failed; reconnecting");
            }
            // Anything missed while disconnected: let every waiter look at its job again.
            for notify in self.waiting.lock().unwrap().values() {
                notify.notify_one();
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen_once(&self, database_url: &str) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = tokio_postgres::connect(database_url, NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n.payload().to_string());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        while let Some(payload) = rx.recv().await {
            if let Ok(done) = serde_json::from_str::<serde_json::Value>(&payload) {
                if let Some(id) = done["id"].as_str() {
                    self.finished(id);
                }
            }
        }
        driver.await.unwrap_or(Ok(()))
    }
}
