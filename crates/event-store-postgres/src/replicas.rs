//! Reads from streaming replicas: which node serves a read, their health, and the wake-ups.
//!
//! Every statement of the shared SQL layer says where it may run ([`Routing`]). Writes,
//! checkpoints, keys, the cache and projections' own state always go to the primary; reads of
//! the log go to a healthy replica when the handle's [`Consistency`] allows it, and to the
//! primary when none can serve them. design.md §7.28 gives the reasoning.

use std::collections::VecDeque;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use event_store::{Error, Position, Result};
use event_store_sql::{Routing, Statement};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, RowStream};

use crate::error::{BACKEND, pg, pool_error};
use crate::query::as_sql;

/// The streaming replicas a [`PgStore`](crate::PgStore) reads from, and how
/// ([`PgConfig::replicas`](crate::PgConfig::replicas)).
#[derive(Debug, Clone)]
pub struct Replicas {
    /// The replicas' connection strings (hot standbys of the primary, streaming from it). Empty
    /// (the default): every read goes to the primary.
    pub urls: Vec<String>,
    /// A replica further behind the primary than this is skipped until it catches up (default
    /// 5 s). The lag is time: how long ago the primary's WAL passed the replica's replay point.
    pub max_lag: Duration,
    /// How long a read with [`Consistency::After`] or [`Consistency::Session`] waits for a
    /// replica to have what it must see before the primary serves it (default 500 ms).
    pub wait: Duration,
    /// How often each replica's health and replay point are checked (default 100 ms). A
    /// replica's advance wakes this process's tails: they need no `LISTEN` on the standby.
    pub probe_interval: Duration,
    /// The consistency of reads through handles that do not choose one (default
    /// [`Consistency::Eventual`]); [`PgStore::reading`](crate::PgStore::reading) chooses per
    /// call site.
    pub consistency: Consistency,
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            max_lag: Duration::from_secs(5),
            wait: Duration::from_millis(500),
            probe_interval: Duration::from_millis(100),
            consistency: Consistency::Eventual,
        }
    }
}

/// What a read must see, and so which node may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any healthy replica (within [`Replicas::max_lag`]), else the primary: the read sees a
    /// recent state of the log, every guarantee of the log kept (a replica's final events are
    /// final; a tail never skips or repeats), but perhaps not the latest appends.
    #[default]
    Eventual,
    /// Read-your-writes: only a node that has the transaction of this position (an append's
    /// [`Appended::last_position`](event_store::Appended::last_position)) committed. A replica
    /// is waited for up to [`Replicas::wait`], then the primary serves the read.
    After(Position),
    /// Read-your-writes for this process: only a node that has every write made through this
    /// store (any of its handles) before the read — appends, checked by their transactions, and
    /// the other writes reads of the log see (closing or reopening a stream, migrations), which
    /// make the read wait for the primary's WAL position of that moment. A replica is waited for up to
    /// [`Replicas::wait`], then the primary serves the read.
    Session,
    /// The primary only.
    Primary,
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eventual => f.write_str("eventual"),
            Self::After(p) => write!(f, "after {p}"),
            Self::Session => f.write_str("session"),
            Self::Primary => f.write_str("primary"),
        }
    }
}

/// A replica as [`PgStore::replicas`](crate::PgStore::replicas) reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// `host:port/database` of the replica (never its password).
    pub name: String,
    /// Whether reads go to it now: reachable, in recovery (still a standby) and within the lag.
    pub healthy: bool,
    /// Whether the last check reached it.
    pub reachable: bool,
    /// How far behind the primary it was at the last check (`None`: not reached, or the
    /// primary not sampled yet).
    pub lag: Option<Duration>,
    /// Reads it served through this store.
    pub reads: u64,
}

/// One replica: its pool and what the probe last saw.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    reachable: AtomicBool,
    healthy: AtomicBool,
    /// The replay LSN last seen (0: none yet).
    replay: AtomicU64,
    /// The lag at the last check, in milliseconds (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    reads: AtomicU64,
}

