//! `event-store tail`: follow the global log live.

use std::io::Write as _;

use anyhow::Result;
use event_store::{EventStore, RecordedEvent};
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
    let keep = |e: &RecordedEvent| {
        args.stream.as_ref().is_none_or(|s| *s == e.stream)
            && args.namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && args.event_type.as_ref().is_none_or(|t| *t == e.event_type)
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    let mut out = stdout();
    let mut tail = Box::pin(es.tail(start, None));
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
