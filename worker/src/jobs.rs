//! The worker's loop: claim as many jobs as there are free render slots (on a notification and on
//! a poll interval), run each with a heartbeat, and complete, fail or release it.

use std::sync::Arc;
use std::time::Duration;

use pgshot_job::{ErrorCode, JobRequest, NetworkPolicy};
use tokio::sync::{watch, Notify, Semaphore};
use tracing::Instrument;

use crate::browser::Browsers;
use crate::config::Config;
use crate::render::{render, timeout_error, RenderError, RenderSettings, Rendered};
use pgshot_db::worker_queue::{ClaimedJob, OutputRow, Queue, QueueError, StoredOutputRow, WorkerBeat};
use pgshot_storage::ObjectStore;

/// Besides its page-load timeout and delay, the time a job may spend on actions and capture.
const CAPTURE_ALLOWANCE: Duration = Duration::from_secs(60);

pub struct Worker {
    queue: Queue,
    /// With PGSHOT_STORAGE=s3://...: where outputs are uploaded before the job completes.
    storage: Option<ObjectStore>,
    browsers: Browsers,
    settings: RenderSettings,
    slots: Arc<Semaphore>,
    concurrency: u32,
    wake: Arc<Notify>,
    heartbeat: Duration,
    lease: Duration,
    /// Set at the end of the shutdown grace period: jobs still rendering give their job back.
    abandon: watch::Sender<bool>,
    /// This machine's name, as the worker reports itself in pgshot.workers.
    host: String,
}

/// Why an attempt's outputs could not be stored.
enum StoreError {
    /// The bucket refused or is unreachable: the attempt fails, retryable.
    Bucket(String),
    /// The database, as for any other queue call.
    Database(QueueError),
}

enum Outcome {
    Rendered(Result<Rendered, RenderError>),
    Cancelled,
    LeaseLost,
    Abandoned,
}

