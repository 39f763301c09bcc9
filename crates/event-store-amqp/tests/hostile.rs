//! Every message the relay consumes is untrusted input, and every name it derives must fit the
//! protocol: poison replay requests are set aside with their reason (the relay never panics and
//! never loops on them), over-long or reserved names are refused before anything reaches the
//! broker, and a refusal the broker will repeat for ever ends the relay with an error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{names, recorder, save_many, start_relay, store, wait_until};
use event_store::{Emitter as _, Position, SubscriptionSpec, TypeFilter};
use event_store_amqp::{
    AmqpConfig, AmqpEmitter, HEADER_DEAD_LETTER_REASON, REFUSED_REPLAY_REQUESTS, Relay,
    header_text, is_refusal,
};
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions,
};
use lapin::types::FieldTable;
use serde_json::json;

fn types() -> Vec<TypeFilter> {
    vec![TypeFilter {
        namespace: "amqp-test".into(),
        event_type: Some("Happened".into()),
    }]
}

fn noop() -> event_store::Handler {
    std::sync::Arc::new(|_| Box::pin(async { Ok(()) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_replay_requests_are_set_aside_and_the_relay_goes_on() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let names = names(&["late"]);
    let es = store(&names);
    let (metrics, relay) = start_relay(&es, &names);
    save_many(&es, 2, 5, 4).await; // 20 events
    wait_until("published", Duration::from_secs(30), || {
        metrics.confirmed.load(Ordering::Relaxed) >= 20
    })
    .await;
    let (got, sub) = recorder(es.emitter(), "late", types()).await;
    let queue = format!("{}.late", names.exchange);

    let request = |namespace: &str, ty: &str, since: serde_json::Value, queue: &str| {
        serde_json::to_vec(&json!({
            "namespace": namespace, "type": ty, "since": since, "queue": queue
        }))
        .unwrap()
    };
    let poison: Vec<(&str, Vec<u8>)> = vec![
        (
            "300 bytes",
            request("amqp-test", "Happened", json!("0"), &"q".repeat(300)),
        ),
        ("JSON", b"{not json".to_vec()),
        ("replay request", br#"{"namespace":"amqp-test"}"#.to_vec()),
        (
            "namespace",
            request("bad namespace!", "Happened", json!("0"), &queue),
        ),
        (
            "checkpoint",
            request("amqp-test", "Happened", json!("abc"), &queue),
        ),
        (
            "cannot receive",
            request(
                "amqp-test",
                "Happened",
                json!("0"),
                &format!("{}.nobody-here", names.exchange),
            ),
        ),
        (
            "amq.",
            request("amqp-test", "Happened", json!("0"), "amq.gen-x"),
        ),
    ];
    let ch = conn.create_channel().await.unwrap();
    let publish = |body: Vec<u8>| {
        let ch = ch.clone();
        let exchange = names.exchange.clone();
        async move {
            ch.basic_publish(
                exchange.as_str().into(),
                "event_store.ReplayRequested".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    for (_, body) in &poison {
        publish(body.clone()).await;
    }
    // A good request after the poison ones is still answered: the relay is alive.
    es.emitter()
        .request_replay("late", &types(), Position::START)
        .await
        .unwrap();
    wait_until("the replay arrived", Duration::from_secs(60), || {
        got.lock().unwrap().len() >= 20
    })
    .await;
    assert!(!relay.is_finished(), "the relay survived the poison");

    // Each poison request is set aside with its reason, in order.
    let dlq = format!("{}.{REFUSED_REPLAY_REQUESTS}.dead-letter", names.exchange);
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reasons.len() < poison.len() && tokio::time::Instant::now() < deadline {
        match ch
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                reasons.push(header_text(&m.properties, HEADER_DEAD_LETTER_REASON).unwrap());
                m.ack(BasicAckOptions::default()).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        reasons.len(),
        poison.len(),
        "every poison request set aside: {reasons:?}"
    );
    for ((what, _), reason) in poison.iter().zip(&reasons) {
        assert!(reason.contains(what), "`{what}` named in `{reason}`");
    }
    // Nothing is left to crash a restarted relay, and a restarted relay runs.
    let pending = ch
        .queue_declare(
            format!("{}.replay-requests", names.exchange)
                .as_str()
                .into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(pending.message_count(), 0, "no request left behind");
    relay.abort();
    let (_m, relay) = start_relay(&es, &names);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!relay.is_finished());
    relay.abort();
    sub.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_names_that_do_not_fit_are_refused_not_panicked_on() {
    let long_exchange = "x".repeat(200);
    let emitter = AmqpEmitter::new(AmqpConfig::new(common::url(), &long_exchange)).unwrap();
    for group in [
        "g".repeat(50),
        "relay-lock".into(),
        "replay-requests".into(),
    ] {
        let e = emitter
            .subscribe(
                SubscriptionSpec {
                    group: group.clone(),
                    types: vec![],
                },
                noop(),
            )
            .await
            .expect_err("refused");
        assert_eq!(e.field(), Some("group"), "{group}: {e}");
    }
    let e = emitter
        .request_replay(&"g".repeat(50), &types(), Position::START)
        .await
        .expect_err("refused");
    assert_eq!(e.field(), Some("group"), "{e}");
    let short = AmqpEmitter::new(AmqpConfig::new(common::url(), "events")).unwrap();
    let e = short
        .subscribe(
            SubscriptionSpec {
                group: "ok".into(),
                types: vec![TypeFilter {
                    namespace: "n".repeat(300),
                    event_type: None,
                }],
            },
            noop(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.field(), Some("types.namespace"), "{e}");
    for bad in ["amq.fanout", "amq.topic"] {
        let e = AmqpEmitter::new(AmqpConfig::new(common::url(), bad)).expect_err(bad);
        assert_eq!(e.field(), Some("exchange"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_cannot_succeed_end_the_relay() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let names = names(&[]);
    // The exchange exists with another type: PRECONDITION_FAILED on every attempt.
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        names.exchange.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let relay = Relay::new(event_store::MemoryStore::new(), common::config(&names)).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), relay.run())
        .await
        .expect("the relay gives up instead of retrying for ever");
    let e = ended.expect_err("an error");
    assert!(is_refusal(&e), "{e}");
    ch.exchange_delete(
        names.exchange.as_str().into(),
        ExchangeDeleteOptions::default(),
    )
    .await
    .unwrap();

    // Bad credentials: the relay and a subscriber fail at once.
    let mut bad = common::config(&names);
    bad.url = common::url().replacen("guest:guest@", "guest:wrong@", 1);
    let relay = Relay::new(event_store::MemoryStore::new(), bad.clone()).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(60), relay.run())
        .await
        .expect("the relay gives up")
        .expect_err("an error");
    assert!(is_refusal(&e), "{e}");
    assert!(!e.to_string().contains("wrong"), "no password in {e}");
}

/// Runs `rabbitmqctl` with `args`; `false` when it is not installed.
fn rabbitmqctl(args: &[&str]) -> bool {
    match std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(_) => false,
    }
}

/// Removes a virtual host when dropped.
struct Vhost(String);

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_has_its_own_checkpoint() {
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["reader"]);
    let vhost = format!("es-test-{}", &names.exchange[8..]);
    let installed = rabbitmqctl(&["add_vhost", &vhost])
        .then_some(())
        .ok_or("not installed");
    if event_store_testkit::require_service("rabbitmqctl", installed).is_none() {
        return;
    }
    let _cleanup = Vhost(vhost.clone());
    assert!(rabbitmqctl(&[
        "set_permissions",
        "-p",
        &vhost,
        "guest",
        ".*",
        ".*",
        ".*"
    ]));

    // The store, relayed to the default virtual host first.
    let es = store(&names);
    save_many(&es, 10, 10, 100).await; // 1 000 events
    let (metrics, relay) = start_relay(&es, &names);
    wait_until("published to /", Duration::from_secs(60), || {
        metrics.confirmed.load(Ordering::Relaxed) >= 1000
    })
    .await;
    relay.abort();

    // The same exchange name on another virtual host has delivered nothing, and says so.
    let mut other = common::config(&names);
    other.url = common::url().replace("/%2f", &format!("/{vhost}"));
    let second = Relay::new(es.store().clone(), other.clone()).unwrap();
    assert_ne!(
        second.checkpoint_name(),
        Relay::new(es.store().clone(), common::config(&names))
            .unwrap()
            .checkpoint_name()
    );
    assert_eq!(
        second.lag(10_000).await.unwrap(),
        1000,
        "nothing delivered there yet"
    );

    let emitter = AmqpEmitter::new(other).unwrap();
    let (got, sub) = recorder(&emitter, "reader", types()).await;
    let metrics = second.metrics();
    let relay = tokio::spawn(async move { second.run().await });
    wait_until(
        "delivered to the second vhost",
        Duration::from_secs(60),
        || got.lock().unwrap().len() >= 1000,
    )
    .await;
    common::assert_once_in_order(&got.lock().unwrap(), 1000);
    assert!(metrics.confirmed.load(Ordering::Relaxed) >= 1000);
    relay.abort();
    sub.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_checkpoint_is_adopted_only_when_asked() {
    use event_store::Checkpoints as _;
    if common::broker().await.is_none() {
        return;
    }
    let names = names(&["upgraded"]);
    let es = store(&names);
    save_many(&es, 1, 5, 2).await; // 10 events in one stream
    let log: Vec<_> = futures::StreamExt::collect::<Vec<_>>(es.read_all(Position::START)).await;
    let fifth = log[4].as_ref().unwrap().position;
    let legacy =
        event_store::CheckpointName::new(format!("amqp-relay:{}", names.exchange)).unwrap();
    es.store().save_checkpoint(&legacy, fifth).await.unwrap();

    // Not asked: the new destination starts from the beginning.
    let relay = Relay::new(es.store().clone(), common::config(&names)).unwrap();
    assert_eq!(relay.lag(100).await.unwrap(), 10);

    // Asked: it takes over the old checkpoint and publishes what follows it.
    let (got, sub) = recorder(es.emitter(), "upgraded", types()).await;
    let mut config = common::config(&names);
    config.adopt_legacy_checkpoint = true;
    let relay = Relay::new(es.store().clone(), config).unwrap();
    let name = relay.checkpoint_name().clone();
    let task = tokio::spawn(async move { relay.run().await });
    wait_until("the rest published", Duration::from_secs(30), || {
        got.lock().unwrap().len() >= 5
    })
    .await;
    // The checkpoint moves once the broker confirmed what was published (a hang guard, not a
    // speed check: a loaded machine may take a while).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while es.store().load_checkpoint(&name).await.unwrap() <= Some(fifth) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the adopted checkpoint never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more arrives: only what followed the legacy checkpoint was published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 5, "only the events after the legacy checkpoint");
    assert!(got.iter().all(|e| e.position > fifth));
    task.abort();
    sub.abort();
}
