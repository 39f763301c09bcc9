//! PostgreSQL's dialect of the shared query compiler: `$n` parameters, positions as
//! `(tx, seq)`, `subject`/`data` equalities in SQL (containment uses the GIN index; the
//! equalities make it exact for arrays and objects).

use event_store::{CheckedQuery, Position};
use event_store_sql::convert::position_parts;
use event_store_sql::{Dialect, Param, subject_object};
use tokio_postgres::types::ToSql;

/// The columns an event is read from, in the order `store::recorded` decodes them.
pub(crate) const COLUMNS: &str =
    "tx, seq, id, stream, version, namespace, event_type, data, context";

pub(crate) struct Postgres;

impl Dialect for Postgres {
    const COLUMNS: &'static str = COLUMNS;
    const LOG_ORDER: &'static str = "tx, seq";
    const FIELDS_IN_SQL: bool = true;

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn after(after: Position, bind: &mut dyn FnMut(Param) -> String) -> String {
        let (tx, seq) = position_parts(after);
        let (tx, seq) = (bind(Param::Int(tx)), bind(Param::Int(seq)));
        format!("(tx, seq) > ({tx}, {seq})")
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

/// A parameter as the driver takes it.
pub(crate) fn as_sql(p: &Param) -> &(dyn ToSql + Sync) {
    match p {
        Param::Int(v) => v,
        Param::Text(v) => v,
        Param::Json(v) => v,
        Param::Time(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use event_store::Query;
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_compiled_to_bound_parameters() {
        let evil = "x'); DROP TABLE events; --";
        let q = Query::stream("s")
            .subject_eq(evil, json!(evil))
            .data_eq(evil, json!(evil))
            .check()
            .unwrap_or_else(|e| panic!("{e}"));
        let c = event_store_sql::compile::<Postgres>(&q, Position::from_parts(5, 6), 10);
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert!(!c.filter_rows);
        assert!(c.sql.starts_with("SELECT tx, seq"));
        assert!(c.sql.contains("(context -> 'subject') @> $"), "{}", c.sql);
    }
}
