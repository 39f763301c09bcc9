//! Scenarios for transactional read models, with runner processes killed and replaced: the
//! adapter provides a *ledger* projection on its own database (one row per applied event, in
//! applied order, and a total per stream) and ways to run it, in this process or in child
//! processes; the scenarios check the model against the log, exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::process::Child;
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use event_store::projection::{
    ProjectionState, ProjectionStore, RunnerHandle, RunnerOptions, partition_of,
};
use event_store::{
    BoxError, EventStore, ExpectedVersion, NewEvent, Position, Query, RecordedEvent, RetryPolicy,
    Store,
};
use futures::StreamExt as _;
use serde_json::json;
use uuid::Uuid;

use crate::support::{PATIENCE, Rng};

/// The environment variable that makes a test binary a child runner (see [`child_role`]).
pub const CHILD_ROLE: &str = "EVENT_STORE_KIT_CHILD";

/// The ledger projection's name.
pub const LEDGER: &str = "kit-ledger";

/// The streams the ledger reads (`{LEDGER_PREFIX}{n}`).
pub const LEDGER_PREFIX: &str = "kit-acct-";

/// The events the ledger applies: `kit-bank.Deposited {"amount": n}`.
pub fn deposit(amount: i64) -> NewEvent {
    NewEvent::new("kit-bank", "Deposited", json!({ "amount": amount }))
}

/// What the ledger projection reads.
pub fn ledger_query() -> Query {
    Query::stream_prefix(LEDGER_PREFIX).event_type("kit-bank", "Deposited")
}

/// The runner options of the ledger scenarios: short intervals and small batches, so kills land
/// between and inside batches, and three quick attempts before a partition parks.
pub fn ledger_options(partitions: u32) -> RunnerOptions {
    RunnerOptions::default()
        .partitions(partitions)
        .batch(16, Duration::from_millis(5))
        .intervals(Duration::from_millis(100), Duration::from_millis(20))
        .retry(RetryPolicy {
            max_attempts: 3,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
}

/// The one event a ledger refuses (shared by its runs in this process), for the parking
/// scenario.
#[derive(Debug, Clone, Default)]
pub struct FailOn(Arc<Mutex<Option<Uuid>>>);

impl FailOn {
    /// Refuse `event` from now on (`None`: refuse nothing).
    pub fn set(&self, event: Option<Uuid>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = event;
    }

    /// An error when `event` is the refused one: what the ledger's `apply` returns first.
    pub fn check(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        if *self.0.lock().unwrap_or_else(PoisonError::into_inner) == Some(event.id) {
            return Err(format!("kit: broken event {}", event.id).into());
        }
        Ok(())
    }
}

/// The `main` of a ledger test binary (`harness = false`): in a child started by
/// [`spawn_child`], runs `child` (the ledger until killed); otherwise runs every scenario on a
/// fresh backend from `backend` each (`None`: the service is unreachable, and the scenario is
/// reported skipped; [`require_service`](crate::require_service) decides that).
pub fn ledger_main<B, C, F, BF>(child: C, backend: BF)
where
    B: LedgerBackend,
    C: Future<Output = ()>,
    BF: Fn() -> F,
    F: Future<Output = Option<B>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if child_role().is_some() {
        rt.block_on(child);
        return;
    }
    rt.block_on(async {
        macro_rules! scenario {
            ($name:literal, $run:expr) => {
                match backend().await {
                    Some(b) => {
                        println!("test {} ...", $name);
                        $run(&b).await;
                        println!("test {} ... ok", $name);
                    }
                    None => println!("test {} ... skipped", $name),
                }
            };
        }
        scenario!("ledger_survives_kills", |b| ledger_survives_kills(b, 5));
        scenario!(
            "ledger_partitions_move_to_the_survivor",
            ledger_partitions_move_to_the_survivor
        );
        scenario!("ledger_rebuilds_blue_green", ledger_rebuilds_blue_green);
        scenario!("ledger_parks_and_resumes", ledger_parks_and_resumes);
    });
}

/// The role this process was started in by [`spawn_child`] (`None`: not a child).
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE).ok()
}

/// Starts this test binary again, as a child in `role`, with `env` added.
pub fn spawn_child(role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.env(CHILD_ROLE, role)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start a child runner")
}

/// One row of the ledger's applied-events table, in applied order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The event's stream.
    pub stream: String,
    /// The event's version.
    pub version: u64,
    /// Its amount.
    pub amount: i64,
    /// The process that applied it.
    pub pid: u32,
    /// The projection version that applied it.
    pub model: u32,
}

