//! RabbitMQ: the relay against raw lapin publishes with confirms, and save-to-handler latency.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_store::{EventStore, ExpectedVersion, MemoryStore, NoCache, Position};
use event_store_amqp::{AmqpConfig, AmqpEmitter, Relay};
use futures::StreamExt as _;

use crate::error::{BenchError, Context as _, Result, ensure};
use crate::report::{Goal, Report, Sizes, ms, percentiles, rate};
use crate::workload::{Moved, event, payload};

pub(crate) async fn run(report: &mut Report, url: &str, sizes: Sizes) -> Result<()> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(|e| BenchError::Unreachable {
            service: "RabbitMQ",
            source: e.into(),
        })?;
    let exchange = format!(
        "event_store_bench_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let ch = conn.create_channel().await?;
    let result = amqp_workloads(report, url, &exchange, &ch, sizes).await;
    for q in [
        format!("{exchange}.sink"),
        format!("{exchange}.raw"),
        format!("{exchange}.latency"),
        format!("{exchange}.latency.dead-letter"),
        format!("{exchange}.replay-requests"),
    ] {
        let _ = ch
            .queue_delete(
                q.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for x in [exchange.clone(), format!("{exchange}.dead-letter")] {
        let _ = ch
            .exchange_delete(
                x.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "bench done".into()).await;
    result
}

/// A durable queue bound to `exchange` with `key`.
async fn bound_queue(ch: &lapin::Channel, queue: &str, exchange: &str, key: &str) -> Result<()> {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
        .await?;
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn amqp_workloads(
    report: &mut Report,
    url: &str,
    exchange: &str,
    ch: &lapin::Channel,
    sizes: Sizes,
) -> Result<()> {
    use lapin::options::{ExchangeDeclareOptions, QueuePurgeOptions};
    use lapin::types::FieldTable;
    // A durable queue bound to everything, so both the relay and the baseline make the broker
    // store every persistent message.
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let sink = format!("{exchange}.sink");
    bound_queue(ch, &sink, exchange, "#").await?;

    // The relay: a store of N events published with confirms.
    let store = MemoryStore::new();
    let es = EventStore::from_store(store.clone());
    for b in 0..sizes.relay / 1000 {
        let events = (0..1000).map(|i| event(b * 1000 + i)).collect();
        es.append(&format!("relay-{}", b % 10), ExpectedVersion::Any, events)
            .await?;
    }
    let relay = Relay::new(store.clone(), AmqpConfig::new(url, exchange))?;
    let metrics = relay.metrics();
    let t = Instant::now();
    let task = tokio::spawn(async move { relay.run().await });
    let total = sizes.relay / 1000 * 1000;
    while metrics.confirmed.load(std::sync::atomic::Ordering::Relaxed) < total as u64 {
        ensure(
            t.elapsed() < Duration::from_secs(300),
            "the relay did not finish",
        )?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_rate = rate(total, t.elapsed());
    task.abort();
    ch.queue_purge(sink.as_str().into(), QueuePurgeOptions::default())
        .await?;

    // The baseline: the same messages, raw lapin, pages of 512 then their confirms.
    let recorded: Vec<_> = es
        .read_all(Position::START)
        .map(|e| e.map_err(BenchError::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let pub_ch = ch.clone();
    pub_ch
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .ok();
    let raw_ch = {
        let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let c = conn.create_channel().await?;
        c.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        (conn, c)
    };
    let t = Instant::now();
    for page in recorded.chunks(512) {
        let mut confirms = Vec::with_capacity(page.len());
        for e in page {
            let body = serde_json::to_vec(e)?;
            let props = lapin::BasicProperties::default()
                .with_message_id(e.id.to_string().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            confirms.push(
                raw_ch
                    .1
                    .basic_publish(
                        exchange.into(),
                        "bench.Moved".into(),
                        lapin::options::BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await?,
            );
        }
        for c in confirms {
            c.await?;
        }
    }
    let raw_rate = rate(recorded.len(), t.elapsed());
    let _ = raw_ch.0.close(200, "done".into()).await;
    ch.queue_purge(sink.as_str().into(), QueuePurgeOptions::default())
        .await?;
    report.add(
        "relay",
        "relay publish with confirms",
        "amqp",
        relay_rate,
        "ev/s",
        Some(raw_rate),
        true,
        Goal::Ratio(0.7),
    );

    // Save -> subscriber handler latency, against raw publish -> consume latency.
    let (p50, p99) = save_to_handler_latency(url, exchange, sizes.latency).await?;
    let (b50, b99) = raw_latency(url, exchange, sizes.latency).await?;
    report.add(
        "latency_p50",
        "save -> subscriber latency p50",
        "amqp",
        ms(p50),
        "ms",
        Some(ms(b50)),
        false,
        Goal::None,
    );
    report.add(
        "latency_p99",
        "save -> subscriber latency p99",
        "amqp",
        ms(p99),
        "ms",
        Some(ms(b99)),
        false,
        Goal::AtMost(50.0),
    );
    Ok(())
}

async fn save_to_handler_latency(
    url: &str,
    exchange: &str,
    n: usize,
) -> Result<(Duration, Duration)> {
    let store = MemoryStore::new();
    let emitter = AmqpEmitter::new(AmqpConfig::new(url, exchange))?;
    let es = EventStore::new(store.clone(), NoCache, emitter);
    let sent: Arc<Mutex<BTreeMap<uuid::Uuid, Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (s, out) = (Arc::clone(&sent), Arc::clone(&samples));
    let sub = es
        .subscribe("latency", move |_e: Moved, recorded| {
            let (s, out) = (Arc::clone(&s), Arc::clone(&out));
            async move {
                let now = Instant::now();
                if let Some(at) = s.lock().map_err(|_| "poisoned")?.get(&recorded.id) {
                    out.lock().map_err(|_| "poisoned")?.push(now - *at);
                }
                Ok(())
            }
        })
        .await?;
    let worker = tokio::spawn(sub.into_future());
    let relay = Relay::new(store.clone(), AmqpConfig::new(url, exchange))?;
    let relay = tokio::spawn(async move { relay.run().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..n {
        let id = uuid::Uuid::now_v7();
        sent.lock()
            .map_err(|_| BenchError::Unexpected("a lock was poisoned".to_owned()))?
            .insert(id, Instant::now());
        es.append("latency", ExpectedVersion::Any, vec![event(i).with_id(id)])
            .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    while samples
        .lock()
        .map_err(|_| BenchError::Unexpected("a lock was poisoned".to_owned()))?
        .len()
        < n
    {
        ensure(
            t.elapsed() < Duration::from_secs(60),
            "the subscriber did not receive every event",
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.abort();
    relay.abort();
    let samples = samples
        .lock()
        .map_err(|_| BenchError::Unexpected("a lock was poisoned".to_owned()))?
        .clone();
    Ok(percentiles(samples))
}

async fn raw_latency(url: &str, exchange: &str, n: usize) -> Result<(Duration, Duration)> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    };
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = format!("{exchange}.raw");
    bound_queue(&ch, &queue, exchange, "raw.Latency").await?;
    let consumer_ch = conn.create_channel().await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let body = serde_json::to_vec(&payload(i))?;
        let t = Instant::now();
        ch.basic_publish(
            exchange.into(),
            "raw.Latency".into(),
            BasicPublishOptions::default(),
            &body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
        let d = consumer
            .next()
            .await
            .context("the raw consumer stopped")??;
        samples.push(t.elapsed());
        d.ack(BasicAckOptions::default()).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(percentiles(samples))
}
