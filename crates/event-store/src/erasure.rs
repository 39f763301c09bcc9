//! Crypto-shredding's building blocks: forgetting a person in a log that is never rewritten.
//!
//! A person's personal values are stored **sealed** (AES-256-GCM) with a **data key** of their
//! own; forgetting them destroys that key, and every sealed value becomes unreadable for ever,
//! without touching a stored byte of the log. Data keys are stored only **wrapped** by a
//! **master key**, which lives outside the store (an environment variable, a file, a KMS), so a
//! copy of the database alone reveals nothing.
//!
//! - [`MasterKey`]: wraps and unwraps data keys, each bound to its subject (a wrapped key moved to
//!   another subject fails to unwrap). Keys carry an id, so the master key can be rotated: the
//!   old one still unwraps what it wrapped until [`Keys::rotate`] rewraps everything.
//! - [`DataKey`]: seals and opens values, each bound to its [`Binding`] (subject, event type,
//!   field), with a fresh random nonce per value. A changed byte, or a value moved to another
//!   field, event type or subject, is [`Error::Unauthentic`], never garbage.
//! - [`KeyStore`]: where wrapped keys are kept, with a tombstone for each forgotten subject (a
//!   forgotten subject never gets a key again by accident). [`MemoryKeyStore`] keeps them in
//!   memory.
//! - [`Keys`]: the service over a key store and the master keys: a subject's key for writing
//!   (created on first use) or for reading, `forget`, `rotate`, and a check at start that the
//!   master key is the one the store's keys were wrapped with.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> event_store::Result<()> {
//! use event_store::erasure::{Binding, Keys, MasterKey, MemoryKeyStore};
//! use serde_json::json;
//!
//! let master = MasterKey::from_text("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let keys = Keys::new(MemoryKeyStore::new(), master, vec![]);
//! keys.check().await?;
//! let at = Binding::new("user-7", "accounts", "Registered", "email");
//! let key = keys.for_writing("user-7").await?.expect("not forgotten");
//! let sealed = key.seal(&at, &json!("ada@example.com"));
//! assert!(!sealed.to_string().contains("ada@"));
//! let key = keys.for_reading("user-7").await?.expect("not forgotten");
//! assert_eq!(key.open(&at, &sealed)?, json!("ada@example.com"));
//!
//! keys.forget("user-7").await?;
//! assert!(keys.for_reading("user-7").await?.is_none());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The length of every key, in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// The key a sealed value is stored under in the data: `{"$sealed": "2:NONCE:CIPHERTEXT:SUBJECT"}`
/// (the first format, still read, was `{"$sealed": {"v": 1, "s", "n", "c"}}`).
pub const SEALED_KEY: &str = "$sealed";
/// The subject [`Keys::check`] keeps a key for, to recognise its master key at start.
pub const CANARY_SUBJECT: &str = "$event-store:canary";
/// The first sealed format's version (an object of four fields), still read.
const SEALED_VERSION: u64 = 1;
/// The sealed format written: one string, `2:NONCE:CIPHERTEXT:SUBJECT` (base64 never holds a
/// `:`, so the subject, last, may), which a reader parses into one string rather than a map of
/// four (half the allocations of reading an event with two sealed values).
const SEALED_PREFIX: &str = "2:";
const NONCE_LEN: usize = 12;

fn bytes_of(what: &'static str, text: &str) -> Result<Vec<u8>> {
    BASE64
        .decode(text.trim())
        .map_err(|e| Error::invalid(what, format!("not base64 ({e})")))
}

/// Length-prefixed parts, so `("ab", "c")` and `("a", "bc")` bind differently.
fn bound(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The key that wraps every data key. Kept outside the store; its id is stored with what it
/// wrapped, so an old master key still opens its keys during a rotation.
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A master key from its id (1 to 64 characters of `A–Z a–z 0–9 _ -`) and its 32 bytes.
    pub fn new(id: impl Into<String>, key: &[u8]) -> Result<Self> {
        let id = id.into();
        crate::limits::check_name("master key id", &id)?;
        if key.len() != KEY_LEN {
            return Err(Error::invalid(
                "master key",
                format!("is {} bytes; it must be {KEY_LEN}", key.len()),
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| Error::invalid("master key", "is not an AES-256 key"))?;
        Ok(Self { id, cipher })
    }

    /// A master key from its text form, `ID:BASE64` (the 32 bytes in standard base64), as kept
    /// in an environment variable or a file.
    pub fn from_text(text: &str) -> Result<Self> {
        let Some((id, key)) = text.trim().split_once(':') else {
            return Err(Error::invalid(
                "master key",
                "is not ID:BASE64 (like k1:…, 32 bytes in base64)",
            ));
        };
        let key = Zeroizing::new(bytes_of("master key", key)?);
        Self::new(id, &key)
    }

    /// A new random master key with this id, and its text form (to keep outside the store).
    pub fn generate(id: impl Into<String>) -> Result<(Self, Zeroizing<String>)> {
        let key = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).to_vec());
        let id = id.into();
        let text = Zeroizing::new(format!("{id}:{}", BASE64.encode(&*key)));
        Ok((Self::new(id, &key)?, text))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `key`, encrypted with this master key and bound to `subject`.
    pub fn wrap(&self, subject: &str, key: &DataKey) -> WrappedKey {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = bound(&["data key", subject, &self.id]);
        // AES-GCM refuses only messages beyond 64 GiB; a key is 32 bytes.
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &key.inner.key[..],
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        WrappedKey {
            master: self.id.clone(),
            nonce: BASE64.encode(nonce),
            key: BASE64.encode(ciphertext),
        }
    }

    /// The data key `wrapped` holds for `subject`: [`Error::Unauthentic`] when it was wrapped
    /// for another subject, by another key, or changed.
    pub fn unwrap_key(&self, subject: &str, wrapped: &WrappedKey) -> Result<DataKey> {
        let unauthentic = || Error::Unauthentic {
            what: format!("the data key of subject `{subject}`"),
        };
        if wrapped.master != self.id {
            return Err(Error::invalid(
                "master key",
                format!(
                    "the data key of subject `{subject}` was wrapped by master key `{}`, not `{}`",
                    wrapped.master, self.id
                ),
            ));
        }
        let nonce = bytes_of("wrapped key nonce", &wrapped.nonce)?;
        if nonce.len() != NONCE_LEN {
            return Err(unauthentic());
        }
        let ciphertext = bytes_of("wrapped key", &wrapped.key)?;
        let aad = bound(&["data key", subject, &self.id]);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| unauthentic())?,
        );
        DataKey::from_bytes(&plain).map_err(|_| unauthentic())
    }
}

