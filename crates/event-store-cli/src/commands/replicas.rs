//! `event-store replicas`: the PostgreSQL replicas given with `--replica`, their health and lag.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::backend::{Access, AnyStore, StoreUrl};
use crate::cli::{Format, ReplicasArgs};
use crate::out::{format_or, print_json, stdout};
use crate::usage::usage;

pub(crate) async fn run(url: &StoreUrl, args: &ReplicasArgs) -> Result<()> {
    if url.replicas.urls.is_empty() {
        return Err(usage(
            "no replicas: give them with --replica URL (or EVENT_STORE_REPLICAS)",
        ));
    }
    let AnyStore::Postgres(store) = url.open(Access::Read).await? else {
        bail!("--replica needs a PostgreSQL --url");
    };
    // The probes run from the start: give every replica a few seconds to be found serving
    // (a replica that is down or lagging is reported as it is then).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline && !store.replicas().iter().all(|r| r.healthy) {
        tokio::time::sleep(url.replicas.probe_interval).await;
    }
    let status = store.replicas();
    let mut out = stdout();
    match format_or(args.format, Format::Json) {
        Format::Table => {
            let width = status
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(0)
                .max(7);
            writeln!(out, "{:<width$}  {:<8}  LAG", "REPLICA", "SERVING")?;
            for r in &status {
                let lag = match (r.reachable, r.lag) {
                    (false, _) => "unreachable".to_owned(),
                    (true, Some(l)) => format!("{:.3} s", l.as_secs_f64()),
                    (true, None) => "unknown".to_owned(),
                };
                let serving = if r.healthy { "yes" } else { "no" };
                writeln!(out, "{:<width$}  {serving:<8}  {lag}", r.name)?;
            }
        }
        format => {
            let rows: Vec<_> = status
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "replica": r.name,
                        "healthy": r.healthy,
                        "reachable": r.reachable,
                        "lag_seconds": r.lag.map(|l| l.as_secs_f64()),
                    })
                })
                .collect();
            if format == Format::Ndjson {
                for row in rows {
                    serde_json::to_writer(&mut out, &row)?;
                    writeln!(out)?;
                }
            } else {
                print_json(&mut out, &rows)?;
            }
        }
    }
    out.flush()?;
    let down = status.iter().filter(|r| !r.healthy).count();
    if down > 0 {
        bail!(
            "{down} of {} replicas not serving reads (down, lagging beyond --max-replica-lag, or no longer a standby)",
            status.len()
        );
    }
    Ok(())
}
