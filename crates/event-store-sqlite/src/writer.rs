//! The one writer: a thread that owns the write connection and commits queued appends together
//! (group commit), each in a savepoint so one refused append does not affect the others.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use event_store::{AppendBatch, Appended, Error, MultiAppend, Result};
use event_store_sql::Statement;
use event_store_sql::convert::{clamp, unsigned};
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::connection::{BACKEND, SqliteRow, migrate, position, sqlite};
use crate::query::to_sql;
use crate::store::SqliteStore;
use event_store_sql::dialects::time_text;

const FIND_BY_ID: &str = include_str!("../sql/queries/event_by_id.sql");
const STREAM_VERSION: &str = include_str!("../sql/queries/stream_version.sql");
const INSERT: &str = include_str!("../sql/queries/insert_events.sql");

/// Work run on the write connection inside the group's transaction: it takes care of its own
/// savepoint, and returns what to do once the transaction committed (with `Some(error)` when the
/// commit failed).
pub(crate) type Work = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// What a [`Work`] does after the commit.
pub(crate) type Finish = Box<dyn FnOnce(Option<String>) + Send>;

/// What a write job keeps: `Commit` its writes, or `Rollback` them (both with a value for the
/// caller).
pub(crate) enum Keep<T> {
    Commit(T),
    Rollback(T),
}

pub(crate) enum Job {
    Append(AppendBatch, oneshot::Sender<Result<Appended>>),
    /// Several streams, all or nothing (one savepoint; the one writer serializes them).
    AppendMany(MultiAppend, oneshot::Sender<Result<Vec<Appended>>>),
    /// Work of the store's own (a guarded transaction, a transactional projection's batch).
    Run(Work),
    /// A write of the shared SQL layer (a checkpoint, a cache entry), in its own savepoint.
    Execute(Statement, oneshot::Sender<Result<u64>>),
    Migrate(oneshot::Sender<Result<Vec<i64>>>),
}

pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    read_only: bool,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        group: usize,
        changes: Arc<watch::Sender<u64>>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("event-store-sqlite-writer".to_owned())
            .spawn(move || run(conn, &rx, group.max(1), &changes))
            .map_err(|e| Error::backend_with(BACKEND, "starting the writer thread", e))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
            read_only: false,
        })
    }

    /// No writer: the store was opened read-only, and every write fails saying so.
    pub(crate) fn read_only() -> Self {
        Self {
            jobs: None,
            thread: None,
            read_only: true,
        }
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Sends a job and waits for its outcome (after its transaction committed).
    pub(crate) async fn call<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job(tx)).ok())
            .ok_or_else(|| {
                if self.read_only {
                    Error::backend(
                        BACKEND,
                        "the store was opened read-only: it cannot be written",
                    )
                } else {
                    Error::backend(BACKEND, "the writer thread has stopped")
                }
            })?;
        rx.await
            .map_err(|_| Error::backend(BACKEND, "the writer thread stopped during a write"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what is queued.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut conn: Connection, rx: &mpsc::Receiver<Job>, group: usize, changes: &watch::Sender<u64>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < group {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                // Migrations run in a transaction of their own.
                Job::Migrate(reply) => {
                    let _ = reply.send(migrate(&mut conn));
                }
                other => writes.push(other),
            }
        }
        if !writes.is_empty() && commit_group(&conn, writes) {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

enum Outcome {
    Append(oneshot::Sender<Result<Appended>>, Result<Appended>),
    AppendMany(
        oneshot::Sender<Result<Vec<Appended>>>,
        Result<Vec<Appended>>,
    ),
    Executed(oneshot::Sender<Result<u64>>, Result<u64>),
    Ran(Finish),
}

/// Runs `jobs` in one transaction; returns whether an append stored something.
fn commit_group(conn: &Connection, jobs: Vec<Job>) -> bool {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("beginning a transaction: {e}");
        for job in jobs {
            reply_error(job, &msg);
        }
        return false;
    }
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcome = match job {
            Job::Append(batch, reply) => {
                Outcome::Append(reply, in_savepoint(conn, |c| append(c, &batch)))
            }
            Job::AppendMany(batches, reply) => {
                Outcome::AppendMany(reply, in_savepoint(conn, |c| append_many(c, &batches)))
            }
            Job::Execute(statement, reply) => {
                Outcome::Executed(reply, in_savepoint(conn, |c| execute(c, &statement)))
            }
            Job::Run(work) => Outcome::Ran(work(conn)),
            Job::Migrate(reply) => {
                let _ = reply.send(Err(Error::backend(BACKEND, "migrations run alone")));
                continue;
            }
        };
        outcomes.push(outcome);
    }
    let committed = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        format!("committing: {e}")
    });
    tracing::debug!(
        jobs = outcomes.len(),
        committed = committed.is_ok(),
        "the writer's transaction ended"
    );
    let mut stored = false;
    for outcome in outcomes {
        match (outcome, &committed) {
            (Outcome::Append(reply, result), Ok(())) => {
                stored |= result.as_ref().is_ok_and(|a| a.stored);
                let _ = reply.send(result);
            }
            (Outcome::AppendMany(reply, result), Ok(())) => {
                stored |= result
                    .as_ref()
                    .is_ok_and(|all| all.iter().any(|a| a.stored));
                let _ = reply.send(result);
            }
            (Outcome::AppendMany(reply, result), Err(msg)) => {
                let _ = reply.send(result.and(Err(Error::backend(BACKEND, msg.clone()))));
            }
            (Outcome::Executed(reply, result), Ok(())) => {
                let _ = reply.send(result);
            }
            (Outcome::Append(reply, result), Err(msg)) => {
                let _ = reply.send(result.and(Err(Error::backend(BACKEND, msg.clone()))));
            }
            (Outcome::Executed(reply, result), Err(msg)) => {
                let _ = reply.send(result.and(Err(Error::backend(BACKEND, msg.clone()))));
            }
            (Outcome::Ran(finish), Ok(())) => finish(None),
            (Outcome::Ran(finish), Err(msg)) => finish(Some(msg.clone())),
        }
    }
    stored
}

