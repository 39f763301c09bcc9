//! `event-store streams`: the streams with their counts and last events (or the closed ones);
//! `event-store close` and `reopen`.

use std::io::Write as _;

use anyhow::Result;
use event_store::{ClosedStream, EventStore, Store as _, StreamId, StreamInfo};

use crate::backend::AnyStore;
use crate::cli::{CloseArgs, Format, StreamsArgs};
use crate::out::{format_or, stdout};
use crate::output::clip;
use crate::usage::usage;

/// Streams asked of the store at a time.
const PAGE: usize = 1000;

/// `close` (`closed`) or `reopen`: prints the recorded event.
pub(crate) async fn close(es: &EventStore<AnyStore>, args: CloseArgs, closed: bool) -> Result<()> {
    StreamId::new(args.stream.clone()).map_err(|e| usage(format!("STREAM: {e}")))?;
    let recorded = if closed {
        es.close_stream(&args.stream, &args.by).await
    } else {
        es.reopen_stream(&args.stream, &args.by).await
    };
    let recorded = recorded.map_err(|e| match e {
        event_store::Error::InvalidInput { .. } => usage(e.to_string()),
        e => e.into(),
    })?;
    let mut out = stdout();
    crate::out::print_json(&mut out, &recorded)?;
    out.flush()?;
    Ok(())
}

pub(crate) async fn run(store: &AnyStore, args: StreamsArgs) -> Result<()> {
    let mut after = match &args.after {
        Some(a) => Some(StreamId::new(a.clone()).map_err(|e| usage(format!("--after: {e}")))?),
        None => None,
    };
    let format = format_or(args.format, Format::Ndjson);
    if args.closed {
        return closed(store, &args, after, format).await;
    }
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut out = stdout();
    let mut first = true;
    match format {
        Format::Json => write!(out, "[")?,
        Format::Table => writeln!(
            out,
            "{:<40} {:>9} {:>12}  {:<14} LAST TIME",
            "STREAM", "EVENTS", "LAST VERSION", "LAST POSITION"
        )?,
        Format::Ndjson => {}
    }
    while left > 0 {
        let want = PAGE.min(left);
        let page = store.streams(&args.prefix, after.as_ref(), want).await?;
        for info in &page {
            print(&mut out, format, info, first)?;
            first = false;
        }
        left -= page.len();
        match page.last() {
            Some(last) if page.len() == want => after = Some(StreamId::new(last.stream.clone())?),
            _ => break,
        }
    }
    if format == Format::Json {
        if !first {
            writeln!(out)?;
        }
        writeln!(out, "]")?;
    }
    out.flush()?;
    Ok(())
}

/// `streams --closed`: the closed streams and when each was closed.
async fn closed(
    store: &AnyStore,
    args: &StreamsArgs,
    mut after: Option<StreamId>,
    format: Format,
) -> Result<()> {
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut all: Vec<ClosedStream> = Vec::new();
    let mut out = stdout();
    if format == Format::Table {
        writeln!(out, "{:<40} CLOSED AT", "STREAM")?;
    }
    while left > 0 {
        let want = PAGE.min(left);
        let page = store
            .closed_streams(&args.prefix, after.as_ref(), want)
            .await?;
        for c in &page {
            match format {
                Format::Ndjson => {
                    serde_json::to_writer(&mut out, c)?;
                    writeln!(out)?;
                }
                Format::Table => writeln!(
                    out,
                    "{:<40} {}",
                    clip(&c.stream, 40),
                    c.closed_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
                )?,
                Format::Json => all.push(c.clone()),
            }
        }
        left -= page.len();
        match page.last() {
            Some(last) if page.len() == want => after = Some(StreamId::new(last.stream.clone())?),
            _ => break,
        }
    }
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn print(
    out: &mut impl std::io::Write,
    format: Format,
    info: &StreamInfo,
    first: bool,
) -> Result<()> {
    match format {
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, info)?;
            writeln!(out)?;
        }
        Format::Json => {
            if !first {
                write!(out, ",")?;
            }
            writeln!(out)?;
            serde_json::to_writer(&mut *out, info)?;
        }
        Format::Table => writeln!(
            out,
            "{:<40} {:>9} {:>12}  {:<14} {}",
            clip(&info.stream, 40),
            info.events,
            info.last_version,
            info.last_position.to_string(),
            info.last_time.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        )?,
    }
    Ok(())
}
