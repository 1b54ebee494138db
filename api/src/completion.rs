//! Waiting for jobs to finish, for sync captures: one dedicated connection LISTENs on
//! `pgshot_job_done` (pooled connections drop notifications) and wakes the request waiting for
//! that job. Notifications are only a hint: a waiter also re-reads its job now and then, so a
//! notification lost while the listener reconnects delays an answer but never loses it. The same
//! connection tells the dashboard's event streams that jobs were enqueued or finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

const CHANNEL: &str = "pgshot_job_done";
/// Jobs became runnable (enqueued or requeued): only the dashboard's streams care.
const ENQUEUED_CHANNEL: &str = "pgshot_jobs";

pub struct Completions {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Bumped at every notification on either channel (and after a reconnection): the
    /// dashboard's event streams look at their jobs again.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Completions {
    fn default() -> Self {
        Completions { waiting: Mutex::default(), changes: tokio::sync::watch::Sender::new(0) }
    }
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

    /// Changes as jobs are enqueued or watched jobs finish, for the dashboard's event streams.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn finished(&self, job_id: &str) {
        if let Some(notify) = self.waiting.lock().unwrap().get(job_id) {
            notify.notify_one();
        }
    }

    /// Keeps the LISTEN connection up for as long as the API runs.
    pub async fn listen(self: Arc<Self>, database: pgshot_db::Database) {
        let finished = |channel: &str, payload: &str| {
            self.changed();
            if channel != CHANNEL {
                return;
            }
            if let Ok(done) = serde_json::from_str::<serde_json::Value>(payload) {
                if let Some(id) = done["id"].as_str() {
                    self.finished(id);
                }
            }
        };
        // Anything missed while disconnected: let every waiter look at its job again.
        let sweep = || {
            self.changed();
            self.waiting.lock().unwrap().values().for_each(|notify| notify.notify_one())
        };
        pgshot_db::listen_forever(database, vec![CHANNEL, ENQUEUED_CHANNEL], finished, sweep).await;
    }
}
