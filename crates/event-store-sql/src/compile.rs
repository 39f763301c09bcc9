//! Typed queries compiled to SQL: the text depends only on the query's shape (which clauses it
//! has); every value is a bound parameter.

use chrono::{DateTime, Utc};
use event_store::{CheckedQuery, Position, Result};
use serde_json::{Map, Value};

use crate::convert::limit as limit_param;
use crate::driver::SqlRow;

/// A bound parameter of a compiled query, for the adapter to hand to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A JSON value (a `jsonb` or JSON text, as the backend stores it).
    Json(Value),
    /// A time.
    Time(DateTime<Utc>),
    /// A boolean (an integer 0 or 1 where the backend has no boolean type).
    Bool(bool),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// Text or NULL.
    OptText(Option<String>),
    /// A JSON value or NULL.
    OptJson(Option<Value>),
}

/// What one SQL backend does its own way.
pub trait Dialect {
    /// The columns an event is read from, in the order the adapter decodes them.
    const COLUMNS: &'static str;
    /// The `ORDER BY` of the global log.
    const LOG_ORDER: &'static str;
    /// Whether `subject` and `data` equalities are compiled to SQL; when not, the adapter reads
    /// candidate rows and keeps those [`Query::matches`](event_store::Query::matches) accepts.
    const FIELDS_IN_SQL: bool;

    /// What precedes a parameter's number (1-based) in the SQL text: `$` for `$1`, `?` for `?1`.
    const PLACEHOLDER: &'static str;
    /// The condition that keeps only final events (design.md §7.2), when not every committed
    /// event is final.
    const FINAL: Option<&'static str>;

    /// The condition "the stream id starts with the parameter `p`".
    fn starts_with(p: &str) -> String;

    /// The condition "after `after` in the log", pushing its parameters with `bind`.
    fn after(after: Position, bind: &mut dyn FnMut(Param) -> String) -> String;

    /// A position as the parameters the SQL files take for it.
    fn position_params(p: Position) -> Vec<Param>;

    /// The position in the leading columns of an event row, and the index of the column after
    /// them (where `id` is).
    fn event_position(backend: &'static str, row: &dyn SqlRow) -> Result<(Position, usize)>;

    /// The value of `watermark.sql` as a position.
    fn watermark(backend: &'static str, value: i64) -> Result<Position>;

    /// `column` in a condition that must not choose the index the backend reads by: reads are
    /// in log order with a limit, and an index whose rows are not in log order (a stream
    /// prefix's range, several types, a whole namespace, a time range) makes every page sort
    /// all the matching rows after the checkpoint, so a catch-up over many matching events
    /// costs their square. A backend whose planner cannot weigh this marks such columns here
    /// (SQLite: `+column`), so that the read walks the log in order and filters.
    fn unindexed(column: &str) -> String {
        column.to_owned()
    }

    /// A time as the backend binds it.
    fn time(t: DateTime<Utc>) -> Param {
        Param::Time(t)
    }

    /// The conditions for the `subject` and `data` equalities (only when
    /// [`Dialect::FIELDS_IN_SQL`]).
    fn fields(_query: &CheckedQuery, _bind: &mut dyn FnMut(Param) -> String) -> Vec<String> {
        Vec::new()
    }
}

/// A compiled query: the SQL, its parameters, and whether the caller must still keep only the
/// rows that [`Query::matches`](event_store::Query::matches) accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The SQL text.
    pub sql: String,
    /// The parameters, in placeholder order.
    pub params: Vec<Param>,
    /// Whether `subject`/`data` equalities are left to the caller.
    pub filter_rows: bool,
}

/// Which events a compiled read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// Every committed event (`Store::read_committed`).
    Committed,
    /// Final events only (`Store::read_final`).
    Final,
}

