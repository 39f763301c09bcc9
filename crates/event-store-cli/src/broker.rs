//! `publish` (the relay) and `subscribe` (print what a group receives).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use event_store::{BoxError, Emitter as _, RecordedEvent, SubscriptionSpec, TypeFilter};
use event_store_amqp::{AmqpConfig, AmqpEmitter, Relay};
use tokio::sync::{mpsc, oneshot};

use crate::backend::AnyStore;
use crate::cli::{PublishArgs, SubscribeArgs};

pub(crate) async fn publish(store: AnyStore, args: PublishArgs) -> Result<()> {
    let mut config = AmqpConfig::new(args.broker.amqp, args.broker.exchange.clone());
    config.adopt_legacy_checkpoint = args.adopt_legacy_checkpoint;
    let relay = Arc::new(Relay::new(store, config)?);
    let metrics = relay.metrics();
    let runner = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move { relay.run().await })
    };
    let terminal = std::io::stderr().is_terminal();
    let status = indicatif::ProgressBar::new_spinner();
    if !terminal {
        status.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    let (mut previous, mut previous_at) = (0u64, Instant::now());
    eprintln!(
        "relaying the log to exchange `{}` (Ctrl-C stops)",
        args.broker.exchange
    );
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if runner.is_finished() {
            status.finish_and_clear();
            return match runner.await {
                Ok(Err(e)) => Err(anyhow!(e).context("the relay stopped")),
                Ok(Ok(())) => Err(anyhow!("the relay stopped")),
                Err(e) => Err(anyhow!(e).context("the relay stopped")),
            };
        }
        let confirmed = metrics.confirmed.load(Ordering::Relaxed);
        let rate = (confirmed - previous) as f64 / previous_at.elapsed().as_secs_f64();
        (previous, previous_at) = (confirmed, Instant::now());
        let lag = match relay.lag(10_000).await {
            Ok(n) if n >= 10_000 => ">=10000".to_owned(),
            Ok(n) => n.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let line = format!(
            "published {confirmed} ({rate:.0}/s), nacks {}, reconnects {}, replayed {}, lag {lag}",
            metrics.nacked.load(Ordering::Relaxed),
            metrics.reconnects.load(Ordering::Relaxed),
            metrics.replayed.load(Ordering::Relaxed),
        );
        tracing::info!(confirmed, lag = %lag, "relay status");
        if terminal {
            status.set_message(line);
            status.tick();
        } else if last_line.elapsed() >= Duration::from_secs(10)
            || started.elapsed() < Duration::from_secs(2)
        {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    }
}

fn bindings(binds: &[String]) -> Result<Vec<TypeFilter>> {
    binds
        .iter()
        .map(|b| {
            let (namespace, ty) = b
                .split_once('.')
                .ok_or_else(|| anyhow!("--bind `{b}` is not NAMESPACE.TYPE or NAMESPACE.*"))?;
            event_store::limits::check_name("--bind namespace", namespace)?;
            let event_type = if ty == "*" {
                None
            } else {
                event_store::limits::check_name("--bind type", ty)?;
                Some(ty.to_owned())
            };
            Ok(TypeFilter {
                namespace: namespace.to_owned(),
                event_type,
            })
        })
        .collect()
}

pub(crate) async fn subscribe(args: SubscribeArgs) -> Result<()> {
    let types = bindings(&args.bind)?;
    let idle = args.idle_exit;
    let limit = args.limit.unwrap_or(usize::MAX);
    let emitter = AmqpEmitter::new(AmqpConfig::new(args.broker.amqp, args.broker.exchange))?;
    // The handler hands each event over and is acknowledged only once it has been printed.
    let (tx, mut rx) = mpsc::channel::<(RecordedEvent, oneshot::Sender<()>)>(1);
    let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
        let tx = tx.clone();
        Box::pin(async move {
            let (done, printed) = oneshot::channel();
            tx.send((e, done))
                .await
                .map_err(|_| BoxError::from("the printer stopped"))?;
            printed
                .await
                .map_err(|_| BoxError::from("the printer stopped"))?;
            Ok(())
        })
    });
    let subscription = emitter
        .subscribe(
            SubscriptionSpec {
                group: args.group,
                types,
            },
            handler,
        )
        .await?;
    let worker = tokio::spawn(subscription.into_future());
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut count = 0;
    while count < limit {
        let next = match idle {
            Some(d) => match tokio::time::timeout(d, rx.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some((event, printed)) = next else { break };
        serde_json::to_writer(&mut out, &event)?;
        writeln!(out)?;
        out.flush()?;
        let _ = printed.send(());
        count += 1;
    }
    // Let the last acknowledgement go out before the connection closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    Ok(())
}