/// One row of the ledger's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// The stream.
    pub stream: String,
    /// Events applied.
    pub events: i64,
    /// Their amounts' sum.
    pub total: i64,
    /// The projection version that wrote it.
    pub model: u32,
}

/// What an adapter provides to run the ledger scenarios.
pub trait LedgerBackend: Send + Sync + 'static {
    /// The store.
    type Store: ProjectionStore;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// Runs the ledger (`version` 1 or 2) in this process with `partitions` partitions, failing
    /// on the event `fail_on` while it is set.
    fn run(&self, version: u32, partitions: u32, fail_on: Option<Uuid>) -> RunnerHandle;

    /// Makes the running ledger stop failing (see [`LedgerBackend::run`]).
    fn heal(&self);

    /// Starts a child process that runs the ledger (version 1) with `partitions` partitions
    /// until killed.
    fn spawn_runner(&self, partitions: u32) -> Child;

    /// The ledger's rows in applied order and its totals, as readers see them (its views).
    fn read(&self) -> impl Future<Output = (Vec<LedgerRow>, Vec<Totals>)> + Send;
}

/// Appends `per_writer` deposits from each of `writers` concurrent writers to `streams` streams
/// (each writer to every stream in turn); returns the last position written.
pub async fn write_deposits<S: Store + Clone>(
    store: &S,
    writers: usize,
    per_writer: usize,
    streams: usize,
    seed: u64,
) -> Position {
    // Nobody stops these writers: the sender's last value stays `false`.
    let (_, never) = tokio::sync::watch::channel(false);
    deposits(
        store,
        writers,
        streams,
        per_writer,
        Duration::ZERO,
        seed,
        never,
    )
    .await
}

/// Appends deposits from `writers` concurrent writers, each pausing `pause` between appends,
/// until `stop` turns true (at most `cap` each); returns the last position written.
pub async fn write_deposits_until<S: Store + Clone>(
    store: &S,
    writers: usize,
    streams: usize,
    pause: Duration,
    cap: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Position {
    deposits(store, writers, streams, cap, pause, 100, stop).await
}

/// `writers` concurrent writers each append up to `cap` deposits (writer `w` to stream
/// `(w + i * writers) % streams` in turn, amounts drawn from `seed + w + 1`), pausing `pause`
/// after each, until `stop` turns true; returns the last position written.
async fn deposits<S: Store + Clone>(
    store: &S,
    writers: usize,
    streams: usize,
    cap: usize,
    pause: Duration,
    seed: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Position {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let es = EventStore::from_store(store.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(seed + w as u64 + 1);
                let mut last = Position::START;
                for i in 0..cap {
                    if *stop.borrow() {
                        break;
                    }
                    let stream = format!("{LEDGER_PREFIX}{}", (w + i * writers) % streams);
                    let amount = i64::try_from(rng.below(100)).expect("small") + 1;
                    let saved = es
                        .append(&stream, ExpectedVersion::Any, vec![deposit(amount)])
                        .await
                        .expect("deposit");
                    last = last.max(saved.last_position().unwrap_or(last));
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                last
            })
        })
        .collect();
    let mut last = Position::START;
    for t in tasks {
        last = last.max(t.await.expect("writer"));
    }
    last
}

/// The ledger's events in the log.
async fn log<S: Store + Clone>(store: &S) -> Vec<RecordedEvent> {
    let es = EventStore::from_store(store.clone());
    es.follow(Position::START, ledger_query())
        .map(|e| e.expect("read the log"))
        .collect()
        .await
}

/// Checks the ledger against the log: each event applied exactly once, each stream in version
/// order, every total the fold of its stream — all by projection version `model`.
pub async fn check_ledger<S: Store + Clone>(
    store: &S,
    rows: &[LedgerRow],
    totals: &[Totals],
    model: u32,
) {
    let log = log(store).await;
    let mut seen: HashSet<(&str, u64)> = HashSet::new();
    let mut next: HashMap<&str, u64> = HashMap::new();
    for r in rows {
        assert!(
            seen.insert((&r.stream, r.version)),
            "{} version {} applied twice",
            r.stream,
            r.version
        );
        let expected = next.entry(&r.stream).or_insert(0);
        assert_eq!(
            r.version, *expected,
            "{} applied version {} where {} was next",
            r.stream, r.version, expected
        );
        *expected += 1;
        assert_eq!(r.model, model, "every row by version {model}");
    }
    assert_eq!(rows.len(), log.len(), "every event applied, none twice");
    let mut fold: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for e in &log {
        let amount = e.data["amount"].as_i64().expect("amount");
        let t = fold.entry(&e.stream).or_insert((0, 0));
        t.0 += 1;
        t.1 += amount;
    }
    let got: BTreeMap<&str, (i64, i64)> = totals
        .iter()
        .map(|t| (t.stream.as_str(), (t.events, t.total)))
        .collect();
    assert_eq!(got, fold, "the totals are the fold of the log");
    assert!(totals.iter().all(|t| t.model == model));
}

