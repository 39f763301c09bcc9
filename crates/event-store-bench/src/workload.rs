//! The workloads every store runs (appends, reads, aggregates), measured through the facade.

// Each workload reads best as one straight sequence of steps.
#![allow(clippy::too_many_lines)]

use std::time::Instant;

use event_store::upcast::{Upcast, Upcasters};
use event_store::{
    Aggregate, AppendBatch, Cache, Event, EventStore, ExpectedVersion, NewEvent, NoCache,
    NoEmitter, Position, Query, Store,
};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Result, ensure};
use crate::report::{Goal, Report, Sizes, best, ms, rate};

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(namespace = "bench")]
pub(crate) struct Moved {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
    pub(crate) note: String,
}

/// `Moved` at schema version 2 (`note` renamed `remark`): reading the stored version-1 events
/// through it runs one upcaster per event.
#[derive(Event, Serialize, Deserialize, Clone)]
#[event(
    namespace = "bench",
    rename = "Moved",
    version = 2,
    upcasters = "moved_v2"
)]
pub(crate) struct MovedV2 {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
    pub(crate) remark: String,
}

fn moved_v2() -> Upcasters {
    Upcasters::new().to(2, Upcast::new().rename("note", "remark"))
}

/// Reads stream `long` decoding each event as `E`: events/s.
async fn typed_read<E: event_store::Events, S: Store + Clone, C: Send + Sync + 'static>(
    es: &EventStore<S, C, NoEmitter>,
) -> Result<f64> {
    let started = Instant::now();
    let mut n = 0usize;
    let mut stream = Box::pin(es.read_stream("long", 0, event_store::Direction::Forward));
    while let Some(e) = stream.next().await {
        std::hint::black_box(e?.decode::<E>()?);
        n += 1;
    }
    Ok(rate(n, started.elapsed()))
}

#[derive(Default, Clone, Serialize, Deserialize)]
pub(crate) struct Total {
    pub(crate) quantity: i64,
    pub(crate) count: u64,
}

impl Aggregate for Total {
    const NAME: &'static str = "bench-total";
    type Event = Moved;
    type Args = str;
    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }
    fn apply(&mut self, e: &Moved) {
        self.quantity += e.quantity;
        self.count += 1;
    }
}

pub(crate) fn payload(i: usize) -> Value {
    json!({"sku": format!("sku-{}", i % 1000), "quantity": i % 17, "note": "n".repeat(100)})
}

pub(crate) fn event(i: usize) -> NewEvent {
    NewEvent::new("bench", "Moved", payload(i))
}

