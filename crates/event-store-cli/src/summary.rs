//! `read --stats`: what a read would print, summed up per namespace and type.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};
use event_store::{Position, RecordedEvent};
use serde::Serialize;

use crate::cli::Format;
use crate::out::{format_or, print_json, type_width};

/// One type's share of the events read.
#[derive(Debug, Clone, Serialize)]
struct TypeSummary {
    namespace: String,
    #[serde(rename = "type")]
    event_type: String,
    events: u64,
    first_position: Position,
    last_position: Position,
    first_time: DateTime<Utc>,
    last_time: DateTime<Utc>,
}

/// The types seen, in namespace and type order.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    types: BTreeMap<(String, String), TypeSummary>,
}

impl Summary {
    pub(crate) fn add(&mut self, e: &RecordedEvent) {
        let time = e.context.time;
        self.types
            .entry((e.namespace.clone(), e.event_type.clone()))
            .and_modify(|t| {
                t.events += 1;
                // Backward reads see the newest first: keep the extremes either way.
                t.first_position = t.first_position.min(e.position);
                t.last_position = t.last_position.max(e.position);
                t.first_time = t.first_time.min(time);
                t.last_time = t.last_time.max(time);
            })
            .or_insert_with(|| TypeSummary {
                namespace: e.namespace.clone(),
                event_type: e.event_type.clone(),
                events: 1,
                first_position: e.position,
                last_position: e.position,
                first_time: time,
                last_time: time,
            });
    }

    /// Prints the summary: a table on a terminal, NDJSON (one object per type) otherwise.
    pub(crate) fn print(self, format: Option<Format>, mut out: impl Write) -> Result<()> {
        let rows: Vec<TypeSummary> = self.types.into_values().collect();
        match format_or(format, Format::Ndjson) {
            Format::Ndjson => {
                for r in &rows {
                    serde_json::to_writer(&mut out, r)?;
                    writeln!(out)?;
                }
            }
            Format::Json => print_json(&mut out, &rows)?,
            Format::Table => {
                let width = type_width(
                    rows.iter()
                        .map(|r| (r.namespace.as_str(), r.event_type.as_str())),
                );
                writeln!(
                    out,
                    "{:<width$}  {:>9}  {:<14} {:<14} {:<20} LAST TIME",
                    "TYPE", "EVENTS", "FIRST", "LAST", "FIRST TIME"
                )?;
                for r in &rows {
                    writeln!(
                        out,
                        "{:<width$}  {:>9}  {:<14} {:<14} {:<20} {}",
                        format!("{}.{}", r.namespace, r.event_type),
                        r.events,
                        r.first_position.to_string(),
                        r.last_position.to_string(),
                        r.first_time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        r.last_time.format("%Y-%m-%dT%H:%M:%SZ"),
                    )?;
                }
                let total: u64 = rows.iter().map(|r| r.events).sum();
                writeln!(out, "{:<width$}  {total:>9}", "total")?;
            }
        }
        out.flush()?;
        Ok(())
    }
}
