//! `event-store migrate status`: applied and pending migrations.

use std::io::Write as _;

use anyhow::Result;
use serde_json::json;

use crate::backend::StoreUrl;
use crate::cli::{Format, MigrateCommand};
use crate::out::{format_or, print_json, stdout};

pub(crate) async fn run(url: &StoreUrl, command: MigrateCommand) -> Result<()> {
    let MigrateCommand::Status(args) = command;
    // Read-only, so a store behind this release can be inspected before it is migrated.
    let status = url.migrations().await?;
    let mut out = stdout();
    match format_or(args.format, Format::Json) {
        Format::Json | Format::Ndjson => {
            let value = json!({
                "applied": status.applied.iter().map(|m| json!({
                    "version": m.version,
                    "name": m.name,
                    "applied_at": m.applied_at,
                })).collect::<Vec<_>>(),
                "pending": status.pending.iter().map(|(version, name)| json!({
                    "version": version,
                    "name": name,
                })).collect::<Vec<_>>(),
            });
            if args.format == Some(Format::Ndjson) {
                serde_json::to_writer(&mut out, &value)?;
                writeln!(out)?;
            } else {
                print_json(&mut out, &value)?;
            }
        }
        Format::Table => {
            writeln!(out, "{:>7}  {:<28} APPLIED", "VERSION", "NAME")?;
            for m in &status.applied {
                writeln!(
                    out,
                    "{:>7}  {:<28} {}",
                    m.version,
                    m.name,
                    m.applied_at.format("%Y-%m-%dT%H:%M:%SZ")
                )?;
            }
            for (version, name) in &status.pending {
                writeln!(
                    out,
                    "{version:>7}  {name:<28} pending (run `event-store init`)"
                )?;
            }
            if status.pending.is_empty() {
                writeln!(
                    out,
                    "\nup to date: {} migrations applied",
                    status.applied.len()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
