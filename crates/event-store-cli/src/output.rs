//! Printing events: JSON, NDJSON or a table.

use std::io::Write;

use anyhow::Result;
use event_store::RecordedEvent;

use crate::cli::Format;

/// The columns before DATA: position, stream, version, type, time, and their gaps.
const FIXED: usize = 14 + 1 + 24 + 1 + 7 + 2 + 32 + 1 + 27 + 1;
/// The narrowest DATA column on a narrow terminal.
const MIN_DATA: usize = 16;

/// Writes events one at a time in a format.
pub(crate) struct Printer<W: Write> {
    out: W,
    format: Format,
    count: usize,
    /// The widest DATA column (`None`: not cut, as when the table goes to a pipe or a file).
    data_width: Option<usize>,
    /// `--format json` on a terminal: each event indented.
    pretty: bool,
}

impl<W: Write> Printer<W> {
    pub(crate) fn new(out: W, format: Format) -> Result<Self> {
        let mut p = Self {
            out,
            format,
            count: 0,
            data_width: crate::out::width().map(|w| w.saturating_sub(FIXED).max(MIN_DATA)),
            pretty: crate::out::to_terminal(),
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
                if self.pretty {
                    serde_json::to_writer_pretty(&mut self.out, e)?;
                } else {
                    serde_json::to_writer(&mut self.out, e)?;
                }
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
                    match self.data_width {
                        Some(w) => clip(&data.to_string(), w),
                        None => data.to_string(),
                    }
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

/// `s` cut to `width` columns as a terminal shows them (wide characters count twice), with `…`
/// where it was cut.
pub(crate) fn clip(s: &str, width: usize) -> String {
    if console::measure_text_width(s) <= width {
        return s.to_owned();
    }
    console::truncate_str(s, width, "…").into_owned()
}
