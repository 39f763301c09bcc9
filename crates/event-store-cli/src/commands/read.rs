//! `event-store read`: a stream, or the global log.

use std::io::IsTerminal as _;

use anyhow::{Result, anyhow};
use event_store::{Direction, EventStore, Position};
use futures::StreamExt as _;

use crate::backend::AnyStore;
use crate::cli::{Format, ReadArgs, position};
use crate::out::stdout;
use crate::output::Printer;

fn checkpoint(text: &str) -> Result<Position> {
    position(text).map_err(|e| anyhow!("--from {e}"))
}

pub(crate) async fn run(es: &EventStore<AnyStore>, args: ReadArgs) -> Result<()> {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Ndjson
    });
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut printer = Printer::new(stdout(), format)?;
    let direction = if args.backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    if let Some(stream) = args.stream {
        let from = match &args.from {
            Some(f) => f
                .parse::<u64>()
                .map_err(|_| anyhow!("--from for a stream is a version number, not `{f}`"))?,
            None if args.backward => u64::MAX,
            None => 0,
        };
        let mut events = Box::pin(es.read_stream(&stream, from, direction).take(limit));
        while let Some(e) = events.next().await {
            printer.event(&e?)?;
        }
    } else if args.backward {
        let before = args.from.as_deref().map(checkpoint).transpose()?;
        let mut events = Box::pin(es.read_all_backward(before).take(limit));
        while let Some(e) = events.next().await {
            printer.event(&e?)?;
        }
    } else {
        let after = args
            .from
            .as_deref()
            .map(checkpoint)
            .transpose()?
            .unwrap_or(Position::START);
        let mut events = Box::pin(es.read_all(after).take(limit));
        while let Some(e) = events.next().await {
            printer.event(&e?)?;
        }
    }
    printer.finish()?;
    Ok(())
}
