//! [`KeyStore`](event_store::erasure::KeyStore) written once over a [`Driver`]: table
//! `subject_keys`, one row per subject; a forgotten subject's row keeps no key (a tombstone).

use event_store::Result;
use event_store::erasure::{KeyState, WrappedKey};

use crate::compile::Param;
use crate::driver::{Driver, SqlRow, Statement};

fn state(backend: &'static str, r: &dyn SqlRow, from: usize) -> Result<KeyState> {
    let master = r.text(from, "master")?;
    let nonce = r.text(from + 1, "nonce")?;
    let key = r.text(from + 2, "wrapped")?;
    match (master, nonce, key) {
        (Some(master), Some(nonce), Some(key)) => {
            Ok(KeyState::Active(WrappedKey { master, nonce, key }))
        }
        (None, None, None) => Ok(KeyState::Forgotten),
        _ => Err(event_store::Error::backend(
            backend,
            "a subject key row is partly NULL",
        )),
    }
}

/// [`KeyStore::load`](event_store::erasure::KeyStore::load).
pub async fn load<D: Driver>(d: &D, subject: &str) -> Result<Option<KeyState>> {
    let statement = Statement::new(
        "load a subject key",
        D::QUERIES.keys_load,
        vec![Param::Text(subject.to_owned())],
    );
    let rows = d.query(statement, |r| state(D::BACKEND, r, 0)).await?;
    Ok(rows.into_iter().next())
}

/// [`KeyStore::create`](event_store::erasure::KeyStore::create): inserted unless the subject
/// has a row, then whatever the row holds.
pub async fn create<D: Driver>(d: &D, subject: &str, key: WrappedKey) -> Result<KeyState> {
    let statement = Statement::new(
        "create a subject key",
        D::QUERIES.keys_create,
        vec![
            Param::Text(subject.to_owned()),
            Param::Text(key.master),
            Param::Text(key.nonce),
            Param::Text(key.key),
        ],
    );
    d.execute(statement).await?;
    load(d, subject).await?.ok_or_else(|| {
        event_store::Error::backend(D::BACKEND, "a subject key vanished after its insert")
    })
}

/// [`KeyStore::forget`](event_store::erasure::KeyStore::forget): the key cleared, or a
/// tombstone inserted for a subject that never had one.
pub async fn forget<D: Driver>(d: &D, subject: &str) -> Result<bool> {
    let cleared = d
        .execute(Statement::new(
            "forget a subject key",
            D::QUERIES.keys_forget,
            vec![Param::Text(subject.to_owned())],
        ))
        .await?;
    if cleared > 0 {
        return Ok(true);
    }
    d.execute(Statement::new(
        "leave a subject tombstone",
        D::QUERIES.keys_tombstone,
        vec![Param::Text(subject.to_owned())],
    ))
    .await?;
    Ok(false)
}

/// [`KeyStore::replace`](event_store::erasure::KeyStore::replace): a compare-and-set.
pub async fn replace<D: Driver>(
    d: &D,
    subject: &str,
    old: &WrappedKey,
    new: WrappedKey,
) -> Result<bool> {
    let statement = Statement::new(
        "replace a subject key",
        D::QUERIES.keys_replace,
        vec![
            Param::Text(subject.to_owned()),
            Param::Text(new.master),
            Param::Text(new.nonce),
            Param::Text(new.key),
            Param::Text(old.master.clone()),
            Param::Text(old.nonce.clone()),
            Param::Text(old.key.clone()),
        ],
    );
    Ok(d.execute(statement).await? > 0)
}

/// [`KeyStore::active`](event_store::erasure::KeyStore::active), in byte order.
pub async fn active<D: Driver>(
    d: &D,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, WrappedKey)>> {
    let statement = Statement::new(
        "list subject keys",
        D::QUERIES.keys_active,
        vec![
            Param::Text(after.unwrap_or("").to_owned()),
            Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    );
    d.query(statement, |r| {
        let subject = r
            .text(0, "subject")?
            .ok_or_else(|| event_store::Error::backend("sql", "a subject is NULL"))?;
        match state("sql", r, 1)? {
            KeyState::Active(k) => Ok((subject, k)),
            KeyState::Forgotten => Err(event_store::Error::backend(
                "sql",
                "a forgotten subject was listed as active",
            )),
        }
    })
    .await
}

/// Implements [`KeyStore`](event_store::erasure::KeyStore) for a type whose `$field` is a
/// [`Driver`].
#[macro_export]
macro_rules! impl_key_store {
    ($t:ty, $field:ident) => {
        impl ::event_store::erasure::KeyStore for $t {
            fn load(
                &self,
                subject: &str,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<
                    ::std::option::Option<::event_store::erasure::KeyState>,
                >,
            > + Send {
                $crate::keys::load(&self.$field, subject)
            }
            fn create(
                &self,
                subject: &str,
                key: ::event_store::erasure::WrappedKey,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<::event_store::erasure::KeyState>,
            > + Send {
                $crate::keys::create(&self.$field, subject, key)
            }
            fn forget(
                &self,
                subject: &str,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::keys::forget(&self.$field, subject)
            }
            fn replace(
                &self,
                subject: &str,
                old: &::event_store::erasure::WrappedKey,
                new: ::event_store::erasure::WrappedKey,
            ) -> impl ::std::future::Future<Output = ::event_store::Result<bool>> + Send {
                $crate::keys::replace(&self.$field, subject, old, new)
            }
            fn active(
                &self,
                after: ::std::option::Option<&str>,
                limit: usize,
            ) -> impl ::std::future::Future<
                Output = ::event_store::Result<
                    ::std::vec::Vec<(::std::string::String, ::event_store::erasure::WrappedKey)>,
                >,
            > + Send {
                $crate::keys::active(&self.$field, after, limit)
            }
        }
    };
}
