//! Parameters of the shared SQL layer as rusqlite takes them (the dialect itself is
//! [`event_store_sql::dialects::Sqlite`]).

use event_store_sql::Param;
use event_store_sql::dialects::time_text;
use rusqlite::types::Value as SqlValue;

/// A parameter as the driver takes it.
pub(crate) fn to_sql(p: &Param) -> SqlValue {
    match p {
        Param::Int(v) => SqlValue::Integer(*v),
        Param::Text(v) => SqlValue::Text(v.clone()),
        Param::Json(v) => SqlValue::Text(v.to_string()),
        Param::Time(t) => SqlValue::Text(time_text(*t)),
        Param::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Param::OptInt(v) => v.map_or(SqlValue::Null, SqlValue::Integer),
        Param::OptText(v) => v.clone().map_or(SqlValue::Null, SqlValue::Text),
        Param::OptJson(v) => v
            .as_ref()
            .map_or(SqlValue::Null, |v| SqlValue::Text(v.to_string())),
    }
}
