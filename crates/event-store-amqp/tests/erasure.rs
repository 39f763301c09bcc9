//! Personal data across the broker: a relayed message holds its personal fields sealed only
//! (the relay publishes events as stored), and a typed subscriber opens them, or decodes them
//! as erased (`None`) once the subject is forgotten, even for a message relayed before the
//! forget.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, names, start_relay, wait_until};
use event_store::erasure::{Keys, MasterKey, MemoryKeyStore};
use event_store::{BoxError, EventStore, ExpectedVersion, MemoryStore, NoCache, RecordedEvent};
use event_store_amqp::AmqpEmitter;
use event_store_testkit::Registered;
use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;

/// A user and the email a typed subscriber decoded (`None`: erased).
type Email = (String, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_messages_hold_ciphertext_and_subscribers_see_a_forget() {
    let Some(conn) = common::broker().await else {
        return;
    };
    let names = names(&["emails"]);
    let master = MasterKey::new("amqp", &[4; event_store::erasure::KEY_LEN]).unwrap();
    let keys = Keys::new(MemoryKeyStore::new(), master, vec![]);
    keys.check().await.unwrap();
    let es = EventStore::new(
        MemoryStore::new(),
        NoCache,
        AmqpEmitter::new(config(&names)).unwrap(),
    )
    .with_keys(keys);

    // The typed subscriber's queue exists from now on, but it does not run yet.
    let seen: Arc<Mutex<Vec<Email>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let sub = es
        .subscribe::<Registered, _, _>("emails", move |e: Registered, raw: RecordedEvent| {
            let sink = Arc::clone(&sink);
            async move {
                assert!(
                    raw.data.to_string().contains("$sealed"),
                    "the raw event beside it keeps the sealed form"
                );
                sink.lock().unwrap().push((e.user_id, e.email));
                Ok::<(), BoxError>(())
            }
        })
        .await
        .unwrap();

    // A raw queue (bound once the subscription declared the exchange) sees the messages as
    // published.
    let (ch, raw) = common::raw_queue(&conn, &names).await;

    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let (ada, bob) = (format!("ada-{tag}"), format!("bob-{tag}"));
    let (ada_mail, bob_mail) = (format!("{ada}@example.com"), format!("{bob}@example.com"));
    for (user, mail) in [(&ada, &ada_mail), (&bob, &bob_mail)] {
        es.append(
            &format!("user-{user}"),
            ExpectedVersion::NoStream,
            vec![Registered::new_event(user, mail)],
        )
        .await
        .unwrap();
    }
    let (_, relay) = start_relay(&es, &names);

    // Both messages, as published: sealed, no plaintext.
    let mut consumer = ch
        .basic_consume(
            raw.as_str().into(),
            "erasure-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a relayed message")
            .expect("open")
            .expect("delivery");
        let body = String::from_utf8(delivery.data.clone()).unwrap();
        assert!(
            !body.contains(&ada_mail) && !body.contains(&bob_mail),
            "plaintext in a message: {body}"
        );
        assert!(body.contains("$sealed"), "{body}");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }

    // Forget ada; then the subscriber runs and takes the messages relayed before.
    es.forget(&ada, "ticket-amqp").await.unwrap();
    let running = tokio::spawn(sub.into_future());
    wait_until("both handled", Duration::from_secs(30), || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        [(ada.clone(), None), (bob.clone(), Some(bob_mail.clone()))],
        "ada erased, bob opened"
    );
    // The audit is relayed too: a message that names the subject and no personal data.
    let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the audit")
        .expect("open")
        .expect("delivery");
    let body = String::from_utf8(delivery.data.clone()).unwrap();
    assert!(
        body.contains("SubjectForgotten") && body.contains(&ada) && !body.contains(&ada_mail),
        "{body}"
    );
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    running.abort();
    relay.abort();
}
