//! NDJSON input (`append --ndjson`, `import`): parsing lines and appending them in batches that
//! report, on failure, which line failed and exactly what was committed before it.

use anyhow::{Result, anyhow};
use event_store::{
    Error, EventStore, ExpectedVersion, NewEvent, RecordedEvent, limits::MAX_BATCH_EVENTS,
};
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
        Error::InvalidInput { reason, .. } => anyhow!(reason),
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

/// Appends lines in batches: consecutive lines of one stream (at most
/// [`MAX_BATCH_EVENTS`]) go in one atomic append.
pub(crate) struct Batcher<'a> {
    store: &'a EventStore<AnyStore>,
    pending: Vec<(usize, Line)>,
    pub(crate) progress: Progress,
    last_line: usize,
}

impl<'a> Batcher<'a> {
    pub(crate) fn new(store: &'a EventStore<AnyStore>) -> Self {
        Self {
            store,
            pending: Vec::new(),
            progress: Progress::default(),
            last_line: 0,
        }
    }

    /// Adds line `number`; appends the pending batch first when the line cannot join it.
    /// Returns the events that were appended, if any.
    pub(crate) async fn push(&mut self, number: usize, line: Line) -> Result<Vec<RecordedEvent>> {
        let joins = self.pending.last().is_none_or(|(_, last)| {
            last.stream == line.stream
                && self.pending.len() < MAX_BATCH_EVENTS
                && match (last.version, line.version) {
                    (Some(a), Some(b)) => b == a + 1,
                    (None, None) => true,
                    _ => false,
                }
        });
        let flushed = if joins {
            Vec::new()
        } else {
            self.flush().await?
        };
        self.pending.push((number, line));
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

    /// Appends the pending batch.
    pub(crate) async fn flush(&mut self) -> Result<Vec<RecordedEvent>> {
        let Some((first_line, first)) = self.pending.first() else {
            return Ok(Vec::new());
        };
        let first_line = *first_line;
        let stream = first.stream.clone();
        let expected = match first.version {
            Some(0) => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(v - 1),
            None => ExpectedVersion::Any,
        };
        let batch = std::mem::take(&mut self.pending);
        let numbers: Vec<usize> = batch.iter().map(|(n, _)| *n).collect();
        let last_line = numbers.last().copied().unwrap_or(first_line);
        let events: Vec<NewEvent> = batch.into_iter().map(|(_, l)| l.into_new_event()).collect();
        let n = events.len() as u64;
        match self.store.append(&stream, expected, events).await {
            Ok(appended) => {
                if appended.stored {
                    self.progress.stored += n;
                } else {
                    self.progress.already += n;
                }
                self.progress.committed_through = self.last_line.max(last_line);
                Ok(if appended.stored {
                    appended.events
                } else {
                    Vec::new()
                })
            }
            Err(e) => {
                let line = failing_line(&e, &numbers);
                Err(anyhow!("{line}: {e}"))
            }
        }
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
