//! Writing to stdout: buffered, one JSON line per event.

use std::io::BufWriter;

use anyhow::Result;
use event_store::RecordedEvent;

/// Buffered standard output.
pub(crate) fn stdout() -> BufWriter<std::io::Stdout> {
    BufWriter::new(std::io::stdout())
}

/// One event as a JSON line.
pub(crate) fn print_line(out: &mut impl std::io::Write, e: &RecordedEvent) -> Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    writeln!(out)?;
    Ok(())
}
