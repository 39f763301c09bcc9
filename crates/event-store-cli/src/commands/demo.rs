//! `event-store demo`: the whole mission on a fresh SQLite file, with a short report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use event_store::{
    Aggregate, BoxError, Event, EventStore, Events, ExecuteError, ExpectedVersion,
    InProcessEmitter, Query, Store,
};
use event_store_sqlite::{SqliteCache, SqliteStore};
use serde::{Deserialize, Serialize};

use crate::cli::DemoArgs;

/// `println!` that returns the error instead of panicking when stdout is closed
/// (`event-store demo | head`).
macro_rules! say {
    ($($t:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($t)*)))?
    };
}

/// Stock arrived at the warehouse.
#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "demo-inventory")]
struct ItemReceived {
    sku: String,
    quantity: i64,
}

/// Stock left the warehouse.
#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "demo-inventory")]
struct ItemShipped {
    sku: String,
    quantity: i64,
}

#[derive(Events, Debug, Clone)]
enum Inventory {
    Received(ItemReceived),
    Shipped(ItemShipped),
}

/// The stock of one SKU, folded from its stream.
#[derive(Default, Clone, Serialize, Deserialize, Debug, PartialEq)]
struct Stock {
    on_hand: i64,
    movements: u64,
}

impl Aggregate for Stock {
    const NAME: &'static str = "demo-stock";
    type Event = Inventory;
    type Args = str;

    fn query(sku: &str) -> Query {
        Query::stream(sku)
    }

    fn apply(&mut self, event: &Inventory) {
        self.movements += 1;
        match event {
            Inventory::Received(e) => self.on_hand += e.quantity,
            Inventory::Shipped(e) => self.on_hand -= e.quantity,
        }
    }
}

type Demo = EventStore<SqliteStore, SqliteCache, InProcessEmitter>;

const SKUS: u64 = 20;
const WRITERS: u64 = 4;
const PER_WRITER: u64 = 250;
const HOT_EVENTS: i64 = 20_000;

