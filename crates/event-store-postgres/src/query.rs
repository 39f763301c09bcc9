//! Parameters of the shared SQL layer as `tokio-postgres` takes them (the dialect itself is
//! [`event_store_sql::dialects::Postgres`]).

use event_store_sql::Param;
use tokio_postgres::types::ToSql;

/// A parameter as the driver takes it.
pub(crate) fn as_sql(p: &Param) -> &(dyn ToSql + Sync) {
    match p {
        Param::Int(v) => v,
        Param::Text(v) => v,
        Param::Json(v) => v,
        Param::Time(v) => v,
        Param::Bool(v) => v,
        Param::OptInt(v) => v,
        Param::OptText(v) => v,
        Param::OptJson(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use event_store::{Position, Query};
    use event_store_sql::dialects::Postgres;
    use serde_json::json;

    #[test]
    fn fields_are_compiled_to_bound_parameters() {
        let evil = "x'); DROP TABLE events; --";
        let q = Query::stream("s")
            .subject_eq(evil, json!(evil))
            .data_eq(evil, json!(evil))
            .check()
            .unwrap_or_else(|e| panic!("{e}"));
        let c = event_store_sql::compile::<Postgres>(
            &q,
            Position::from_parts(5, 6),
            10,
            event_store_sql::Finality::Committed,
        );
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert!(!c.filter_rows);
        assert!(c.sql.starts_with("SELECT tx, seq"));
        assert!(c.sql.contains("(context -> 'subject') @> $"), "{}", c.sql);
    }
}
