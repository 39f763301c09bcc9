//! `event-store tail`: follow the global log live.

use std::io::Write as _;

use anyhow::Result;
use event_store::{EventStore, Query, RecordedEvent};
use futures::StreamExt as _;

use crate::backend::AnyStore;
use crate::cli::TailArgs;
use crate::filter::Filter;
use crate::out::{print_line, stdout};

pub(crate) async fn run(es: &EventStore<AnyStore>, args: TailArgs) -> Result<()> {
    let start = match args.after {
        Some(after) => es.store().check_position(after, "--after")?,
        None => event_store::head(es.store()).await?,
    };
    let idle = args.idle_exit;
    // What the store can filter it does (stream, prefix, namespaced types); the rest (a type
    // given without its namespace) is matched here.
    let filter = Filter::new(&args.filter)?;
    let base = args.stream.clone().map_or_else(Query::all, Query::stream);
    let query = filter
        .query_from(base)
        .or_else(|| args.stream.clone().map(Query::stream));
    if let Some(q) = &query {
        q.clone().check()?; // a bad filter is an error now, not a warning in the loop
    }
    let keep = |e: &RecordedEvent| filter.matches(e);
    let limit = args.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    let mut out = stdout();
    let mut tail = Box::pin(es.tail(start, query));
    // A deadline too far to represent is no deadline.
    let mut deadline = idle.and_then(|d| tokio::time::Instant::now().checked_add(d));
    let mut count = 0;
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, tail.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tail.next().await,
        };
        match next {
            Some(Ok(e)) if keep(&e) => {
                print_line(&mut out, &e)?;
                out.flush()?;
                count += 1;
                if count >= limit {
                    break;
                }
                deadline = idle.and_then(|d| tokio::time::Instant::now().checked_add(d));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => eprintln!("warning: {e}; still following"),
            None => break,
        }
    }
    Ok(())
}