/// A data key as stored: encrypted by the master key `master`, bound to its subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the master key that wrapped it.
    pub master: String,
    /// The nonce, in base64.
    pub nonce: String,
    /// The encrypted key and its tag, in base64.
    pub key: String,
}

/// Where a sealed value belongs: the subject it is about, the event type, the field and (for
/// values in the log) the event's id. A value opens only where it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    subject: String,
    namespace: String,
    event_type: String,
    field: String,
    event: Option<uuid::Uuid>,
}

impl Binding {
    /// The binding of `field` (a path in the data, like `email` or `address.street`) in events
    /// of `namespace.event_type` about `subject`.
    pub fn new(
        subject: impl Into<String>,
        namespace: impl Into<String>,
        event_type: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        Self {
            subject: subject.into(),
            namespace: namespace.into(),
            event_type: event_type.into(),
            field: field.into(),
            event: None,
        }
    }

    /// The same place in one event: the value opens in no other event.
    #[must_use]
    pub fn in_event(mut self, id: uuid::Uuid) -> Self {
        self.event = Some(id);
        self
    }

    fn at(&self) -> At<'_> {
        At {
            subject: &self.subject,
            namespace: &self.namespace,
            event_type: &self.event_type,
            field: &self.field,
            event: self.event,
        }
    }
}

/// A [`Binding`] borrowed: what sealing and opening in the log use, without allocating.
#[derive(Clone, Copy)]
struct At<'a> {
    subject: &'a str,
    namespace: &'a str,
    event_type: &'a str,
    field: &'a str,
    event: Option<uuid::Uuid>,
}

impl At<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let event: &str = match self.event {
            Some(e) => e.as_hyphenated().encode_lower(&mut id),
            None => "",
        };
        bound(&[
            "sealed value",
            self.subject,
            self.namespace,
            self.event_type,
            self.field,
            event,
        ])
    }

    fn describe(&self) -> String {
        format!(
            "the personal field `{}` of a `{}.{}` event about subject `{}`",
            self.field, self.namespace, self.event_type, self.subject
        )
    }
}

/// A subject's data key. Zeroed when dropped (its bytes and its AES key schedule); never
/// stored unwrapped. Clones share one copy.
#[derive(Clone)]
pub struct DataKey {
    inner: Arc<KeyMaterial>,
}

struct KeyMaterial {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The expanded key, made once (zeroed on drop: the `aes` crate's `zeroize` feature).
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&Aes256Gcm::generate_key(&mut OsRng));
        Self::of(key)
    }

    fn of(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        // A 32-byte array is always an AES-256 key.
        let cipher = Aes256Gcm::new(key.as_ref().into());
        Self {
            inner: Arc::new(KeyMaterial { key, cipher }),
        }
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(Error::invalid("data key", "has the wrong length"));
        }
        key.copy_from_slice(bytes);
        Ok(Self::of(key))
    }

    fn cipher(&self) -> &Aes256Gcm {
        &self.inner.cipher
    }

    /// `value` sealed where `at` says, with a fresh nonce: `{"$sealed":
    /// "2:NONCE:CIPHERTEXT:SUBJECT"}` (base64). Two seals of one value differ.
    pub fn seal(&self, at: &Binding, value: &Value) -> Value {
        self.seal_at(at.at(), value)
    }

    fn seal_at(&self, at: At<'_>, value: &Value) -> Value {
        // Encoding a JSON value cannot fail, and AES-GCM refuses only messages beyond 64 GiB
        // (an event is at most `limits::MAX_EVENT_BYTES`).
        let plain = Zeroizing::new(serde_json::to_vec(value).unwrap_or_default());
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = at.aad();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut text = String::with_capacity(
            SEALED_PREFIX.len() + 18 + ciphertext.len().div_ceil(3) * 4 + at.subject.len(),
        );
        text.push_str(SEALED_PREFIX);
        BASE64.encode_string(nonce, &mut text);
        text.push(':');
        BASE64.encode_string(&ciphertext, &mut text);
        text.push(':');
        // Whose key opens it (bound too: a changed subject does not open).
        text.push_str(at.subject);
        let mut outer = Map::new();
        outer.insert(SEALED_KEY.to_owned(), Value::String(text));
        Value::Object(outer)
    }

    /// The value `sealed` holds, if it was sealed with this key where `at` says:
    /// [`Error::Unauthentic`] otherwise (nothing is decrypted), [`Error::InvalidInput`] when
    /// `sealed` is not a sealed value.
    pub fn open(&self, at: &Binding, sealed: &Value) -> Result<Value> {
        self.open_at(at.at(), sealed)
    }

    fn open_at(&self, at: At<'_>, sealed: &Value) -> Result<Value> {
        let (nonce, ciphertext) = parts(sealed)?;
        let aad = at.aad();
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| Error::Unauthentic {
                    what: at.describe(),
                })?,
        );
        serde_json::from_slice(&plain).map_err(|e| Error::codec("a sealed value", e))
    }
}

/// The subject whose key opens `value`, when it is a sealed value.
pub fn sealed_subject(value: &Value) -> Option<&str> {
    if !is_sealed(value) {
        return None;
    }
    match &value[SEALED_KEY] {
        Value::String(text) => text.splitn(4, ':').nth(3),
        inner => inner["s"].as_str(),
    }
}

/// Whether `value` is a sealed value (`{"$sealed": "2:…"}`, or the first format's
/// `{"$sealed": {…}}`).
pub fn is_sealed(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.len() == 1
            && o.get(SEALED_KEY).is_some_and(|v| match v {
                Value::String(text) => text.starts_with(SEALED_PREFIX),
                v => v.is_object(),
            })
    })
}

fn parts(sealed: &Value) -> Result<(Vec<u8>, Vec<u8>)> {
    let not_sealed = || {
        Error::invalid(
            "sealed value",
            "is not {\"$sealed\": \"2:NONCE:CIPHERTEXT:SUBJECT\"}",
        )
    };
    if !is_sealed(sealed) {
        return Err(not_sealed());
    }
    let (nonce, ciphertext) = match &sealed[SEALED_KEY] {
        Value::String(text) => {
            let mut fields = text.splitn(4, ':').skip(1);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(n), Some(c), Some(_subject)) => (n, c),
                _ => return Err(not_sealed()),
            }
        }
        inner => {
            if inner["v"].as_u64() != Some(SEALED_VERSION) {
                return Err(Error::invalid(
                    "sealed value",
                    format!(
                        "has version {}; this code reads versions {SEALED_VERSION} and 2",
                        inner["v"]
                    ),
                ));
            }
            (
                inner["n"].as_str().ok_or_else(not_sealed)?,
                inner["c"].as_str().ok_or_else(not_sealed)?,
            )
        }
    };
    let nonce = bytes_of("sealed value nonce", nonce)?;
    if nonce.len() != NONCE_LEN {
        return Err(Error::invalid("sealed value nonce", "has the wrong length"));
    }
    let ciphertext = bytes_of("sealed value", ciphertext)?;
    Ok((nonce, ciphertext))
}