/// 8 writers appending one event per call, writer `w` to `stream(w)`: events/s.
async fn eight_writers<S: Store + Clone>(
    es: &EventStore<S, NoCache, NoEmitter>,
    sizes: Sizes,
    stream: fn(usize) -> String,
) -> Result<f64> {
    let t = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let es = es.clone();
            let n = sizes.concurrent / 8;
            tokio::spawn(async move {
                for i in 0..n {
                    es.append(&stream(w), ExpectedVersion::Any, vec![event(i)])
                        .await?;
                }
                Ok::<(), event_store::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok(rate(sizes.concurrent / 8 * 8, t.elapsed()))
}

/// The same-run baselines of a SQL backend, in events/s (reads: events/s of a plain SELECT).
#[derive(Default)]
pub(crate) struct Baselines {
    pub(crate) single: Option<f64>,
    pub(crate) concurrent: Option<f64>,
    pub(crate) batch: Option<f64>,
    pub(crate) read_log: Option<f64>,
    pub(crate) read_stream: Option<f64>,
}

/// Appends, reads and aggregates on one store; `baselines` measures the same on plain SQL, after
/// the store's own run (so the reads see the same rows).
pub(crate) async fn store_workloads<S: Store + Clone, C: Cache>(
    report: &mut Report,
    backend: &str,
    store: &S,
    cache: C,
    sizes: Sizes,
    baselines: Option<
        &mut dyn FnMut(&'static str) -> futures::future::BoxFuture<'_, Result<Option<f64>>>,
    >,
) -> Result<()> {
    let es = EventStore::new(store.clone(), NoCache, NoEmitter);
    // 1 event per append, 1 writer.
    let t = Instant::now();
    for i in 0..sizes.single {
        es.append(
            &format!("single-{}", i % 100),
            ExpectedVersion::Any,
            vec![event(i)],
        )
        .await?;
    }
    let single = rate(sizes.single, t.elapsed());
    // 1 event per append, 8 writers on distinct streams; then the same with the 8 streams in one
    // category (`bench-W`): Message DB serializes those, as it locks per category; ours locks
    // per stream.
    let concurrent = eight_writers(&es, sizes, |w| format!("writer-{w}")).await?;
    let one_namespace = eight_writers(&es, sizes, |w| format!("bench-{w}")).await?;
    // 100 events per append.
    let t = Instant::now();
    for b in 0..sizes.batches {
        let events = (0..100).map(|i| event(b * 100 + i)).collect();
        es.append(&format!("batch-{}", b % 10), ExpectedVersion::Any, events)
            .await?;
    }
    let batch = rate(sizes.batches * 100, t.elapsed());
    // Bulk ingest: as many events over 1 000 interleaved streams (each event's neighbours are
    // in other streams), 1 000 per multi-stream transaction.
    let total = sizes.batches * 100;
    let t = Instant::now();
    for w in 0..total.div_ceil(1000) {
        let batches = (w * 1000..((w + 1) * 1000).min(total))
            .map(|i| {
                AppendBatch::new(
                    format!("ingest-{}", i % 1000),
                    ExpectedVersion::Any,
                    vec![event(i)],
                )
            })
            .collect::<event_store::Result<Vec<_>>>()?;
        es.append_many(batches).await?;
    }
    let ingest = rate(total, t.elapsed());
    // One long stream (filled in batches of 1000; not measured).
    for _ in 0..sizes.stream / 1000 {
        let events = (0..1000_i64)
            .map(|i| {
                NewEvent::from_event(&Moved {
                    sku: "s".into(),
                    quantity: i % 7,
                    note: "n".repeat(100),
                })
            })
            .collect::<event_store::Result<Vec<_>>>()?;
        es.append("long", ExpectedVersion::Any, events).await?;
    }
    // Reads. The backend settles first (PostgreSQL: VACUUM ANALYZE of the scratch tables), then
    // one untimed pass pays the one-time costs of fresh rows (hint bits, page cache); ours and
    // the baseline then alternate, and each keeps its better run, so background work (the
    // autovacuum, the checkpointer) weighs on neither more than the other.
    let mut base = Baselines::default();
    let mut measure = baselines;
    if let Some(m) = measure.as_mut() {
        m("settle").await?;
    }
    let warm: usize = es.read_all(Position::START).count().await;
    ensure(warm > 0, "nothing to read")?;
    let (mut read_log, mut read_stream, mut log_events, mut stream_events) =
        (0f64, 0f64, 0usize, 0usize);
    let (mut typed, mut upcast) = (0f64, 0f64);
    for _ in 0..2 {
        // Every event of the log is a `Moved`: decoded into it, as a typed reader would.
        let started = Instant::now();
        log_events = 0;
        let mut log = Box::pin(es.read_all(Position::START));
        while let Some(e) = log.next().await {
            std::hint::black_box(e?.decode::<Moved>()?);
            log_events += 1;
        }
        read_log = read_log.max(rate(log_events, started.elapsed()));
        let started = Instant::now();
        stream_events = 0;
        let mut stream = Box::pin(es.read_stream("long", 0, event_store::Direction::Forward));
        while let Some(e) = stream.next().await {
            e?;
            stream_events += 1;
        }
        read_stream = read_stream.max(rate(stream_events, started.elapsed()));
        typed = typed.max(typed_read::<Moved, _, _>(&es).await?);
        upcast = upcast.max(typed_read::<MovedV2, _, _>(&es).await?);
        if let Some(f) = measure.as_mut() {
            let (a, b) = (f("read_log").await?, f("read_stream").await?);
            base.read_log = best(base.read_log, a);
            base.read_stream = best(base.read_stream, b);
        }
    }
    // Aggregates: cold (nothing cached; median of three) and warm (10 new events; median of 20).
    let cached = EventStore::new(store.clone(), cache, NoEmitter);
    let mut colds = Vec::new();
    let t = Instant::now();
    let first = cached.fold::<Total>("long").await?;
    colds.push(t.elapsed());
    for _ in 0..2 {
        let t = Instant::now();
        es.aggregate::<Total>("long").await?;
        colds.push(t.elapsed());
    }
    colds.sort();
    let mut fold_baseline = None;
    if let Some(f) = measure.as_mut() {
        for _ in 0..3 {
            fold_baseline = match (fold_baseline, f("fold").await?) {
                (Some(a), Some(b)) => Some(f64::min(a, b)),
                (a, b) => a.or(b),
            };
        }
    }
    let mut warms = Vec::new();
    for round in 0..20 {
        let events = (0..10).map(|i| event(round * 10 + i)).collect();
        es.append("long", ExpectedVersion::Any, events).await?;
        let t = Instant::now();
        let warm = cached.fold::<Total>("long").await?;
        warms.push(t.elapsed());
        ensure(warm.from_cache, "the warm fold did not use the cache")?;
    }
    warms.sort();
    let (cold, warm) = (colds[1], warms[warms.len() / 2]);
    ensure(
        first.events_read >= sizes.stream as u64,
        format!("the cold fold read {} events", first.events_read),
    )?;

    if let Some(f) = measure.as_mut() {
        base.single = f("single").await?;
        base.concurrent = f("concurrent").await?;
        base.batch = f("batch").await?;
    }
    let (pg, sqlite) = (backend == "postgres", backend == "sqlite");
    let goal = |when: bool, x: f64| if when { Goal::Ratio(x) } else { Goal::None };
    report.add(
        "append_single",
        "append 1 event/call, 1 writer",
        backend,
        single,
        "ev/s",
        base.single,
        true,
        goal(pg, 0.85),
    );
    report.add(
        "append_8_streams",
        "append 1 event/call, 8 writers, 8 streams",
        backend,
        concurrent,
        "ev/s",
        base.concurrent,
        true,
        goal(pg, 0.8),
    );
    report.add(
        "append_8_one_namespace",
        "append 1 event/call, 8 writers, one namespace",
        backend,
        one_namespace,
        "ev/s",
        base.concurrent,
        true,
        goal(pg, 0.8),
    );
    report.add(
        "append_100",
        "append 100 events/call",
        backend,
        batch,
        "ev/s",
        base.batch,
        true,
        goal(pg || sqlite, 0.8),
    );
    report.add(
        "ingest",
        &format!("ingest {total} events over 1 000 interleaved streams (vs 100 rows/transaction)"),
        backend,
        ingest,
        "ev/s",
        base.batch,
        true,
        goal(pg || sqlite, 0.5),
    );
    report.add(
        "read_log",
        &format!("read the global log, typed ({log_events} events)"),
        backend,
        read_log,
        "ev/s",
        base.read_log,
        true,
        goal(pg || sqlite, 0.8),
    );
    report.add(
        "read_stream",
        &format!("read one stream ({stream_events} events)"),
        backend,
        read_stream,
        "ev/s",
        base.read_stream,
        true,
        if pg {
            Goal::Ratio(0.9)
        } else {
            goal(sqlite, 0.8)
        },
    );
    report.add(
        "upcast",
        "typed read of one stream, one upcaster (vs. without)",
        backend,
        upcast,
        "ev/s",
        Some(typed),
        true,
        Goal::Ratio(0.8),
    );
    report.add(
        "aggregate_cold",
        &format!(
            "aggregate cold ({} events; vs SELECT + decode + fold)",
            sizes.stream
        ),
        backend,
        ms(cold),
        "ms",
        fold_baseline,
        false,
        goal(pg, 0.7),
    );
    report.add(
        "aggregate_warm",
        "aggregate warm (+10 events) vs cold",
        backend,
        ms(warm),
        "ms",
        Some(ms(cold)),
        false,
        Goal::Ratio(50.0),
    );
    Ok(())
}
