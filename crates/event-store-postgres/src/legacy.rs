//! Reading the original event store's `events(id, data, context)` table (`LEGACY.md`), a page at
//! a time, in one consistent snapshot: what `event-store import-legacy` is built on.

use event_store::{Error, Result, Uuid};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

use crate::error::pg;
use crate::store::column;
use crate::tls::{Connector, PgTls};

/// One row of an original `events` table.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyRow {
    /// The event's id.
    pub id: Uuid,
    /// Its data, as stored.
    pub data: Value,
    /// Its context, as stored (`null` when the column is).
    pub context: Value,
    /// Its time in microseconds since 1970 as PostgreSQL reads `context->>'time'` (in UTC when it
    /// has no offset), `None` when it is missing or not a time. Rows come ordered by it, then id.
    pub time_micros: Option<i64>,
}

/// A connection to one original database, inside a read-only repeatable-read transaction (so
/// every read sees the same snapshot), with at most one open cursor.
pub struct LegacySource {
    client: Client,
    table: String,
    cursor_open: bool,
}

/// The expression of a row's time, as microseconds; `NULL` when it is not one of the original's
/// time forms (`event_store::legacy::parse_time` reads the same forms).
const TIME: &str = "pg_temp.event_store_legacy_time(context->>'time')";

impl LegacySource {
    /// Connects to `url` and opens the snapshot over `table` (`events`, or `schema.events`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL or table name, [`Error::Backend`] when the server
    /// cannot be reached, the table does not exist, or a temporary function cannot be created
    /// (the role needs the TEMP privilege, which PostgreSQL grants by default, on a primary).
    pub async fn connect(url: &str, tls: &PgTls, table: &str) -> Result<Self> {
        let valid = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid(p)) {
            return Err(Error::invalid(
                "table",
                format!("{table:?} is not a table name (`events` or `schema.events`)"),
            ));
        }
        let table = parts
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".");
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        let client = match crate::tls::connector(tls, &mut config)? {
            Connector::Plain => {
                let (client, conn) = config.connect(NoTls).await.map_err(|e| pg("connect", e))?;
                tokio::spawn(conn);
                client
            }
            Connector::Tls(tls) => {
                let (client, conn) = config.connect(tls).await.map_err(|e| pg("connect", e))?;
                tokio::spawn(conn);
                client
            }
        };
        client
            .batch_execute(include_str!("../sql/legacy/001_open.sql"))
            .await
            .map_err(|e| pg("open the original events table", e))?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg("open a snapshot", e))?;
        // Fail early, with the table's name, when it is not there.
        client
            .query(&format!("SELECT 1 FROM {table} LIMIT 1"), &[])
            .await
            .map_err(|e| pg(&format!("read {table}"), e))?;
        Ok(Self {
            client,
            table,
            cursor_open: false,
        })
    }

    /// How many rows the table holds.
    ///
    /// # Errors
    /// The driver's.
    pub async fn count(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(&format!("SELECT count(*) FROM {}", self.table), &[])
            .await
            .map_err(|e| pg("count", e))?;
        let n: i64 = column(&row, 0, "count")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn open(&mut self, select: &str) -> Result<()> {
        if self.cursor_open {
            self.client
                .batch_execute("CLOSE legacy_rows")
                .await
                .map_err(|e| pg("close the cursor", e))?;
        }
        self.client
            .batch_execute(&format!(
                "DECLARE legacy_rows NO SCROLL CURSOR FOR {select}"
            ))
            .await
            .map_err(|e| pg("open a cursor", e))?;
        self.cursor_open = true;
        Ok(())
    }

    /// Starts reading every id, in id order (see [`LegacySource::next_ids`]).
    ///
    /// # Errors
    /// The driver's.
    pub async fn start_ids(&mut self) -> Result<()> {
        self.open(&format!("SELECT id FROM {} ORDER BY id", self.table))
            .await
    }

    /// The next `n` ids (empty at the end).
    ///
    /// # Errors
    /// The driver's.
    pub async fn next_ids(&mut self, n: u32) -> Result<Vec<Uuid>> {
        let rows = self
            .client
            .query(&format!("FETCH {n} FROM legacy_rows"), &[])
            .await
            .map_err(|e| pg("read ids", e))?;
        rows.iter().map(|r| column(r, 0, "id")).collect()
    }

    /// Starts reading every row, ordered by time (rows without a readable time last), then id
    /// (see [`LegacySource::next_rows`]).
    ///
    /// # Errors
    /// The driver's.
    pub async fn start_rows(&mut self) -> Result<()> {
        self.open(&format!(
            "SELECT id, data::text, context::text, {TIME} AS t FROM {} ORDER BY t NULLS LAST, id",
            self.table
        ))
        .await
    }

    /// The next `n` rows (empty at the end).
    ///
    /// # Errors
    /// The driver's, and [`Error::Backend`] for a row whose JSON cannot be read exactly (an
    /// integer that does not fit 64 bits).
    pub async fn next_rows(&mut self, n: u32) -> Result<Vec<LegacyRow>> {
        let rows = self
            .client
            .query(&format!("FETCH {n} FROM legacy_rows"), &[])
            .await
            .map_err(|e| pg("read rows", e))?;
        rows.iter().map(row).collect()
    }

    /// The rows with these ids.
    ///
    /// # Errors
    /// As [`LegacySource::next_rows`].
    pub async fn rows_by_id(&self, ids: &[Uuid]) -> Result<Vec<LegacyRow>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT id, data::text, context::text, {TIME} FROM {} WHERE id = ANY($1) ORDER BY id",
                    self.table
                ),
                &[&ids],
            )
            .await
            .map_err(|e| pg("read rows by id", e))?;
        rows.iter().map(row).collect()
    }
}

fn row(r: &tokio_postgres::Row) -> Result<LegacyRow> {
    let id: Uuid = column(r, 0, "id")?;
    let json = |i: usize, what: &str| -> Result<Value> {
        match column::<Option<String>>(r, i, what)? {
            None => Ok(Value::Null),
            Some(text) => event_store::json::value_from_str(what, &text)
                .map_err(|e| Error::backend("postgres", format!("event {id}: {e}"))),
        }
    };
    Ok(LegacyRow {
        id,
        data: json(1, "data")?,
        context: json(2, "context")?,
        time_micros: column(r, 3, "time")?,
    })
}