/// The stream [`EventStore::forget`](crate::EventStore::forget) records each forgetting in.
pub const FORGOTTEN_STREAM: &str = "event_store-forgotten";

/// The event [`EventStore::forget`](crate::EventStore::forget) appends to [`FORGOTTEN_STREAM`]:
/// the audit of an erasure (who asked, which subject, when: the event's time) without any of
/// the personal data, and the signal for projections and other services to remove their copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectForgotten {
    /// The subject whose key was destroyed.
    pub subject: String,
    /// Who asked (an operator, a service, a ticket).
    pub by: String,
    /// Whether the subject had a key (`false`: nothing was ever sealed for them, or they were
    /// forgotten before).
    pub had_key: bool,
}

impl crate::Event for SubjectForgotten {
    const NAMESPACE: &'static str = "event_store";
    const TYPE: &'static str = "SubjectForgotten";
}

/// Which fields of an event are personal, and which field names their subject
/// (`Event::PERSONAL`, `Event::SUBJECT`), as a [`NewEvent`](crate::NewEvent) carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Personal {
    /// The JSON keys of the personal fields.
    pub fields: &'static [&'static str],
    /// The JSON key of the subject field.
    pub subject: Option<&'static str>,
}

impl Personal {
    /// Nothing personal.
    pub const NONE: Self = Self {
        fields: &[],
        subject: None,
    };
}

/// The first personal field of `event` that holds a value not sealed yet, if any.
pub(crate) fn unsealed_field(event: &crate::NewEvent) -> Option<&'static str> {
    event.personal.fields.iter().copied().find(|f| {
        event
            .data
            .get(*f)
            .is_some_and(|v| !v.is_null() && !is_sealed(v))
    })
}

/// Refuses the `i`-th event of an append when it holds a personal value in the clear: personal
/// values are stored only sealed.
pub(crate) fn check_sealed(i: usize, event: &crate::NewEvent) -> Result<()> {
    match unsealed_field(event) {
        None => Ok(()),
        Some(f) => Err(Error::invalid(
            format!("events[{i}].data.{f}"),
            "is personal and not sealed: append through an event store with keys \
             (EventStore::with_keys), which seals it",
        )),
    }
}

/// Whether `data` holds a sealed value at its top.
pub fn has_sealed(data: &Value) -> bool {
    data.as_object().is_some_and(|o| o.values().any(is_sealed))
}

/// Erases every sealed value at the top of `data` (replaced by `null`, the erased value), as a
/// reader without keys sees them; returns whether there was any.
pub fn erase_sealed(data: &mut Value) -> bool {
    let mut any = false;
    if let Some(object) = data.as_object_mut() {
        for value in object.values_mut() {
            if is_sealed(value) {
                *value = Value::Null;
                any = true;
            }
        }
    }
    any
}

/// What opening an event's sealed values found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Whether the event held a sealed value.
    pub(crate) sealed: bool,
    /// The subjects whose values were opened (not erased), each once, in the order met.
    pub(crate) subjects: Vec<String>,
    /// Whether a value was erased (its subject forgotten, or no keys): what was read then
    /// depends on who reads it, and a state folded from it is not cached.
    pub(crate) erased: bool,
}

impl Opened {
    fn saw(&mut self, subject: Option<&str>, opened: bool) {
        self.sealed = true;
        match subject {
            Some(subject) if opened => {
                if !self.subjects.iter().any(|s| s == subject) {
                    self.subjects.push(subject.to_owned());
                }
            }
            _ => self.erased = true,
        }
    }
}

/// The last subject's key an event's values asked for: personal fields of one event are most
/// often about one person.
#[derive(Default)]
struct LastKey {
    subject: String,
    key: Option<DataKey>,
    known: bool,
}

impl LastKey {
    async fn of(&mut self, erasure: &dyn Erasure, subject: &str) -> Result<Option<&DataKey>> {
        if !self.known || self.subject != subject {
            self.key = erasure.key_for_reading(subject).await?;
            subject.clone_into(&mut self.subject);
            self.known = true;
        }
        Ok(self.key.as_ref())
    }
}

/// `sealed`, the value of `field` in `event`, opened with its subject's key (`null` when the
/// subject was forgotten, or without keys); the second item says whether it was opened. A value
/// that fails authentication is [`Error::Unauthentic`] naming the event.
async fn open_value(
    erasure: Option<&dyn Erasure>,
    last: &mut LastKey,
    event: &crate::RecordedEvent,
    field: &str,
    sealed: &Value,
) -> Result<(Value, bool)> {
    let (Some(erasure), Some(subject)) = (erasure, sealed_subject(sealed)) else {
        return Ok((Value::Null, false));
    };
    let Some(key) = last.of(erasure, subject).await? else {
        return Ok((Value::Null, false));
    };
    let at = At {
        subject,
        namespace: &event.namespace,
        event_type: &event.event_type,
        field,
        event: Some(event.id),
    };
    let value = key.open_at(at, sealed).map_err(|e| match e {
        Error::Unauthentic { what } => Error::Unauthentic {
            what: format!(
                "{what} (event {}, stream `{}`, version {})",
                event.id, event.stream, event.version
            ),
        },
        other => other,
    })?;
    Ok((value, true))
}

