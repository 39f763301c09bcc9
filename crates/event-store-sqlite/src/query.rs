//! SQLite's dialect of the shared query compiler: `?n` parameters, positions as one offset, times
//! as fixed-width RFC 3339 text; `subject` and `data` equalities are checked in Rust with
//! [`Query::matches`](event_store::Query::matches), so they behave exactly as in every other
//! backend.

use chrono::{DateTime, Utc};
use event_store::Position;
use event_store_sql::{Dialect, Param};
use rusqlite::types::Value as SqlValue;

use crate::connection::{offset, time_text};

/// The columns an event is read from, in the order `connection::recorded` decodes them.
pub(crate) const COLUMNS: &str =
    "position, id, stream, version, namespace, event_type, data, context";

pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    const COLUMNS: &'static str = COLUMNS;
    const LOG_ORDER: &'static str = "position";
    const FIELDS_IN_SQL: bool = false;

    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn after(after: Position, bind: &mut dyn FnMut(Param) -> String) -> String {
        format!("position > {}", bind(Param::Int(offset(after))))
    }

    fn time(t: DateTime<Utc>) -> Param {
        Param::Text(time_text(t))
    }
}

/// A parameter as the driver takes it.
pub(crate) fn to_sql(p: &Param) -> SqlValue {
    match p {
        Param::Int(v) => SqlValue::Integer(*v),
        Param::Text(v) => SqlValue::Text(v.clone()),
        Param::Json(v) => SqlValue::Text(v.to_string()),
        Param::Time(t) => SqlValue::Text(time_text(*t)),
    }
}
