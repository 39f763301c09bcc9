//! Typed queries: stream, types, time range and checkpoint become bound SQL parameters; equality
//! on `subject` and `data` fields is checked in Rust with [`Query::matches`], so it behaves
//! exactly as in every other backend.

use event_store::{Position, Query};
use rusqlite::types::Value as SqlValue;

use crate::connection::{offset, time_text, to_i64};

const COLUMNS: &str = "position, id, stream, version, namespace, event_type, data, context";

/// The SQL and parameters reading up to `limit` candidate rows after `after`, in log order.
pub(crate) fn compile(query: &Query, after: Position, limit: usize) -> (String, Vec<SqlValue>) {
    let mut params = vec![
        SqlValue::Integer(offset(after)),
        SqlValue::Integer(to_i64(limit as u64)),
    ];
    let next = |params: &mut Vec<SqlValue>, v: SqlValue| {
        params.push(v);
        format!("?{}", params.len())
    };
    let mut clauses = vec!["position > ?1".to_owned()];
    if let Some(stream) = query.stream_id() {
        let p = next(&mut params, SqlValue::Text(stream.to_owned()));
        clauses.push(format!("stream = {p}"));
    }
    if !query.types().is_empty() {
        let mut any = Vec::new();
        for t in query.types() {
            let ns = next(&mut params, SqlValue::Text(t.namespace.clone()));
            match &t.event_type {
                Some(ty) => {
                    let ty = next(&mut params, SqlValue::Text(ty.clone()));
                    any.push(format!("(namespace = {ns} AND event_type = {ty})"));
                }
                None => any.push(format!("namespace = {ns}")),
            }
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    let (since, until) = query.time_range();
    if let Some(t) = since {
        let p = next(&mut params, SqlValue::Text(time_text(t)));
        clauses.push(format!("time >= {p}"));
    }
    if let Some(t) = until {
        let p = next(&mut params, SqlValue::Text(time_text(t)));
        clauses.push(format!("time < {p}"));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE {} ORDER BY position LIMIT ?2",
        clauses.join(" AND ")
    );
    (sql, params)
}

/// Whether the query needs the Rust-side filter.
pub(crate) fn filters_fields(query: &Query) -> bool {
    !query.subject_fields().is_empty() || !query.data_fields().is_empty()
}