/// Every sealed value at the top of `event`'s data, in key order, opened with `erasure` (or
/// erased, `null`, once its subject is forgotten or without keys), with what opening found.
async fn opened_values<'e>(
    erasure: Option<&dyn Erasure>,
    event: &'e crate::RecordedEvent,
) -> Result<(Vec<(&'e str, Value)>, Opened)> {
    let mut opened = Opened::default();
    let mut values = Vec::new();
    let Some(object) = event.data.as_object() else {
        return Ok((values, opened));
    };
    let mut last = LastKey::default();
    for (field, value) in object.iter().filter(|(_, v)| is_sealed(v)) {
        let (plain, was_opened) = open_value(erasure, &mut last, event, field, value).await?;
        opened.saw(sealed_subject(value), was_opened);
        values.push((field.as_str(), plain));
    }
    Ok((values, opened))
}

/// Opens `event`'s sealed values with `erasure`, or erases them (`null`) once their subject is
/// forgotten or without keys. What every typed read path of the facade does before decoding.
pub(crate) async fn open_with(
    erasure: Option<&dyn Erasure>,
    event: &mut crate::RecordedEvent,
) -> Result<Opened> {
    if !has_sealed(&event.data) {
        return Ok(Opened::default());
    }
    let (values, opened) = opened_values(erasure, event).await?;
    let values: Vec<(String, Value)> = values
        .into_iter()
        .map(|(field, plain)| (field.to_owned(), plain))
        .collect();
    if let Some(object) = event.data.as_object_mut() {
        object.extend(values);
    }
    Ok(opened)
}

/// `event` decoded as `Ev`, its sealed values opened with `erasure` (erased without one): the
/// typed read of every path of the facade. The event is not copied: only its other values are,
/// into the data that is decoded.
pub(crate) async fn decode_opened<Ev: crate::Events>(
    erasure: Option<&dyn Erasure>,
    event: &crate::RecordedEvent,
) -> Result<Ev> {
    let Some(object) = event.data.as_object().filter(|_| has_sealed(&event.data)) else {
        return event.decode::<Ev>();
    };
    let (values, _) = opened_values(erasure, event).await?;
    let mut opened = values.into_iter();
    // In key order, as the map is: built in one pass.
    let data: Map<String, Value> = object
        .iter()
        .map(|(field, value)| {
            // The opened values come in the same key order as the sealed ones.
            let plain = if is_sealed(value) {
                opened.next()
            } else {
                None
            };
            let value = match plain {
                Some((_, plain)) => plain,
                None => value.clone(),
            };
            (field.clone(), value)
        })
        .collect();
    event.decode_data::<Ev>(&Value::Object(data))
}

/// The keys the [`EventStore`](crate::EventStore) seals and opens personal values with (see
/// [`EventStore::with_keys`](crate::EventStore::with_keys)): [`Keys`] over any key store, or
/// another source of subjects' data keys (an external KMS), behind one object-safe trait.
pub trait Erasure: Send + Sync + 'static {
    /// The subject's key for sealing, made on first use; `None` when the subject was forgotten
    /// (their personal data is not stored again).
    fn key_for_writing<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Option<DataKey>>>;

    /// The subject's key for opening; `None` when the subject never had one or was forgotten.
    fn key_for_reading<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Option<DataKey>>>;

    /// Destroys the subject's key (see [`Keys::forget`]); returns whether it had one.
    fn forget<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool>>;
}

impl<K: KeyStore> Erasure for Keys<K> {
    fn key_for_writing<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Option<DataKey>>> {
        Box::pin(self.for_writing(subject))
    }

    fn key_for_reading<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Option<DataKey>>> {
        Box::pin(self.for_reading(subject))
    }

    fn forget<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Keys::forget(self, subject))
    }
}

/// Seals the personal fields of the `index`-th event of an append with its subject's key (made
/// on first use). An event with personal values but no subject, or about a forgotten subject,
/// is refused.
///
/// `previous` is the event stored under the same id, if any: a value it holds sealed that opens
/// to the same plaintext is reused, so a retry stores the same bytes (idempotent).
pub(crate) async fn seal_event(
    erasure: &dyn Erasure,
    index: usize,
    event: &mut crate::NewEvent,
    previous: Option<&crate::RecordedEvent>,
) -> Result<()> {
    let personal = event.personal;
    if unsealed_field(event).is_none() {
        return Ok(());
    }
    let field = |name: &str| format!("events[{index}].data.{name}");
    let Some(subject_key) = personal.subject else {
        return Err(Error::invalid(
            field("*"),
            "personal fields without a subject field",
        ));
    };
    let Some(subject) = subject_of(&event.data, subject_key)? else {
        return Err(Error::invalid(
            field(subject_key),
            "names whose personal data the event holds: it must be given",
        ));
    };
    let Some(key) = erasure.key_for_writing(&subject).await? else {
        return Err(Error::invalid(
            field(subject_key),
            format!("subject `{subject}` was forgotten: its personal data is not stored again"),
        ));
    };
    // Bound to the event's id, which is given here if the caller did not.
    let id = *event.id.get_or_insert_with(uuid::Uuid::now_v7);
    let same_event = previous.filter(|p| {
        p.id == id && p.namespace == event.namespace && p.event_type == event.event_type
    });
    if let (Some(previous), Some(object)) = (same_event, event.data.as_object_mut()) {
        for field in personal.fields {
            let (Some(value), Some(stored)) = (object.get_mut(*field), previous.data.get(*field))
            else {
                continue;
            };
            let at = At {
                subject: &subject,
                namespace: &event.namespace,
                event_type: &event.event_type,
                field,
                event: Some(id),
            };
            if key
                .open_at(at, stored)
                .is_ok_and(|plain| crate::json_eq(&plain, value))
            {
                value.clone_from(stored);
            }
        }
    }
    seal_fields(
        &mut event.data,
        (&event.namespace, &event.event_type, id),
        &subject,
        personal.fields,
        &key,
    );
    Ok(())
}

/// The most subjects a cached state may have folded: a fold of more people's personal values
/// is not cached (opening it would ask for every one of their keys).
pub const MAX_STATE_SUBJECTS: usize = 64;

/// Where a cached state's pieces are bound: its cache entry and checkpoint (so it opens for no
/// other entry or checkpoint), and `subject` (a share's; empty for the state itself).
fn state_at<'a>(key: &'a crate::CacheKey, binding: &'a str, subject: &'a str) -> At<'a> {
    At {
        subject,
        namespace: "$cache",
        event_type: &key.aggregate,
        field: binding,
        event: None,
    }
}

/// The text a cached state of `key` at `checkpoint` is bound to (see [`state_at`]).
fn state_binding(key: &crate::CacheKey, checkpoint: crate::Position) -> String {
    format!(
        "{}/{}/{checkpoint}/{}",
        key.version, key.upcasters, key.query
    )
}

/// `state`, a cached aggregate state that folded personal values of `subjects` (in byte order),
/// sealed so that it opens only while every one of them has a key: the state is sealed with a
/// fresh key that is the XOR of one random share per subject, each share sealed with its
/// subject's key. `None` when a subject has no key (forgotten): such a state is not kept.
pub(crate) async fn seal_state(
    erasure: &dyn Erasure,
    key: &crate::CacheKey,
    checkpoint: crate::Position,
    subjects: &[String],
    state: &Value,
) -> Result<Option<Value>> {
    let binding = state_binding(key, checkpoint);
    let mut combined = Zeroizing::new([0u8; KEY_LEN]);
    let mut shares = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let Some(subject_key) = erasure.key_for_reading(subject).await? else {
            return Ok(None);
        };
        let share = DataKey::generate();
        for (c, b) in combined.iter_mut().zip(share.inner.key.iter()) {
            *c ^= b;
        }
        let at = state_at(key, &binding, subject);
        let mut text = Value::String(BASE64.encode(&share.inner.key[..]));
        shares.push(subject_key.seal_at(at, &text));
        zeroize_text(&mut text);
    }
    let at = state_at(key, &binding, "");
    let sealed = DataKey::of(combined).seal_at(at, state);
    let mut inner = Map::new();
    inner.insert("shares".to_owned(), Value::Array(shares));
    inner.insert("state".to_owned(), sealed);
    let mut outer = Map::new();
    outer.insert("$sealed_state".to_owned(), Value::Object(inner));
    Ok(Some(Value::Object(outer)))
}