fn reply_error(job: Job, msg: &str) {
    let e = || Error::backend(BACKEND, msg.to_owned());
    match job {
        Job::Append(_, reply) => drop(reply.send(Err(e()))),
        Job::AppendMany(_, reply) => drop(reply.send(Err(e()))),
        Job::Execute(_, reply) => drop(reply.send(Err(e()))),
        Job::Run(work) => fail_work(work, msg),
        Job::Migrate(reply) => drop(reply.send(Err(e()))),
    }
}

/// Drops a [`Work`] that cannot run (no transaction): its caller's reply channel closes, which
/// the caller reports as a failed write; the reason is logged here.
fn fail_work(work: Work, msg: &str) {
    tracing::warn!(error = msg, "a write job could not run");
    drop(work);
}

/// `f` as a [`Work`]: run in a savepoint (kept or rolled back as it says; rolled back when it
/// panics), its outcome sent on `reply` once the group's transaction is over.
pub(crate) fn work<T: Send + 'static>(
    f: impl FnOnce(&Connection) -> Result<Keep<T>> + Send + 'static,
    reply: oneshot::Sender<Result<T>>,
) -> Work {
    Box::new(move |conn: &Connection| {
        let outcome = run_work(conn, f);
        Box::new(move |commit_error: Option<String>| {
            let result = match commit_error {
                None => outcome,
                Some(msg) => outcome.and(Err(Error::backend(BACKEND, msg))),
            };
            let _ = reply.send(result);
        })
    })
}

fn run_work<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<Keep<T>>) -> Result<T> {
    conn.execute_batch("SAVEPOINT work")
        .map_err(|e| sqlite("savepoint", e))?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(Error::backend(BACKEND, "a write job panicked")));
    let (end, value) = match outcome {
        Ok(Keep::Commit(v)) => ("RELEASE work", Ok(v)),
        Ok(Keep::Rollback(v)) => ("ROLLBACK TO work; RELEASE work", Ok(v)),
        Err(e) => ("ROLLBACK TO work; RELEASE work", Err(e)),
    };
    conn.execute_batch(end)
        .map_err(|e| sqlite("savepoint", e))?;
    value
}

/// Runs `f` in a savepoint: on error, everything it wrote is undone and the transaction goes on.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")
        .map_err(|e| sqlite("savepoint", e))?;
    let result = f(conn);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    conn.execute_batch(end)
        .map_err(|e| sqlite("savepoint", e))?;
    result
}