/// The SQL reading up to `limit` events matching `query` after `after`, in log order.
pub fn compile<D: Dialect>(
    query: &CheckedQuery,
    after: Position,
    limit: usize,
    finality: Finality,
) -> Compiled {
    let mut params: Vec<Param> = Vec::new();
    let mut bind = |p: Param| {
        params.push(p);
        format!("{}{}", D::PLACEHOLDER, params.len())
    };
    let limit = bind(Param::Int(limit_param(limit)));
    let mut clauses = vec![D::after(after, &mut bind)];
    if let (Finality::Final, Some(clause)) = (finality, D::FINAL) {
        clauses.push(clause.to_owned());
    }
    if let Some(stream) = query.stream_id() {
        let p = bind(Param::Text(stream.to_owned()));
        clauses.push(format!("stream = {p}"));
    }
    if let Some(prefix) = query.prefix() {
        let p = bind(Param::Text(prefix.to_owned()));
        clauses.push(D::starts_with(&p));
    }
    if !query.types().is_empty() {
        // One namespace and type reads its index in log order; anything else walks the log.
        let ordered = matches!(query.types(), [t] if t.event_type.is_some());
        let (namespace, event_type) = if ordered {
            ("namespace".to_owned(), "event_type".to_owned())
        } else {
            (D::unindexed("namespace"), D::unindexed("event_type"))
        };
        let any: Vec<String> = query
            .types()
            .iter()
            .map(|t| {
                let ns = bind(Param::Text(t.namespace.clone()));
                match &t.event_type {
                    Some(ty) => {
                        let ty = bind(Param::Text(ty.clone()));
                        format!("({namespace} = {ns} AND {event_type} = {ty})")
                    }
                    None => format!("{namespace} = {ns}"),
                }
            })
            .collect();
        clauses.push(format!("({})", any.join(" OR ")));
    }
    let has_fields = !query.subject_fields().is_empty() || !query.data_fields().is_empty();
    if D::FIELDS_IN_SQL {
        clauses.extend(D::fields(query, &mut bind));
    }
    let (since, until) = query.time_range();
    if let Some(t) = since {
        let p = bind(D::time(t));
        clauses.push(format!("{} >= {p}", D::unindexed("time")));
    }
    if let Some(t) = until {
        let p = bind(D::time(t));
        clauses.push(format!("{} < {p}", D::unindexed("time")));
    }
    let sql = format!(
        "SELECT {} FROM events WHERE {} ORDER BY {} LIMIT {limit}",
        D::COLUMNS,
        clauses.join(" AND "),
        D::LOG_ORDER
    );
    Compiled {
        sql,
        params,
        filter_rows: has_fields && !D::FIELDS_IN_SQL,
    }
}

/// The `subject` equalities as one JSON object (for containment operators).
pub fn subject_object(query: &CheckedQuery) -> Value {
    Value::Object(
        query
            .subject_fields()
            .iter()
            .cloned()
            .collect::<Map<String, Value>>(),
    )
}

#[cfg(test)]
mod tests {
    use event_store::Query;
    use serde_json::json;

    use super::*;

    use crate::dialects::Sqlite as Numbered;

    #[test]
    fn values_never_reach_the_sql_text() {
        let evil = "x'); DROP TABLE events; --";
        let q = Query::stream(evil)
            .event_type(evil, "T")
            .subject_eq("k", json!(evil))
            .data_eq("k", json!(evil))
            .check();
        // The stream and namespace are refused by the rules; build one the rules accept.
        assert!(q.is_err());
        let q = Query::stream("s")
            .event_type("ns", "T")
            .subject_eq(evil, json!(evil))
            .data_eq(evil, json!(evil))
            .check()
            .unwrap_or_else(|e| panic!("{e}"));
        let c = compile::<Numbered>(&q, Position::from_offset(5), 10, Finality::Committed);
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert!(c.filter_rows, "fields are left to the caller");
        assert_eq!(
            c.sql,
            "SELECT position, id, stream, version, namespace, event_type, data, context FROM \
             events WHERE position > ?2 AND stream = ?3 AND ((namespace = ?4 AND event_type = \
             ?5)) ORDER BY position LIMIT ?1"
        );
    }

    #[test]
    fn the_shape_decides_the_text() {
        let a = Query::stream("a").namespace("n").check();
        let b = Query::stream("b").namespace("m").check();
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("valid queries")
        };
        assert_eq!(
            compile::<Numbered>(&a, Position::START, 1, Finality::Final).sql,
            compile::<Numbered>(&b, Position::START, 9, Finality::Final).sql
        );
    }

    #[test]
    fn only_reads_in_log_order_may_use_an_index_on_sqlite() {
        let text = |q: Query| {
            let Ok(q) = q.check() else {
                panic!("a valid query")
            };
            compile::<Numbered>(&q, Position::START, 10, Finality::Final).sql
        };
        // One namespace and type: its index is in log order.
        let one = text(Query::all().event_type("n", "T"));
        assert!(
            one.contains("(namespace = ?3 AND event_type = ?4)"),
            "{one}"
        );
        // A whole namespace, several types, a time range: walk the log and filter.
        let namespace = text(Query::all().namespace("n"));
        assert!(namespace.contains("+namespace = ?3"), "{namespace}");
        let several = text(Query::all().event_type("n", "T").event_type("m", "U"));
        assert!(
            several.contains("(+namespace = ?3 AND +event_type = ?4)"),
            "{several}"
        );
        let since = text(Query::all().since(chrono::Utc::now()));
        assert!(since.contains("+time >= ?3"), "{since}");
    }
}