/// Zeroes a share's text (a JSON string) before it is dropped.
fn zeroize_text(value: &mut Value) {
    if let Value::String(text) = value {
        zeroize::Zeroize::zeroize(text);
    }
}

/// The state [`seal_state`] sealed, if every subject still has a key (`None` otherwise: the
/// entry is of no use any more). A share or a state that fails authentication, or one moved to
/// another entry or checkpoint, is [`Error::Unauthentic`].
pub(crate) async fn open_state(
    erasure: &dyn Erasure,
    key: &crate::CacheKey,
    checkpoint: crate::Position,
    subjects: &[String],
    sealed: &Value,
) -> Result<Option<Value>> {
    let unauthentic = || Error::Unauthentic {
        what: format!("the cached state of `{}` ({})", key.aggregate, key.query),
    };
    let inner = &sealed["$sealed_state"];
    let (Some(shares), state) = (inner["shares"].as_array(), &inner["state"]) else {
        return Err(unauthentic());
    };
    if shares.len() != subjects.len() {
        return Err(unauthentic());
    }
    let binding = state_binding(key, checkpoint);
    let mut combined = Zeroizing::new([0u8; KEY_LEN]);
    for (subject, share) in subjects.iter().zip(shares) {
        if sealed_subject(share) != Some(subject.as_str()) {
            return Err(unauthentic());
        }
        let Some(subject_key) = erasure.key_for_reading(subject).await? else {
            return Ok(None);
        };
        let at = state_at(key, &binding, subject);
        let mut text = subject_key.open_at(at, share).map_err(|_| unauthentic())?;
        let bytes = text
            .as_str()
            .map(|t| bytes_of("cached state share", t).map(Zeroizing::new));
        zeroize_text(&mut text);
        let bytes = bytes.ok_or_else(unauthentic)?.map_err(|_| unauthentic())?;
        if bytes.len() != KEY_LEN {
            return Err(unauthentic());
        }
        for (c, b) in combined.iter_mut().zip(bytes.iter()) {
            *c ^= b;
        }
    }
    let at = state_at(key, &binding, "");
    DataKey::of(combined)
        .open_at(at, state)
        .map(Some)
        .map_err(|_| unauthentic())
}

/// The subject an event's data names under `subject_key` (`Event::SUBJECT`): a string, or a
/// number as its text; `None` when the key is absent or null.
pub fn subject_of(data: &Value, subject_key: &str) -> Result<Option<String>> {
    match data.get(subject_key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Error::invalid(
            subject_key.to_owned(),
            "names the subject of personal fields: it must be a non-empty string or a number",
        )),
    }
}

/// Seals the personal `fields` (`Event::PERSONAL`) of `data`, the encoded data of a
/// `namespace.event_type` event about `subject`, with the subject's key: each present, non-null
/// value is replaced by its sealed form; a value already sealed is left as it is.
pub fn seal_fields(
    data: &mut Value,
    (namespace, event_type, id): (&str, &str, uuid::Uuid),
    subject: &str,
    fields: &[&str],
    key: &DataKey,
) {
    let Some(object) = data.as_object_mut() else {
        return;
    };
    for field in fields {
        if let Some(value) = object.get_mut(*field)
            && !value.is_null()
            && !is_sealed(value)
        {
            let at = At {
                subject,
                namespace,
                event_type,
                field,
                event: Some(id),
            };
            *value = key.seal_at(at, value);
        }
    }
}

/// Opens the personal `fields` of `data` (see [`seal_fields`]): with the subject's key each
/// sealed value is opened ([`Error::Unauthentic`] when it was tampered with); without one (the
/// subject was forgotten) each sealed value reads as `null`, the erased value.
pub fn open_fields(
    data: &mut Value,
    (namespace, event_type, id): (&str, &str, uuid::Uuid),
    subject: &str,
    fields: &[&str],
    key: Option<&DataKey>,
) -> Result<()> {
    let Some(object) = data.as_object_mut() else {
        return Ok(());
    };
    for field in fields {
        let Some(value) = object.get_mut(*field) else {
            continue;
        };
        if !is_sealed(value) {
            continue;
        }
        *value = match key {
            Some(key) => key.open_at(
                At {
                    subject,
                    namespace,
                    event_type,
                    field,
                    event: Some(id),
                },
                value,
            )?,
            None => Value::Null,
        };
    }
    Ok(())
}

/// A subject's entry in a key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// The subject's wrapped data key.
    Active(WrappedKey),
    /// The subject was forgotten: its key is destroyed and none is made again.
    Forgotten,
}

