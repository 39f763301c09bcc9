//! `event-store import`: append the events of an NDJSON file.

use anyhow::{Context as _, Result};
use event_store::EventStore;
use tokio::io::BufReader;

use crate::backend::AnyStore;
use crate::cli::ImportArgs;
use crate::lines::append_lines;
use crate::progress::bar;

pub(crate) async fn run(es: &EventStore<AnyStore>, args: ImportArgs) -> Result<()> {
    let progress;
    let result = if args.file.as_os_str() == "-" {
        progress = bar(None, "importing");
        let p = &progress;
        append_lines(
            es,
            BufReader::new(tokio::io::stdin()),
            args.derive_ids,
            |_, _| {
                p.tick();
                Ok(())
            },
        )
        .await
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().await.map(|m| m.len()).ok();
        progress = bar(size, "importing");
        let p = &progress;
        append_lines(es, BufReader::new(file), args.derive_ids, |_, read| {
            p.set_position(read);
            Ok(())
        })
        .await
    };
    progress.finish_and_clear();
    let done = result?;
    eprintln!(
        "imported {} events ({} already present)",
        done.stored, done.already
    );
    if done.fresh_ids > 0 {
        eprintln!(
            "note: {} lines had no id and were given new ones: importing them again stores them \
             again (--derive-ids gives ids that repeat)",
            done.fresh_ids
        );
    }
    Ok(())
}