/// A ledger runner process is killed with SIGKILL at random points, `kills` times, while 8
/// writers append; a runner started afterwards brings the ledger to the end of the log, where
/// it equals the fold of the whole log exactly: no event missed, none applied twice.
pub async fn ledger_survives_kills<B: LedgerBackend>(b: &B, kills: u32) {
    let store = b.store().clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers = tokio::spawn(async move {
        write_deposits_until(&store, 8, 24, Duration::from_millis(2), 2_000, stopped).await
    });
    let mut rng = Rng::new(11);
    for _ in 0..kills {
        let mut child = b.spawn_runner(2);
        tokio::time::sleep(Duration::from_millis(300 + rng.below(400))).await;
        child.kill().expect("SIGKILL the runner");
        child.wait().expect("reap the runner");
    }
    stop.send_replace(true);
    let last = writers.await.expect("writers");
    let (rows, _) = b.read().await;
    let killed: HashSet<u32> = rows.iter().map(|r| r.pid).collect();
    assert!(
        killed.len() >= 3,
        "killed runners had applied batches ({} processes did)",
        killed.len()
    );
    let runner = b.run(1, 2, None);
    let projections = EventStore::from_store(b.store().clone()).projections();
    projections
        .wait_for(LEDGER, last, PATIENCE)
        .await
        .expect("the restarted runner catches up");
    runner.stop().await.expect("stop");
    let (rows, totals) = b.read().await;
    check_ledger(b.store(), &rows, &totals, 1).await;
}

