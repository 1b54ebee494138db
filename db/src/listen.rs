//! One dedicated connection LISTENing on pgshot's channels, for the worker and the API.
//!
//! tokio-postgres delivers notifications only to a connection driven with `poll_message`, so
//! pooled connections never see them: this one is kept apart, and reconnected with backoff when
//! it drops. Notifications sent while it was down are lost, so `on_connected` runs after every
//! (re)connection: callers sweep for what they may have missed then. LISTEN is only a hint.

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use crate::Database;

/// LISTENs on `channels` for as long as the task runs, calling `on_notification(channel, payload)`
/// for each notification and `on_connected()` once LISTEN is in place after each (re)connection.
pub async fn listen_forever<N, C>(database: Database, channels: Vec<&'static str>, on_notification: N, on_connected: C)
where
    N: Fn(&str, &str) + Send + Sync,
    C: Fn() + Send + Sync,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&database, &channels, &on_notification, &on_connected).await {
            Ok(()) => tracing::warn!("notification connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "notification connection failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once<N, C>(
    database: &Database,
    channels: &[&'static str],
    on_notification: &N,
    on_connected: &C,
) -> Result<(), tokio_postgres::Error>
where
    N: Fn(&str, &str),
    C: Fn(),
{
    let (client, mut connection) = database.connect().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    for channel in channels {
        client.batch_execute(&format!("LISTEN {channel}")).await?;
    }
    on_connected();
    while let Some((channel, payload)) = rx.recv().await {
        on_notification(&channel, &payload);
    }
    driver.await.unwrap_or(Ok(()))
}
