//! `event-store publish`: the AMQP relay, with its status on stderr.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use event_store_amqp::Relay;

use crate::backend::AnyStore;
use crate::cli::PublishArgs;

pub(crate) async fn run(store: AnyStore, args: PublishArgs, quiet: bool) -> Result<()> {
    let mut config = args.broker.config();
    config.adopt_legacy_checkpoint = args.adopt_legacy_checkpoint;
    let relay = Arc::new(Relay::new(store, config)?);
    let endpoint = crate::prometheus::serve(args.metrics).await?;
    let metrics = relay.metrics();
    let runner = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move { relay.run().await })
    };
    let terminal = std::io::stderr().is_terminal();
    let status = indicatif::ProgressBar::new_spinner();
    if quiet || !terminal {
        status.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    let (mut previous, mut previous_at) = (0u64, Instant::now());
    if !quiet {
        eprintln!(
            "relaying the log to exchange `{}` (Ctrl-C stops)",
            args.broker.exchange
        );
        if let Some(address) = endpoint {
            eprintln!("metrics on http://{address}/metrics");
        }
    }
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
        } else if !quiet
            && (last_line.elapsed() >= Duration::from_secs(10)
                || started.elapsed() < Duration::from_secs(2))
        {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    }
}