impl Node {
    fn down(&self, why: &dyn std::fmt::Display) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(replica = %self.name, error = %why, "replica failed; reads go elsewhere until it is healthy");
        }
        self.reachable.store(false, Ordering::Release);
        self.lag_ms.store(u64::MAX, Ordering::Release);
        // What it had replayed is no longer known: a restarted standby may open further back.
        self.replay.store(0, Ordering::Release);
        event_store::metrics::replica(&self.name, None, false);
    }
}

/// The replicas of a store and the shared state of routing.
pub(crate) struct Set {
    pub(crate) nodes: Vec<Arc<Node>>,
    options: Replicas,
    /// Reads must go to a node whose replay LSN is at least this: the LSN of the latest
    /// watermark handed out (a fold caches a state below a watermark; the events it read must
    /// be every event below it).
    fence: AtomicU64,
    next: AtomicUsize,
    /// Reads of the log the primary served because no replica could.
    pub(crate) primary_reads: AtomicU64,
    /// What [`Consistency::Session`] reads must see.
    session: Session,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The appends of this process a session read must see: every node with a replay LSN at or
/// above `floor` has the ones confirmed so far; `pending` are the transactions of the appends
/// since (checked by id, then folded into the floor).
#[derive(Default)]
struct Session {
    floor: AtomicU64,
    pending: Mutex<Pending>,
}

#[derive(Default, Clone)]
struct Pending {
    txs: Vec<i64>,
    /// Counts writes not checked by id (closes, migrations, or appends beyond [`MAX_PENDING`]): while
    /// it is above `clean`, a session read first raises the floor to the primary's WAL
    /// position, which is past every write that returned.
    dirty: u64,
    /// The `dirty` count the floor covers.
    clean: u64,
}

/// The transactions a session read checks by id, at most; beyond, the floor is the primary's.
const MAX_PENDING: usize = 64;

impl Drop for Set {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The primary's WAL positions, sampled with their times: a replica's lag is how long ago the
/// primary passed its replay point.
type Samples = Arc<Mutex<VecDeque<(Instant, u64)>>>;

const LSN_SQL: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
const PROBE_SQL: &str =
    "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint";
const REPLAY_SQL: &str = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint";
/// Whether every transaction of `$1` is committed on the node, and its replay LSN then.
const REACHES_SQL: &str = "SELECT coalesce(bool_and(pg_xact_status(x::text::xid8) = 'committed'), true), \
     (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint FROM unnest($1::bigint[]) AS x";

impl Set {
    /// Pools for every replica and the probes that watch them; a replica that is down now is
    /// used once it is up.
    pub(crate) fn start(
        options: &Replicas,
        primary: &Pool,
        pool_for: impl Fn(&str) -> Result<(String, Pool)>,
        changes: &Arc<watch::Sender<u64>>,
    ) -> Result<Option<Arc<Self>>> {
        if options.urls.is_empty() {
            return Ok(None);
        }
        if options.probe_interval.is_zero() {
            return Err(Error::invalid(
                "replicas.probe_interval",
                "must be above zero",
            ));
        }
        let mut nodes = Vec::with_capacity(options.urls.len());
        for url in &options.urls {
            let (name, pool) = pool_for(url)?;
            nodes.push(Arc::new(Node {
                name,
                pool,
                reachable: AtomicBool::new(false),
                healthy: AtomicBool::new(false),
                replay: AtomicU64::new(0),
                lag_ms: AtomicU64::new(u64::MAX),
                reads: AtomicU64::new(0),
            }));
        }
        let samples: Samples = Arc::default();
        let mut tasks = vec![tokio::spawn(sample_primary(
            primary.clone(),
            Arc::clone(&samples),
            options.clone(),
        ))];
        for node in &nodes {
            tasks.push(tokio::spawn(probe(
                Arc::clone(node),
                Arc::clone(&samples),
                options.clone(),
                Arc::clone(changes),
            )));
        }
        Ok(Some(Arc::new(Self {
            nodes,
            options: options.clone(),
            fence: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
            session: Session::default(),
            tasks,
        })))
    }

    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.nodes
            .iter()
            .map(|n| {
                let lag = n.lag_ms.load(Ordering::Acquire);
                ReplicaStatus {
                    name: n.name.clone(),
                    healthy: n.healthy.load(Ordering::Acquire),
                    reachable: n.reachable.load(Ordering::Acquire),
                    lag: (lag != u64::MAX).then(|| Duration::from_millis(lag)),
                    reads: n.reads.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The healthy replicas that have reached the fence, starting with the next in turn.
    fn candidates(&self) -> Vec<Arc<Node>> {
        let fence = self.fence.load(Ordering::Acquire);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.nodes.len();
        (0..n)
            .map(|i| &self.nodes[(start + i) % n])
            .filter(|node| {
                node.healthy.load(Ordering::Acquire) && node.replay.load(Ordering::Acquire) >= fence
            })
            .cloned()
            .collect()
    }

    /// [`Set::candidates`], counting a read none of them can serve.
    fn available(&self) -> Vec<Arc<Node>> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            event_store::metrics::replica_fallback("none");
        }
        candidates
    }

    /// The replicas that may serve a read of `consistency`, in the order to try them, waiting
    /// (up to [`Replicas::wait`]) for one to have an `After` position or a session's writes
    /// (empty: the primary), and the replay LSN the replica that serves it must have reached
    /// (checked on its connection before the read: the probe's view of a replica that restarted
    /// since may be ahead of what it shows now).
    async fn plan(&self, consistency: Consistency, primary: &Pool) -> (Vec<Arc<Node>>, u64) {
        // Read before choosing: a fence raised meanwhile is for the reads after it.
        let fence = self.fence.load(Ordering::Acquire);
        let (nodes, floor) = self.choose(consistency, primary).await;
        (nodes, fence.max(floor))
    }

    /// [`Set::plan`]'s nodes, and the session floor they must have reached (0: none).
    async fn choose(&self, consistency: Consistency, primary: &Pool) -> (Vec<Arc<Node>>, u64) {
        match consistency {
            Consistency::Primary => (Vec::new(), 0),
            Consistency::Eventual => (self.available(), 0),
            Consistency::After(p) if p.is_start() => (self.available(), 0),
            Consistency::After(p) => {
                let Ok(tx) = i64::try_from(p.parts().0) else {
                    return (Vec::new(), 0);
                };
                (self.wait_for(&[tx], 0).await, 0)
            }
            Consistency::Session => {
                // A snapshot: what was written before this read. Only what it confirms is
                // cleared, so concurrent session reads each check everything before them.
                let Ok(Pending { txs, dirty, clean }) =
                    self.session.pending.lock().map(|p| p.clone())
                else {
                    return (Vec::new(), 0);
                };
                if dirty > clean {
                    let Some(lsn) = primary_lsn(primary).await else {
                        return (Vec::new(), 0);
                    };
                    self.session.floor.fetch_max(lsn, Ordering::AcqRel);
                    if let Ok(mut p) = self.session.pending.lock() {
                        p.clean = p.clean.max(dirty);
                    }
                }
                let floor = self.session.floor.load(Ordering::Acquire);
                if txs.is_empty() {
                    let ready: Vec<_> = self
                        .candidates()
                        .into_iter()
                        .filter(|n| n.replay.load(Ordering::Acquire) >= floor)
                        .collect();
                    if !ready.is_empty() {
                        return (ready, floor);
                    }
                }
                let plan = self.wait_for(&txs, floor).await;
                if let Some(node) = plan.first() {
                    // That node had them all at its replay point: the floor now says so.
                    self.session
                        .floor
                        .fetch_max(node.replay.load(Ordering::Acquire), Ordering::AcqRel);
                    if let Ok(mut p) = self.session.pending.lock() {
                        p.txs.retain(|tx| !txs.contains(tx));
                    }
                }
                (plan, floor)
            }
        }
    }

    /// The first candidate that has committed every transaction of `txs` and replayed up to
    /// `floor`, waited for up to [`Replicas::wait`]; empty: none in time (the primary serves).
    async fn wait_for(&self, txs: &[i64], floor: u64) -> Vec<Arc<Node>> {
        let deadline = tokio::time::Instant::now() + self.options.wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let candidates = self.available();
            // No replica can serve now: the primary does, without waiting.
            if candidates.is_empty() {
                return candidates;
            }
            for node in candidates {
                if reaches(&node, txs, floor).await {
                    return vec![node];
                }
            }
            if tokio::time::Instant::now() + pause > deadline {
                event_store::metrics::replica_fallback("wait");
                return Vec::new();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Records a write other than an append that reads of the log see (a close or reopen, a
    /// migration): session reads after it wait for the primary's WAL position.
    pub(crate) fn wrote_other(&self) {
        if let Ok(mut p) = self.session.pending.lock() {
            p.txs.clear();
            p.dirty += 1;
        }
    }

    /// Records an append made through this store, for [`Consistency::Session`] reads.
    pub(crate) fn wrote(&self, position: Position) {
        let Ok(tx) = i64::try_from(position.parts().0) else {
            return;
        };
        if let Ok(mut p) = self.session.pending.lock() {
            p.add(tx);
        }
    }

    /// After a watermark read on `node`: reads must now see what it had.
    async fn raise_fence(
        &self,
        client: &tokio_postgres::Client,
        node: Option<&Node>,
    ) -> Result<()> {
        let sql = if node.is_some() { REPLAY_SQL } else { LSN_SQL };
        let row = client
            .query_one(sql, &[])
            .await
            .map_err(|e| pg("watermark", e))?;
        let lsn = lsn(&row, 0)?;
        if let Some(node) = node {
            node.replay.fetch_max(lsn, Ordering::AcqRel);
        }
        self.fence.fetch_max(lsn, Ordering::AcqRel);
        Ok(())
    }
}

impl Pending {
    fn add(&mut self, tx: i64) {
        if self.txs.contains(&tx) {
            return;
        }
        if self.txs.len() >= MAX_PENDING {
            self.txs.clear();
            self.dirty += 1;
        } else {
            self.txs.push(tx);
        }
    }
}

/// The primary's WAL position now (`None`: it could not be read).
async fn primary_lsn(primary: &Pool) -> Option<u64> {
    let client = primary.get().await.ok()?;
    let row = client.query_one(LSN_SQL, &[]).await.ok()?;
    lsn(&row, 0).ok()
}

fn lsn(row: &Row, index: usize) -> Result<u64> {
    let v: Option<i64> = crate::store::column(row, index, "lsn")?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Whether `node` has committed every transaction of `txs` and replayed up to `floor` (an
/// unreachable node, or one that has not seen a transaction yet, has not). Raises the node's
/// known replay point.
async fn reaches(node: &Node, txs: &[i64], floor: u64) -> bool {
    let Ok(client) = node.pool.get().await else {
        return false;
    };
    // A transaction the standby has not replayed yet is "in the future" there: an error.
    let Ok(row) = client.query_one(REACHES_SQL, &[&txs]).await else {
        return false;
    };
    let replay = lsn(&row, 1).unwrap_or(0);
    node.replay.fetch_max(replay, Ordering::AcqRel);
    row.try_get::<_, bool>(0).unwrap_or(false) && replay >= floor
}

/// Whether an error says the node, not the statement, failed: the connection, the pool, the
/// server shutting down, or a read cancelled by the standby's recovery. The read is then tried
/// on another node.
fn node_failed(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
        }
    }
}

/// Whether an error says the replica has not replayed the schema yet (a store migrated a
/// moment ago): the read goes to another node, and the replica stays in use.
fn schema_behind(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::INVALID_SCHEMA_NAME
            || *code == SqlState::UNDEFINED_FUNCTION
            || *code == SqlState::UNDEFINED_COLUMN
    })
}

/// The result of trying a replica.
enum Tried {
    Done(Answer),
    /// The replica failed; try the next node.
    Next(String),
    /// The replica has not replayed the schema the statement needs; try the next node.
    Behind,
    /// The replica's replay LSN (given) is short of what the read needs; try the next node.
    Short(u64),
    /// The statement failed: the caller's error.
    Failed(Error),
}

/// What a statement's failure on a replica means.
fn failure(e: tokio_postgres::Error, s: &Statement) -> Tried {
    if node_failed(&e) {
        Tried::Next(e.to_string())
    } else if schema_behind(&e) {
        Tried::Behind
    } else {
        Tried::Failed(pg(s.what, e))
    }
}

/// What a statement gave on a replica: its rows, or its rows as a stream, with their connection.
enum Answer {
    Rows(deadpool_postgres::Object, Vec<Row>),
    Stream(deadpool_postgres::Object, Pin<Box<RowStream>>),
}

/// Runs `s` on a replica's `pool`, all at once or as a stream, after checking on the same
/// connection that the replica has replayed up to `at_least` (0: no check; the statement's
/// snapshot comes after the check).
async fn on_replica(pool: &Pool, s: &Statement, at_least: u64, stream: bool) -> Tried {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return Tried::Next(pool_error(s.what, e).to_string()),
    };
    let stmt = match client.prepare_cached(&s.sql).await {
        Ok(stmt) => stmt,
        Err(e) => return failure(e, s),
    };
    if at_least > 0 {
        match client.query_one(REPLAY_SQL, &[]).await {
            Ok(row) => match lsn(&row, 0) {
                Ok(at) if at >= at_least => {}
                Ok(at) => return Tried::Short(at),
                Err(e) => return Tried::Failed(e),
            },
            Err(e) => return failure(e, s),
        }
    }
    let params = s.params.iter().map(as_sql);
    if stream {
        match client.query_raw(&stmt, params).await {
            Ok(rows) => Tried::Done(Answer::Stream(client, Box::pin(rows))),
            Err(e) => failure(e, s),
        }
    } else {
        let refs: Vec<_> = params.collect();
        match client.query(&stmt, &refs).await {
            Ok(rows) => Tried::Done(Answer::Rows(client, rows)),
            Err(e) => failure(e, s),
        }
    }
}

impl crate::PgStore {
    /// A routed statement's answer from the first replica of the plan that gives one, with
    /// that replica; `None`: no replica could, the primary serves the read.
    async fn on_replicas(
        &self,
        set: &Set,
        s: &Statement,
        stream: bool,
    ) -> Result<Option<(Answer, Arc<Node>)>> {
        let (nodes, at_least) = set.plan(self.consistency(), self.pool()).await;
        for node in nodes {
            match on_replica(&node.pool, s, at_least, stream).await {
                Tried::Done(answer) => {
                    node.reads.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some((answer, node)));
                }
                Tried::Next(why) => {
                    node.down(&why);
                    event_store::metrics::replica_fallback("failed");
                }
                Tried::Behind => {}
                Tried::Short(at) => {
                    node.replay.store(at, Ordering::Release);
                    event_store::metrics::replica_fallback("behind");
                }
                Tried::Failed(e) => return Err(e),
            }
        }
        set.primary_reads.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// A routed statement's rows, from a replica or the primary (a watermark raises the fence
    /// for the reads after it).
    pub(crate) async fn routed_rows(&self, set: &Set, s: &Statement) -> Result<Vec<Row>> {
        match self.on_replicas(set, s, false).await? {
            Some((Answer::Rows(client, rows), node)) => {
                if s.routing == Routing::Watermark {
                    set.raise_fence(&client, Some(&node)).await?;
                }
                Ok(rows)
            }
            Some((Answer::Stream(..), _)) => Err(Error::backend(BACKEND, "rows came as a stream")),
            None => {
                let refs: Vec<_> = s.params.iter().map(as_sql).collect();
                let rows = self.rows(s.what, &s.sql, &refs).await?;
                if s.routing == Routing::Watermark {
                    let client = self.client(s.what).await?;
                    set.raise_fence(&client, None).await?;
                }
                Ok(rows)
            }
        }
    }

