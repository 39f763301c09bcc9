//! NDJSON input (`append --ndjson`, `import`): parsing lines and appending them in batches that
//! report, on failure, which line failed and exactly what was committed before it.

use anyhow::{Context as _, Result, anyhow, bail};
use event_store::limits::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
use event_store::{AppendBatch, Error, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::backend::AnyStore;

pub(crate) use event_store::ndjson::Line;

/// Reads the next line as bytes; `None` at the end. Counts the bytes read into `read`.
pub(crate) async fn next_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    read: &mut u64,
) -> std::io::Result<Option<()>> {
    buf.clear();
    let n = input.read_until(b'\n', buf).await?;
    *read += n as u64;
    Ok((n > 0).then_some(()))
}

/// Parses one line (`None` for a blank line).
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Line>> {
    event_store::ndjson::parse_line(bytes).map_err(|e| match e {
        Error::InvalidInput { field, reason } if field == "line" => anyhow!(reason),
        Error::InvalidInput { field, reason } => anyhow!("{field}: {reason}"),
        other => anyhow!(other),
    })
}

/// What has been committed so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Progress {
    /// Lines up to this one (1-based) are committed (0: none).
    pub(crate) committed_through: usize,
    /// Events stored.
    pub(crate) stored: u64,
    /// Events that were already present (same id, same content).
    pub(crate) already: u64,
    /// Lines that had no id and were given a fresh one (appending them again stores them
    /// again).
    pub(crate) fresh_ids: u64,
}

impl Progress {
    pub(crate) fn describe(&self) -> String {
        if self.committed_through == 0 {
            "nothing was stored".to_owned()
        } else {
            format!(
                "lines 1-{} were committed ({} events stored, {} already present); nothing after line {} was stored",
                self.committed_through, self.stored, self.already, self.committed_through
            )
        }
    }
}

/// Appends lines in windows: up to [`MAX_BATCH_EVENTS`] lines (and half the byte limit of one
/// append), whatever their streams, go in one multi-stream transaction, each run of consecutive
/// lines of one stream a batch with the expectation of its first line. A window the store refuses
/// is appended again run by run, so what is committed and which line failed are reported exactly
/// as if each run had been appended alone.
pub(crate) struct Batcher<'a> {
    store: &'a EventStore<AnyStore>,
    pending: Vec<Pending>,
    /// The bytes of the pending lines.
    pending_bytes: usize,
    pub(crate) progress: Progress,
    last_line: usize,
    /// With `--derive-ids`: how many lines of each content were seen (by content hash).
    derived: Option<DerivedIds>,
    /// `--expected-version` (other than `any`): what each stream must be at before its first
    /// line, and the streams whose first line was seen (one entry per stream).
    first: Option<(ExpectedVersion, std::collections::HashSet<String>)>,
}

/// A line waiting for its window, with what appending it expects of its stream.
struct Pending {
    number: usize,
    line: Line,
    expected: ExpectedVersion,
}

/// How lines are appended: ids derived or not, and what each stream must be at first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `--derive-ids`.
    pub(crate) derive_ids: bool,
    /// `--expected-version`: checked against each stream before its first line (lines with a
    /// `version` keep their own).
    pub(crate) expected: ExpectedVersion,
}

/// Ids derived from a line's content and how many identical lines came before it: the same
/// input gives the same ids, and identical lines stay distinct events. Memory: one entry per
/// distinct content.
#[derive(Default)]
pub(crate) struct DerivedIds {
    seen: std::collections::HashMap<uuid::Uuid, u64>,
}

/// The UUID namespace of derived ids (a v5 UUID is SHA-1 of this and the name).
const DERIVED_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6e5c_2f1a_9d3b_4c8e_a7f0_1b2c_3d4e_5f60);

impl DerivedIds {
    pub(crate) fn id_for(&mut self, line: &Line) -> uuid::Uuid {
        // The canonical content: serde_json sorts object keys.
        let content = serde_json::json!([
            line.stream,
            line.namespace,
            line.event_type,
            line.data,
            line.context
        ])
        .to_string();
        let key = uuid::Uuid::new_v5(&DERIVED_ID_NAMESPACE, content.as_bytes());
        let n = self.seen.entry(key).or_insert(0);
        let id = uuid::Uuid::new_v5(&key, &n.to_be_bytes());
        *n += 1;
        id
    }
}

