//! `event-store read`: a stream, or the global log.

use std::io::IsTerminal as _;

use anyhow::Result;
use event_store::{Direction, EventStore, Position, Query, RecordedEvent};
use futures::{Stream, StreamExt as _};

use crate::backend::AnyStore;
use crate::cli::{Format, ReadArgs};
use crate::filter::Filter;
use crate::out::stdout;
use crate::output::Printer;
use crate::usage::usage;

/// Where a read starts, from the flags: checked before anything is printed.
enum Start {
    Stream {
        stream: String,
        from: u64,
        direction: Direction,
    },
    LogForward(Position),
    LogBackward(Option<Position>),
}

fn start(es: &EventStore<AnyStore>, args: &ReadArgs) -> Result<Start> {
    let backward = args.backward || args.before.is_some();
    let store = es.store();
    Ok(match &args.stream {
        Some(stream) => {
            if args.after.is_some() || args.before.is_some() {
                return Err(usage(
                    "--after and --before take checkpoints of the global log; for a stream, give --from VERSION (with --backward to read down from it)",
                ));
            }
            if args.filter.stream_prefix.is_some() {
                return Err(usage(
                    "--stream-prefix selects streams of the global log; it does not go with STREAM",
                ));
            }
            Start::Stream {
                stream: stream.clone(),
                from: args.from.unwrap_or(if backward { u64::MAX } else { 0 }),
                direction: if backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                },
            }
        }
        None if args.from.is_some() => {
            return Err(usage(
                "--from is a version of a stream (give STREAM); for the global log, give --after CHECKPOINT (or --before CHECKPOINT, newest first)",
            ));
        }
        None if backward => {
            if args.after.is_some() {
                return Err(usage(
                    "--after reads forward; newest first, give --before CHECKPOINT",
                ));
            }
            let before = args
                .before
                .map(|p| store.check_position(p, "--before"))
                .transpose()?;
            Start::LogBackward(before)
        }
        None => Start::LogForward(
            args.after
                .map(|p| store.check_position(p, "--after"))
                .transpose()?
                .unwrap_or(Position::START),
        ),
    })
}

/// A stream's events read from the global log (so a closed stream's too), from version `from`
/// in `direction`. Backward, the stream's events are gathered first.
async fn from_log(
    es: &EventStore<AnyStore>,
    stream: &str,
    from: u64,
    direction: Direction,
) -> std::pin::Pin<Box<dyn Stream<Item = event_store::Result<RecordedEvent>> + Send>> {
    let events = es.read_committed(Query::stream(stream), Position::START);
    match direction {
        Direction::Forward => {
            Box::pin(events.filter(move |e| {
                std::future::ready(e.as_ref().map_or(true, |e| e.version >= from))
            }))
        }
        Direction::Backward => {
            let mut all: Vec<event_store::Result<RecordedEvent>> = events
                .filter(|e| std::future::ready(e.as_ref().map_or(true, |e| e.version <= from)))
                .collect()
                .await;
            all.reverse();
            Box::pin(futures::stream::iter(all))
        }
    }
}

pub(crate) async fn run(es: &EventStore<AnyStore>, args: ReadArgs, quiet: bool) -> Result<()> {
    let start = start(es, &args)?;
    let filter = Filter::new(&args.filter)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let events: std::pin::Pin<Box<dyn Stream<Item = event_store::Result<RecordedEvent>> + Send>> =
        match &start {
            Start::Stream {
                stream,
                from,
                direction,
            } if args.include_closed => Box::pin(from_log(es, stream, *from, *direction).await),
            Start::Stream {
                stream,
                from,
                direction,
            } => Box::pin(es.read_stream(stream, *from, *direction)),
            // Filters narrow the forward log in the store; the other reads are filtered here.
            Start::LogForward(after) => match filter.query() {
                Some(query) => Box::pin(es.follow(*after, query)),
                None => Box::pin(es.read_all(*after)),
            },
            Start::LogBackward(before) => Box::pin(es.read_all_backward(*before)),
        };
    let mut events = events
        .filter(|e| std::future::ready(e.as_ref().map_or(true, |e| filter.matches(e))))
        .take(limit);
    if args.stats {
        let mut summary = crate::summary::Summary::default();
        while let Some(e) = events.next().await {
            summary.add(&e?);
        }
        return summary.print(args.format, stdout());
    }
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Ndjson
    });
    // The first event (or the end) comes before the header, so a failing read prints nothing.
    let first = events.next().await.transpose()?;
    let mut printer = Printer::new(stdout(), format)?;
    if let Some(e) = &first {
        printer.event(e)?;
    }
    while let Some(e) = events.next().await {
        printer.event(&e?)?;
    }
    let count = printer.finish()?;
    if count == 0
        && !quiet
        && !args.include_closed
        && let Start::Stream { stream, .. } = &start
        && es.stream_version(stream).await?.is_none()
    {
        eprintln!("note: there is no stream `{stream}` (no event was ever appended to it)");
    }
    Ok(())
}
