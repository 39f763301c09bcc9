//! Reads from streaming replicas (issue 18), on a private primary with two hot standbys that
//! this test starts from the PostgreSQL server binaries (initdb + pg_basebackup, loopback
//! ports, a temporary directory; stopped and removed at the end). Without the binaries it
//! skips loudly, and fails when `CI` is set.
//!
//! A harness of its own: the cluster is started once for every check below.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use event_store::{
    AppendBatch, EventStore, ExpectedVersion, LogCursor, NewEvent, Position, RecordedEvent, Store,
};
use event_store_postgres::cluster::{LocalCluster, server_binaries};
use event_store_postgres::{Consistency, PgConfig, PgStore, Replicas};
use futures::StreamExt as _;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    if server_binaries().is_none() {
        let why = "replicas: SKIPPED — no PostgreSQL server binaries (initdb, pg_basebackup); \
                   set EVENT_STORE_PG_BIN";
        assert!(std::env::var_os("CI").is_none(), "{why}, and CI is set");
        eprintln!("{why}");
        return;
    }
    let cluster = LocalCluster::start(2).expect("start a primary and two standbys");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = &cluster;
        println!("kit: store checks on a store reading from the replicas (session consistency)");
        event_store_testkit::store_conformance_in_sequence!(|| store(c, Consistency::Session));
        println!("kit: projection checks, the log read from the replicas, state on the primary");
        event_store_testkit::projection_conformance_in_sequence!(|| store(
            c,
            Consistency::Eventual
        ));
        println!("kit: cache checks, folds read from the replicas, the cache on the primary");
        event_store_testkit::cache_conformance_in_sequence!(|| async {
            let store = store(c, Consistency::Session).await;
            let cache = event_store_postgres::PgCache::new(&store);
            (store, cache)
        });
        check(
            "tails on a replica equal the log",
            eight_writers_three_tails(c),
        )
        .await;
        check("read-your-writes with replay paused", read_your_writes(c)).await;
        check("a replica stopped mid-tail", replica_stopped_mid_tail(c)).await;
        check("health and lag", health_and_lag(c)).await;
        check(
            "a cached fold holds what one node had",
            cached_folds_see_one_node(c),
        )
        .await;
        check(
            "a projection catching up from the replicas applies each event once",
            projection_from_replicas(c),
        )
        .await;
    });
    drop(rt);
    drop(cluster);
}

async fn check(name: &str, f: impl Future<Output = ()>) {
    f.await;
    println!("replicas: {name}: ok");
}

/// A migrated store on a schema of its own: writes on the primary, reads on the standbys.
async fn store(cluster: &LocalCluster, consistency: Consistency) -> PgStore {
    let schema = format!("es_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let mut config = PgConfig::with_schema(&schema);
    config.pool_size = 24;
    config.replicas = Replicas {
        urls: cluster.standby_urls(),
        consistency,
        probe_interval: Duration::from_millis(20),
        ..Replicas::default()
    };
    let store = PgStore::connect(&cluster.primary_url(), config)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn ev(ns: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(ns, "T", data)
}

async fn append(store: &PgStore, stream: &str, events: Vec<NewEvent>) -> Vec<RecordedEvent> {
    let batch = AppendBatch::new(stream, ExpectedVersion::Any, events).expect("batch");
    store.append(batch).await.expect("append").events
}

/// The whole log after `after`, read on the primary.
async fn log_on_primary(store: &PgStore, after: Position) -> Vec<RecordedEvent> {
    let primary = store.reading(Consistency::Primary);
    let mut cursor = LogCursor::with_page(after, 1000);
    let mut out = Vec::new();
    loop {
        let page = cursor.next_page(&primary).await.expect("read the log");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// A live tail of `es` from `after` until it has `n` events (errors are yielded and the tail
/// goes on; they are counted).
async fn tail_n(store: PgStore, poll: Duration, after: Position, n: usize) -> Vec<RecordedEvent> {
    let es = EventStore::from_store(store).with_poll_interval(poll);
    let mut tail = Box::pin(es.tail(after, None));
    let mut seen = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, tail.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            Ok(Some(Err(e))) => eprintln!("tail: a read failed and is retried: {e}"),
            Ok(None) => panic!("a live tail ended"),
            Err(e) => panic!("the tail saw {} of {n} events: {e}", seen.len()),
        }
    }
    seen
}

fn assert_is_log(seen: &[RecordedEvent], log: &[RecordedEvent], who: &str) {
    let ids: HashSet<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), seen.len(), "{who}: no event twice");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "{who}: positions increase"
    );
    assert_eq!(seen, log, "{who}: the tail equals the log");
}

