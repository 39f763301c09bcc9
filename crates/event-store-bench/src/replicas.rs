//! Reads from streaming replicas (issue 18), on a private primary with two hot standbys started
//! for the run from the PostgreSQL server binaries (`LocalCluster`: initdb + pg_basebackup on
//! loopback ports, stopped and removed afterwards). Every server of that cluster runs on this
//! machine, so the figures say what routing costs and spreads, not what separate hardware adds.
//!
//! - **Global-log reads**: 4 readers each read the whole log through `read_all_rows` pages; on
//!   the primary alone (`Consistency::Primary`) against the same readers through a store whose
//!   reads go to the 2 standbys.
//! - **Appends under read load**: 8 writers append one event per call, alone, then while 4
//!   readers keep reading the log from the standbys.

use std::time::{Duration, Instant};

use event_store::{AppendBatch, ExpectedVersion, MultiAppend, NewEvent, Position, Store};
use event_store_postgres::cluster::{LocalCluster, server_binaries};
use event_store_postgres::{Consistency, PgConfig, PgStore, Replicas};
use futures::StreamExt as _;
use serde_json::json;

use crate::error::{BenchError, Context as _, Result, ensure};
use crate::report::{Goal, Report, Sizes, rate};

const READERS: usize = 4;
const WRITERS: usize = 8;
const CHUNK: usize = 4096;

/// Runs the replica rows, or says why not (no server binaries).
pub(crate) async fn run(report: &mut Report, sizes: Sizes) -> Result<()> {
    if server_binaries().is_none() {
        eprintln!(
            "  replicas: skipped (no PostgreSQL server binaries: initdb and pg_basebackup; set EVENT_STORE_PG_BIN)"
        );
        return Ok(());
    }
    eprintln!("  replicas: starting a primary and 2 hot standbys");
    let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(2))
        .await
        .context("starting the cluster")?
        .context("starting a primary and 2 standbys")?;
    let result = measure(report, &cluster, sizes).await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .context("stopping the cluster")?;
    result
}

async fn measure(report: &mut Report, cluster: &LocalCluster, sizes: Sizes) -> Result<()> {
    let mut config = PgConfig::with_schema("bench_replicas");
    config.pool_size = 16;
    config.replicas = Replicas {
        urls: cluster.standby_urls(),
        ..Replicas::default()
    };
    let store = PgStore::connect(&cluster.primary_url(), config)
        .await
        .context("connecting to the cluster")?;
    store.migrate().await.context("migrating")?;
    let events = sizes.stream;
    seed(&store, events).await?;
    wait_healthy(&store).await?;
    read_rows(report, cluster, &store, events).await?;
    append_rows(report, cluster, &store, events, sizes).await
}

/// The readers on the primary alone, then on the replicas, twice: rates and CPU per event.
async fn read_rows(
    report: &mut Report,
    cluster: &LocalCluster,
    store: &PgStore,
    events: usize,
) -> Result<()> {
    let on_primary = store.reading(Consistency::Primary);
    let (mut primary, mut replicas) = (0f64, 0f64);
    let (mut primary_cpu, mut replica_cpu) = (Cpu::default(), Cpu::default());
    // What the primary spends while the replicas serve the readers, and the readers themselves.
    let (mut primary_idle_cpu, mut client_cpu) = (Cpu::default(), Cpu::default());
    let n = READERS * events;
    for _ in 0..2 {
        let before = cpu(cluster)?;
        primary = primary.max(readers(&on_primary, events).await?);
        let between = cpu(cluster)?;
        replicas = replicas.max(readers(store, events).await?);
        let after = cpu(cluster)?;
        primary_cpu.add(since(between.servers[0], before.servers[0]), n);
        let standbys = |c: &CpuNow| c.servers[1..].iter().sum::<Duration>();
        replica_cpu.add(since(standbys(&after), standbys(&between)), n);
        client_cpu.add(since(after.client, between.client), n);
        primary_idle_cpu.add(since(after.servers[0], between.servers[0]), n);
    }
    let served: u64 = store.replicas().iter().map(|r| r.reads).sum();
    ensure(served > 0, "the standbys served no read")?;
    report.add(
        "replica_read",
        &format!("global-log read, {READERS} readers, 2 replicas (vs the primary alone)"),
        "postgres",
        replicas,
        "ev/s",
        Some(primary),
        true,
        Goal::Ratio(1.6),
    );
    // A share rather than a ratio: the primary may spend nothing measurable at all.
    report.add(
        "replica_read_primary_share",
        "primary CPU for the reads the replicas serve, as a share of serving them itself",
        "postgres",
        100.0 * primary_idle_cpu.micros_per_event()
            / primary_cpu.micros_per_event().max(f64::MIN_POSITIVE),
        "%",
        None,
        false,
        Goal::None,
    );
    let mut row = |key, workload: &str, value: &Cpu, baseline: Option<&Cpu>| {
        report.add(
            key,
            workload,
            "postgres",
            value.micros_per_event(),
            "µs/ev",
            baseline.map(Cpu::micros_per_event),
            false,
            Goal::None,
        );
    };
    row(
        "replica_read_server_cpu",
        "server CPU per event read: the 2 replicas (vs the primary alone)",
        &replica_cpu,
        Some(&primary_cpu),
    );
    row(
        "replica_read_client_cpu",
        "client CPU per event read (decoding; 4 readers in one process)",
        &client_cpu,
        None,
    );
    Ok(())
}

