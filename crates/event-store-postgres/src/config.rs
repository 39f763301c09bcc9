//! Connection settings.

use std::time::Duration;

use event_store::{Error, Result};

/// How a [`PgStore`](crate::PgStore) connects and behaves.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The PostgreSQL schema holding the tables (default `event_store`): 1 to 63 characters of
    /// `a–z 0–9 _`, not starting with a digit. Tenants and tests can each have their own.
    pub schema: String,
    /// Most pooled connections (default 16).
    pub pool_size: usize,
    /// Whether the store sends a `NOTIFY` after its appends so tails in other processes wake at
    /// once (default true). The notification is sent after the commit, coalesced, and never
    /// delays an append. Tails poll where notifications do not arrive.
    pub notify: bool,
    /// Whether the store keeps a `LISTEN` connection to wake its tails on other processes'
    /// appends (default true). Off: tails wake on this process's appends and otherwise poll.
    pub listen: bool,
    /// The `application_name` of the connections (default `event-store`).
    pub application_name: String,
    /// How long to wait for a connection from the pool or the server (default 10 s).
    pub connect_timeout: Duration,
    /// TLS (default: as the URL's `sslmode` says).
    pub tls: crate::PgTls,
    /// The optional secondary indexes [`PgStore::migrate`](crate::PgStore::migrate) creates
    /// (default: none).
    pub indexes: Indexes,
    /// Streaming replicas to read from (default: none; every read on the primary).
    pub replicas: crate::Replicas,
}

/// The secondary indexes only optional queries use. Each makes its queries walk an index
/// instead of the log (or a namespace's events), and costs every append: the README gives the
/// measured cost per event. Migrating creates the ones asked for and never drops one (drop an
/// index you no longer want with `DROP INDEX`); queries give the same results either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Indexes {
    /// `events_subject`, a GIN index on `context -> 'subject'`: [`Query::subject_eq`](event_store::Query::subject_eq).
    pub subject: bool,
    /// `events_time`, a B-tree on `time`: [`Query::since`](event_store::Query::since) and
    /// [`Query::until`](event_store::Query::until).
    pub time: bool,
}

impl Indexes {
    /// Both optional indexes.
    pub fn all() -> Self {
        Self {
            subject: true,
            time: true,
        }
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            schema: "event_store".to_owned(),
            pool_size: 16,
            notify: true,
            listen: true,
            application_name: "event-store".to_owned(),
            connect_timeout: Duration::from_secs(10),
            tls: crate::PgTls::default(),
            indexes: Indexes::default(),
            replicas: crate::Replicas::default(),
        }
    }
}

impl PgConfig {
    /// The default settings with another schema.
    pub fn with_schema(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let s = self.schema.as_bytes();
        let ok = !s.is_empty()
            && s.len() <= 63
            && !s[0].is_ascii_digit()
            && s.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok {
            return Err(Error::invalid(
                "schema",
                format!(
                    "`{}` is not a schema name: use 1 to 63 of a-z 0-9 _, not starting with a digit",
                    self.schema.escape_debug()
                ),
            ));
        }
        if self.pool_size == 0 {
            return Err(Error::invalid("pool_size", "must be at least 1"));
        }
        Ok(())
    }

    /// The schema as a quoted identifier (safe: validated above).
    pub(crate) fn quoted_schema(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    /// The notification channel of this schema.
    pub(crate) fn channel(&self) -> String {
        format!("event_store_{}", self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for bad in [
            "",
            "Upper",
            "1abc",
            "has-dash",
            "x\"; DROP",
            &"a".repeat(64),
        ] {
            assert!(PgConfig::with_schema(bad).validate().is_err(), "{bad}");
        }
        for ok in ["event_store", "_t", "tenant_42"] {
            assert!(PgConfig::with_schema(ok).validate().is_ok(), "{ok}");
        }
    }
}