/// 8 writers on the primary, 3 live tails reading from the replicas: each tail is the log.
async fn eight_writers_three_tails(cluster: &LocalCluster) {
    let store = store(cluster, Consistency::Eventual).await;
    let (writers, batches) = (8usize, 40usize);
    let total = writers * batches * 2;
    let tails: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(tail_n(
                store.clone(),
                Duration::from_millis(500),
                Position::START,
                total,
            ))
        })
        .collect();
    let writing: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..batches {
                    let stream = format!("w{}-{}", w, i % 5);
                    let events = vec![
                        ev("rep", json!({"w": w, "i": i})),
                        ev("rep", json!({"w": w, "i": i, "second": true})),
                    ];
                    append(&store, &stream, events).await;
                }
            })
        })
        .collect();
    for w in writing {
        w.await.expect("writer");
    }
    let log = log_on_primary(&store, Position::START).await;
    assert_eq!(log.len(), total);
    for (i, t) in tails.into_iter().enumerate() {
        let seen = t.await.expect("tail");
        assert_is_log(&seen, &log, &format!("tail {i}"));
    }
    let served: u64 = store.replicas().iter().map(|r| r.reads).sum();
    assert!(served > 0, "the replicas served the tails' reads");
}

/// Replay paused on both standbys: an `After` read waits for the bound, then the primary
/// serves it; once replay resumes, a replica does.
async fn read_your_writes(cluster: &LocalCluster) {
    let store = store(cluster, Consistency::Eventual).await;
    let standbys = standby_clients(cluster).await;
    // Both standbys have the schema before replay stops.
    caught_up(cluster, &standbys).await;
    for s in &standbys {
        s.batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause");
    }
    let written = append(&store, "ryw", vec![ev("ryw", json!({"n": 1}))]).await;
    let at = written[0].position;
    let before = (store.reads_on_primary(), served(&store));
    let eventual = store
        .read_stream(&sid("ryw"), 0, event_store::Direction::Forward, 10)
        .await
        .expect("read");
    assert!(
        eventual.is_empty(),
        "an eventual read on a paused replica does not see the append yet"
    );
    assert_eq!(
        store.reads_on_primary(),
        before.0,
        "a replica served the eventual read"
    );
    assert!(
        served(&store) > before.1,
        "a replica served the eventual read"
    );
    let before = (store.reads_on_primary(), served(&store));
    let fresh = store.reading(Consistency::After(at));
    let read = fresh
        .read_stream(&sid("ryw"), 0, event_store::Direction::Forward, 10)
        .await
        .expect("read");
    assert_eq!(read, written, "read-your-writes sees the append");
    assert!(
        store.reads_on_primary() > before.0,
        "the primary served it after the wait"
    );
    assert_eq!(served(&store), before.1, "no paused replica served it");
    for s in &standbys {
        s.batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("resume");
    }
    let before = (store.reads_on_primary(), served(&store));
    let read = fresh
        .read_stream(&sid("ryw"), 0, event_store::Direction::Forward, 10)
        .await
        .expect("read");
    assert_eq!(read, written);
    assert_eq!(
        store.reads_on_primary(),
        before.0,
        "after resume the primary serves nothing"
    );
    assert!(served(&store) > before.1, "a replica served the read");
    // A session read sees this process's appends.
    let session = store.reading(Consistency::Session);
    let more = append(&store, "ryw", vec![ev("ryw", json!({"n": 2}))]).await;
    let read = session
        .read_stream(&sid("ryw"), 0, event_store::Direction::Forward, 10)
        .await
        .expect("read");
    assert_eq!(
        read.last(),
        more.last(),
        "a session read sees the session's append"
    );
}

fn sid(s: &str) -> event_store::StreamId {
    event_store::StreamId::new(s).expect("stream id")
}

