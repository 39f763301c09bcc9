//! Event schema versions and upcasters: reading events written in an older shape.
//!
//! Events are immutable, so their shapes outlive the code that wrote them. An event type declares
//! its schema version (`#[event(version = 3)]`, 1 by default); every event is stored with the
//! version it was written at (the `event_version` key beside `event_namespace` and `event_type`
//! in its data, absent for version 1, so every event written before versions existed, and every
//! event of the original store, is version 1). A type at version 3 declares how to bring a
//! version-1 event to version 2 and a version-2 event to version 3: its [`Upcasters`].
//!
//! ```
//! use event_store::upcast::{Upcast, Upcasters};
//! use event_store::{Event, Events};
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//!
//! #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(namespace = "accounts", rename = "UserRegistered", version = 3, upcasters = "registered_upcasters")]
//! struct Registered { full_name: String, tier: String }
//!
//! fn registered_upcasters() -> Upcasters {
//!     Upcasters::new()
//!         // Version 1 called the field `name`, and the type `accounts.UserCreated`.
//!         .to(2, Upcast::new().renamed_from("accounts", "UserCreated").rename("name", "full_name"))
//!         // Version 3 added a tier.
//!         .to(3, Upcast::new().add("tier", json!("basic")))
//! }
//!
//! // A version-1 event, as the original code stored it:
//! let v1 = json!({"event_namespace": "accounts", "event_type": "UserCreated", "name": "Ada"});
//! let decoded = Registered::decode("accounts", "UserCreated", &v1).unwrap();
//! assert_eq!(decoded, Registered { full_name: "Ada".into(), tier: "basic".into() });
//!
//! // A version from the future is a clear error, not a silent default:
//! let v9 = json!({"event_version": 9, "full_name": "Ada", "tier": "gold"});
//! let err = Registered::decode("accounts", "UserRegistered", &v9).unwrap_err();
//! assert!(err.to_string().contains("version 9 was written by newer code"), "{err}");
//! ```
//!
//! Upcasters run on every path that decodes ([`RecordedEvent::decode`](crate::RecordedEvent::decode),
//! aggregates, projections, subscribers, the AMQP subscriber) and never write back: the log keeps
//! what was stored. A cached aggregate state folded under other upcasters is not used: the cache
//! key carries a fingerprint of the upcasters of the aggregate's event types
//! ([`Events::upcaster_fingerprint`](crate::Events::upcaster_fingerprint)). The fingerprint is
//! made from the type's version and each step's description; a closure step is described by its
//! label, so **change the label when you change what the closure does**.

use std::fmt::{self, Display};
use std::hash::Hasher as _;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::EventType;
use crate::limits::{LEGACY_TYPE_KEY, NAMESPACE_KEY, TYPE_KEY, VERSION_KEY};

type Custom = Arc<dyn Fn(&mut Map<String, Value>) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
enum Op {
    Rename {
        from: String,
        to: String,
    },
    Add {
        field: String,
        value: Value,
    },
    Remove {
        field: String,
    },
    RenamedFrom {
        namespace: &'static str,
        event_type: &'static str,
    },
    Custom {
        label: String,
        f: Custom,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Op {
    /// The text the fingerprint is made from.
    fn describe(&self) -> String {
        match self {
            Self::Rename { from, to } => format!("rename {from:?} to {to:?}"),
            Self::Add { field, value } => format!("add {field:?} = {value}"),
            Self::Remove { field } => format!("remove {field:?}"),
            Self::RenamedFrom {
                namespace,
                event_type,
            } => format!("renamed from {namespace}.{event_type}"),
            Self::Custom { label, .. } => format!("custom {label:?}"),
        }
    }

    fn apply(&self, data: &mut Map<String, Value>) -> Result<(), String> {
        match self {
            Self::Rename { from, to } => {
                if let Some(value) = data.remove(from) {
                    if data.contains_key(to) {
                        return Err(format!(
                            "cannot rename `{from}` to `{to}`: the event has both"
                        ));
                    }
                    data.insert(to.clone(), value);
                }
                Ok(())
            }
            Self::Add { field, value } => {
                data.entry(field.clone()).or_insert_with(|| value.clone());
                Ok(())
            }
            Self::Remove { field } => {
                data.remove(field);
                Ok(())
            }
            // Names which stored events are this type's (see `Upcasters::reads`); the fields stay.
            Self::RenamedFrom { .. } => Ok(()),
            Self::Custom { f, .. } => f(data),
        }
    }
}

/// One step of an upcaster chain: the changes that turn an event of one version into the next.
/// The operations run in the order they are added.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Upcast {
    ops: Vec<Op>,
}

impl Upcast {
    /// A step that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames field `from` to `to` (nothing when `from` is absent; an error when both are there).
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.ops.push(Op::Rename {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Adds `field` with `value` when it is absent.
    pub fn add(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.ops.push(Op::Add {
            field: field.into(),
            value: value.into(),
        });
        self
    }

    /// Removes `field`.
    pub fn remove(mut self, field: impl Into<String>) -> Self {
        self.ops.push(Op::Remove {
            field: field.into(),
        });
        self
    }

    /// The type was called `namespace.event_type` before this version: events stored under that
    /// name (at an older version) are read as this type.
    pub fn renamed_from(mut self, namespace: &'static str, event_type: &'static str) -> Self {
        self.ops.push(Op::RenamedFrom {
            namespace,
            event_type,
        });
        self
    }

    /// Any other change, as a closure over the event's fields (its data without
    /// `event_namespace`, `event_type` and `event_version`). `label` describes the change: it goes into the fingerprint that
    /// keys cached aggregates, so change it whenever the closure's behaviour changes.
    pub fn with<F, E>(mut self, label: impl Into<String>, f: F) -> Self
    where
        F: Fn(&mut Map<String, Value>) -> Result<(), E> + Send + Sync + 'static,
        E: Display,
    {
        self.ops.push(Op::Custom {
            label: label.into(),
            f: Arc::new(move |data| f(data).map_err(|e| e.to_string())),
        });
        self
    }
}

/// The upcaster chain of one event type: for each version `n` from 2 to the type's version, the
/// [`Upcast`] that turns a version `n - 1` event into a version `n` one.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Upcasters {
    /// By target version, ascending.
    steps: Vec<(u32, Upcast)>,
    /// A mistake in the declaration, reported when an event needs the chain.
    mistake: Option<String>,
}

impl Upcasters {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty chain, for types that declare none.
    pub fn none() -> &'static Self {
        static NONE: Upcasters = Upcasters {
            steps: Vec::new(),
            mistake: None,
        };
        &NONE
    }

