//! Printing events: JSON, NDJSON or a table.

use std::io::Write;

use anyhow::Result;
use event_store::RecordedEvent;

use crate::cli::Format;

/// Writes events one at a time in a format.
pub(crate) struct Printer<W: Write> {
    out: W,
    format: Format,
    count: usize,
}

impl<W: Write> Printer<W> {
    pub(crate) fn new(out: W, format: Format) -> Result<Self> {
        let mut p = Self {
            out,
            format,
            count: 0,
        };
        match format {
            Format::Json => write!(p.out, "[")?,
            Format::Table => writeln!(
                p.out,
                "{:<14} {:<24} {:>7}  {:<32} {:<27} DATA",
                "POSITION", "STREAM", "VERSION", "TYPE", "TIME"
            )?,
            Format::Ndjson => {}
        }
        Ok(p)
    }

    pub(crate) fn event(&mut self, e: &RecordedEvent) -> Result<()> {
        match self.format {
            Format::Ndjson => {
                serde_json::to_writer(&mut self.out, e)?;
                writeln!(self.out)?;
            }
            Format::Json => {
                if self.count > 0 {
                    write!(self.out, ",")?;
                }
                writeln!(self.out)?;
                serde_json::to_writer(&mut self.out, e)?;
            }
            Format::Table => {
                let mut data = e.data.clone();
                if let Some(map) = data.as_object_mut() {
                    map.remove("event_namespace");
                    map.remove("event_type");
                    map.remove("event_version");
                }
                let kind = match e.schema_version() {
                    1 => format!("{}.{}", e.namespace, e.event_type),
                    v => format!("{}.{} v{v}", e.namespace, e.event_type),
                };
                writeln!(
                    self.out,
                    "{:<14} {:<24} {:>7}  {:<32} {:<27} {}",
                    e.position.to_string(),
                    clip(&e.stream, 24),
                    e.version,
                    clip(&kind, 32),
                    e.context.time.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                    clip(&data.to_string(), 60)
                )?;
            }
        }
        self.count += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<usize> {
        if self.format == Format::Json {
            if self.count > 0 {
                writeln!(self.out)?;
            }
            writeln!(self.out, "]")?;
        }
        self.out.flush()?;
        Ok(self.count)
    }
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
