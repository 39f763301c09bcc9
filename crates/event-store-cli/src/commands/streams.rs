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
    let after = match &args.after {
        Some(a) => Some(StreamId::new(a.clone()).map_err(|e| usage(format!("--after: {e}")))?),
        None => None,
    };
    let format = format_or(args.format, Format::Ndjson);
    let (prefix, limit) = (args.prefix.as_str(), args.limit);
    if args.closed {
        let header = format!("{:<40} CLOSED AT", "STREAM");
        let row = |c: &ClosedStream| {
            format!(
                "{:<40} {}",
                clip(&c.stream, 40),
                c.closed_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
            )
        };
        let fetch = |after: Option<StreamId>, want| async move {
            store.closed_streams(prefix, after.as_ref(), want).await
        };
        return list(format, limit, after, &header, row, |c| &c.stream, fetch).await;
    }
    let header = format!(
        "{:<40} {:>9} {:>12}  {:<14} LAST TIME",
        "STREAM", "EVENTS", "LAST VERSION", "LAST POSITION"
    );
    let row = |info: &StreamInfo| {
        format!(
            "{:<40} {:>9} {:>12}  {:<14} {}",
            clip(&info.stream, 40),
            info.events,
            info.last_version,
            info.last_position.to_string(),
            info.last_time.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        )
    };
    let fetch = |after: Option<StreamId>, want| async move {
        store.streams(prefix, after.as_ref(), want).await
    };
    list(format, limit, after, &header, row, |i| &i.stream, fetch).await
}

/// Prints every item `fetch` pages through (after `after`, by stream id, at most `limit`) in
/// `format`: NDJSON, one JSON array, or a table of `row`s under `header`.
async fn list<T, Fut>(
    format: Format,
    limit: Option<usize>,
    mut after: Option<StreamId>,
    header: &str,
    row: impl Fn(&T) -> String,
    id: impl Fn(&T) -> &String,
    fetch: impl Fn(Option<StreamId>, usize) -> Fut,
) -> Result<()>
where
    T: serde::Serialize,
    Fut: std::future::Future<Output = event_store::Result<Vec<T>>>,
{
    let mut left = limit.unwrap_or(usize::MAX);
    let mut out = stdout();
    let mut first = true;
    match format {
        Format::Json => write!(out, "[")?,
        Format::Table => writeln!(out, "{header}")?,
        Format::Ndjson => {}
    }
    while left > 0 {
        let want = PAGE.min(left);
        let page = fetch(after.clone(), want).await?;
        for item in &page {
            match format {
                Format::Ndjson => {
                    serde_json::to_writer(&mut out, item)?;
                    writeln!(out)?;
                }
                Format::Json => {
                    if !first {
                        write!(out, ",")?;
                    }
                    writeln!(out)?;
                    serde_json::to_writer(&mut out, item)?;
                }
                Format::Table => writeln!(out, "{}", row(item))?,
            }
            first = false;
        }
        left -= page.len();
        match page.last() {
            Some(last) if page.len() == want => after = Some(StreamId::new(id(last).clone())?),
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
