//! Projection leases on PostgreSQL: session-level advisory locks, held by one dedicated
//! connection per store. A lock lives as long as its session: when the process dies or its
//! connection is lost, the server releases it, and another runner takes the partition.
//!
//! Advisory locks are re-entrant within a session, so the store also keeps the keys this
//! process holds: a second holder in the same process is refused, as one in another process
//! is by the server. Keys are 64-bit hashes of the lease's text and the schema
//! ([`LeaseKey::hash64`]), so stores in different schemas of one database never collide.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_store::projection::{Lease, LeaseKey};
use event_store::{Error, Result};
use tokio_postgres::{Client, NoTls};

use crate::error::pg;
use crate::tls::Connector;

/// How often the session is checked (a lost connection loses every lease within this).
const PING: Duration = Duration::from_secs(1);

/// The session that holds this process's advisory locks, connected on first use.
pub(crate) struct Sessions {
    config: tokio_postgres::Config,
    connector: Connector,
    schema: String,
    current: tokio::sync::Mutex<Option<Session>>,
    held: Arc<Mutex<HashSet<i64>>>,
}

#[derive(Clone)]
struct Session {
    client: Arc<Client>,
    alive: Arc<AtomicBool>,
}

/// A projection lease held on PostgreSQL.
pub struct PgLease {
    key: i64,
    session: Session,
    held: Arc<Mutex<HashSet<i64>>>,
    released: bool,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease")
            .field("key", &self.key)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl Lease for PgLease {
    fn is_held(&self) -> bool {
        self.session.alive.load(Ordering::Acquire)
    }

    async fn release(mut self) {
        self.released = true;
        unlock(&self.session, self.key).await;
        forget(&self.held, self.key);
    }
}

/// Unlocks `key` in `session` (a failure means the session is gone, and the lock with it).
async fn unlock(session: &Session, key: i64) {
    if !session.alive.load(Ordering::Acquire) {
        return;
    }
    if let Err(e) = session
        .client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
    {
        tracing::warn!(error = %e, "releasing a projection lease failed; it goes with the session");
        session.alive.store(false, Ordering::Release);
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let key = self.key;
        let session = self.session.clone();
        let held = Arc::clone(&self.held);
        // Unlock first, then let this process take the key again, so the session never holds
        // it twice. A lease dropped outside a runtime (or whose session died) is released by
        // the server when the session ends.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if session.alive.load(Ordering::Acquire) => {
                rt.spawn(async move {
                    unlock(&session, key).await;
                    forget(&held, key);
                });
            }
            _ => forget(&held, key),
        }
    }
}

fn forget(held: &Mutex<HashSet<i64>>, key: i64) {
    held.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key);
}

impl Sessions {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        connector: Connector,
        schema: String,
    ) -> Self {
        Self {
            config,
            connector,
            schema,
            current: tokio::sync::Mutex::new(None),
            held: Arc::default(),
        }
    }

    fn key(&self, key: &LeaseKey) -> i64 {
        key.hash64(&format!("event-store:{}", self.schema))
    }

    /// The live session, connecting a new one when there is none.
    async fn session(&self) -> Result<Session> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref()
            && s.alive.load(Ordering::Acquire)
        {
            return Ok(s.clone());
        }
        let session = match &self.connector {
            Connector::Plain => connect(&self.config, NoTls).await?,
            Connector::Tls(tls) => connect(&self.config, tls.clone()).await?,
        };
        *current = Some(session.clone());
        Ok(session)
    }

    pub(crate) async fn try_lease(&self, key: &LeaseKey) -> Result<Option<PgLease>> {
        let k = self.key(key);
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if !held.insert(k) {
                return Ok(None);
            }
        }
        let outcome = async {
            let session = self.session().await?;
            let row = session
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
                .await
                .map_err(|e| {
                    session.alive.store(false, Ordering::Release);
                    pg("take a projection lease", e)
                })?;
            let locked: bool = row
                .try_get(0)
                .map_err(|e| pg("take a projection lease", e))?;
            Ok::<_, Error>(locked.then_some(session))
        }
        .await;
        match outcome {
            Ok(Some(session)) => Ok(Some(PgLease {
                key: k,
                session,
                held: Arc::clone(&self.held),
                released: false,
            })),
            Ok(None) => {
                forget(&self.held, k);
                Ok(None)
            }
            Err(e) => {
                forget(&self.held, k);
                Err(e)
            }
        }
    }

    /// Whether the lock of `key` is held, by this process or any other session.
    pub(crate) async fn is_leased(&self, key: &LeaseKey, client: &Client) -> Result<bool> {
        let k = self.key(key);
        if self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&k)
        {
            return Ok(true);
        }
        // A bigint advisory lock shows as classid (high 32 bits) and objid (low 32 bits).
        let bits = u64::from_ne_bytes(k.to_ne_bytes());
        let (high, low) = (
            i64::try_from(bits >> 32).unwrap_or(0),
            i64::try_from(bits & 0xffff_ffff).unwrap_or(0),
        );
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                 WHERE locktype = 'advisory' AND granted AND objsubid = 1
                                   AND database = (SELECT oid FROM pg_database
                                                    WHERE datname = current_database())
                                   AND classid::bigint = $1 AND objid::bigint = $2)",
                &[&high, &low],
            )
            .await
            .map_err(|e| pg("check a projection lease", e))?;
        row.try_get(0)
            .map_err(|e| pg("check a projection lease", e))
    }
}

/// Connects a session and watches it: `alive` turns false when the connection ends or stops
/// answering.
async fn connect<T>(config: &tokio_postgres::Config, tls: T) -> Result<Session>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| pg("connect the lease session", e))?;
    let alive = Arc::new(AtomicBool::new(true));
    let client = Arc::new(client);
    {
        let alive = Arc::clone(&alive);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the projection lease session ended; its leases are lost");
            }
            alive.store(false, Ordering::Release);
        });
    }
    {
        let (alive, client) = (Arc::clone(&alive), Arc::downgrade(&client));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PING).await;
                let Some(client) = client.upgrade() else {
                    return;
                };
                if !alive.load(Ordering::Acquire) {
                    return;
                }
                let ping = tokio::time::timeout(PING * 5, client.simple_query("")).await;
                if !matches!(ping, Ok(Ok(_))) {
                    tracing::warn!(
                        "the projection lease session stopped answering; its leases are lost"
                    );
                    alive.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
    Ok(Session { client, alive })
}
