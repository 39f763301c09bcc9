//! `event-store import`: append the events of an NDJSON file.

use anyhow::{Context as _, Result};
use event_store::ExpectedVersion;
use tokio::io::BufReader;

use crate::backend::{Access, StoreUrl};
use crate::cli::ImportArgs;
use crate::lines::{Options, Progress, append_lines};
use crate::progress::{FileProgress, counter};

pub(crate) async fn run(url: &StoreUrl, args: ImportArgs, quiet: bool) -> Result<()> {
    let options = Options {
        derive_ids: args.derive_ids,
        expected: ExpectedVersion::Any,
    };
    // The file is opened before the store: a missing file creates nothing.
    let file = if args.file.as_os_str() == "-" {
        None
    } else {
        Some(
            tokio::fs::File::open(&args.file)
                .await
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        )
    };
    let es = url.facade(Access::Write).await?;
    let result = match file {
        None => {
            let progress = counter("importing", quiet);
            let result = append_lines(
                &es,
                BufReader::new(tokio::io::stdin()),
                options,
                |_, _, done| {
                    progress.set_position(done.stored + done.already);
                    Ok(())
                },
            )
            .await;
            progress.finish_and_clear();
            result
        }
        Some(file) => {
            let size = file.metadata().await.map_or(0, |m| m.len());
            let progress = FileProgress::new(size, "importing", quiet);
            let result = append_lines(&es, BufReader::new(file), options, |_, read, done| {
                progress.update(read, done.stored + done.already);
                Ok(())
            })
            .await;
            progress.finish_and_clear();
            result
        }
    };
    let done: Progress = result?;
    if !quiet {
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
    }
    Ok(())
}
