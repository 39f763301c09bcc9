//! Typed queries compiled to SQL: the text depends only on the query's *shape* (which clauses it
//! has); every value is a bound parameter.

use chrono::{DateTime, Utc};
use event_store::{Position, Query};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

/// A parameter of a compiled query.
#[derive(Debug)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Json(Value),
    Time(DateTime<Utc>),
}

impl Param {
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Int(v) => v,
            Self::Text(v) => v,
            Self::Json(v) => v,
            Self::Time(v) => v,
        }
    }
}

pub(crate) const COLUMNS: &str =
    "tx, seq, id, stream, version, namespace, event_type, data, context";

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The SQL and parameters reading up to `limit` events matching `query` after `after`, in log
/// order (committed events, not only final ones: see `Store::read_query`).
pub(crate) fn compile(query: &Query, after: Position, limit: usize) -> (String, Vec<Param>) {
    let (tx, seq) = after.parts();
    let mut params = vec![
        Param::Int(to_i64(tx)),
        Param::Int(to_i64(seq)),
        Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
    ];
    let next = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    let mut clauses = vec!["(tx, seq) > ($1, $2)".to_owned()];
    if let Some(stream) = query.stream_id() {
        let p = next(&mut params, Param::Text(stream.to_owned()));
        clauses.push(format!("stream = {p}"));
    }
    if !query.types().is_empty() {
        let mut any = Vec::new();
        for t in query.types() {
            let ns = next(&mut params, Param::Text(t.namespace.clone()));
            match &t.event_type {
                Some(ty) => {
                    let ty = next(&mut params, Param::Text(ty.clone()));
                    any.push(format!("(namespace = {ns} AND event_type = {ty})"));
                }
                None => any.push(format!("namespace = {ns}")),
            }
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if !query.subject_fields().is_empty() {
        // Containment uses the GIN index; the equalities make it exact for arrays and objects.
        let object: Map<String, Value> = query.subject_fields().iter().cloned().collect();
        let p = next(&mut params, Param::Json(Value::Object(object)));
        clauses.push(format!("(context -> 'subject') @> {p}"));
        for (k, v) in query.subject_fields() {
            let k = next(&mut params, Param::Text(k.clone()));
            let v = next(&mut params, Param::Json(v.clone()));
            clauses.push(format!("(context -> 'subject' -> {k}) = {v}"));
        }
    }
    for (k, v) in query.data_fields() {
        let k = next(&mut params, Param::Text(k.clone()));
        let v = next(&mut params, Param::Json(v.clone()));
        clauses.push(format!("(data -> {k}) = {v}"));
    }
    let (since, until) = query.time_range();
    if let Some(t) = since {
        let p = next(&mut params, Param::Time(t));
        clauses.push(format!("time >= {p}"));
    }
    if let Some(t) = until {
        let p = next(&mut params, Param::Time(t));
        clauses.push(format!("time < {p}"));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE {} ORDER BY tx, seq LIMIT $3",
        clauses.join(" AND ")
    );
    (sql, params)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_never_reach_the_sql_text() {
        let evil = "x'); DROP TABLE events; --";
        let q = Query::stream(evil)
            .event_type(evil, evil)
            .namespace(evil)
            .subject_eq(evil, json!(evil))
            .data_eq(evil, json!(evil));
        let (sql, params) = compile(&q, Position::from_parts(5, 6), 10);
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(params.len() > 8);
        assert!(sql.starts_with("SELECT tx, seq"));
    }

    #[test]
    fn the_shape_decides_the_text() {
        let a = compile(&Query::stream("a").namespace("n"), Position::START, 1).0;
        let b = compile(&Query::stream("b").namespace("m"), Position::START, 9).0;
        assert_eq!(a, b);
    }
}
