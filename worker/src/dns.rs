//! Name resolution for the egress proxies, shared by every job of the worker: one lookup per name
//! in flight, and its answer kept for a short while.
//!
//! A real page asks for dozens of resources from the same few hosts at once. Sent to the system
//! resolver as dozens of identical queries in the same millisecond, some are dropped, and glibc
//! then waits its whole timeout (5 s) before it tries again: measured on the real-page corpus,
//! that alone added 5 s steps to a third of the pages. The answer is still checked against the
//! network policy on every connection, and the connection goes to exactly the addresses checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// How long an answer is reused.
const TTL: Duration = Duration::from_secs(30);
/// How long a failure is reused: long enough to spare a page's burst of requests another timeout,
/// short enough that a passing resolver hiccup does not outlive the page.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Past this many names, expired ones are dropped.
const MAX_NAMES: usize = 10_000;

type Answer = Option<Arc<[IpAddr]>>;

struct Entry {
    at: Instant,
    answer: Arc<OnceCell<Answer>>,
}

static CACHE: LazyLock<Mutex<HashMap<String, Entry>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn fresh(entry: &Entry, now: Instant) -> bool {
    let ttl = match entry.answer.get() {
        Some(None) => NEGATIVE_TTL,
        _ => TTL,
    };
    now.duration_since(entry.at) < ttl
}

/// The addresses `name` resolves to, or None when it does not resolve.
pub async fn lookup(name: &str) -> Answer {
    let answer = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cache.len() >= MAX_NAMES {
            cache.retain(|_, entry| fresh(entry, now));
        }
        match cache.get(name) {
            Some(entry) if fresh(entry, now) => entry.answer.clone(),
            _ => {
                let answer = Arc::new(OnceCell::new());
                cache.insert(name.to_string(), Entry { at: now, answer: answer.clone() });
                answer
            }
        }
    };
    // The first caller resolves; the others wait for its answer (if it is dropped, the next one
    // resolves instead).
    answer
        .get_or_init(|| async {
            let found = tokio::net::lookup_host((name, 0)).await.ok()?;
            let ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            (!ips.is_empty()).then(|| ips.into())
        })
        .await
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_shared_and_failures_are_none() {
        let first = lookup("localhost").await.expect("localhost resolves");
        assert!(first.iter().any(|ip| ip.is_loopback()), "{first:?}");
        let again = lookup("localhost").await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second lookup is answered from the cache");
        assert_eq!(lookup("no-such-host.invalid").await, None);
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_name_share_one_answer() {
        let answers = futures::future::join_all((0..20).map(|_| lookup("127.0.0.2"))).await;
        let first = answers[0].clone().expect("resolves");
        assert!(answers.iter().all(|a| a.as_ref().is_some_and(|a| Arc::ptr_eq(a, &first))));
    }
}