/// Where wrapped data keys are kept (each store adapter has one in its own database, beside
/// nothing that could unwrap them). Implementations keep every method atomic per subject.
pub trait KeyStore: Send + Sync + 'static {
    /// The subject's entry, if any.
    fn load(&self, subject: &str) -> impl Future<Output = Result<Option<KeyState>>> + Send;

    /// Stores `key` for `subject` unless it has an entry; returns the entry now stored (so
    /// concurrent first uses agree on one key, and a forgotten subject stays forgotten).
    fn create(
        &self,
        subject: &str,
        key: WrappedKey,
    ) -> impl Future<Output = Result<KeyState>> + Send;

    /// Destroys the subject's key, leaving a tombstone; returns whether it had one.
    fn forget(&self, subject: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Replaces the subject's key with `new` if it is still `old` (a rotation's
    /// compare-and-set); returns whether it did.
    fn replace(
        &self,
        subject: &str,
        old: &WrappedKey,
        new: WrappedKey,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Subjects with an active key, in byte order after `after`, at most `limit` of them.
    fn active(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, WrappedKey)>>> + Send;
}

/// A key store in memory (tests, and the memory store).
#[derive(Debug, Clone, Default)]
pub struct MemoryKeyStore {
    entries: Arc<Mutex<HashMap<String, KeyState>>>,
}

impl MemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, KeyState>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl KeyStore for MemoryKeyStore {
    async fn load(&self, subject: &str) -> Result<Option<KeyState>> {
        Ok(self.with(|e| e.get(subject).cloned()))
    }

    async fn create(&self, subject: &str, key: WrappedKey) -> Result<KeyState> {
        Ok(self.with(|e| {
            e.entry(subject.to_owned())
                .or_insert(KeyState::Active(key))
                .clone()
        }))
    }

    async fn forget(&self, subject: &str) -> Result<bool> {
        Ok(self.with(|e| {
            matches!(
                e.insert(subject.to_owned(), KeyState::Forgotten),
                Some(KeyState::Active(_))
            )
        }))
    }

    async fn replace(&self, subject: &str, old: &WrappedKey, new: WrappedKey) -> Result<bool> {
        Ok(self.with(|e| match e.get_mut(subject) {
            Some(KeyState::Active(k)) if k == old => {
                *k = new;
                true
            }
            _ => false,
        }))
    }

    async fn active(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, WrappedKey)>> {
        Ok(self.with(|e| {
            let mut out: Vec<(String, WrappedKey)> = e
                .iter()
                .filter(|(s, _)| after.is_none_or(|a| s.as_str() > a))
                .filter_map(|(s, k)| match k {
                    KeyState::Active(k) => Some((s.clone(), k.clone())),
                    KeyState::Forgotten => None,
                })
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.truncate(limit);
            out
        }))
    }
}

/// Subjects' data keys: a key store with the master key that wraps its keys (and earlier master
/// keys that still unwrap theirs until [`Keys::rotate`]).
///
/// Unwrapped keys are kept in memory for a while ([`KeyCacheOptions`]), so sealing and opening
/// do not ask the key store for every value. A forget through these keys takes effect here at
/// once; a forget by another process is seen within [`KeyCacheOptions::ttl`]. Forgotten subjects
/// are remembered (a tombstone never comes back).
pub struct Keys<K> {
    store: K,
    master: MasterKey,
    previous: Vec<MasterKey>,
    cache: KeyCache,
}

impl<K: fmt::Debug> fmt::Debug for Keys<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("store", &self.store)
            .field("master", &self.master)
            .field("previous", &self.previous)
            .field("cache", &self.cache.options)
            .finish_non_exhaustive()
    }
}

/// How long, and how many, unwrapped data keys [`Keys`] keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyCacheOptions {
    /// How long a key read from the key store is used before it is read again: the longest a
    /// forget by another process goes unseen here (default 5 s). Zero keeps no key.
    pub ttl: std::time::Duration,
    /// The most subjects kept (default 10 000); beyond it, the oldest entries go first.
    pub capacity: usize,
}

impl Default for KeyCacheOptions {
    fn default() -> Self {
        Self {
            ttl: std::time::Duration::from_secs(5),
            capacity: 10_000,
        }
    }
}

impl KeyCacheOptions {
    /// No key kept: every seal and open asks the key store.
    pub const NONE: Self = Self {
        ttl: std::time::Duration::ZERO,
        capacity: 0,
    };

    /// Keys kept for `ttl`, at most `capacity` subjects.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        Self { ttl, capacity }
    }
}

/// A subject's key as the cache keeps it.
#[derive(Clone)]
enum Cached {
    Active(DataKey),
    /// Forgotten for good: kept whatever the time to live.
    Forgotten,
}

impl Cached {
    fn key(self) -> Option<DataKey> {
        match self {
            Self::Active(key) => Some(key),
            Self::Forgotten => None,
        }
    }
}

/// Unwrapped keys in memory. Every forget bumps `epoch` (under the lock) before and after the
/// key store forgets, and a key read from the store is kept only if no forget began meanwhile,
/// so a key being forgotten is never kept.
struct KeyCache {
    options: KeyCacheOptions,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    epoch: u64,
    entries: HashMap<String, (Cached, std::time::Instant)>,
}

impl KeyCache {
    fn new(options: KeyCacheOptions) -> Self {
        Self {
            options,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enabled(&self) -> bool {
        self.options.capacity > 0 && !self.options.ttl.is_zero()
    }

    /// The kept entry of `subject`, if fresh.
    fn get(&self, subject: &str) -> Option<Cached> {
        if !self.enabled() {
            return None;
        }
        let inner = self.lock();
        match inner.entries.get(subject)? {
            (Cached::Forgotten, _) => Some(Cached::Forgotten),
            (Cached::Active(key), at) if at.elapsed() < self.options.ttl => {
                Some(Cached::Active(key.clone()))
            }
            (Cached::Active(_), _) => None,
        }
    }

    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps what the key store said of `subject`, read since `epoch`, unless a forget began
    /// since.
    fn keep(&self, epoch: u64, subject: &str, entry: Cached) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= self.options.capacity && !inner.entries.contains_key(subject) {
            let ttl = self.options.ttl;
            inner
                .entries
                .retain(|_, (c, at)| matches!(c, Cached::Forgotten) || at.elapsed() < ttl);
            if inner.entries.len() >= self.options.capacity {
                // Still full of fresh keys: drop the oldest eighth.
                let mut ages: Vec<(std::time::Instant, String)> = inner
                    .entries
                    .iter()
                    .map(|(s, (_, at))| (*at, s.clone()))
                    .collect();
                ages.sort_unstable();
                for (_, s) in ages.iter().take(self.options.capacity.div_ceil(8)) {
                    inner.entries.remove(s);
                }
            }
        }
        inner
            .entries
            .insert(subject.to_owned(), (entry, std::time::Instant::now()));
    }

    /// A forget of `subject` begins: no key read before now is kept, and its entry goes.
    fn forgetting(&self, subject: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.entries.remove(subject);
    }

    /// The key store forgot `subject`.
    fn forgotten(&self, subject: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        if self.enabled() {
            inner.entries.insert(
                subject.to_owned(),
                (Cached::Forgotten, std::time::Instant::now()),
            );
        }
    }
}

impl<K: KeyStore> Keys<K> {
    /// Keys kept in `store`, wrapped by `master`; `previous` master keys unwrap what they wrapped.
    /// Unwrapped keys are kept in memory as [`KeyCacheOptions::default`] says.
    pub fn new(store: K, master: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self {
            store,
            master,
            previous,
            cache: KeyCache::new(KeyCacheOptions::default()),
        }
    }

    /// The same keys, keeping unwrapped keys in memory as `options` says.
    #[must_use]
    pub fn with_cache(mut self, options: KeyCacheOptions) -> Self {
        self.cache = KeyCache::new(options);
        self
    }

    /// The key store.
    pub fn store(&self) -> &K {
        &self.store
    }

    fn master_for(&self, subject: &str, wrapped: &WrappedKey) -> Result<&MasterKey> {
        std::iter::once(&self.master)
            .chain(&self.previous)
            .find(|m| m.id == wrapped.master)
            .ok_or_else(|| {
                Error::invalid(
                    "master key",
                    format!(
                        "the data key of subject `{subject}` was wrapped by master key `{}`, which was not given",
                        wrapped.master
                    ),
                )
            })
    }