/// Two runner processes share 4 partitions; one is killed; the survivor takes its partitions
/// over; every stream's versions are applied in order, each once.
pub async fn ledger_partitions_move_to_the_survivor<B: LedgerBackend>(b: &B) {
    let mut first = b.spawn_runner(4);
    let survivor = b.spawn_runner(4);
    // Paced writers keep events coming until both runners have applied some: either may start
    // first and take every partition until the other joins and the share is rebalanced.
    let store = b.store().clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers = tokio::spawn(async move {
        write_deposits_until(&store, 8, 32, Duration::from_millis(2), 2_000, stopped).await
    });
    // Both work: each has applied events (its share of the partitions).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (a, s) = (first.id(), survivor.id());
    loop {
        let (rows, _) = b.read().await;
        let pids: HashSet<u32> = rows.iter().map(|r| r.pid).collect();
        if pids.contains(&a) && pids.contains(&s) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both runners should apply events (saw {pids:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    let last = writers.await.expect("writers");
    first.kill().expect("SIGKILL one runner");
    first.wait().expect("reap");
    let (applied, _) = b.read().await;
    let before: HashSet<(String, u64)> =
        applied.into_iter().map(|r| (r.stream, r.version)).collect();
    let last = last.max(write_deposits(b.store(), 8, 40, 32, 22).await);
    let projections = EventStore::from_store(b.store().clone()).projections();
    projections
        .wait_for(LEDGER, last, PATIENCE)
        .await
        .expect("the survivor catches up alone");
    let status = projections
        .status(LEDGER)
        .await
        .expect("status")
        .expect("known");
    let active = status.active.expect("active");
    assert!(
        active.partitions.iter().all(|p| p.running),
        "the survivor holds every partition: {active:?}"
    );
    let mut survivor = survivor;
    survivor.kill().expect("stop the survivor");
    survivor.wait().expect("reap");
    let (rows, totals) = b.read().await;
    check_ledger(b.store(), &rows, &totals, 1).await;
    let after: Vec<&LedgerRow> = rows
        .iter()
        .filter(|r| !before.contains(&(r.stream.clone(), r.version)))
        .collect();
    let taken: HashSet<u32> = after
        .iter()
        .filter(|r| r.pid == s)
        .map(|r| partition_of(&r.stream, 4))
        .collect();
    assert_eq!(
        taken.len(),
        4,
        "the survivor applies every partition after the kill"
    );
    assert!(
        after.iter().all(|r| r.pid != a),
        "the killed runner applies nothing after its death"
    );
}

/// A rebuild (version 2) while writers append: readers see version 1's model until the switch,
/// then version 2's, complete (it had caught up with everything written before it started);
/// never a mix, never a partial one; in the end version 2's model is the fold of the log.
pub async fn ledger_rebuilds_blue_green<B: LedgerBackend>(b: &B) {
    let last = write_deposits(b.store(), 4, 50, 16, 31).await;
    let v1 = b.run(1, 2, None);
    let projections = EventStore::from_store(b.store().clone()).projections();
    projections
        .wait_for(LEDGER, last, PATIENCE)
        .await
        .expect("version 1 catches up");
    v1.stop().await.expect("stop v1");
    let (rows, _) = b.read().await;
    let before = rows.len();

    // Version 2 rebuilds while writers append and a reader watches.
    let v2 = b.run(2, 2, None);
    let store = b.store().clone();
    let writers = tokio::spawn(async move { write_deposits(&store, 8, 30, 16, 32).await });
    let mut saw_v1 = 0;
    let mut saw_v2 = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while saw_v2.is_none() {
        let (rows, totals) = b.read().await;
        let models: HashSet<u32> = rows
            .iter()
            .map(|r| r.model)
            .chain(totals.iter().map(|t| t.model))
            .collect();
        assert!(
            models.len() <= 1,
            "readers never see two models mixed: {models:?}"
        );
        match models.into_iter().next() {
            Some(2) => saw_v2 = Some(rows.len()),
            _ => {
                assert!(rows.len() >= before, "the old model is never partial");
                saw_v1 += 1;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "version 2 never switched in"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        saw_v1 > 0,
        "readers saw the old model while the new one was built"
    );
    let first_v2 = saw_v2.unwrap_or_default();
    assert!(
        first_v2 >= before,
        "the new model was complete when it switched in ({first_v2} of at least {before} events)"
    );
    let last = writers.await.expect("writers").max(last);
    projections
        .wait_for(LEDGER, last, PATIENCE)
        .await
        .expect("version 2 catches up");
    v2.stop().await.expect("stop v2");
    let (rows, totals) = b.read().await;
    check_ledger(b.store(), &rows, &totals, 2).await;
    let status = projections
        .status(LEDGER)
        .await
        .expect("status")
        .expect("known");
    assert!(status.building.is_none());
    assert_eq!(status.active.map(|g| g.version), Some(2));
}

/// A handler that fails on one event: its partition parks with the event's id and error, and
/// nothing of the failing batch is kept; the other partition goes on; after the fix, `resume`
/// continues from that event, and the ledger is exact.
pub async fn ledger_parks_and_resumes<B: LedgerBackend>(b: &B) {
    let last = write_deposits(b.store(), 4, 40, 16, 41).await;
    let es = EventStore::from_store(b.store().clone());
    let bad = es
        .follow(Position::START, ledger_query())
        .map(|e| e.expect("read"))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .nth(37)
        .expect("enough events");
    let runner = b.run(1, 2, Some(bad.id));
    let projections = es.projections();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let status = loop {
        let status = projections.status(LEDGER).await.expect("status");
        if let Some(s) = status.filter(|s| s.state == ProjectionState::Parked) {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partition never parked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let active = status.active.expect("active");
    let parked: Vec<_> = active
        .partitions
        .iter()
        .filter(|p| p.parked.is_some())
        .collect();
    assert_eq!(parked.len(), 1, "one partition parks");
    let why = parked[0].parked.as_ref().expect("parked");
    assert_eq!(why.event_id, bad.id);
    assert_eq!(why.position, bad.position);
    assert!(why.error.contains("kit: broken event"), "{}", why.error);
    assert_eq!(parked[0].partition, partition_of(&bad.stream, 2));
    // The other partition reaches the end meanwhile.
    let other = 1 - parked[0].partition;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = projections
            .status(LEDGER)
            .await
            .expect("status")
            .expect("known");
        let done = s.active.is_some_and(|g| {
            g.partitions
                .iter()
                .any(|p| p.partition == other && p.lag_events == 0)
        });
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other partition stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (rows, _) = b.read().await;
    assert!(
        !rows
            .iter()
            .any(|r| r.stream == bad.stream && r.version >= bad.version),
        "nothing at or after the failing event of its stream is applied"
    );
    b.heal();
    assert_eq!(projections.resume(LEDGER, None).await.expect("resume"), 1);
    projections
        .wait_for(LEDGER, last, PATIENCE)
        .await
        .expect("caught up after resume");
    runner.stop().await.expect("stop");
    let (rows, totals) = b.read().await;
    check_ledger(b.store(), &rows, &totals, 1).await;
}
