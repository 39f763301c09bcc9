//! `event-store tail`: follow the global log live.

use std::io::Write as _;

use anyhow::Result;
use event_store::{EventStore, Query, RecordedEvent};
use futures::StreamExt as _;

use crate::backend::AnyStore;
use crate::cli::TailArgs;
use crate::out::{print_line, stdout};

pub(crate) async fn run(es: &EventStore<AnyStore>, args: TailArgs) -> Result<()> {
    let start = match args.from {
        Some(from) => from,
        None => event_store::head(es.store()).await?,
    };
    let idle = args.idle_exit;
    // Stream and namespace (and a type within it) are filtered in the store; a type given
    // without its namespace is matched here.
    let mut filter = args.stream.clone().map(Query::stream);
    if let Some(ns) = &args.namespace {
        let q = filter.take().unwrap_or_else(Query::all);
        filter = Some(match &args.event_type {
            Some(t) => q.event_type(ns.clone(), t.clone()),
            None => q.namespace(ns.clone()),
        });
    }
    if let Some(q) = &filter {
        q.clone().check()?; // a bad filter is an error now, not a warning in the loop
    }
    let keep = |e: &RecordedEvent| args.event_type.as_ref().is_none_or(|t| *t == e.event_type);
    let limit = args.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    let mut out = stdout();
    let mut tail = Box::pin(es.tail(start, filter));
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