impl<'a> Batcher<'a> {
    pub(crate) fn new(store: &'a EventStore<AnyStore>, options: Options) -> Self {
        Self {
            store,
            pending: Vec::new(),
            pending_bytes: 0,
            progress: Progress::default(),
            last_line: 0,
            derived: options.derive_ids.then(DerivedIds::default),
            first: (options.expected != ExpectedVersion::Any)
                .then(|| (options.expected, std::collections::HashSet::new())),
        }
    }

    /// Adds line `number` (`bytes` long); appends the pending window first when it is full.
    /// Returns the events that were appended, if any.
    pub(crate) async fn push(
        &mut self,
        number: usize,
        mut line: Line,
        bytes: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if line.id.is_none() {
            match &mut self.derived {
                Some(derived) => line.id = Some(derived.id_for(&line)),
                None => self.progress.fresh_ids += 1,
            }
        }
        let full = self.pending.len() >= MAX_BATCH_EVENTS
            || self.pending_bytes + bytes > MAX_BATCH_BYTES / 2;
        let flushed = if full {
            self.flush().await?
        } else {
            Vec::new()
        };
        let mut expected = expected(&line);
        if let Some((first, seen)) = &mut self.first
            && line.version.is_none()
            && !seen.contains(&line.stream)
        {
            seen.insert(line.stream.clone());
            expected = *first;
        }
        self.pending.push(Pending {
            number,
            line,
            expected,
        });
        self.pending_bytes += bytes;
        self.last_line = number;
        Ok(flushed)
    }

    /// Marks a line (blank) as seen, so progress covers it once what precedes is committed.
    pub(crate) fn skip(&mut self, number: usize) {
        self.last_line = number;
        if self.pending.is_empty() {
            self.progress.committed_through = number;
        }
    }

    /// Appends the pending window in one multi-stream transaction; when the store refuses it,
    /// run by run (see [`Batcher`]).
    pub(crate) async fn flush(&mut self) -> Result<Vec<RecordedEvent>> {
        let window = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let runs = runs(window);
        if runs.len() > 1
            && let Some(stored) = self.append_window(&runs).await
        {
            self.progress.committed_through = self.last_line;
            return Ok(stored);
        }
        let mut stored = Vec::new();
        for run in runs {
            stored.extend(self.flush_run(run).await?);
        }
        self.progress.committed_through = self.last_line.max(self.progress.committed_through);
        Ok(stored)
    }

    /// The runs in one transaction; `None` (nothing stored) when any is refused.
    async fn append_window(&mut self, runs: &[Vec<Pending>]) -> Option<Vec<RecordedEvent>> {
        let mut batches = Vec::with_capacity(runs.len());
        for run in runs {
            let first = run.first()?;
            let events = run.iter().map(|p| p.line.to_new_event()).collect();
            batches.push(AppendBatch::new(&first.line.stream, first.expected, events).ok()?);
        }
        let appended = self.store.append_many(batches).await.ok()?;
        let mut stored = Vec::new();
        for a in appended {
            if a.stored {
                self.progress.stored += a.events.len() as u64;
                stored.extend(a.events);
            } else {
                self.progress.already += a.events.len() as u64;
            }
        }
        Some(stored)
    }

    /// Appends one run of one stream. A run refused because some of its ids are stored already
    /// (a file that grew since it was last imported) is appended line by line instead: stored
    /// lines are recognised as retries, the new ones are stored, and a real collision names its
    /// line.
    async fn flush_run(&mut self, batch: Vec<Pending>) -> Result<Vec<RecordedEvent>> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let stream = first.line.stream.clone();
        let numbers: Vec<usize> = batch.iter().map(|p| p.number).collect();
        let events: Vec<NewEvent> = batch.iter().map(|p| p.line.to_new_event()).collect();
        match self.append(&stream, first.expected, events).await {
            Err(e) if e.is_duplicate_id() && batch.len() > 1 => {
                let mut stored = Vec::new();
                for p in batch {
                    let appended = self
                        .append(&stream, p.expected, vec![p.line.into_new_event()])
                        .await
                        .map_err(|e| at_line(e, &[p.number]))?;
                    stored.extend(appended);
                    self.progress.committed_through = p.number;
                }
                Ok(stored)
            }
            Err(e) => Err(at_line(e, &numbers)),
            Ok(events) => {
                let last = numbers.last().copied().unwrap_or_default();
                self.progress.committed_through = last.max(self.progress.committed_through);
                Ok(events)
            }
        }
    }

    /// Appends events, counting them; returns the ones stored now.
    async fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> event_store::Result<Vec<RecordedEvent>> {
        let n = events.len() as u64;
        let appended = self.store.append(stream, expected, events).await?;
        if appended.stored {
            self.progress.stored += n;
            Ok(appended.events)
        } else {
            self.progress.already += n;
            Ok(Vec::new())
        }
    }
}

