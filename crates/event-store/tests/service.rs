//! What a service author relies on, on the memory backend: decide-and-save, following the log
//! with a checkpoint, errors that locate the event, quarantine, cache verification, and the
//! small conveniences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_store::{
    Aggregate, Error, Event, EventContext, EventStore, ExecuteError, ExecuteOptions,
    ExpectedVersion, MemoryCache, MemoryEventStore, MemoryStore, NewEvent, NoEmitter, Position,
    Query, RetryPolicy, Undecodable, Uuid,
};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "bank")]
struct Deposited {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "bank")]
struct Withdrawn {
    amount: u64,
}

#[derive(event_store::Events, Debug, Clone, PartialEq)]
enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Args = str;
    fn query(id: &str) -> Query {
        Query::stream(id)
    }
    fn apply(&mut self, e: &AccountEvent) {
        match e {
            AccountEvent::Deposited(d) => self.balance += d.amount,
            AccountEvent::Withdrawn(w) => self.balance -= w.amount,
        }
    }
}

fn withdraw(amount: u64) -> impl FnMut(&Account) -> Result<Vec<Withdrawn>, String> {
    move |a| {
        if a.balance < amount {
            Err(format!("balance {} is below {amount}", a.balance))
        } else {
            Ok(vec![Withdrawn { amount }])
        }
    }
}

#[tokio::test]
async fn execute_decides_on_current_state_and_saves() {
    let es: MemoryEventStore = EventStore::memory();
    es.save("acc-1", &Deposited { amount: 100 }).await.unwrap();
    let done = es.execute("acc-1", withdraw(30)).await.unwrap();
    assert_eq!(done.state.balance, 70, "the state after the save");
    assert_eq!(
        (done.version, done.attempts, done.events.len()),
        (Some(1), 1, 1)
    );
    let refused = es.execute("acc-1", withdraw(500)).await.unwrap_err();
    assert_eq!(
        refused.rejected().map(String::as_str),
        Some("balance 70 is below 500")
    );
    // A decision of nothing saves nothing.
    let nothing = es
        .execute("acc-1", |_: &Account| Ok::<Vec<Withdrawn>, String>(vec![]))
        .await
        .unwrap();
    assert_eq!((nothing.version, nothing.events.len()), (Some(1), 0));
    // With a context.
    let ctx = EventContext::now();
    let mut ctx = ctx;
    ctx.action = Some("withdraw".into());
    ctx.subject.insert("user_id".into(), json!(7));
    let done = es
        .execute_with(
            "acc-1",
            &ExecuteOptions::default().context(ctx),
            withdraw(1),
        )
        .await
        .unwrap();
    assert_eq!(done.events[0].context.action.as_deref(), Some("withdraw"));
    assert_eq!(done.events[0].context.subject["user_id"], 7);
}

#[tokio::test]
async fn execute_re_decides_after_losing_a_race_and_never_saves_a_stale_decision() {
    let es = EventStore::memory();
    es.save("acc-2", &Deposited { amount: 10 }).await.unwrap();
    let mut calls = 0;
    let other = es.clone();
    // The first decision is overtaken by another writer: the decision runs again on the new
    // state (balance 4), and is refused there.
    let outcome = es
        .execute("acc-2", |a: &Account| {
            calls += 1;
            if calls == 1 {
                let other = other.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(other.save("acc-2", &Withdrawn { amount: 6 }))
                        .unwrap();
                })
                .join()
                .unwrap();
            }
            withdraw(6)(a)
        })
        .await;
    assert_eq!(calls, 2, "decided again after the conflict");
    assert_eq!(
        outcome.unwrap_err().rejected().map(String::as_str),
        Some("balance 4 is below 6")
    );
    assert_eq!(es.aggregate::<Account>("acc-2").await.unwrap().balance, 4);

    // Without retries the conflict is returned.
    let never = ExecuteOptions::default().retry(RetryPolicy::NEVER);
    let mut first = true;
    let other = es.clone();
    let r = es
        .execute_with("acc-2", &never, |a: &Account| {
            if std::mem::take(&mut first) {
                let other = other.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(other.save("acc-2", &Deposited { amount: 1 }))
                        .unwrap();
                })
                .join()
                .unwrap();
            }
            withdraw(1)(a)
        })
        .await;
    assert!(
        matches!(r, Err(ExecuteError::Store(ref e)) if e.is_conflict()),
        "{r:?}"
    );
}