impl Worker {
    pub fn new(
        config: &Config,
        launcher: crate::launcher::Launcher,
        queue: Queue,
        storage: Option<ObjectStore>,
        wake: Arc<Notify>,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            queue,
            storage,
            browsers: Browsers::new(
                launcher,
                config.recycle_after,
                config.concurrency as usize + 1,
                config.page_heap_mb,
            ),
            settings: RenderSettings {
                allow_private_networks: config.allow_private_networks,
                allowed_destinations: config.allow_destinations.clone().into(),
                max_output_bytes: config.max_output_bytes,
                max_capture_pixels: config.max_capture_pixels,
            },
            slots: Arc::new(Semaphore::new(config.concurrency as usize)),
            concurrency: config.concurrency,
            wake,
            heartbeat: config.heartbeat_interval(),
            lease: config.lease(),
            abandon: watch::channel(false).0,
            host: match std::fs::read_to_string("/proc/sys/kernel/hostname") {
                Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
                _ => "unknown".into(),
            },
        })
    }

    /// Claims and runs jobs until `stop` turns true, then drains within `grace`.
    pub async fn run(self: &Arc<Self>, poll: Duration, grace: Duration, mut stop: watch::Receiver<bool>) {
        let orphans = crate::browser::kill_orphans(self.browsers.render_uid());
        if orphans > 0 {
            tracing::warn!(
                processes = orphans,
                "killed Chromium processes left behind by a worker that no longer runs"
            );
        }
        if let Err(e) = self.browsers.warm_up().await {
            tracing::warn!(error = %e, "chromium did not start; will retry with the first job");
        }
        let mut backoff = Duration::from_millis(100);
        while !*stop.borrow() {
            let free = self.slots.available_permits();
            if free > 0 {
                match self.queue.claim(free as i32).await {
                    Ok(jobs) => {
                        backoff = Duration::from_millis(100);
                        for job in jobs {
                            let permit =
                                self.slots.clone().try_acquire_owned().expect("claimed no more than free slots");
                            let worker = self.clone();
                            let span = tracing::info_span!("job", id = %job.id, attempt = job.attempt);
                            tokio::spawn(
                                async move {
                                    worker.run_job(job).await;
                                    drop(permit);
                                    // A free slot: look for more work at once.
                                    worker.wake.notify_one();
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
        self.drain(grace).await;
    }

    async fn drain(&self, grace: Duration) {
        let all = self.concurrency;
        let running = all as usize - self.slots.available_permits();
        tracing::info!(running, "shutting down: no more claims");
        if tokio::time::timeout(grace, self.slots.acquire_many(all)).await.is_err() {
            tracing::warn!("grace period over: giving the remaining jobs back");
            let _ = self.abandon.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), self.slots.acquire_many(all)).await;
        }
        self.browsers.shutdown().await;
    }

    async fn run_job(&self, job: ClaimedJob) {
        // The row is checked again as `screenshot_enqueue` checks a request: a row written or
        // changed by hand (a file: URL, a viewport of 100000 pixels) is not rendered. The network
        // policy itself is the egress proxy's to enforce, connection by connection (it knows the
        // allowed destinations), so here every address passes and only the request's shape counts.
        let permissive = NetworkPolicy { allow_private_networks: true };
        let opts = match JobRequest::parse(&job.url, &job.options, permissive) {
            Ok(request) => request.options,
            Err(e) => {
                let message = format!("the stored job is not a valid request: {e}");
                self.settle_failure(&job, &RenderError::new(ErrorCode::InvalidJob, message), false).await;
                return;
            }
        };
        let load = Duration::from_millis(opts.timeout.unwrap_or(30_000) as u64);
        let delay = Duration::from_millis(opts.delay.unwrap_or(0) as u64);
        let budget = load + delay + CAPTURE_ALLOWANCE;
        let mut abandon = self.abandon.subscribe();
        let started = tokio::time::Instant::now();
        let work = async {
            let chrome = self.browsers.get().await.map_err(|e| RenderError::new(ErrorCode::BrowserCrashed, e))?;
            let result = tokio::select! {
                biased;
                r = render(&chrome, &job.url, &opts, &self.settings) => r,
                () = chrome.exited() => {
                    Err(RenderError::new(ErrorCode::BrowserCrashed, "Chromium exited during the render"))
                }
            };
            if matches!(&result, Err(e) if e.code == ErrorCode::BrowserCrashed) {
                chrome.mark_dead();
            }
            result
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(budget, work) => {
                Outcome::Rendered(r.unwrap_or_else(|_| Err(timeout_error(budget.as_millis() as i64))))
            }
            o = self.heartbeats(&job) => o,
            _ = abandon.wait_for(|a| *a) => Outcome::Abandoned,
        };
        match outcome {
            Outcome::Rendered(Ok(rendered)) => {
                // The lease is renewed until the complete returns, not only while rendering: the
                // thumbnail, large uploads and a slow database can take longer than a lease, and an
                // expired lease would throw a good render away (LEASE_EXPIRED, rendered again). A
                // cancel or a lost lease noticed meanwhile stops the renewing; the complete then
                // says what became of the job.
                let renew = async {
                    let _ = self.heartbeats(&job).await;
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    biased;
                    () = self.finish(&job, rendered, started) => {}
                    () = renew => {}
                }
            }
            Outcome::Rendered(Err(e)) => self.settle_failure(&job, &e, e.code.is_retryable()).await,
            Outcome::Cancelled => tracing::info!("cancelled while rendering"),
            Outcome::LeaseLost => tracing::warn!("lease lost while rendering; attempt abandoned"),
            Outcome::Abandoned => match self.retrying("release", || self.queue.release(&job)).await {
                Ok(()) => tracing::info!("released for another worker"),
                Err(e) => tracing::warn!(error = %e, "release failed; the lease will expire"),
            },
        }
    }

    /// Stores a rendered attempt's thumbnail and outputs, and completes it.
    async fn finish(&self, job: &ClaimedJob, mut rendered: Rendered, started: tokio::time::Instant) {
        let rendered_at = tokio::time::Instant::now();
        self.thumbnail(&job, &rendered.outputs).await;
        self.detect_change(job, &mut rendered).await;
        let result = match &self.storage {
            None => {
                self.retrying("complete", || self.queue.complete(&job, &rendered.metadata, &rendered.outputs)).await
            }
            Some(store) => match self.store(store, &job, rendered.outputs).await {
                Ok(stored) => {
                    self.retrying("complete", || self.queue.complete_stored(&job, &rendered.metadata, &stored)).await
                }
                Err(StoreError::Bucket(e)) => {
                    // The bucket refused or is down: the attempt fails and is retried, the
                    // uploads that did happen are deleted within the hour.
                    let error = RenderError::new(ErrorCode::InternalError, format!("object storage: {e}"));
                    self.settle_failure(&job, &error, true).await;
                    return;
                }
                Err(StoreError::Database(e)) => Err(e),
            },
        };
        // With `render phases`, where a job's time goes in the worker (for the benchmarks).
        tracing::debug!(
            render_ms = (rendered_at - started).as_millis() as u64,
            complete_ms = rendered_at.elapsed().as_millis() as u64,
            "job phases"
        );
        match result {
            Ok(()) => {
                tracing::info!(size = %rendered.metadata["size"], ms = %rendered.metadata["renderTimeMs"], "completed")
            }
            Err(e) => tracing::warn!(error = %e, "result discarded"),
        }
    }

    /// A schedule's run: compares its first image with the previous run's, and records the
    /// changed fraction (metadata.scheduleDiff, which the extension reads when the job completes)
    /// and a diff image (output `diff`). Anything that stops the comparison leaves the capture
    /// as it is: it is then delivered as changed.
    async fn detect_change(&self, job: &ClaimedJob, rendered: &mut Rendered) {
        let previous = match self.retrying("schedule_previous", || self.queue.schedule_previous(job)).await {
            Ok(Some(previous)) => previous,
            Ok(None) => return,
            Err(e) => return tracing::warn!(error = %e, "no change detection: the previous capture is unknown"),
        };
        let Some(current) = crate::thumbnail::first_image(&rendered.outputs) else { return };
        let before = match (previous.bytes, previous.storage_key, &self.storage) {
            (Some(bytes), _, _) => bytes,
            (None, Some(key), Some(store)) => match store.get(&key).await {
                Ok(bytes) => bytes,
                Err(e) => return tracing::warn!(error = %e, "no change detection: the previous capture is unreadable"),
            },
            // The schedule's first capture (or the previous one's result expired).
            _ => return,
        };
        let threshold = previous.diff_threshold;
        match tokio::task::block_in_place(|| crate::change::compare(&before, &current.bytes, threshold)) {
            Ok(change) => {
                if let Some(fields) = rendered.metadata.as_object_mut() {
                    fields.insert(
                        "scheduleDiff".into(),
                        serde_json::json!({"score": change.score, "changed": change.changed,
                                           "comparedWith": previous.job_id}),
                    );
                }
                let taken = rendered.outputs.iter().any(|o| o.output_id == "diff");
                if let (Some(png), false) = (change.image, taken) {
                    let (width, height) = (current.metadata["width"].clone(), current.metadata["height"].clone());
                    rendered.outputs.push(OutputRow {
                        output_id: "diff".into(),
                        output_type: "screenshot".into(),
                        content_type: "image/png".into(),
                        bytes: png,
                        metadata: serde_json::json!({"width": width, "height": height, "diffOf": previous.job_id}),
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "no change detection"),
        }
    }

    /// Uploads an attempt's outputs, after naming their keys in the database (so that none is
    /// left behind if the attempt never completes).
    async fn store(
        &self,
        store: &ObjectStore,
        job: &ClaimedJob,
        outputs: Vec<OutputRow>,
    ) -> Result<Vec<StoredOutputRow>, StoreError> {
        let keys: Vec<String> = outputs.iter().map(|o| store.key(&job.id, job.attempt, &o.output_id)).collect();
        self.retrying("store", || self.queue.store_begin(job, &keys)).await.map_err(StoreError::Database)?;
        let uploads = outputs.into_iter().zip(keys).map(|(o, key)| async move {
            let stored = store.put(&key, o.bytes, &o.content_type).await?;
            Ok::<_, String>(StoredOutputRow {
                output_id: o.output_id,
                output_type: o.output_type,
                content_type: o.content_type,
                storage_key: stored.key,
                size: stored.size,
                sha256: stored.sha256,
                metadata: o.metadata,
            })
        });
        futures::future::try_join_all(uploads).await.map_err(StoreError::Bucket)
    }

    /// Stores the dashboard's thumbnail of the attempt's first image before it completes, so that
    /// it is there the moment the job is. A thumbnail that cannot be made is only logged.
    async fn thumbnail(&self, job: &ClaimedJob, outputs: &[OutputRow]) {
        let Some(image) = crate::thumbnail::first_image(outputs) else { return };
        // Decoding a full page takes a while: the runtime moves its other tasks off this thread
        // meanwhile (and the image is not copied, as a spawned task would need).
        match tokio::task::block_in_place(|| crate::thumbnail::of(image)) {
            Ok(Some(thumbnail)) => {
                if let Err(e) = self.retrying("thumbnail", || self.queue.thumbnail_put(job, &thumbnail)).await {
                    tracing::warn!(error = %e, "thumbnail not stored");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no thumbnail"),
        }
    }

    /// What this worker reports of itself in `pgshot.workers`.
    pub fn beat(&self) -> WorkerBeat {
        WorkerBeat {
            host: self.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            concurrency: self.concurrency as i32,
            in_flight: (self.concurrency as usize).saturating_sub(self.slots.available_permits()) as i32,
            browser_restarts: self.browsers.restarts() as i32,
        }
    }

    async fn settle_failure(&self, job: &ClaimedJob, error: &RenderError, retryable: bool) {
        let code = error.code.as_str();
        match self.retrying("fail", || self.queue.fail(job, code, &error.message, retryable)).await {
            Ok(status) => tracing::info!(code, message = %error.message, status, "attempt failed"),
            Err(e) => tracing::warn!(error = %e, "could not record the failure; the lease will expire"),
        }
    }

    /// Renews the lease until the job is cancelled or the lease is lost; never returns otherwise.
    async fn heartbeats(&self, job: &ClaimedJob) -> Outcome {
        loop {
            tokio::time::sleep(self.heartbeat).await;
            match self.queue.heartbeat(job).await {
                Ok(true) => {}
                Ok(false) => return Outcome::Cancelled,
                Err(QueueError::LeaseLost(_)) => return Outcome::LeaseLost,
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
            }
        }
    }

    /// Retries a queue call while the database is unavailable, for as long as the lease lasts.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, QueueError>>,
    {
        let deadline = tokio::time::Instant::now() + self.lease;
        let mut backoff = Duration::from_millis(100);
        loop {
            match call().await {
                Err(QueueError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "{what} failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }
}

/// One worker at a time (by advisory lock) rescues expired leases and purges expired results;
/// with object storage, every worker deletes the objects no output refers to any more.
/// Every worker also records itself in pgshot.workers at each tick.
pub async fn maintain(worker: Arc<Worker>, queue: Queue, storage: Option<ObjectStore>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if let Err(e) = queue.beat(&worker.beat()).await {
            tracing::warn!(error = %e, "could not record this worker's heartbeat");
        }
        if let Some(store) = &storage {
            sweep_storage(&queue, store).await;
        }
        match queue.maintain().await {
            Ok(Some((rescued, purged))) if rescued > 0 || purged > 0 => {
                tracing::info!(rescued, purged, "maintenance");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "maintenance failed"),
        }
    }
}

/// Turns due schedules into jobs, every `every` (a second by default: a run starts at most that
/// late). Every worker ticks; the extension runs each due time once whoever ticks.
pub async fn run_schedules(queue: Queue, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Up to 100 at a time: more due at once are started at the next ticks.
        match queue.schedule_tick(100).await {
            Ok(0) => {}
            Ok(started) => tracing::info!(started, "schedule runs started"),
            Err(e) => tracing::warn!(error = %e, "schedule tick failed"),
        }
    }
}

/// Deletes due objects from the bucket, then forgets them; one the bucket could not delete stays
/// on the list and comes back at a later sweep.
async fn sweep_storage(queue: &Queue, store: &ObjectStore) {
    loop {
        let keys = match queue.storage_sweep(100).await {
            Ok(keys) if keys.is_empty() => return,
            Ok(keys) => keys,
            Err(e) => return tracing::warn!(error = %e, "object sweep failed"),
        };
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            match store.delete(&key).await {
                Ok(()) => deleted.push(key),
                Err(e) => tracing::warn!(error = %e, "could not delete an object; it is tried again later"),
            }
        }
        if deleted.is_empty() {
            return;
        }
        match queue.storage_forget(&deleted).await {
            Ok(()) => tracing::info!(objects = deleted.len(), "deleted objects no output refers to"),
            Err(e) => return tracing::warn!(error = %e, "could not record deleted objects"),
        }
    }
}