    fn unwrap_key(&self, subject: &str, wrapped: &WrappedKey) -> Result<DataKey> {
        self.master_for(subject, wrapped)?
            .unwrap_key(subject, wrapped)
    }

    /// Checks, before anything is written, that the master keys are the ones the store's keys
    /// were wrapped with: a canary key, made by the first check, must unwrap. A wrong key is an
    /// error naming the key ids, and nothing is written.
    pub async fn check(&self) -> Result<()> {
        let state = match self.store.load(CANARY_SUBJECT).await? {
            Some(state) => state,
            None => {
                let canary = self.master.wrap(CANARY_SUBJECT, &DataKey::generate());
                self.store.create(CANARY_SUBJECT, canary).await?
            }
        };
        match state {
            KeyState::Active(wrapped) => self.unwrap_key(CANARY_SUBJECT, &wrapped).map(drop).map_err(
                |e| match e {
                    Error::Unauthentic { .. } => Error::invalid(
                        "master key",
                        format!(
                            "master key `{}` is not the key `{}` this store's keys were wrapped with (same id, other bytes)",
                            self.master.id, wrapped.master
                        ),
                    ),
                    other => other,
                },
            ),
            KeyState::Forgotten => Err(Error::invalid(
                "key store",
                "its canary was forgotten; the store's keys cannot be checked",
            )),
        }
    }

    /// The subject's key, made on first use; `None` when the subject was forgotten.
    pub async fn for_writing(&self, subject: &str) -> Result<Option<DataKey>> {
        if let Some(kept) = self.cache.get(subject) {
            return Ok(kept.key());
        }
        let epoch = self.cache.epoch();
        if let Some(state) = self.store.load(subject).await? {
            return self.key_of(epoch, subject, state);
        }
        let fresh = DataKey::generate();
        let wrapped = self.master.wrap(subject, &fresh);
        let stored = self.store.create(subject, wrapped.clone()).await?;
        match stored {
            // Ours won: no need to unwrap what we hold.
            KeyState::Active(k) if k == wrapped => {
                self.cache
                    .keep(epoch, subject, Cached::Active(fresh.clone()));
                Ok(Some(fresh))
            }
            other => self.key_of(epoch, subject, other),
        }
    }

    /// The subject's key; `None` when the subject never had one or was forgotten.
    pub async fn for_reading(&self, subject: &str) -> Result<Option<DataKey>> {
        if let Some(kept) = self.cache.get(subject) {
            return Ok(kept.key());
        }
        let epoch = self.cache.epoch();
        match self.store.load(subject).await? {
            Some(state) => self.key_of(epoch, subject, state),
            // Not kept: another process may make the key any time.
            None => Ok(None),
        }
    }

    /// The key `state` holds, kept in memory (read from the store since `epoch`).
    fn key_of(&self, epoch: u64, subject: &str, state: KeyState) -> Result<Option<DataKey>> {
        match state {
            KeyState::Active(wrapped) => {
                let key = self.unwrap_key(subject, &wrapped)?;
                self.cache.keep(epoch, subject, Cached::Active(key.clone()));
                Ok(Some(key))
            }
            KeyState::Forgotten => {
                self.cache.keep(epoch, subject, Cached::Forgotten);
                Ok(None)
            }
        }
    }

    /// Destroys the subject's key: everything sealed for them is unreadable from now on (here
    /// at once; in another process's [`Keys`] within its [`KeyCacheOptions::ttl`]). Returns
    /// whether they had a key.
    pub async fn forget(&self, subject: &str) -> Result<bool> {
        if subject == CANARY_SUBJECT {
            return Err(Error::invalid("subject", "is the key store's canary"));
        }
        self.cache.forgetting(subject);
        let had = self.store.forget(subject).await?;
        self.cache.forgotten(subject);
        Ok(had)
    }

