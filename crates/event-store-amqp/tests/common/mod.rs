//! Shared support: the real broker, unique names per test, cleanup afterwards.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::manual_assert
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::{BoxError, EventStore, MemoryStore, NoCache, RecordedEvent, TypeFilter};
use event_store_amqp::{AmqpConfig, AmqpEmitter, Relay};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

pub fn url() -> String {
    std::env::var("EVENT_STORE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The broker, or `None` (loudly) when it is unreachable outside CI.
pub async fn broker() -> Option<Connection> {
    event_store_testkit::require_service(
        "RabbitMQ (EVENT_STORE_TEST_AMQP)",
        Connection::connect(&url(), ConnectionProperties::default()).await,
    )
}

/// Deletes a test's exchanges and queues when dropped.
pub struct Names {
    pub exchange: String,
    pub groups: Vec<String>,
    /// The groups' partitions, when they are ordered (0: not ordered).
    pub partitions: u16,
    /// Other queues the test declares (deleted too).
    pub extra_queues: Vec<String>,
}

impl Drop for Names {
    fn drop(&mut self) {
        let exchange = self.exchange.clone();
        let groups = self.groups.clone();
        let partitions = self.partitions;
        let extra = self.extra_queues.clone();
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(conn) = Connection::connect(&url(), ConnectionProperties::default()).await
                else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                let mut queues = vec![
                    format!("{exchange}.replay-requests"),
                    format!("{exchange}.replay-requests.dead-letter"),
                    format!("{exchange}.raw"),
                ];
                queues.extend(extra);
                for g in &groups {
                    queues.push(format!("{exchange}.{g}"));
                    queues.push(format!("{exchange}.{g}.dead-letter"));
                    for i in 0..partitions {
                        queues.push(format!("{exchange}.{g}.p{i}-of-{partitions}"));
                    }
                }
                for q in queues {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                let mut exchanges: Vec<String> = groups
                    .iter()
                    .map(|g| format!("{exchange}.{g}.by-stream"))
                    .collect();
                exchanges.extend([exchange.clone(), format!("{exchange}.dead-letter")]);
                for x in exchanges {
                    let _ = ch
                        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = conn.close(200, "cleanup".into()).await;
            });
        });
        let _ = t.join();
    }
}

pub fn names(groups: &[&str]) -> Names {
    let id = uuid::Uuid::now_v7().simple().to_string();
    Names {
        exchange: format!("es_test_{}", &id[20..]),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        partitions: 0,
        extra_queues: Vec::new(),
    }
}

pub fn config(names: &Names) -> AmqpConfig {
    let mut c = AmqpConfig::new(url(), names.exchange.clone());
    c.retry_backoff = Duration::from_millis(10);
    c.reconnect_max_backoff = Duration::from_millis(500);
    c.relay_poll = Duration::from_millis(50);
    c
}

pub type Store = EventStore<MemoryStore, NoCache, AmqpEmitter>;

pub fn store(names: &Names) -> Store {
    EventStore::new(
        MemoryStore::new(),
        NoCache,
        AmqpEmitter::new(config(names)).unwrap(),
    )
}

pub fn start_relay(
    store: &Store,
    names: &Names,
) -> (
    Arc<event_store_amqp::RelayMetrics>,
    tokio::task::JoinHandle<()>,
) {
    let relay = Relay::new(store.store().clone(), config(names)).unwrap();
    let metrics = relay.metrics();
    (
        metrics,
        tokio::spawn(async move {
            let _ = relay.run().await;
        }),
    )
}

pub type Received = Arc<Mutex<Vec<RecordedEvent>>>;

/// A subscription of `group` to everything, recording what it handles.
pub async fn recorder(
    emitter: &AmqpEmitter,
    group: &str,
    types: Vec<TypeFilter>,
) -> (Received, tokio::task::JoinHandle<event_store::Result<()>>) {
    use event_store::Emitter as _;
    let got: Received = Arc::default();
    let sink = Arc::clone(&got);
    let handler: event_store::Handler = Arc::new(move |e: RecordedEvent| {
        let sink = Arc::clone(&sink);
        Box::pin(async move {
            sink.lock().unwrap().push(e);
            Ok::<(), BoxError>(())
        })
    });
    let sub = emitter
        .subscribe(
            event_store::SubscriptionSpec {
                group: group.to_owned(),
                types,
            },
            handler,
        )
        .await
        .unwrap();
    (got, tokio::spawn(sub.into_future()))
}

/// A channel on `conn` with the queue `{exchange}.raw` (deleted with `names`) bound to every
/// message of the test's exchange, which must exist: it sees the messages as published.
pub async fn raw_queue(conn: &Connection, names: &Names) -> (lapin::Channel, String) {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let ch = conn.create_channel().await.unwrap();
    let raw = format!("{}.raw", names.exchange);
    ch.queue_declare(
        raw.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        raw.as_str().into(),
        names.exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    (ch, raw)
}

pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event once, and each stream in version order.
pub fn assert_once_in_order(got: &[RecordedEvent], expected: usize) {
    let ids: std::collections::HashSet<_> = got.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), got.len(), "no event handled twice");
    assert_eq!(got.len(), expected, "every event handled");
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in got {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(e.version, *v, "stream {} in version order", e.stream);
        *v += 1;
    }
}

pub async fn save_many(store: &Store, streams: usize, per_batch: usize, batches: usize) {
    for b in 0..batches {
        let stream = format!("s-{}", b % streams);
        let events = (0..per_batch)
            .map(|i| {
                event_store::NewEvent::new(
                    "amqp-test",
                    "Happened",
                    serde_json::json!({"b": b, "i": i}),
                )
            })
            .collect();
        store
            .append(&stream, event_store::ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}