/// Splits a window into runs: consecutive lines of one stream whose versions, when given,
/// follow each other (a line that expects more than `any` of its stream starts a run).
fn runs(window: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut runs: Vec<Vec<Pending>> = Vec::new();
    for p in window {
        let joins = runs.last().and_then(|run| run.last()).is_some_and(|last| {
            last.line.stream == p.line.stream
                && match (last.line.version, p.line.version) {
                    (Some(a), Some(b)) => b == a + 1,
                    (None, None) => p.expected == ExpectedVersion::Any,
                    _ => false,
                }
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    runs
}

/// A refused append, said with the line (or lines) it was; the store's error stays the source,
/// so its kind (a version conflict: exit code 3) is kept.
fn at_line(e: Error, numbers: &[usize]) -> anyhow::Error {
    let at = failing_line(&e, numbers);
    anyhow::Error::new(e).context(at)
}

/// What appending a line (or a batch starting with it) expects of its stream: exported lines
/// carry their version, so the stream must be just before it.
fn expected(line: &Line) -> ExpectedVersion {
    match line.version {
        Some(0) => ExpectedVersion::NoStream,
        Some(v) => ExpectedVersion::Exact(v - 1),
        None => ExpectedVersion::Any,
    }
}

/// Which line a refused batch failed on: the event an `events[i]` field names, else the range.
fn failing_line(e: &Error, numbers: &[usize]) -> String {
    let named = e
        .field()
        .and_then(|f| f.strip_prefix("events["))
        .and_then(|f| f.split(']').next())
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| numbers.get(i));
    match (named, numbers) {
        (Some(n), _) => format!("line {n}"),
        (None, [only]) => format!("line {only}"),
        (None, [first, .., last]) => format!("lines {first}-{last} (appended together)"),
        (None, []) => "input".to_owned(),
    }
}

/// `e`, then what was committed: `line 7: …; lines 1-6 were committed …` (the error stays in
/// the chain, for the exit code).
fn with_progress(e: anyhow::Error, progress: &Progress) -> anyhow::Error {
    let message = format!("{e:#}; {}", progress.describe());
    e.context(message)
}

/// Appends NDJSON lines from `input` in batches, calling `on_appended` with what each batch
/// stored and how many bytes were read so far; on failure, says which line and what was
/// committed.
pub(crate) async fn append_lines<R: AsyncBufRead + Unpin>(
    es: &EventStore<AnyStore>,
    mut input: R,
    options: Options,
    mut on_appended: impl FnMut(&[RecordedEvent], u64, &Progress) -> Result<()>,
) -> Result<Progress> {
    let mut batcher = Batcher::new(es, options);
    let mut buf = Vec::new();
    let mut read = 0u64;
    let mut number = 0usize;
    // Ctrl-C ends the input: what was committed is said, as for a failure.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut done = false;
    while !done {
        let step = async {
            let more = next_line(&mut input, &mut buf, &mut read)
                .await
                .with_context(|| format!("reading line {}", number + 1))?;
            if more.is_none() {
                done = true;
                return Ok(());
            }
            number += 1;
            let line = match parse(&buf) {
                Ok(Some(line)) => line,
                Ok(None) => {
                    batcher.skip(number);
                    return Ok(());
                }
                Err(e) => {
                    // Everything before the bad line is committed first.
                    match batcher.flush().await {
                        Ok(events) => on_appended(&events, read, &batcher.progress)?,
                        Err(flush) => return Err(with_progress(flush, &batcher.progress)),
                    }
                    bail!("line {number}: {e}; {}", batcher.progress.describe())
                }
            };
            match batcher.push(number, line, buf.len()).await {
                Ok(events) => on_appended(&events, read, &batcher.progress),
                Err(e) => Err(with_progress(e, &batcher.progress)),
            }
        };
        let interrupted = tokio::select! {
            biased;
            _ = &mut interrupt => true,
            result = step => {
                result?;
                false
            }
        };
        if interrupted {
            return Err(anyhow::Error::new(crate::usage::Interrupted(format!(
                "interrupted: {}; the window being appended when interrupted may have been committed too",
                batcher.progress.describe()
            ))));
        }
    }
    match batcher.flush().await {
        Ok(events) => on_appended(&events, read, &batcher.progress)?,
        Err(e) => return Err(with_progress(e, &batcher.progress)),
    }
    Ok(batcher.progress)
}