    /// Declares the step that produces `version` from `version - 1`.
    pub fn to(mut self, version: u32, step: Upcast) -> Self {
        if version < 2 {
            self.mistake.get_or_insert_with(|| {
                format!("a step produces version {version}: the first step produces version 2")
            });
        } else if self.steps.iter().any(|(v, _)| *v == version) {
            self.mistake
                .get_or_insert_with(|| format!("two steps produce version {version}"));
        }
        let at = self.steps.partition_point(|(v, _)| *v < version);
        self.steps.insert(at, (version, step));
        self
    }

    /// Whether no step is declared.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The older names events of this type may be stored under, with the version that first used
    /// the next name (events stored under the old name are older than it).
    pub fn former_names(&self) -> impl Iterator<Item = (EventType, u32)> + '_ {
        self.steps.iter().flat_map(|(v, step)| {
            step.ops.iter().filter_map(move |op| match op {
                Op::RenamedFrom {
                    namespace,
                    event_type,
                } => Some((
                    EventType {
                        namespace,
                        name: event_type,
                    },
                    *v,
                )),
                _ => None,
            })
        })
    }

    /// Whether an event stored as `namespace.event_type` is one of this chain's type `current`.
    pub fn reads(&self, current: EventType, namespace: &str, event_type: &str) -> bool {
        (current.namespace == namespace && current.name == event_type)
            || self
                .former_names()
                .any(|(t, _)| t.namespace == namespace && t.name == event_type)
    }

    /// The fingerprint of this chain for type `current` at version `version`: `0` for a version-1
    /// type without upcasters (so adding versions to a codebase keeps its cached states), else a
    /// stable 64-bit hash of the type, its version and every step's description.
    pub fn fingerprint(&self, current: EventType, version: u32) -> u64 {
        if version == 1 && self.steps.is_empty() {
            return 0;
        }
        let mut h = fnv::FnvHasher::default();
        let mut feed = |text: &str| {
            h.write(text.as_bytes());
            h.write(&[0]);
        };
        feed(current.namespace);
        feed(current.name);
        feed(&version.to_string());
        for (v, step) in &self.steps {
            feed(&v.to_string());
            for op in &step.ops {
                feed(&op.describe());
            }
        }
        h.finish().max(1)
    }

