//! `event-store projections list|status|reset|resume`: the operators' view of the store's
//! projections (their runners live in the services; this needs none of their code).

use std::io::Write as _;

use anyhow::{Result, bail};
use event_store::Position;
use event_store::projection::{GenerationStatus, ProjectionStatus, Projections};
use serde_json::json;

use crate::backend::AnyStore;
use crate::cli::{Format, ProjectionsCommand};
use crate::out::{format_or, print_json, stdout};

pub(crate) async fn run(store: AnyStore, command: ProjectionsCommand) -> Result<()> {
    let projections = Projections::new(store);
    match command {
        ProjectionsCommand::List(args) => {
            let list = projections.list().await?;
            print_list(&list, format_or(args.format, Format::Ndjson))
        }
        ProjectionsCommand::Status(args) => {
            let Some(status) = projections.status(&args.name).await? else {
                bail!(
                    "no projection named `{}` in this store (see `event-store projections list`)",
                    args.name
                );
            };
            print_status(&status, format_or(args.format, Format::Json))
        }
        ProjectionsCommand::Reset(args) => {
            known(&projections, &args.name).await?;
            let next = projections.reset(&args.name, args.partitions).await?;
            let status = projections.status(&args.name).await?;
            let running = status
                .as_ref()
                .is_some_and(|s| s.state != event_store::projection::ProjectionState::Stopped);
            let mut out = stdout();
            if format_or(args.format, Format::Json) == Format::Table {
                writeln!(
                    out,
                    "projection `{}`: rebuilding as generation {} with {} partition(s); readers \
                     keep the current generation until the new one has caught up",
                    args.name, next.generation, next.partitions
                )?;
                if !running {
                    writeln!(
                        out,
                        "note: no runner holds it now; the rebuild starts when one of its \
                         runners (version {}) runs",
                        next.version
                    )?;
                }
            } else {
                serde_json::to_writer(
                    &mut out,
                    &json!({"projection": args.name, "generation": next, "runner": running}),
                )?;
                writeln!(out)?;
            }
            out.flush()?;
            Ok(())
        }
        ProjectionsCommand::Resume(args) => {
            known(&projections, &args.name).await?;
            let resumed = projections.resume(&args.name, args.partition).await?;
            let mut out = stdout();
            if format_or(args.format, Format::Json) == Format::Table {
                match (resumed, args.partition) {
                    (0, Some(p)) => {
                        writeln!(out, "partition {p} of `{}` was not parked", args.name)?;
                    }
                    (0, None) => writeln!(out, "`{}` had no parked partition", args.name)?,
                    (n, _) => writeln!(
                        out,
                        "resumed {n} parked partition(s) of `{}`: their runners retry the event \
                         they stopped on",
                        args.name
                    )?,
                }
            } else {
                serde_json::to_writer(
                    &mut out,
                    &json!({"projection": args.name, "resumed": resumed}),
                )?;
                writeln!(out)?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

/// The format asked for, or a table on a terminal and `otherwise` elsewhere.
async fn known(projections: &Projections<AnyStore>, name: &str) -> Result<()> {
    if projections.status(name).await?.is_none() {
        bail!("no projection named `{name}` in this store (see `event-store projections list`)");
    }
    Ok(())
}

/// The lowest checkpoint of a generation's partitions: every matching event up to it is
/// applied.
fn position(g: &GenerationStatus) -> Position {
    g.partitions
        .iter()
        .map(|p| p.checkpoint)
        .min()
        .unwrap_or(Position::START)
}

fn lag(g: &GenerationStatus) -> String {
    if g.lag_capped {
        format!("≥{}", g.lag_events)
    } else {
        g.lag_events.to_string()
    }
}

fn clip(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        let mut s: String = line.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

fn print_list(list: &[ProjectionStatus], format: Format) -> Result<()> {
    let mut out = stdout();
    match format {
        Format::Json => print_json(&mut out, &list)?,
        Format::Ndjson => {
            for s in list {
                serde_json::to_writer(&mut out, s)?;
                writeln!(out)?;
            }
        }
        Format::Table => {
            if list.is_empty() {
                writeln!(
                    out,
                    "no projections yet (a projection appears when its runner first starts)"
                )?;
            } else {
                let width = list
                    .iter()
                    .map(|s| s.name.as_str().len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                writeln!(
                    out,
                    "{:<width$}  {:<11}  {:>3}  {:>7}  {:>20}  {:>8}  {:>8}  LAST ERROR",
                    "NAME", "STATE", "GEN", "RUNNING", "POSITION", "LAG", "LAG (s)"
                )?;
                for s in list {
                    let (generation, running, at, lag, seconds) = match &s.active {
                        Some(g) => (
                            match &s.building {
                                Some(b) => format!("{}>{}", g.generation, b.generation),
                                None => g.generation.to_string(),
                            },
                            format!(
                                "{}/{}",
                                g.partitions.iter().filter(|p| p.running).count(),
                                g.partitions.len()
                            ),
                            position(g).to_string(),
                            lag(g),
                            format!("{:.1}", g.lag_seconds),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    writeln!(
                        out,
                        "{:<width$}  {:<11}  {generation:>3}  {running:>7}  {at:>20}  {lag:>8}  {seconds:>8}  {}",
                        s.name.as_str(),
                        s.state.to_string(),
                        s.last_error
                            .as_deref()
                            .map_or_else(|| "-".to_owned(), |e| clip(e, 60)),
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn print_status(s: &ProjectionStatus, format: Format) -> Result<()> {
    let mut out = stdout();
    match format {
        Format::Json => print_json(&mut out, s)?,
        Format::Ndjson => {
            serde_json::to_writer(&mut out, s)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(out, "projection  {}", s.name)?;
            writeln!(out, "state       {}", s.state)?;
            if let Some(e) = &s.last_error {
                writeln!(out, "last error  {}", clip(e, 200))?;
            }
            for (role, g) in [("active", &s.active), ("building", &s.building)] {
                let Some(g) = g else { continue };
                writeln!(out)?;
                writeln!(
                    out,
                    "generation {} ({role}; version {}; {} partition(s); started {}): \
                     position {}, lag {} event(s), {:.1} s",
                    g.generation,
                    g.version,
                    g.partitions.len(),
                    g.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    position(g),
                    lag(g),
                    g.lag_seconds
                )?;
                writeln!(
                    out,
                    "  {:>9}  {:>20}  {:>10}  {:>8}  {:>8}  {:<7}  STATE",
                    "PARTITION", "CHECKPOINT", "APPLIED", "LAG", "LAG (s)", "RUNNER"
                )?;
                for p in &g.partitions {
                    let state = match (&p.parked, p.caught_up) {
                        (Some(_), _) => "parked",
                        (None, true) => "caught up",
                        (None, false) => "catching up",
                    };
                    writeln!(
                        out,
                        "  {:>9}  {:>20}  {:>10}  {:>8}  {:>8.1}  {:<7}  {state}",
                        p.partition,
                        p.checkpoint.to_string(),
                        p.applied,
                        p.lag_events,
                        p.lag_seconds,
                        if p.running { "yes" } else { "no" },
                    )?;
                }
                for p in &g.partitions {
                    if let Some(parked) = &p.parked {
                        writeln!(
                            out,
                            "  partition {} parked {} on event {} ({} version {}, position {}) \
                             after {} attempt(s): {}",
                            p.partition,
                            parked.at.format("%Y-%m-%d %H:%M:%S UTC"),
                            parked.event_id,
                            parked.stream,
                            parked.version,
                            parked.position,
                            parked.attempts,
                            clip(&parked.error, 200)
                        )?;
                    }
                }
            }
            if s.building.is_some() {
                writeln!(out)?;
                writeln!(
                    out,
                    "readers see the active generation until the building one has caught up"
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
