//! `event-store export`: the global log as NDJSON.

use std::io::{BufWriter, IsTerminal as _, Write as _};

use anyhow::{Context as _, Result};
use event_store::{EventStore, Position, Store as _};
use futures::StreamExt as _;

use crate::backend::AnyStore;
use crate::cli::ExportArgs;
use crate::out::{print_line, stdout};
use crate::progress::bar;

pub(crate) async fn run(es: &EventStore<AnyStore>, args: ExportArgs, quiet: bool) -> Result<()> {
    let after = match args.after {
        Some(p) => es.store().check_position(p, "--after")?,
        None => Position::START,
    };
    let total = if after == Position::START {
        Some(es.store().stats().await?.events)
    } else {
        None
    };
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(stdout()),
    };
    let progress = bar(total, "exporting", quiet);
    let mut events = Box::pin(es.read_all(after));
    let mut count = 0u64;
    let mut last = None;
    while let Some(e) = events.next().await {
        let e = e?;
        print_line(&mut out, &e)?;
        last = Some(e.position);
        count += 1;
        progress.inc(1);
    }
    out.flush()?;
    progress.finish_and_clear();
    if !quiet && std::io::stderr().is_terminal() {
        match last {
            Some(p) => eprintln!("exported {count} events, through checkpoint {p}"),
            None => eprintln!("exported 0 events"),
        }
    }
    Ok(())
}
