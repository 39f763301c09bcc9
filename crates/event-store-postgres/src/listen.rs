//! The `LISTEN` connection that wakes tails on other processes' appends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

/// Listens on `channel` for ever, reconnecting after failures; bumps `changes` on every
/// notification and after every (re)connection (something may have been missed meanwhile).
pub(crate) async fn run(
    config: tokio_postgres::Config,
    channel: String,
    changes: Arc<watch::Sender<u64>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
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
                match client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        changes.send_modify(|n| *n = n.wrapping_add(1));
                        while rx.recv().await.is_some() {
                            changes.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; tails poll meanwhile"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "listen connection failed; tails poll meanwhile"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
