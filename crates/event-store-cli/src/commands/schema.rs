//! `event-store schema`: the types in the log per namespace, type and schema version.

use std::io::Write as _;

use anyhow::Result;
use event_store::Store as _;
use event_store::upcast::census;

use crate::backend::AnyStore;
use crate::cli::{Format, SchemaArgs};
use crate::out::{format_or, print_json, stdout, type_width};
use crate::progress::bar;

pub(crate) async fn run(store: &AnyStore, args: &SchemaArgs, quiet: bool) -> Result<()> {
    let total = store.stats().await?.events;
    let progress = bar(Some(total), "reading the log", quiet);
    let entries = census(store, |read| progress.set_position(read)).await?;
    progress.finish_and_clear();
    let format = format_or(args.format, Format::Ndjson);
    let mut out = stdout();
    match format {
        Format::Ndjson => {
            for e in &entries {
                serde_json::to_writer(&mut out, e)?;
                writeln!(out)?;
            }
        }
        Format::Json => print_json(&mut out, &entries)?,
        Format::Table => {
            let width = type_width(
                entries
                    .iter()
                    .map(|e| (e.namespace.as_str(), e.event_type.as_str())),
            );
            writeln!(
                out,
                "{:<width$}  {:>7}  {:>10}  {:<16}  LAST",
                "TYPE", "VERSION", "EVENTS", "FIRST"
            )?;
            for e in &entries {
                writeln!(
                    out,
                    "{:<width$}  {:>7}  {:>10}  {:<16}  {}",
                    format!("{}.{}", e.namespace, e.event_type),
                    e.version,
                    e.events,
                    e.first.to_string(),
                    e.last
                )?;
            }
            if entries.is_empty() {
                writeln!(out, "(the log is empty)")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
