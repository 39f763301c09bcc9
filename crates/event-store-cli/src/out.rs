//! Writing to stdout: buffered, one JSON line per event, and the rules every command's output
//! follows (the README's CLI contract).

use std::io::{BufWriter, IsTerminal as _, Write};

use anyhow::Result;
use event_store::RecordedEvent;
use serde::Serialize;

use crate::cli::Format;

/// Buffered standard output.
pub(crate) fn stdout() -> BufWriter<std::io::Stdout> {
    BufWriter::new(std::io::stdout())
}

/// Whether stdout is a terminal (people read it) rather than a pipe or a file (programs do).
pub(crate) fn to_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// The format asked for, else a table on a terminal and `piped` otherwise: the one rule of
/// every command that prints.
pub(crate) fn format_or(asked: Option<Format>, piped: Format) -> Format {
    asked.unwrap_or(if to_terminal() { Format::Table } else { piped })
}

/// The terminal's width in columns (`COLUMNS`, else the terminal's own size), or `None` when
/// stdout is not a terminal and `COLUMNS` is not set.
pub(crate) fn width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    if !to_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, columns)| usize::from(columns))
}

/// The width of a TYPE column of `NAMESPACE.TYPE` names: the longest name, at least the
/// header's four characters.
pub(crate) fn type_width<'a>(names: impl Iterator<Item = (&'a str, &'a str)>) -> usize {
    names
        .map(|(namespace, event_type)| namespace.len() + event_type.len() + 1)
        .max()
        .unwrap_or(4)
        .max(4)
}

/// One event as a JSON line.
pub(crate) fn print_line(out: &mut impl Write, e: &RecordedEvent) -> Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    writeln!(out)?;
    Ok(())
}

/// A JSON document (`--format json`): indented on a terminal, one line otherwise.
pub(crate) fn print_json(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    if to_terminal() {
        serde_json::to_writer_pretty(&mut *out, value)?;
    } else {
        serde_json::to_writer(&mut *out, value)?;
    }
    writeln!(out)?;
    Ok(())
}
