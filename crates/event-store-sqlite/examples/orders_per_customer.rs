//! A projection: orders per customer, kept in SQL tables of the store's own SQLite database, each
//! event applied exactly once (the read model's writes and the projection's checkpoint commit in
//! one transaction).
//!
//! `cargo run -p event-store-sqlite --example orders_per_customer` places 200 orders (every
//! seventh cancelled) from four concurrent writers into `./orders.db`, while a runner with two
//! partitions keeps the read model up to date; it waits until the model has every order, prints
//! it next to the same totals folded from the log, and the projection's status. Then inspect
//! it with the CLI: `event-store --url sqlite://./orders.db projections status
//! orders_per_customer`. Run it again: the runner continues from its checkpoint. Pass another
//! path as the first argument to use another file.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Duration;

use event_store::projection::{Projection, RunnerOptions, Tables};
use event_store::{BoxError, Event, EventStore, Events, Position, Query, RecordedEvent};
use event_store_sqlite::{SqliteProjection, SqliteStore, Transactional};
use rusqlite::{Connection, OptionalExtension as _};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "shop")]
struct OrderPlaced {
    customer: String,
    total_cents: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "shop")]
struct OrderCancelled {
    reason: String,
}

#[derive(Events, Debug, Clone)]
enum OrderEvent {
    OrderPlaced(OrderPlaced),
    OrderCancelled(OrderCancelled),
}

/// The read model: `customers` (orders and total per customer) and `orders` (what a
/// cancellation needs to know about the order it cancels).
struct OrdersPerCustomer;

impl Projection for OrdersPerCustomer {
    const NAME: &'static str = "orders_per_customer";
    // Bump it when `create` or `apply` changes: the runner rebuilds the model from the start
    // beside the current one and switches readers over once it has caught up.
    const VERSION: u32 = 1;

    fn query(&self) -> Query {
        Query::events::<OrderEvent>()
    }
}