/// The writers alone, then while the readers keep reading the log from the replicas, twice:
/// rates and the primary's CPU per append.
async fn append_rows(
    report: &mut Report,
    cluster: &LocalCluster,
    store: &PgStore,
    events: usize,
    sizes: Sizes,
) -> Result<()> {
    let per_writer = (sizes.concurrent / WRITERS).max(10);
    let n = WRITERS * per_writer;
    let (mut alone, mut loaded) = (0f64, 0f64);
    let (mut alone_cpu, mut loaded_cpu) = (Cpu::default(), Cpu::default());
    for _ in 0..2 {
        let before = cpu(cluster)?;
        alone = alone.max(writers(store, per_writer, "alone").await?);
        alone_cpu.add(since(cpu(cluster)?.servers[0], before.servers[0]), n);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load: Vec<_> = (0..READERS)
            .map(|_| {
                let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        read_log(&store, events).await?;
                    }
                    Ok::<_, BenchError>(())
                })
            })
            .collect();
        let before = cpu(cluster)?;
        let rate = writers(store, per_writer, "loaded").await;
        loaded_cpu.add(since(cpu(cluster)?.servers[0], before.servers[0]), n);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for l in load {
            l.await.context("a reader")??;
        }
        loaded = loaded.max(rate?);
    }
    report.add(
        "replica_append_loaded",
        &format!(
            "{WRITERS} writers appending while {READERS} readers load the replicas (vs no readers)"
        ),
        "postgres",
        loaded,
        "ev/s",
        Some(alone),
        true,
        Goal::Ratio(0.9),
    );
    report.add(
        "replica_append_primary_cpu",
        "primary CPU per append while readers load the replicas (vs no readers)",
        "postgres",
        loaded_cpu.micros_per_event(),
        "µs/ev",
        Some(alone_cpu.micros_per_event()),
        false,
        Goal::None,
    );
    Ok(())
}

/// CPU time between two readings (a process that exited between them and was not yet reaped
/// can make the second one smaller: then none).
fn since(after: Duration, before: Duration) -> Duration {
    after.saturating_sub(before)
}

/// `n` events over 100 streams, appended in multi-stream batches of 1 000.
async fn seed(store: &PgStore, n: usize) -> Result<()> {
    let mut done = 0;
    while done < n {
        let size = (n - done).min(1000);
        let mut batches = Vec::new();
        for s in 0..100 {
            let events: Vec<NewEvent> = (0..size)
                .filter(|i| i % 100 == s)
                .map(|i| {
                    NewEvent::new(
                        "bench",
                        "Seeded",
                        json!({"i": done + i, "pad": "x".repeat(80)}),
                    )
                })
                .collect();
            if !events.is_empty() {
                batches.push(AppendBatch::new(
                    format!("seed-{s}"),
                    ExpectedVersion::Any,
                    events,
                )?);
            }
        }
        store.append_many(MultiAppend::new(batches)?).await?;
        done += size;
    }
    Ok(())
}

/// Waits until both standbys serve reads and have every seeded event.
async fn wait_healthy(store: &PgStore) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let head = event_store::head(&store.reading(Consistency::Primary)).await?;
    loop {
        let healthy = store.replicas().iter().all(|r| r.healthy);
        if healthy && event_store::head(store).await? >= head {
            return Ok(());
        }
        ensure(
            Instant::now() < deadline,
            "the standbys did not catch up in 60 s",
        )?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the whole log (`n` events) a chunk at a time; returns how many it read.
async fn read_log(store: &PgStore, n: usize) -> Result<usize> {
    let mut after = Position::START;
    let mut read = 0;
    loop {
        let mut rows = Box::pin(store.read_all_rows(after, CHUNK));
        let mut got = 0;
        while let Some(e) = rows.next().await {
            let e = e?;
            after = e.position;
            got += 1;
        }
        read += got;
        if got < CHUNK || read >= n {
            return Ok(read);
        }
    }
}

/// [`READERS`] concurrent readers of the whole log: events per second over all of them.
async fn readers(store: &PgStore, n: usize) -> Result<f64> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..READERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { read_log(&store, n).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.context("a reader")??;
    }
    ensure(
        total >= READERS * n,
        format!("the readers read {total} of {} events", READERS * n),
    )?;
    Ok(rate(total, started.elapsed()))
}

/// [`WRITERS`] concurrent writers, `per_writer` single-event appends each: events per second.
async fn writers(store: &PgStore, per_writer: usize, tag: &'static str) -> Result<f64> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let batch = AppendBatch::new(
                        format!("w-{tag}-{w}"),
                        ExpectedVersion::Any,
                        vec![NewEvent::new("bench", "Written", json!({"i": i}))],
                    )?;
                    store.append(batch).await?;
                }
                Ok::<_, BenchError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.context("a writer")??;
    }
    Ok(rate(WRITERS * per_writer, started.elapsed()))
}

/// CPU time so far: each server of the cluster (primary first) and this process.
struct CpuNow {
    servers: Vec<Duration>,
    client: Duration,
}

fn cpu(cluster: &LocalCluster) -> Result<CpuNow> {
    Ok(CpuNow {
        servers: cluster
            .cpu_times()
            .context("reading the servers' CPU time")?,
        client: event_store_postgres::cluster::own_cpu_time().context("reading our CPU time")?,
    })
}

/// CPU time spent over events, summed over runs.
#[derive(Default)]
struct Cpu {
    time: Duration,
    events: usize,
}

impl Cpu {
    fn add(&mut self, time: Duration, events: usize) {
        self.time += time;
        self.events += events;
    }

    fn micros_per_event(&self) -> f64 {
        self.time.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }
}