fn append(conn: &Connection, batch: &AppendBatch) -> Result<Appended> {
    // The common path: the expectation holds and no id is stored yet, so the events go straight
    // in. An insert that skips (its id is stored) undoes the batch and takes the careful path.
    let stream = batch.stream();
    let (actual, closed) = stream_state(conn, stream.as_str())?;
    if !closed && batch.expected().admits(actual) {
        conn.execute_batch("SAVEPOINT fast")
            .map_err(|e| sqlite("append", e))?;
        match insert_all(conn, batch, actual) {
            Ok(Some(events)) => {
                conn.execute_batch("RELEASE fast")
                    .map_err(|e| sqlite("append", e))?;
                return Ok(Appended {
                    events,
                    stored: true,
                });
            }
            outcome => {
                conn.execute_batch("ROLLBACK TO fast; RELEASE fast")
                    .map_err(|e| sqlite("append", e))?;
                outcome?;
            }
        }
    }
    append_careful(conn, batch)
}

/// Appends several batches (inside the caller's savepoint, which undoes them all on an error).
/// The common path inserts every batch under one savepoint (a savepoint per batch costs more
/// than a small event's insert); when an expectation fails or an id is stored, it is undone and
/// each batch takes [`append`]'s own path, which reports conflicts and recognises retries.
fn append_many(conn: &Connection, batches: &MultiAppend) -> Result<Vec<Appended>> {
    conn.execute_batch("SAVEPOINT many")
        .map_err(|e| sqlite("append", e))?;
    match insert_many(conn, batches) {
        Ok(Some(all)) => {
            conn.execute_batch("RELEASE many")
                .map_err(|e| sqlite("append", e))?;
            return Ok(all);
        }
        outcome => {
            conn.execute_batch("ROLLBACK TO many; RELEASE many")
                .map_err(|e| sqlite("append", e))?;
            outcome?;
        }
    }
    batches.batches().iter().map(|b| append(conn, b)).collect()
}

/// Rows per multi-row `INSERT` of [`insert_many`] (8 parameters each; well under SQLite's
/// parameter limit).
const ROWS_PER_INSERT: usize = 100;

/// Inserts every batch when each expectation holds and no id is stored; `None` otherwise. The
/// versions are worked out first (a stream's later batches follow its earlier ones), then the
/// rows go in with multi-row `INSERT`s: one statement per hundred events rather than one per
/// event, since each statement opens and closes a statement journal. The one writer makes the
/// positions of a statement's rows consecutive.
fn insert_many(conn: &Connection, batches: &MultiAppend) -> Result<Option<Vec<Appended>>> {
    let mut last: std::collections::HashMap<&str, Option<u64>> = std::collections::HashMap::new();
    let mut rows: Vec<(&event_store::StreamId, &event_store::PendingEvent, u64)> =
        Vec::with_capacity(batches.len());
    for batch in batches.batches() {
        let stream = batch.stream();
        let actual = match last.get(stream.as_str()) {
            Some(v) => *v,
            None => match stream_state(conn, stream.as_str())? {
                // A closed stream: each batch's own path says which and why.
                (_, true) => return Ok(None),
                (actual, false) => actual,
            },
        };
        if !batch.expected().admits(actual) {
            return Ok(None);
        }
        let first = actual.map_or(0, |a| a + 1);
        for (i, e) in batch.events().iter().enumerate() {
            rows.push((stream, e, first + i as u64));
        }
        last.insert(stream.as_str(), Some(first + batch.len() as u64 - 1));
    }
    let Some(recorded) = insert_rows(conn, &rows)? else {
        return Ok(None);
    };
    let mut recorded = recorded.into_iter();
    Ok(Some(
        batches
            .batches()
            .iter()
            .map(|b| Appended {
                events: recorded.by_ref().take(b.len()).collect(),
                stored: true,
            })
            .collect(),
    ))
}