impl SqliteProjection for OrdersPerCustomer {
    const TABLES: &'static [&'static str] = &["customers", "orders"];

    fn create(&self, conn: &Connection, tables: &Tables) -> Result<(), BoxError> {
        let (customers, orders) = (tables.get("customers")?, tables.get("orders")?);
        conn.execute_batch(&format!(
            "CREATE TABLE {customers} (customer TEXT PRIMARY KEY, orders INTEGER NOT NULL,
                                       total_cents INTEGER NOT NULL);
             CREATE TABLE {orders} (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL,
                                    total_cents INTEGER NOT NULL, cancelled INTEGER NOT NULL);"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        conn: &Connection,
        tables: &Tables,
        event: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let (customers, orders) = (tables.get("customers")?, tables.get("orders")?);
        match event.decode::<OrderEvent>()? {
            OrderEvent::OrderPlaced(placed) => {
                conn.prepare_cached(&format!(
                    "INSERT INTO {orders} (order_id, customer, total_cents, cancelled)
                     VALUES (?1, ?2, ?3, 0)"
                ))?
                .execute((
                    &event.stream,
                    &placed.customer,
                    placed.total_cents,
                ))?;
                conn.prepare_cached(&format!(
                    "INSERT INTO {customers} (customer, orders, total_cents) VALUES (?1, 1, ?2)
                     ON CONFLICT (customer) DO UPDATE
                     SET orders = orders + 1, total_cents = total_cents + excluded.total_cents"
                ))?
                .execute((&placed.customer, placed.total_cents))?;
            }
            OrderEvent::OrderCancelled(_) => {
                // The order's own events are in one partition, in order: it was placed before.
                let order: Option<(String, i64)> = conn
                    .prepare_cached(&format!(
                        "SELECT customer, total_cents FROM {orders}
                         WHERE order_id = ?1 AND cancelled = 0"
                    ))?
                    .query_row([&event.stream], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((customer, cents)) = order {
                    conn.prepare_cached(&format!(
                        "UPDATE {orders} SET cancelled = 1 WHERE order_id = ?1"
                    ))?
                    .execute([&event.stream])?;
                    conn.prepare_cached(&format!(
                        "UPDATE {customers} SET orders = orders - 1,
                         total_cents = total_cents - ?2 WHERE customer = ?1"
                    ))?
                    .execute((&customer, cents))?;
                }
            }
        }
        Ok(())
    }
}

const CUSTOMERS: [&str; 5] = ["ada", "grace", "edsger", "barbara", "ken"];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./orders.db".to_owned());
    let store = SqliteStore::open(&path).await?;
    let es = EventStore::from_store(store);

    // The runner: catch-up from its checkpoint, then live; two partitions by stream. Start as
    // many as you like, in as many processes: they share the partitions through lock files.
    let runner = es
        .runner(Transactional::new(OrdersPerCustomer))
        .with_options(RunnerOptions::default().partitions(2))
        .spawn();

    // Four writers place 50 orders each; every seventh order is cancelled.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                let mut last = Position::START;
                for i in 0..50_usize {
                    let n = w * 50 + i;
                    let order = format!("order-{}", uuid::Uuid::now_v7());
                    let placed = OrderPlaced {
                        customer: CUSTOMERS[n % CUSTOMERS.len()].to_owned(),
                        total_cents: i64::try_from(100 + (n * 37) % 900)?,
                    };
                    last = es
                        .save(&order, &OrderEvent::OrderPlaced(placed))
                        .await?
                        .position;
                    if n % 7 == 0 {
                        let cancelled = OrderCancelled {
                            reason: "changed their mind".to_owned(),
                        };
                        last = es
                            .save(&order, &OrderEvent::OrderCancelled(cancelled))
                            .await?
                            .position;
                    }
                }
                Ok::<Position, BoxError>(last)
            })
        })
        .collect();
    let mut last = Position::START;
    for w in writers {
        last = last.max(w.await??);
    }

    // Read-your-writes: wait until the model has applied everything up to the last save.
    let projections = es.projections();
    projections
        .wait_for(OrdersPerCustomer::NAME, last, Duration::from_secs(30))
        .await?;

    // Readers query the view `customers`, which always shows a complete generation.
    let model: BTreeMap<String, (i64, i64)> = {
        let conn = Connection::open(&path)?;
        let mut stmt =
            conn.prepare("SELECT customer, orders, total_cents FROM customers ORDER BY customer")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        rows.collect::<Result<_, _>>()?
    };
    let folded = fold_the_log(&es).await?;
    println!(
        "{:<10} {:>7} {:>12}   (folded from the log)",
        "CUSTOMER", "ORDERS", "TOTAL"
    );
    for (customer, (orders, cents)) in &model {
        let (f_orders, f_cents) = folded.get(customer).copied().unwrap_or_default();
        println!(
            "{customer:<10} {orders:>7} {:>12.2}   ({f_orders}, {:.2})",
            to_units(*cents),
            to_units(f_cents)
        );
    }
    println!(
        "the read model {} the log",
        if model == folded {
            "equals"
        } else {
            "DIFFERS FROM"
        }
    );

    if let Some(status) = projections.status(OrdersPerCustomer::NAME).await? {
        let active = status.active.as_ref();
        println!(
            "projection {}: {} (generation {}, {} events applied, lag {} events)",
            status.name,
            status.state,
            active.map_or(0, |g| g.generation),
            active.map_or(0, |g| g.partitions.iter().map(|p| p.applied).sum::<u64>()),
            active.map_or(0, |g| g.lag_events),
        );
    }
    runner.stop().await?;
    Ok(())
}

/// The same totals, folded from the whole log by hand: what the model must equal.
async fn fold_the_log(
    es: &EventStore<SqliteStore>,
) -> Result<BTreeMap<String, (i64, i64)>, BoxError> {
    let mut orders: BTreeMap<String, (String, i64, bool)> = BTreeMap::new();
    let mut cursor = event_store::LogCursor::new(Position::START);
    loop {
        let page = cursor.next_page(es.store()).await?;
        if page.is_empty() {
            break;
        }
        for e in page.iter().filter(|e| e.namespace == "shop") {
            match e.decode::<OrderEvent>()? {
                OrderEvent::OrderPlaced(p) => {
                    orders.insert(e.stream.clone(), (p.customer, p.total_cents, false));
                }
                OrderEvent::OrderCancelled(_) => {
                    if let Some(o) = orders.get_mut(&e.stream) {
                        o.2 = true;
                    }
                }
            }
        }
    }
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (customer, cents, cancelled) in orders.into_values() {
        let t = totals.entry(customer).or_default();
        if !cancelled {
            t.0 += 1;
            t.1 += cents;
        }
    }
    Ok(totals)
}

#[allow(clippy::cast_precision_loss)]
fn to_units(cents: i64) -> f64 {
    cents as f64 / 100.0
}