    /// Brings `data`, stored as `namespace.event_type` at `stored` version, to type `current` at
    /// `version`: every step from `stored + 1` to `version`, over the event's fields (its data
    /// without `event_namespace`, `event_type`, `event_version` and a legacy `type` naming it).
    /// Returns the fields at `version`.
    ///
    /// # Errors
    /// [`Error::FutureVersion`] when `stored > version`; [`Error::Upcast`] when a step is missing
    /// or fails, when the chain is declared wrongly, or when the stored name is not one this type
    /// was known by at that version.
    pub fn apply(
        &self,
        current: EventType,
        version: u32,
        (namespace, event_type, stored): (&str, &str, u32),
        data: &Value,
    ) -> Result<Value> {
        let fail = |from: u32, to: u32, reason: String| Error::Upcast {
            namespace: namespace.to_owned(),
            event_type: event_type.to_owned(),
            from,
            to,
            reason,
        };
        if stored > version {
            return Err(Error::FutureVersion {
                namespace: namespace.to_owned(),
                event_type: event_type.to_owned(),
                stored,
                known: version,
            });
        }
        if let Some(mistake) = &self.mistake {
            return Err(fail(
                stored,
                version,
                format!("the upcasters are declared wrongly: {mistake}"),
            ));
        }
        if let Some((v, _)) = self.steps.last()
            && *v > version
        {
            return Err(fail(
                stored,
                version,
                format!(
                    "the upcasters go up to version {v}, but the type is version {version} (raise its `version`)"
                ),
            ));
        }
        let renamed = current.namespace != namespace || current.name != event_type;
        if renamed {
            let renamed_at = self
                .former_names()
                .filter(|(t, _)| t.namespace == namespace && t.name == event_type)
                .map(|(_, v)| v)
                .max();
            match renamed_at {
                Some(v) if stored < v => {}
                Some(v) => {
                    return Err(fail(
                        stored,
                        version,
                        format!(
                            "the type was renamed at version {v}, so no event under its old name can be version {stored}"
                        ),
                    ));
                }
                None => {
                    return Err(Error::UnknownEventType {
                        namespace: namespace.to_owned(),
                        event_type: event_type.to_owned(),
                    });
                }
            }
        }
        let Value::Object(map) = data else {
            return Err(fail(
                stored,
                version,
                "the event's data is not a JSON object".to_owned(),
            ));
        };
        // The fields only: the envelope (`event_namespace`, `event_type`, `event_version`, and
        // the original's legacy `type` when it names the event) is not copied.
        let legacy = map
            .get(LEGACY_TYPE_KEY)
            .and_then(Value::as_str)
            .is_some_and(|t| t.split_once('.') == Some((namespace, event_type)));
        let mut map: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| {
                let envelope = matches!(k.as_str(), NAMESPACE_KEY | TYPE_KEY | VERSION_KEY)
                    || (legacy && k.as_str() == LEGACY_TYPE_KEY);
                !envelope
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for to in stored + 1..=version {
            let Some((_, step)) = self.steps.iter().find(|(v, _)| *v == to) else {
                return Err(fail(
                    to - 1,
                    to,
                    format!("no upcaster produces version {to} (declare `.to({to}, …)`)"),
                ));
            };
            for op in &step.ops {
                op.apply(&mut map)
                    .map_err(|reason| fail(to - 1, to, reason))?;
            }
        }
        Ok(Value::Object(map))
    }
}

/// The schema version stored in an event's data: its `event_version` key, 1 when absent.
///
/// # Errors
/// [`Error::InvalidInput`] (field `data`) when the key is not an integer from 1 to `u32::MAX`.
pub fn stored_version(data: &Value) -> Result<u32> {
    match data.get(VERSION_KEY) {
        None => Ok(1),
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                Error::invalid(
                    "data",
                    format!(
                        "`{VERSION_KEY}` is {v}; a schema version is an integer from 1 to {}",
                        u32::MAX
                    ),
                )
            }),
    }
}

/// One namespace, type and schema version in the log: how many events, and the positions of the
/// first and last (see [`census`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaEntry {
    /// The namespace.
    pub namespace: String,
    /// The type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version.
    pub version: u32,
    /// How many events.
    pub events: u64,
    /// The position of the first.
    pub first: crate::Position,
    /// The position of the last.
    pub last: crate::Position,
}

/// Every namespace, type and schema version in the log (its final events), sorted by namespace,
/// type and version: what is there, and what still needs an upcaster. Reads the whole log a page
/// at a time; `progress` is called with the number of events read after each page.
///
/// # Errors
/// The store's read errors.
pub async fn census<S: crate::Store>(
    store: &S,
    mut progress: impl FnMut(u64) + Send,
) -> Result<Vec<SchemaEntry>> {
    let mut by_kind: std::collections::BTreeMap<(String, String, u32), SchemaEntry> =
        std::collections::BTreeMap::new();
    let mut cursor = crate::LogCursor::with_page(crate::Position::START, 2000);
    let mut read = 0u64;
    loop {
        let page = cursor.next_page(store).await?;
        if page.is_empty() {
            return Ok(by_kind.into_values().collect());
        }
        read += page.len() as u64;
        for e in page {
            let version = e.schema_version();
            let entry = by_kind
                .entry((e.namespace, e.event_type, version))
                .or_insert_with_key(|(namespace, event_type, version)| SchemaEntry {
                    namespace: namespace.clone(),
                    event_type: event_type.clone(),
                    version: *version,
                    events: 0,
                    first: e.position,
                    last: e.position,
                });
            entry.events += 1;
            entry.last = e.position;
        }
        progress(read);
    }
}

