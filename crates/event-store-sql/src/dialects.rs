//! The two dialects of this repository's adapters. (A new backend can implement [`Dialect`] in
//! its own crate; these live here because they are SQL text, not driver code.)

use chrono::{DateTime, Utc};
use event_store::{CheckedQuery, Error, Position, Result};

use crate::compile::{Dialect, Param, subject_object};
use crate::convert::{clamp, position_parts, unsigned};
use crate::driver::SqlRow;

/// A position part read from an event row.
fn part(backend: &'static str, row: &dyn SqlRow, index: usize, name: &str) -> Result<u64> {
    let v = row
        .int(index, name)?
        .ok_or_else(|| Error::backend(backend, format!("column `{name}` is NULL")))?;
    unsigned(backend, name, v)
}

/// PostgreSQL: `$n` parameters; positions `(tx, seq)`, the inserting transaction's id and a
/// sequence, compared as a row; the watermark is the oldest running transaction;
/// `subject`/`data` equalities in SQL (containment uses the GIN index; the equalities make it
/// exact for arrays and objects).
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

impl Dialect for Postgres {
    const COLUMNS: &'static str =
        "tx, seq, id, stream, version, namespace, event_type, data, context";
    const LOG_ORDER: &'static str = "tx, seq";
    const FIELDS_IN_SQL: bool = true;
    const PLACEHOLDER: &'static str = "$";
    const FINAL: Option<&'static str> =
        Some("tx < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)");

    fn starts_with(p: &str) -> String {
        format!("starts_with(stream, {p})")
    }

    fn after(after: Position, bind: &mut dyn FnMut(Param) -> String) -> String {
        let (tx, seq) = position_parts(after);
        let (tx, seq) = (bind(Param::Int(tx)), bind(Param::Int(seq)));
        format!("(tx, seq) > ({tx}, {seq})")
    }

    fn position_params(p: Position) -> Vec<Param> {
        let (tx, seq) = position_parts(p);
        vec![Param::Int(tx), Param::Int(seq)]
    }

    fn event_position(backend: &'static str, row: &dyn SqlRow) -> Result<(Position, usize)> {
        let (tx, seq) = (part(backend, row, 0, "tx")?, part(backend, row, 1, "seq")?);
        Ok((Position::from_parts(tx, seq), 2))
    }

    fn watermark(backend: &'static str, xmin: i64) -> Result<Position> {
        Ok(Position::from_parts(unsigned(backend, "xmin", xmin)?, 0))
    }

    fn fields(query: &CheckedQuery, bind: &mut dyn FnMut(Param) -> String) -> Vec<String> {
        let mut clauses = Vec::new();
        if !query.subject_fields().is_empty() {
            let p = bind(Param::Json(subject_object(query)));
            clauses.push(format!("(context -> 'subject') @> {p}"));
            for (k, v) in query.subject_fields() {
                let k = bind(Param::Text(k.clone()));
                let v = bind(Param::Json(v.clone()));
                clauses.push(format!("(context -> 'subject' -> {k}) = {v}"));
            }
        }
        for (k, v) in query.data_fields() {
            let k = bind(Param::Text(k.clone()));
            let v = bind(Param::Json(v.clone()));
            clauses.push(format!("(data -> {k}) = {v}"));
        }
        clauses
    }
}

/// SQLite: `?n` parameters; positions are one offset (`position`, in commit order: one writer);
/// times bound as fixed-width RFC 3339 text; `subject`/`data` equalities left to
/// [`Query::matches`](event_store::Query::matches), so they behave exactly as everywhere else.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Dialect for Sqlite {
    const COLUMNS: &'static str =
        "position, id, stream, version, namespace, event_type, data, context";
    const LOG_ORDER: &'static str = "position";
    const FIELDS_IN_SQL: bool = false;
    const PLACEHOLDER: &'static str = "?";
    const FINAL: Option<&'static str> = None;

    fn starts_with(p: &str) -> String {
        format!("substr(stream, 1, length({p})) = {p}")
    }

    fn unindexed(column: &str) -> String {
        // SQLite's planner picks an index for any equality, then sorts: `+` keeps the column
        // out of index choice, so the read walks the primary key (the log order) and filters.
        format!("+{column}")
    }

    fn after(after: Position, bind: &mut dyn FnMut(Param) -> String) -> String {
        format!("position > {}", bind(Param::Int(offset(after))))
    }

    fn time(t: DateTime<Utc>) -> Param {
        Param::Text(time_text(t))
    }

    fn position_params(p: Position) -> Vec<Param> {
        vec![Param::Int(offset(p))]
    }

    fn event_position(backend: &'static str, row: &dyn SqlRow) -> Result<(Position, usize)> {
        Ok((Position::from_offset(part(backend, row, 0, "position")?), 1))
    }

    fn watermark(backend: &'static str, value: i64) -> Result<Position> {
        Ok(Position::from_offset(unsigned(
            backend,
            "watermark",
            value,
        )?))
    }
}

/// A one-part position's offset (a position with a high part, from another backend, sorts after
/// every offset).
pub fn offset(p: Position) -> i64 {
    match p.parts() {
        (0, low) => clamp(low),
        _ => i64::MAX,
    }
}

/// A time as fixed-width RFC 3339 text, so that text order is time order.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