    /// A routed statement's rows as a stream, from a replica or the primary. (A node failing
    /// after the first rows ends the stream with its error, as any read's failure does; the
    /// caller reads on from where it was.)
    pub(crate) async fn routed_open(
        &self,
        set: &Set,
        s: &Statement,
    ) -> Result<(deadpool_postgres::Object, Pin<Box<RowStream>>)> {
        match self.on_replicas(set, s, true).await? {
            Some((Answer::Stream(client, rows), _)) => Ok((client, rows)),
            Some((Answer::Rows(..), _)) => Err(Error::backend(BACKEND, "a stream came as rows")),
            None => self.open_on_primary(s).await,
        }
    }
}

/// Samples the primary's WAL position every probe interval, keeping enough samples to measure
/// lags up to twice the bound.
async fn sample_primary(pool: Pool, samples: Samples, options: Replicas) {
    let keep = options.max_lag.saturating_mul(2) + options.probe_interval * 4;
    let mut tick = tokio::time::interval(options.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(client) = pool.get().await else {
            continue;
        };
        let Ok(row) = client.query_one(LSN_SQL, &[]).await else {
            continue;
        };
        let Ok(at) = lsn(&row, 0) else { continue };
        let now = Instant::now();
        let Ok(mut s) = samples.lock() else { return };
        if s.back().is_none_or(|&(_, last)| at > last) {
            s.push_back((now, at));
        }
        while s.len() > 1
            && s.front()
                .is_some_and(|&(t, _)| now.duration_since(t) > keep)
        {
            s.pop_front();
        }
    }
}

/// How long ago the primary passed `replay`: the age of the oldest sample beyond it (zero when
/// none is). `None` until the primary was sampled.
fn lag_of(samples: &Samples, replay: u64) -> Option<Duration> {
    let s = samples.lock().ok()?;
    let (_, newest) = *s.back()?;
    if replay >= newest {
        return Some(Duration::ZERO);
    }
    let beyond = s.iter().find(|&&(_, lsn)| lsn > replay)?;
    Some(beyond.0.elapsed())
}

/// Checks one replica every probe interval: reachable, still a standby, its replay point and
/// lag; wakes tails when it replayed more.
async fn probe(
    node: Arc<Node>,
    samples: Samples,
    options: Replicas,
    changes: Arc<watch::Sender<u64>>,
) {
    let mut tick = tokio::time::interval(options.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let row = match node.pool.get().await {
            Err(e) => Err(e.to_string()),
            Ok(client) => client
                .query_one(PROBE_SQL, &[])
                .await
                .map_err(|e| e.to_string()),
        };
        let row = match row {
            Ok(row) => row,
            Err(why) => {
                node.down(&why);
                continue;
            }
        };
        let standby: bool = row.try_get(0).unwrap_or(false);
        let replay = lsn(&row, 1).unwrap_or(0);
        node.reachable.store(true, Ordering::Release);
        // The value seen now, not the highest ever seen: a standby that restarted since may
        // have opened further back (a lower value only makes reads more careful).
        if replay > node.replay.swap(replay, Ordering::AcqRel) {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        let lag = lag_of(&samples, replay);
        node.lag_ms.store(
            lag.map_or(u64::MAX, |l| {
                u64::try_from(l.as_millis()).unwrap_or(u64::MAX)
            }),
            Ordering::Release,
        );
        // A promoted replica is no longer fed by this primary: never read from it.
        let healthy = standby && lag.is_some_and(|l| l <= options.max_lag);
        let was = node.healthy.swap(healthy, Ordering::AcqRel);
        if healthy && !was {
            tracing::info!(replica = %node.name, "replica healthy; reads go to it");
        } else if was && !healthy {
            tracing::warn!(replica = %node.name, ?lag, standby, "replica skipped: lagging or no longer a standby");
        }
        event_store::metrics::replica(&node.name, lag, healthy);
    }
}

/// `host:port/database` of a connection string, for logs and status (never its password).
pub(crate) fn display_name(url: &str) -> Result<String> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| {
        Error::invalid(
            "replicas",
            format!("not a PostgreSQL connection string: {e}"),
        )
    })?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("")
    ))
}