fn sku(i: u64) -> String {
    format!("sku-{i:02}")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let temp = tempfile_dir()?;
    let path = match &args.keep {
        Some(p) => {
            if p.exists() {
                bail!("{} exists; the demo needs a fresh file", p.display());
            }
            p.clone()
        }
        None => temp.join("demo.db"),
    };
    let result = scenario(&path).await;
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "event-store-demo-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn scenario(path: &std::path::Path) -> Result<()> {
    say!(
        "Event Store demo: a fresh SQLite file at {}\n",
        path.display()
    );
    let store = SqliteStore::open(path).await?;
    let es: Demo = EventStore::new(
        store.clone(),
        SqliteCache::new(&store),
        InProcessEmitter::new(),
    );

    say!("1. Events are plain Rust types with #[derive(Event)]:");
    for t in Inventory::event_types() {
        say!("     {}.{}", t.namespace, t.name);
    }

    // A subscriber group builds a read model from every event, in the same process.
    let model: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sink, count) = (Arc::clone(&model), Arc::clone(&handled));
    let subscription = es
        .subscribe("stock-report", move |event: Inventory, _recorded| {
            let (sink, count) = (Arc::clone(&sink), Arc::clone(&count));
            async move {
                let mut model = sink.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Inventory::Received(e) => *model.entry(e.sku).or_default() += e.quantity,
                    Inventory::Shipped(e) => *model.entry(e.sku).or_default() -= e.quantity,
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        })
        .await?;
    let worker = tokio::spawn(subscription.into_future());

    // Several writers at once.
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                let mut seed = w * 7919 + 1;
                for i in 0..PER_WRITER {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let s = sku((seed >> 33) % SKUS);
                    let quantity = i64::try_from(1 + (seed >> 40) % 20).unwrap_or(1);
                    if i % 4 == 3 {
                        es.save(
                            &s,
                            &ItemShipped {
                                sku: s.clone(),
                                quantity,
                            },
                        )
                        .await?;
                    } else {
                        es.save(
                            &s,
                            &ItemReceived {
                                sku: s.clone(),
                                quantity: quantity * 2,
                            },
                        )
                        .await?;
                    }
                }
                Ok::<(), event_store::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await.context("a writer task failed")??;
    }
    let took = started.elapsed();
    let n = WRITERS * PER_WRITER;
    say!(
        "\n2. {WRITERS} concurrent writers saved {n} events to {SKUS} SKU streams in {} ({:.0} events/s, one event per append).",
        ms(took),
        n as f64 / took.as_secs_f64()
    );

    // Optimistic concurrency: two clerks decide on the same state; one loses the race, and
    // deciding again on the new state (not saving the old decision) is what keeps stock right.
    const CONTESTED: &str = "sku-contested";
    let contested = CONTESTED;
    es.save(
        contested,
        &ItemReceived {
            sku: contested.to_owned(),
            quantity: 10,
        },
    )
    .await?;
    let ship = |quantity: i64| {
        move |stock: &Stock| {
            if stock.on_hand < quantity {
                Err(format!("only {} on hand", stock.on_hand))
            } else {
                Ok(vec![ItemShipped {
                    sku: CONTESTED.to_owned(),
                    quantity,
                }])
            }
        }
    };
    let seen = es.fold::<Stock>(contested).await?;
    let expected = ExpectedVersion::from(seen.stream_version);
    let (first, second) = (
        ship(6)(&seen.state).map_err(|e| anyhow::anyhow!(e))?,
        ship(6)(&seen.state).map_err(|e| anyhow::anyhow!(e))?,
    );
    let (a, b) = tokio::join!(
        es.save_all_expecting(contested, expected, &first),
        es.save_all_expecting(contested, expected, &second)
    );
    say!(
        "\n3. Two clerks saw {} units of {contested} at {expected} and each shipped 6:",
        seen.state.on_hand
    );
    let mut lost = false;
    for (clerk, outcome) in [("A", &a), ("B", &b)] {
        match outcome {
            Ok(e) => say!("     clerk {clerk}: saved at version {}", e[0].version),
            Err(e) if e.is_conflict() => {
                lost = true;
                say!("     clerk {clerk}: refused: {e}");
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
    if lost {
        match es.execute(contested, ship(6)).await {
            Ok(done) => say!(
                "     the refused clerk re-decided on the new state: shipped, now version {:?}",
                done.version
            ),
            Err(ExecuteError::Rejected(why)) => say!(
                "     the refused clerk re-decided on the new state (execute): refused, {why} \
                 (saving its old decision again would have left -2 on hand)"
            ),
            Err(ExecuteError::Store(e)) => return Err(e.into()),
        }
    }
    // Eight clerks at once, each shipping 1 of 7 units through execute: every one decides on
    // fresh state, so exactly one is refused.
    es.save(
        contested,
        &ItemReceived {
            sku: contested.to_owned(),
            quantity: 3,
        },
    )
    .await?;
    let clerks: Vec<_> = (0..8)
        .map(|_| {
            let es = es.clone();
            tokio::spawn(async move { es.execute(contested, ship(1)).await })
        })
        .collect();
    let (mut shipped, mut refused, mut attempts) = (0, 0, 0);
    for clerk in clerks {
        match clerk.await.context("a clerk task failed")? {
            Ok(done) => {
                shipped += 1;
                attempts += done.attempts;
            }
            Err(ExecuteError::Rejected(_)) => refused += 1,
            Err(ExecuteError::Store(e)) => return Err(e.into()),
        }
    }
    let left = es.aggregate::<Stock>(contested).await?.on_hand;
    say!(
        "     then 8 clerks shipped 1 each at once through execute: {shipped} shipped \
         ({attempts} attempts), {refused} refused, {left} on hand"
    );
    if left < 0 {
        bail!("stock went negative");
    }

    // An aggregate through the cache: cold, then warm.
    let hot = "sku-hot";
    for chunk in 0..HOT_EVENTS / 1000 {
        let batch: Vec<ItemReceived> = (0..1000)
            .map(|i| ItemReceived {
                sku: hot.to_owned(),
                quantity: 1 + (chunk * 1000 + i) % 3,
            })
            .collect();
        es.save_all(hot, &batch).await?;
    }
    let t = Instant::now();
    let cold = es.fold::<Stock>(hot).await?;
    let cold_took = t.elapsed();
    let more: Vec<ItemShipped> = (0..10)
        .map(|_| ItemShipped {
            sku: hot.to_owned(),
            quantity: 5,
        })
        .collect();
    es.save_all(hot, &more).await?;
    let t = Instant::now();
    let warm = es.fold::<Stock>(hot).await?;
    let warm_took = t.elapsed();
    let whole = EventStore::from_store(store.clone())
        .aggregate::<Stock>(hot)
        .await?;
    say!("\n4. The stock of {hot}, folded through the cache:");
    say!(
        "     cold: {} events read and folded in {}",
        cold.events_read,
        ms(cold_took)
    );
    say!(
        "     warm: {} new events read and folded in {} ({:.0}x faster; the cache held the state up to checkpoint {})",
        warm.events_read,
        ms(warm_took),
        cold_took.as_secs_f64() / warm_took.as_secs_f64().max(1e-9),
        cold.checkpoint
            .map_or_else(|| "-".to_owned(), |p| p.to_string())
    );
    let same = if warm.state == whole {
        "equal"
    } else {
        "DIFFERENT"
    };
    say!(
        "     on hand: {} after {} movements; folding the whole stream without the cache gives the same: {same}",
        warm.state.on_hand,
        warm.state.movements
    );
    if warm.state != whole {
        bail!("the cached aggregate differs from the whole fold");
    }

    // The read model caught up with everything saved.
    let total = store.stats().await?.events;
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled.load(std::sync::atomic::Ordering::SeqCst) < total {
        if Instant::now() > deadline {
            bail!("the subscriber did not catch up");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.abort();
    let model = model.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut agree = 0;
    let mut streams: Vec<String> = (0..SKUS).map(sku).collect();
    streams.push(hot.to_owned());
    streams.push(contested.to_owned());
    for s in &streams {
        let stock = es.aggregate::<Stock>(s).await?;
        if model.get(s).copied().unwrap_or_default() == stock.on_hand {
            agree += 1;
        }
    }
    say!(
        "\n5. A subscriber group (\"stock-report\") built a read model from all {total} events; it agrees with the aggregates for {agree} of {} SKUs.",
        streams.len()
    );
    if agree != streams.len() {
        bail!("the read model disagrees with the aggregates");
    }

    let stats = store.stats().await?;
    say!(
        "\nThe store: {} events in {} streams, {} KiB on disk, head checkpoint {}.",
        stats.events,
        stats.streams,
        stats.size_bytes.unwrap_or_default() / 1024,
        stats.head.map_or_else(|| "-".to_owned(), |p| p.to_string())
    );
    Ok(())
}
