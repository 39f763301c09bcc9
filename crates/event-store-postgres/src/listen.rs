//! Wake-ups across processes: a `LISTEN` connection that wakes this process's tails, and a
//! notifier that tells other processes about this process's appends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::tls::Connector;

/// Listens on `channel` for ever, reconnecting after failures; bumps `changes` on every
/// notification and after every (re)connection (something may have been missed meanwhile).
pub(crate) async fn run(
    config: tokio_postgres::Config,
    connector: Connector,
    channel: String,
    changes: Arc<watch::Sender<u64>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = match &connector {
            Connector::Plain => listen_once(&config, NoTls, &channel, &changes).await,
            Connector::Tls(tls) => listen_once(&config, tls.clone(), &channel, &changes).await,
        };
        match connected {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "listen connection failed; tails poll meanwhile"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One `LISTEN` session: returns when the connection ends.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    changes: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "listen connection failed");
                    return;
                }
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN \"{channel}\"")).await;
    if listening.is_ok() {
        changes.send_modify(|n| *n = n.wrapping_add(1));
        while rx.recv().await.is_some() {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
    driver.abort();
    listening
}

/// The least time between two notifications (the most a wake-up is delayed by coalescing).
pub(crate) const NOTIFY_GAP: Duration = Duration::from_millis(3);

/// Sends `NOTIFY channel` after appends, coalesced: however many appends commit while one
/// notification is being sent, one more follows. Appends never wait for it, and their commits
/// do not take PostgreSQL's notification lock (a `NOTIFY` inside the append transaction would
/// serialize every appender's commit on it).
pub(crate) async fn notify(pool: deadpool_postgres::Pool, channel: String, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let sent = match pool.get().await {
            Ok(client) => client
                .execute(
                    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')",
                    &[&channel],
                )
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "NOTIFY failed; other processes' tails poll");
        }
        // At most one notification per gap: under load, one covers many appends.
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}