#[tokio::test]
async fn execute_needs_an_aggregate_of_one_stream() {
    #[derive(Default, Clone, Debug, Serialize, Deserialize)]
    struct AllAccounts(u64);
    impl Aggregate for AllAccounts {
        const NAME: &'static str = "all-accounts";
        type Event = AccountEvent;
        type Args = ();
        fn query((): &()) -> Query {
            Query::events::<AccountEvent>()
        }
        fn apply(&mut self, _e: &AccountEvent) {
            self.0 += 1;
        }
    }
    let es = EventStore::memory();
    let e = es
        .execute(&(), |_: &AllAccounts| {
            Ok::<_, String>(vec![Deposited { amount: 1 }])
        })
        .await
        .unwrap_err();
    assert_eq!(e.store_error().and_then(Error::field), Some("query"));
    assert_eq!(
        es.fold::<AllAccounts>(&()).await.unwrap().stream_version,
        None
    );
}

#[tokio::test]
async fn a_fold_reports_the_stream_version_it_reflects() {
    let es = EventStore::memory();
    assert_eq!(
        es.fold::<Account>("acc-3").await.unwrap().stream_version,
        None
    );
    es.save("acc-3", &Deposited { amount: 5 }).await.unwrap();
    // An event of a type the aggregate does not fold still moves the stream's version.
    es.append(
        "acc-3",
        ExpectedVersion::Any,
        vec![NewEvent::new("bank", "Noted", json!({}))],
    )
    .await
    .unwrap();
    let folded = es.fold::<Account>("acc-3").await.unwrap();
    assert_eq!((folded.state.balance, folded.stream_version), (5, Some(1)));
    // The version to expect: a save expecting it succeeds, a stale one conflicts.
    let ok = es
        .save_expecting(
            "acc-3",
            folded.stream_version.into(),
            &Deposited { amount: 1 },
        )
        .await;
    assert!(ok.is_ok());
    assert!(
        es.save_expecting(
            "acc-3",
            folded.stream_version.into(),
            &Deposited { amount: 1 }
        )
        .await
        .unwrap_err()
        .is_conflict()
    );
    assert_eq!(ExpectedVersion::from(None), ExpectedVersion::NoStream);
    assert_eq!(ExpectedVersion::from(Some(3)), ExpectedVersion::Exact(3));
}

#[tokio::test]
async fn a_decode_failure_names_the_event_and_quarantine_skips_it() {
    let es = EventStore::memory();
    es.save("acc-4", &Deposited { amount: 5 }).await.unwrap();
    // An event of the right type whose data the code can no longer read.
    let bad = es
        .append(
            "acc-4",
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "bank",
                "Deposited",
                json!({"amount": "five"}),
            )],
        )
        .await
        .unwrap()
        .events
        .remove(0);
    es.save("acc-4", &Deposited { amount: 1 }).await.unwrap();
    let e = es.aggregate::<Account>("acc-4").await.unwrap_err();
    match &e {
        Error::Decode {
            id,
            stream,
            version,
            namespace,
            event_type,
            source,
        } => {
            assert_eq!((*id, stream.as_str(), *version), (bad.id, "acc-4", 1));
            assert_eq!(
                (namespace.as_str(), event_type.as_str()),
                ("bank", "Deposited")
            );
            assert!(source.to_string().contains("invalid type"), "{source}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(&bad.id.to_string()) && text.contains("version 1"),
        "{text}"
    );

    let quarantine = es.clone().with_undecodable(Undecodable::Skip);
    let folded = quarantine.fold::<Account>("acc-4").await.unwrap();
    assert_eq!((folded.state.balance, folded.skipped), (6, 1));
    // A fold that skipped is not cached: fixing the code later is not undone by the cache.
    assert!(
        !quarantine
            .fold::<Account>("acc-4")
            .await
            .unwrap()
            .from_cache
    );
}

/// The same aggregate with a changed `apply` and no version bump: the mistake verification
/// exists to catch.
#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ChangedAccount {
    balance: u64,
}