/// Waits until every standby has replayed the primary's WAL as it is now.
async fn caught_up(cluster: &LocalCluster, standbys: &[tokio_postgres::Client]) {
    let (primary, conn) = tokio_postgres::connect(&cluster.primary_url(), tokio_postgres::NoTls)
        .await
        .expect("primary");
    tokio::spawn(conn);
    let row = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn");
    let lsn: String = row.get(0);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for s in standbys {
        loop {
            let row = s
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .await
                .expect("replay lsn");
            if row.get::<_, bool>(0) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a standby caught up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Waits (bounded) until the replicas' status is `ok`.
async fn until(
    store: &PgStore,
    what: &str,
    ok: impl Fn(&[event_store_postgres::ReplicaStatus]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = store.replicas();
        if ok(&now) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn served(store: &PgStore) -> u64 {
    store.replicas().iter().map(|r| r.reads).sum()
}

async fn standby_clients(cluster: &LocalCluster) -> Vec<tokio_postgres::Client> {
    let mut out = Vec::new();
    for url in cluster.standby_urls() {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("standby");
        tokio::spawn(conn);
        out.push(client);
    }
    out
}

/// A standby stopped while a tail reads from it: the tail goes on from the other standby or the
/// primary without a gap; started again, it serves reads again.
async fn replica_stopped_mid_tail(cluster: &LocalCluster) {
    let store = store(cluster, Consistency::Eventual).await;
    let total = 600;
    let tail = tokio::spawn(tail_n(
        store.clone(),
        Duration::from_millis(200),
        Position::START,
        total,
    ));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..total / 2 {
                append(
                    &store,
                    &format!("stop-{}", i % 7),
                    vec![
                        ev("stop", json!({"i": i})),
                        ev("stop", json!({"i": i, "b": 1})),
                    ],
                )
                .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop_standby(0).expect("stop standby 0");
    writer.await.expect("writer");
    let log = log_on_primary(&store, Position::START).await;
    assert_eq!(log.len(), total);
    let seen = tail.await.expect("tail");
    assert_is_log(&seen, &log, "the tail across the stop");
    let down = store.replicas();
    assert!(!down[0].healthy, "the stopped standby is skipped: {down:?}");
    cluster.start_standby(0).expect("start standby 0");
    until(&store, "the restarted standby became healthy", |r| {
        r[0].healthy
    })
    .await;
    let before = store.replicas()[0].reads;
    for _ in 0..4 {
        store.read_all(Position::START, 10).await.expect("read");
    }
    assert!(
        store.replicas()[0].reads > before,
        "the restarted standby serves reads again"
    );
}

/// Each standby's health and lag are reported; a standby lagging beyond the bound is skipped.
async fn health_and_lag(cluster: &LocalCluster) {
    let store = store(cluster, Consistency::Eventual).await;
    until(&store, "both standbys healthy", |r| {
        r.iter().all(|r| r.healthy)
    })
    .await;
    for r in store.replicas() {
        assert!(r.reachable && r.lag.is_some(), "{r:?}");
        assert!(
            r.name.starts_with("127.0.0.1:"),
            "a name without credentials: {}",
            r.name
        );
    }
    // A store whose bound a paused standby exceeds at once.
    let mut config = PgConfig::with_schema("es_lag_probe");
    config.replicas = Replicas {
        urls: cluster.standby_urls(),
        max_lag: Duration::from_millis(200),
        probe_interval: Duration::from_millis(20),
        ..Replicas::default()
    };
    let strict = PgStore::connect(&cluster.primary_url(), config)
        .await
        .expect("connect");
    strict.migrate().await.expect("migrate");
    let standbys = standby_clients(cluster).await;
    caught_up(cluster, &standbys).await;
    standbys[1]
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause");
    // Keep the primary's WAL moving so the paused standby falls behind.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut i = 0;
    loop {
        append(&strict, "lag", vec![ev("lag", json!({"i": i}))]).await;
        i += 1;
        let now = strict.replicas();
        if !now[1].healthy
            && now[1].lag.is_some_and(|l| l > Duration::from_millis(200))
            && now[0].healthy
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the paused standby is skipped: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = strict.replicas()[1].reads;
    for _ in 0..8 {
        strict.read_all(Position::START, 10).await.expect("read");
    }
    assert_eq!(
        strict.replicas()[1].reads,
        before,
        "no read goes to the lagging standby"
    );
    standbys[1]
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume");
    until(&strict, "the standby came back once caught up", |r| {
        r[1].healthy
    })
    .await;
}

/// The case a watermark fence exists for. A transaction with a lower id commits after one with
/// a higher id, and one standby stops replaying between the two commits. A fold whose watermark
/// came from the standby that has both, and whose events came from the one that has only the
/// later id, would cache a state without the first event at a checkpoint past it — and every
/// fold from the cache would miss it for ever. Folds through the cache alternate between the
/// standbys here; after replay resumes, the cached fold equals the whole fold on the primary.
async fn cached_folds_see_one_node(cluster: &LocalCluster) {
    use event_store_testkit::{Added, KitCounter};
    let store = store(cluster, Consistency::Eventual).await;
    let schema = store.config().schema.clone();
    let cache = event_store_postgres::PgCache::new(&store);
    let es = EventStore::new(store.clone(), cache, event_store::NoEmitter);
    let standbys = standby_clients(cluster).await;
    let (early, conn) = tokio_postgres::connect(&cluster.primary_url(), tokio_postgres::NoTls)
        .await
        .expect("primary");
    tokio::spawn(conn);
    early
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\"; BEGIN; SELECT pg_current_xact_id()"
        ))
        .await
        .expect("an early transaction takes its id");
    let later = es.save("fence", &Added { n: 1 }).await.expect("save");
    caught_up(cluster, &standbys).await;
    standbys[1]
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause");
    let context = serde_json::to_value(&later.context).expect("context");
    early
        .query(
            "SELECT * FROM append_events('fence', -1, ARRAY[$1::uuid], ARRAY['kit-counter'], \
             ARRAY['Added'], ARRAY['{\"n\": 10}'::jsonb], ARRAY[$2::jsonb], ARRAY[now()])",
            &[&uuid::Uuid::now_v7(), &context],
        )
        .await
        .expect("the early transaction appends");
    early.batch_execute("COMMIT").await.expect("commit");
    caught_up(cluster, &standbys[..1]).await;
    let before = store.replicas();
    for _ in 0..8 {
        es.aggregate::<KitCounter>("fence").await.expect("fold");
    }
    let after = store.replicas();
    assert!(after[0].reads > before[0].reads, "standby 0 served folds");
    standbys[1]
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume");
    caught_up(cluster, &standbys).await;
    let whole = EventStore::from_store(store.reading(Consistency::Primary))
        .aggregate::<KitCounter>("fence")
        .await
        .expect("whole fold");
    assert_eq!((whole.total, whole.count), (11, 2));
    for _ in 0..4 {
        let cached = es.fold::<KitCounter>("fence").await.expect("cached fold");
        assert_eq!(cached.state, whole, "the cached fold has both events");
    }
}

/// A transactional projection (the kit's ledger) reading the log from the replicas, its state
/// and checkpoints written on the primary: caught up over events written before it started and
/// while it ran, stopped halfway and started again, it holds each event exactly once.
async fn projection_from_replicas(cluster: &LocalCluster) {
    use event_store_postgres::Transactional;
    use event_store_testkit::ledger::{self, FailOn, ledger_options};
    let store = store(cluster, Consistency::Eventual).await;
    ledger::write_deposits(&store, 4, 150, 8, 7).await;
    let served_before = served(&store);
    let run = || {
        EventStore::from_store(store.clone())
            .runner(Transactional::new(common::ledger::Ledger::<1> {
                fail_on: FailOn::default(),
            }))
            .with_options(ledger_options(2))
            .spawn()
    };
    let first = run();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while common::ledger::read_ledger(&store).await.0.len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection started applying"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.stop().await.expect("stop the first runner");
    let second = run();
    ledger::write_deposits(&store, 4, 50, 8, 11).await;
    let log = log_on_primary(&store, Position::START).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (rows, _) = common::ledger::read_ledger(&store).await;
        if rows.len() >= log.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection caught up: {} of {}",
            rows.len(),
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.stop().await.expect("stop the second runner");
    let (rows, totals) = common::ledger::read_ledger(&store).await;
    ledger::check_ledger(&store.reading(Consistency::Primary), &rows, &totals, 1).await;
    assert!(
        served(&store) > served_before,
        "the replicas served the projection's reads"
    );
}