/// Inserts `rows` (stream, event, version) with multi-row `INSERT`s, [`ROWS_PER_INSERT`] at a
/// time; `None` when an id is stored (a row was skipped: the caller undoes its savepoint).
fn insert_rows(
    conn: &Connection,
    rows: &[(&event_store::StreamId, &event_store::PendingEvent, u64)],
) -> Result<Option<Vec<event_store::RecordedEvent>>> {
    let mut recorded = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = INSERT.replace(
            "{rows}",
            &vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", "),
        );
        let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() * 8);
        for (stream, e, version) in chunk {
            let data =
                serde_json::to_string(&e.data).map_err(|err| Error::codec("encode data", err))?;
            let context = serde_json::to_string(&e.context)
                .map_err(|err| Error::codec("encode a context", err))?;
            params.extend([
                rusqlite::types::Value::Text(e.id.to_string()),
                rusqlite::types::Value::Text(stream.as_str().to_owned()),
                rusqlite::types::Value::Integer(clamp(*version)),
                rusqlite::types::Value::Text(e.namespace.clone()),
                rusqlite::types::Value::Text(e.event_type.clone()),
                rusqlite::types::Value::Text(data),
                rusqlite::types::Value::Text(context),
                rusqlite::types::Value::Text(time_text(e.context.time)),
            ]);
        }
        let inserted = conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map_err(|err| sqlite("append", err))?;
        if inserted != chunk.len() {
            return Ok(None);
        }
        let last_rowid = conn.last_insert_rowid();
        for (i, (stream, e, version)) in chunk.iter().enumerate() {
            let back = i64::try_from(chunk.len() - 1 - i).unwrap_or(i64::MAX);
            let rowid = last_rowid.saturating_sub(back);
            recorded.push(e.record(stream, *version, position(rowid)?));
        }
    }
    Ok(Some(recorded))
}

/// The version of a stream's last event (`None`: no event) and whether it is closed.
pub(crate) fn stream_state(conn: &Connection, stream: &str) -> Result<(Option<u64>, bool)> {
    let (actual, closed): (Option<i64>, bool) = conn
        .prepare_cached(STREAM_VERSION)
        .and_then(|mut s| s.query_row([stream], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(|e| sqlite("stream version", e))?;
    let actual = actual
        .map(|v| unsigned(BACKEND, "version", v))
        .transpose()?;
    Ok((actual, closed))
}

/// Inserts every event after `actual`; `None` when one was skipped (its id is stored).
fn insert_all(
    conn: &Connection,
    batch: &AppendBatch,
    actual: Option<u64>,
) -> Result<Option<Vec<event_store::RecordedEvent>>> {
    let stream = batch.stream();
    let first = actual.map_or(0, |a| a + 1);
    let rows: Vec<_> = batch
        .events()
        .iter()
        .enumerate()
        .map(|(i, e)| (stream, e, first + i as u64))
        .collect();
    insert_rows(conn, &rows)
}

/// The careful path: idempotent retries, clashing ids and conflicts.
fn append_careful(conn: &Connection, batch: &AppendBatch) -> Result<Appended> {
    let mut find = conn
        .prepare_cached(FIND_BY_ID)
        .map_err(|e| sqlite("append", e))?;
    let mut stored = Vec::with_capacity(batch.len());
    for e in batch.events() {
        let rows = find
            .query([e.id.to_string()])
            .map_err(|e| sqlite("append", e))?;
        let mut rows = rows;
        let found = match rows.next().map_err(|e| sqlite("append", e))? {
            Some(row) => Some(event_store_sql::store::event::<SqliteStore>(&SqliteRow(
                row,
            ))?),
            None => None,
        };
        stored.push(found);
    }
    if let Some(originals) = batch.check_stored(stored)? {
        return Ok(Appended {
            events: originals,
            stored: false,
        });
    }
    let (actual, closed) = stream_state(conn, batch.stream().as_str())?;
    if closed {
        return Err(Error::StreamClosed {
            stream: batch.stream().as_str().to_owned(),
        });
    }
    batch.check_expected(actual)?;
    insert_all(conn, batch, actual)?
        .map(|events| Appended {
            events,
            stored: true,
        })
        .ok_or_else(|| Error::backend(BACKEND, "an event id was stored during the append"))
}

/// A write of the shared SQL layer.
pub(crate) fn execute(conn: &Connection, statement: &Statement) -> Result<u64> {
    let values: Vec<_> = statement.params.iter().map(to_sql).collect();
    let n = conn
        .prepare_cached(&statement.sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
        .map_err(|e| sqlite(statement.what, e))?;
    Ok(n as u64)
}