impl Aggregate for ChangedAccount {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Args = str;
    fn query(id: &str) -> Query {
        Query::stream(id)
    }
    fn apply(&mut self, e: &AccountEvent) {
        if let AccountEvent::Deposited(d) = e {
            self.balance += 2 * d.amount;
        }
    }
}

#[tokio::test]
async fn cache_verification_catches_a_changed_fold_without_a_version_bump() {
    let cache = MemoryCache::new();
    let es =
        EventStore::new(MemoryStore::new(), cache.clone(), NoEmitter).with_cache_verification(1);
    es.save("acc-5", &Deposited { amount: 10 }).await.unwrap();
    es.aggregate::<Account>("acc-5").await.unwrap(); // cached: balance 10
    es.save("acc-5", &Deposited { amount: 1 }).await.unwrap();
    // The new code reads the old entry: verification folds from scratch and disagrees.
    let folded = es.fold::<ChangedAccount>("acc-5").await.unwrap();
    assert_eq!(
        folded.state.balance, 22,
        "the state folded from scratch, not 10 + 2"
    );
    // The wrong entry was replaced: the next fold through the cache agrees too.
    assert_eq!(
        es.aggregate::<ChangedAccount>("acc-5")
            .await
            .unwrap()
            .balance,
        22
    );
    // Without verification the mistake would go unnoticed.
    let blind = EventStore::new(MemoryStore::new(), MemoryCache::new(), NoEmitter)
        .with_cache_verification(0);
    blind
        .save("acc-6", &Deposited { amount: 10 })
        .await
        .unwrap();
    blind.aggregate::<Account>("acc-6").await.unwrap();
    blind.save("acc-6", &Deposited { amount: 1 }).await.unwrap();
    assert_eq!(
        blind
            .aggregate::<ChangedAccount>("acc-6")
            .await
            .unwrap()
            .balance,
        12
    );
}

#[tokio::test]
async fn an_aggregate_needs_no_serde_without_a_cache() {
    #[derive(Default, Clone)]
    struct Count(u32);
    impl Aggregate for Count {
        const NAME: &'static str = "count";
        type Event = AccountEvent;
        type Args = str;
        fn query(id: &str) -> Query {
            Query::stream(id)
        }
        fn apply(&mut self, _e: &AccountEvent) {
            self.0 += 1;
        }
    }
    let es = EventStore::from_store(MemoryStore::new());
    es.save("c", &Deposited { amount: 1 }).await.unwrap();
    es.save("c", &Withdrawn { amount: 1 }).await.unwrap();
    assert_eq!(es.aggregate::<Count>("c").await.unwrap().0, 2);
}

#[tokio::test]
async fn a_read_model_follows_the_log_from_its_checkpoint() {
    let es = EventStore::memory();
    for (stream, amount) in [("acct-1", 5), ("other-1", 7), ("acct-2", 3)] {
        es.save(stream, &Deposited { amount }).await.unwrap();
    }
    let mut total = 0;
    let name = "read-model:totals";
    for _round in 0..2 {
        let after = es
            .load_checkpoint(name)
            .await
            .unwrap()
            .unwrap_or(Position::START);
        let mut events = Box::pin(es.follow(after, Query::stream_prefix("acct-")));
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if let Ok(AccountEvent::Deposited(d)) = e.decode::<AccountEvent>() {
                total += d.amount;
            }
            es.save_checkpoint(name, e.position).await.unwrap();
        }
    }
    assert_eq!(total, 8, "each event of the category once, across two runs");
    let saved = es.checkpoints().await.unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].0.as_str(), name);
    assert!(
        es.save_checkpoint("", Position::START)
            .await
            .unwrap_err()
            .is_invalid_input()
    );
}

#[test]
fn the_small_conveniences() {
    assert_eq!(
        format!("{:?}", Position::from_parts(7741, 42)),
        "Position(7741:42)"
    );
    assert_eq!(format!("{:?}", Position::from_offset(42)), "Position(42)");
    let id: Uuid = Uuid::now_v7();
    assert_eq!(id.get_version_num(), 7);
}
