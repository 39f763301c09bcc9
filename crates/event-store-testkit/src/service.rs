//! What a service does with the store: decide on current state and save (`execute`), and follow
//! the log with a checkpoint (`follow`) — both under concurrent writers.

use std::collections::HashSet;

use event_store::{
    EventStore, ExecuteError, ExpectedVersion, MemoryCache, NewEvent, NoEmitter, Position, Query,
    RecordedEvent, Store,
};
use futures::StreamExt;
use serde_json::json;

use crate::aggregates::{Deposited, KitAccount};
use crate::support::suffix;

/// 20 writers race to withdraw 1 each from an account holding 15, through `execute` with the
/// default retry policy: none gives up on a conflict, exactly 15 succeed and 5 are refused by
/// the decision (made again on the state each time), and the balance ends at 0, never below.
pub async fn execute_under_contention<S: Store + Clone>(store: &S) {
    let id = format!("kit-acc-{}", suffix());
    let es = EventStore::new(store.clone(), MemoryCache::new(), NoEmitter);
    es.save(&id, &Deposited { amount: 15 })
        .await
        .expect("deposit");
    let writers: Vec<_> = (0..20)
        .map(|_| {
            let (es, id) = (es.clone(), id.clone());
            tokio::spawn(async move {
                es.execute(id.as_str(), |a: &KitAccount| a.withdraw(1))
                    .await
            })
        })
        .collect();
    let (mut done, mut refused) = (0, 0);
    for w in writers {
        match w.await.expect("writer") {
            Ok(executed) => {
                done += 1;
                assert!(executed.state.balance >= 0, "the state after the save");
            }
            Err(ExecuteError::Rejected(_)) => refused += 1,
            Err(ExecuteError::Store(e)) => panic!("a writer gave up: {e}"),
        }
    }
    assert_eq!(
        (done, refused),
        (15, 5),
        "every withdrawal decided on current state"
    );
    let whole = EventStore::from_store(store.clone())
        .fold::<KitAccount>(&id)
        .await
        .expect("fold");
    assert_eq!(whole.state.balance, 0, "the invariant holds");
    assert_eq!(
        whole.stream_version,
        Some(15),
        "one deposit and 15 withdrawals"
    );
    // The version a fold reports is the one to expect: a save expecting it succeeds.
    let next = es
        .save_expecting(
            &id,
            ExpectedVersion::from(whole.stream_version),
            &Deposited { amount: 1 },
        )
        .await
        .expect("a save expecting the folded version");
    assert_eq!(next.version, 16);
}

/// A follower built the documented way — `follow` from its checkpoint, keeping the last position
/// it handled, again and again while 8 writers append batches to two categories of streams —
/// receives every event of its category exactly once, in log order, and none of the other.
pub async fn follow_never_skips<S: Store + Clone>(store: &S) {
    let tag = suffix();
    let (mine, other) = (format!("kitcat-a{tag}-"), format!("kitcat-b{tag}-"));
    let start = event_store::head(store).await.expect("head");
    let es = EventStore::from_store(store.clone());
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (es, mine, other) = (es.clone(), mine.clone(), other.clone());
            tokio::spawn(async move {
                let mut last = Position::START;
                for b in 0..25 {
                    let prefix = if (w + b) % 2 == 0 { &mine } else { &other };
                    let events = (0..=(w * 7 + b) % 20)
                        .map(|i| NewEvent::new("kit", "Moved", json!({"w": w, "b": b, "i": i})))
                        .collect();
                    let saved = es
                        .append(&format!("{prefix}{w}"), ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                    last = last.max(saved.last_position().unwrap_or(last));
                }
                last
            })
        })
        .collect();
    let mut checkpoint = start;
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let query = Query::stream_prefix(mine.clone());
    let mut writing = writers;
    loop {
        let finished = writing.iter().all(tokio::task::JoinHandle::is_finished);
        let page: Vec<RecordedEvent> = es
            .follow(checkpoint, query.clone())
            .map(|e| e.expect("follow"))
            .collect()
            .await;
        if let Some(last) = page.last() {
            checkpoint = last.position;
        }
        seen.extend(page);
        if finished {
            // One more pass once the writers' last events are final (on PostgreSQL, a
            // transaction of another client still running keeps them from being final).
            let mut last = Position::START;
            for w in writing.drain(..) {
                last = last.max(w.await.expect("writer"));
            }
            crate::support::wait_final(store, last).await;
            let rest: Vec<RecordedEvent> = es
                .follow(checkpoint, query.clone())
                .map(|e| e.expect("follow"))
                .collect()
                .await;
            seen.extend(rest);
            break;
        }
        tokio::task::yield_now().await;
    }
    let all: Vec<RecordedEvent> = es
        .read_all(start)
        .map(|e| e.expect("read_all"))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter(|e| e.stream.starts_with(&mine))
        .collect();
    let ids: HashSet<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), seen.len(), "no event twice");
    assert!(
        seen.iter().all(|e| e.stream.starts_with(&mine)),
        "only its category"
    );
    assert_eq!(
        seen.iter().map(|e| e.id).collect::<Vec<_>>(),
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        "every event of its category, in log order"
    );
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
    assert!(checkpoint > Position::START);
}