/// Combines the fingerprints of several types (an enum of events): `0` when every one is `0`.
pub fn combine_fingerprints(parts: &[u64]) -> u64 {
    if parts.iter().all(|p| *p == 0) {
        return 0;
    }
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write(&p.to_le_bytes());
    }
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: EventType = EventType {
        namespace: "acc",
        name: "Opened",
    };

    fn chain() -> Upcasters {
        Upcasters::new()
            .to(3, Upcast::new().add("tier", "basic"))
            .to(
                2,
                Upcast::new()
                    .renamed_from("acc", "Created")
                    .rename("name", "owner"),
            )
    }

    #[test]
    fn applies_each_step_in_order_to_the_fields() {
        let v1 = json!({"event_namespace": "acc", "event_type": "Created", "name": "Ada"});
        let up = chain().apply(T, 3, ("acc", "Created", 1), &v1).unwrap();
        assert_eq!(
            up,
            json!({"owner": "Ada", "tier": "basic"}),
            "the fields at version 3, without the envelope"
        );
        let v2 = json!({"event_version": 2, "owner": "Bo", "tier": "gold"});
        let up = chain().apply(T, 3, ("acc", "Opened", 2), &v2).unwrap();
        assert_eq!(up["tier"], "gold");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let data = json!({"owner": "Ada"});
        let future = chain()
            .apply(T, 3, ("acc", "Opened", 4), &data)
            .unwrap_err();
        assert!(
            matches!(
                future,
                Error::FutureVersion {
                    stored: 4,
                    known: 3,
                    ..
                }
            ),
            "{future}"
        );
        let late_old_name = chain()
            .apply(T, 3, ("acc", "Created", 2), &data)
            .unwrap_err();
        assert!(
            late_old_name.to_string().contains("renamed at version 2"),
            "{late_old_name}"
        );
        let gap = Upcasters::new()
            .to(3, Upcast::new())
            .apply(T, 3, ("acc", "Opened", 1), &data)
            .unwrap_err();
        assert!(
            gap.to_string().contains("no upcaster produces version 2"),
            "{gap}"
        );
        let twice = Upcasters::new().to(2, Upcast::new()).to(2, Upcast::new());
        let err = twice.apply(T, 2, ("acc", "Opened", 1), &data).unwrap_err();
        assert!(
            err.to_string().contains("two steps produce version 2"),
            "{err}"
        );
        let both = json!({"name": "a", "owner": "b"});
        let err = chain()
            .apply(T, 3, ("acc", "Opened", 1), &both)
            .unwrap_err();
        assert!(matches!(err, Error::Upcast { from: 1, to: 2, .. }), "{err}");
        let failing = Upcasters::new().to(2, Upcast::new().with("never", |_| Err("no way")));
        let err = failing
            .apply(T, 2, ("acc", "Opened", 1), &data)
            .unwrap_err();
        assert!(err.to_string().contains("no way"), "{err}");
    }

    #[test]
    fn fingerprints_change_with_any_step_and_are_zero_without_upcasters() {
        assert_eq!(Upcasters::none().fingerprint(T, 1), 0);
        let a = chain().fingerprint(T, 3);
        assert_ne!(a, 0);
        assert_eq!(a, chain().fingerprint(T, 3), "stable");
        let other = Upcasters::new()
            .to(
                2,
                Upcast::new()
                    .renamed_from("acc", "Created")
                    .rename("name", "owner"),
            )
            .to(3, Upcast::new().add("tier", "premium"));
        assert_ne!(a, other.fingerprint(T, 3));
        assert_ne!(
            Upcasters::none().fingerprint(T, 2),
            0,
            "a version bump alone counts"
        );
        assert_eq!(combine_fingerprints(&[0, 0]), 0);
        assert_ne!(combine_fingerprints(&[0, a]), combine_fingerprints(&[a, 0]));
    }

    #[test]
    fn stored_version_reads_the_key() {
        assert_eq!(stored_version(&json!({})).unwrap(), 1);
        assert_eq!(stored_version(&json!({"event_version": 7})).unwrap(), 7);
        for bad in [json!(0), json!(-1), json!("2"), json!(1.5), json!(u64::MAX)] {
            assert!(
                stored_version(&json!({ "event_version": bad })).is_err(),
                "{bad}"
            );
        }
    }
}
