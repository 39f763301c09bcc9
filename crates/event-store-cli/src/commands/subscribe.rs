//! `event-store subscribe`: print what a subscriber group receives, acknowledging each.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use event_store::{BoxError, Emitter as _, RecordedEvent, SubscriptionSpec, TypeFilter};
use event_store_amqp::AmqpEmitter;
use tokio::sync::{mpsc, oneshot};

use crate::cli::SubscribeArgs;

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

pub(crate) async fn run(args: SubscribeArgs) -> Result<()> {
    let types = bindings(&args.bind)?;
    let idle = args.idle_exit;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut config = args.broker.config();
    if args.quorum {
        config.queue_type = event_store_amqp::QueueType::Quorum;
    }
    let emitter = AmqpEmitter::new(config)?;
    if let Some(address) = crate::prometheus::serve(args.metrics).await? {
        eprintln!("metrics on http://{address}/metrics");
    }
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
