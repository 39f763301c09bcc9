//! `event-store stats`: counts, size, head, and the followers' checkpoints and lag.

use std::io::Write as _;

use anyhow::Result;
use event_store::{CheckpointName, Checkpoints as _, Position, Store as _};

use crate::backend::AnyStore;
use crate::cli::{Format, StatsArgs};
use crate::out::{format_or, print_json, stdout, type_width};

/// Followers of the log (relays) with their checkpoints and how many events they are behind
/// (counted up to 100 000).
async fn followers(store: &AnyStore) -> Result<Vec<(CheckpointName, Position, u64)>> {
    let mut out = Vec::new();
    for (name, at) in store.checkpoints().await? {
        let lag = event_store::lag(store, at, 100_000).await?;
        out.push((name, at, lag));
    }
    Ok(out)
}

pub(crate) async fn run(store: &AnyStore, args: &StatsArgs) -> Result<()> {
    let stats = store.stats().await?;
    let followers = followers(store).await?;
    let mut out = stdout();
    let format = format_or(args.format, Format::Json);
    match format {
        Format::Json | Format::Ndjson => {
            let mut value = serde_json::to_value(&stats)?;
            value["checkpoints"] = followers
                .iter()
                .map(
                    |(name, at, lag)| serde_json::json!({"name": name, "position": at, "lag": lag}),
                )
                .collect();
            if format == Format::Json {
                print_json(&mut out, &value)?;
            } else {
                serde_json::to_writer(&mut out, &value)?;
                writeln!(out)?;
            }
        }
        Format::Table => {
            writeln!(out, "events        {}", stats.events)?;
            writeln!(out, "streams       {}", stats.streams)?;
            match stats.size_bytes {
                Some(b) => writeln!(out, "size on disk  {}", human_bytes(b))?,
                None => writeln!(out, "size on disk  -")?,
            }
            match stats.head {
                Some(h) => writeln!(out, "head          {h}")?,
                None => writeln!(out, "head          - (empty)")?,
            }
            if !stats.types.is_empty() {
                writeln!(out)?;
                let width = type_width(
                    stats
                        .types
                        .iter()
                        .map(|t| (t.namespace.as_str(), t.event_type.as_str())),
                );
                writeln!(out, "{:<width$}  EVENTS", "TYPE")?;
                for t in &stats.types {
                    writeln!(
                        out,
                        "{:<width$}  {}",
                        format!("{}.{}", t.namespace, t.event_type),
                        t.events
                    )?;
                }
            }
            if !followers.is_empty() {
                writeln!(out)?;
                writeln!(
                    out,
                    "{:<40} {:<20} LAG (events behind)",
                    "FOLLOWER", "CHECKPOINT"
                )?;
                for (name, at, lag) in &followers {
                    writeln!(out, "{name:<40} {:<20} {lag}", at.to_string())?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
