//! The classic counter, end to end on the in-memory backend: typed events, optimistic
//! concurrency, a cached aggregate, a subscriber and the global log.
//!
//! Run it with `cargo run -p event-store --example counter`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use event_store::{Aggregate, Event, EventStore, Events, ExpectedVersion, Position, Query};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(namespace = "example")]
struct Incremented {
    by: i64,
}

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(namespace = "example")]
struct Decremented {
    by: i64,
}

#[derive(Events, Debug)]
enum CounterEvent {
    Incremented(Incremented),
    Decremented(Decremented),
}

#[derive(Default, Clone, Serialize, Deserialize, Debug)]
struct Counter {
    value: i64,
}

impl Aggregate for Counter {
    const NAME: &'static str = "counter";
    type Event = CounterEvent;
    type Args = str;

    fn query(id: &str) -> Query {
        Query::stream(id)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented(e) => self.value += e.by,
            CounterEvent::Decremented(e) => self.value -= e.by,
        }
    }
}

#[tokio::main]
async fn main() -> event_store::Result<()> {
    let store = EventStore::memory();

    // A read model fed by a subscriber group.
    let total = Arc::new(AtomicI64::new(0));
    let sink = Arc::clone(&total);
    let subscription = store
        .subscribe("totals", move |event: CounterEvent, _| {
            let sink = Arc::clone(&sink);
            async move {
                match event {
                    CounterEvent::Incremented(e) => sink.fetch_add(e.by, Ordering::SeqCst),
                    CounterEvent::Decremented(e) => sink.fetch_sub(e.by, Ordering::SeqCst),
                };
                Ok(())
            }
        })
        .await?;
    let worker = tokio::spawn(subscription.into_future());

    for i in 1..=1000 {
        store.save("counter-1", &Incremented { by: i % 7 }).await?;
    }
    store.save("counter-1", &Decremented { by: 100 }).await?;

    // Optimistic concurrency: a writer working from an old version is refused.
    let stale = store
        .save_expecting(
            "counter-1",
            ExpectedVersion::Exact(3),
            &Decremented { by: 1 },
        )
        .await;
    if let Err(e) = &stale {
        println!("refused as expected: {e}");
    }

    let cold = store.fold::<Counter>("counter-1").await?;
    store.save("counter-1", &Incremented { by: 1 }).await?;
    let warm = store.fold::<Counter>("counter-1").await?;
    println!(
        "counter-1 = {} (cold fold read {} events; warm fold read {} from checkpoint {})",
        warm.state.value,
        cold.events_read,
        warm.events_read,
        cold.checkpoint.unwrap_or(Position::START),
    );

    let log = store.read_all(Position::START).count().await;
    while total.load(Ordering::SeqCst) != warm.state.value {
        tokio::task::yield_now().await;
    }
    println!(
        "global log: {log} events; the subscriber's total is {}",
        total.load(Ordering::SeqCst)
    );
    worker.abort();
    Ok(())
}
