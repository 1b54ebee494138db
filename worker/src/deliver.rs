//! Webhook delivery from the outbox: claim due deliveries (SKIP LOCKED, with a lease), POST
//! each with its signatures, record what happened. Redirects are not followed, every attempt has
//! a 15 s timeout, and the SSRF policy of rendering applies to the receiver's addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::egress::{refused, Refusal, Rules, Target};
use crate::signing;
use pgshot_db::worker_queue::{Delivery, Queue, QueueError};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
const BATCH: i32 = 8;

/// Resolves receivers' names and refuses them when the policy does: reqwest then connects to
/// exactly the addresses returned here.
struct PolicyResolver {
    rules: Rules,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(refusal) = refused(&Target::Name(host), 0, &addrs, &rules) {
                return Err(describe(&refusal).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn describe(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NonPublic { destination, reason } => format!("refused non-public destination {destination}: {reason}"),
        Refusal::AdHost { host } => format!("refused {host}"),
    }
}

pub struct Deliverer {
    queue: Queue,
    http: reqwest::Client,
    rules: Rules,
}

impl Deliverer {
    pub fn new(queue: Queue, rules: Rules) -> Result<Deliverer, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("pgshot-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(PolicyResolver { rules: rules.clone() })
            // HTTP(S)_PROXY from the environment would send every delivery through the proxy,
            // and the resolver above would then judge the proxy's address, not the receiver's.
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Deliverer { queue, http, rules })
    }

    /// Delivers until `stop` turns true, woken by `wake` (NOTIFY) and on `poll`.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, poll: Duration, mut stop: watch::Receiver<bool>) {
        let mut sending = JoinSet::new();
        while !*stop.borrow() {
            match self.queue.webhook_claim(BATCH).await {
                Ok(batch) => {
                    let full = batch.len() as i32 == BATCH;
                    for delivery in batch {
                        let me = self.clone();
                        sending.spawn(async move { me.attempt(delivery).await });
                    }
                    while sending.join_next().await.is_some() {}
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook claim failed"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn attempt(&self, d: Delivery) {
        let started = Instant::now();
        let outcome = self.post(&d).await;
        let ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let (code, error) = match &outcome {
            Ok(status) => (Some(i32::from(*status)), None),
            Err(e) => (None, Some(e.as_str())),
        };
        match self.queue.webhook_record(&d, code, error, ms).await {
            Ok(status) => {
                tracing::info!(delivery = %d.id, attempt = d.attempt, ?code, ?error, status, "webhook attempt")
            }
            Err(QueueError::LeaseLost(e)) => tracing::warn!(delivery = %d.id, error = %e, "webhook lease lost"),
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "could not record the webhook attempt; it will be retried")
            }
        }
    }

    /// One POST: the status code, or why there is none.
    async fn post(&self, d: &Delivery) -> Result<u16, String> {
        let url = url::Url::parse(&d.url).map_err(|e| format!("invalid webhook URL: {e}"))?;
        // reqwest does not resolve literal addresses, so they are judged here.
        if let Some(host) = url.host_str() {
            if let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
                let port = url.port_or_known_default().unwrap_or(0);
                if let Some(refusal) = refused(&Target::Ip(ip), port, &[SocketAddr::new(ip, port)], &self.rules) {
                    return Err(describe(&refusal));
                }
            }
        }
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut request = self.http.post(url).header("Content-Type", "application/json").body(d.body.clone());
        for (name, value) in signing::headers(d.secret.as_deref(), &d.id, timestamp, d.body.as_bytes()) {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

/// The error with its causes, which say what actually failed (refused, resolution, TLS).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