    /// Rewraps every key not wrapped by the current master key (the canary's too), without
    /// touching an event; returns how many it rewrapped. Run it after adding a new master key
    /// with the old ones as `previous`; then the old ones can go.
    pub async fn rotate(&self) -> Result<u64> {
        let mut after: Option<String> = None;
        let mut rewrapped = 0;
        loop {
            let page = self.store.active(after.as_deref(), 256).await?;
            let Some(last) = page.last().map(|(s, _)| s.clone()) else {
                return Ok(rewrapped);
            };
            for (subject, wrapped) in page {
                if wrapped.master == self.master.id {
                    continue;
                }
                let key = self.unwrap_key(&subject, &wrapped)?;
                let new = self.master.wrap(&subject, &key);
                if self.store.replace(&subject, &wrapped, new).await? {
                    rewrapped += 1;
                }
            }
            after = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn master(id: &str, byte: u8) -> MasterKey {
        MasterKey::new(id, &[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let key = DataKey::generate();
        let at = Binding::new("user-7", "accounts", "Registered", "email");
        let value = json!({"email": "ada@example.com", "n": [1, 2.5, null]});
        let sealed = key.seal(&at, &value);
        assert!(is_sealed(&sealed));
        assert!(!sealed.to_string().contains("ada@"));
        assert_ne!(sealed, key.seal(&at, &value), "a fresh nonce per seal");
        assert_eq!(key.open(&at, &sealed).unwrap(), value);
        // Moved to another subject, type or field, or opened with another key: unauthentic.
        for other in [
            Binding::new("user-8", "accounts", "Registered", "email"),
            Binding::new("user-7", "accounts", "Renamed", "email"),
            Binding::new("user-7", "accounts", "Registered", "name"),
        ] {
            let e = key.open(&other, &sealed).unwrap_err();
            assert!(matches!(e, Error::Unauthentic { .. }), "{e}");
        }
        let e = DataKey::generate().open(&at, &sealed).unwrap_err();
        assert!(matches!(e, Error::Unauthentic { .. }), "{e}");
        assert!(
            e.to_string().contains("`email`") && e.to_string().contains("user-7"),
            "{e}"
        );
        // Every changed byte of the ciphertext is caught.
        let text = sealed[SEALED_KEY].as_str().unwrap().to_owned();
        let fields: Vec<&str> = text.splitn(4, ':').collect();
        assert_eq!((fields[0], fields[3]), ("2", "user-7"), "{text}");
        let bytes = BASE64.decode(fields[2]).unwrap();
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            let mut tampered = sealed.clone();
            tampered[SEALED_KEY] = Value::String(format!(
                "2:{}:{}:{}",
                fields[1],
                BASE64.encode(&changed),
                fields[3]
            ));
            assert!(matches!(
                key.open(&at, &tampered),
                Err(Error::Unauthentic { .. })
            ));
        }
        // Another subject named in the envelope does not open either: a reader binds what the
        // envelope names.
        let mut renamed = sealed.clone();
        renamed[SEALED_KEY] = Value::String(format!("2:{}:{}:user-8", fields[1], fields[2]));
        let named = sealed_subject(&renamed).unwrap();
        assert_eq!(named, "user-8");
        assert!(matches!(
            key.open(
                &Binding::new(named, "accounts", "Registered", "email"),
                &renamed
            ),
            Err(Error::Unauthentic { .. })
        ));
        // The first format (an object of four fields) still opens.
        let first = json!({SEALED_KEY: {"v": 1, "s": "user-7", "n": fields[1], "c": fields[2]}});
        assert!(is_sealed(&first));
        assert_eq!(sealed_subject(&first), Some("user-7"));
        assert_eq!(key.open(&at, &first).unwrap(), value);
        // A user's string that merely looks alike is not a sealed value.
        assert!(!is_sealed(&json!({SEALED_KEY: "hello"})));
        assert!(!is_sealed(&json!({SEALED_KEY: "2:x", "other": 1})));
        // Not a sealed value: named as such.
        let e = key.open(&at, &json!("plain")).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_subject_and_master() {
        let m = master("k1", 1);
        let key = DataKey::generate();
        let wrapped = m.wrap("user-7", &key);
        let at = Binding::new("user-7", "a", "B", "f");
        let sealed = key.seal(&at, &json!(1));
        let back = m.unwrap_key("user-7", &wrapped).unwrap();
        assert_eq!(back.open(&at, &sealed).unwrap(), json!(1));
        assert!(matches!(
            m.unwrap_key("user-8", &wrapped),
            Err(Error::Unauthentic { .. })
        ));
        // The same id with other bytes: unauthentic; another id: named.
        assert!(matches!(
            master("k1", 2).unwrap_key("user-7", &wrapped),
            Err(Error::Unauthentic { .. })
        ));
        let e = master("k2", 1).unwrap_key("user-7", &wrapped).unwrap_err();
        assert!(e.to_string().contains("`k1`"), "{e}");
        assert!(!format!("{m:?}").contains("[1"), "the key is never printed");
    }

    #[test]
    fn master_keys_from_text() {
        let (m, text) = MasterKey::generate("k9").unwrap();
        let again = MasterKey::from_text(&text).unwrap();
        assert_eq!(again.id(), "k9");
        let key = DataKey::generate();
        assert!(again.unwrap_key("s", &m.wrap("s", &key)).is_ok());
        for bad in [
            "",
            "k1",
            "k1:not base64!",
            "k1:AAAA",
            "bad id:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ] {
            assert!(
                matches!(MasterKey::from_text(bad), Err(Error::InvalidInput { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn kept_keys_never_outlive_a_forget_here() {
        let store = MemoryKeyStore::new();
        let small = KeyCacheOptions::new(std::time::Duration::from_secs(3600), 2);
        let keys = Keys::new(store.clone(), master("k1", 1), vec![]).with_cache(small);
        let at = |s: &str| Binding::new(s, "a", "B", "f");
        let mut sealed = Vec::new();
        for s in ["s1", "s2", "s3", "s4"] {
            let key = keys.for_writing(s).await.unwrap().unwrap();
            sealed.push((s, key.seal(&at(s), &json!(s))));
        }
        // More subjects than the cache keeps: every key still opens its values.
        for (s, v) in &sealed {
            let key = keys.for_reading(s).await.unwrap().unwrap();
            assert_eq!(key.open(&at(s), v).unwrap(), json!(s));
        }
        assert!(keys.cache.lock().entries.len() <= 2);
        // A forget through these keys is seen at once, however long keys are kept.
        keys.for_reading("s4").await.unwrap().unwrap();
        assert!(keys.forget("s4").await.unwrap());
        assert!(keys.for_reading("s4").await.unwrap().is_none());
        assert!(keys.for_writing("s4").await.unwrap().is_none());
        // Another process's keys (another `Keys` over the same store) keeping none see it too.
        let other =
            Keys::new(store.clone(), master("k1", 1), vec![]).with_cache(KeyCacheOptions::NONE);
        assert!(other.for_reading("s3").await.unwrap().is_some());
        assert!(keys.forget("s3").await.unwrap());
        assert!(other.for_reading("s3").await.unwrap().is_none());
        // A forget that began after a read began leaves nothing kept from that read.
        let epoch = keys.cache.epoch();
        keys.cache.forgetting("s2");
        keys.cache
            .keep(epoch, "s2", Cached::Active(DataKey::generate()));
        assert!(
            keys.cache.get("s2").is_none(),
            "a key read before a forget is not kept"
        );
    }

    #[tokio::test]
    async fn forget_check_and_rotate() {
        let store = MemoryKeyStore::new();
        let keys = Keys::new(store.clone(), master("k1", 1), vec![]);
        keys.check().await.unwrap();
        let at = Binding::new("user-7", "a", "B", "f");
        let sealed = keys
            .for_writing("user-7")
            .await
            .unwrap()
            .unwrap()
            .seal(&at, &json!("x"));
        // The same key for every later use.
        let again = keys.for_writing("user-7").await.unwrap().unwrap();
        assert_eq!(again.open(&at, &sealed).unwrap(), json!("x"));
        assert!(keys.for_reading("nobody").await.unwrap().is_none());

        // A wrong master key is refused at the check; nothing is written.
        let wrong = Keys::new(store.clone(), master("k1", 2), vec![]);
        let before = store.active(None, 100).await.unwrap();
        let e = wrong.check().await.unwrap_err();
        assert!(e.to_string().contains("other bytes"), "{e}");
        assert_eq!(store.active(None, 100).await.unwrap(), before);

        // Rotation: a new master with the old one as previous rewraps everything.
        let rotating = Keys::new(store.clone(), master("k2", 3), vec![master("k1", 1)]);
        assert_eq!(rotating.rotate().await.unwrap(), 2, "user-7 and the canary");
        assert_eq!(rotating.rotate().await.unwrap(), 0);
        let after = Keys::new(store.clone(), master("k2", 3), vec![]);
        after.check().await.unwrap();
        let key = after.for_reading("user-7").await.unwrap().unwrap();
        assert_eq!(
            key.open(&at, &sealed).unwrap(),
            json!("x"),
            "events untouched, still open"
        );
        let e = Keys::new(store.clone(), master("k1", 1), vec![])
            .check()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("`k2`"), "{e}");

        // Forget: the key is gone for good, and is not made again.
        assert!(after.forget("user-7").await.unwrap());
        assert!(!after.forget("user-7").await.unwrap());
        assert!(after.for_reading("user-7").await.unwrap().is_none());
        assert!(after.for_writing("user-7").await.unwrap().is_none());
        assert!(after.forget(CANARY_SUBJECT).await.is_err());
    }
}
