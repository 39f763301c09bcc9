//! Typed events: plain Rust types with a namespace and a type.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::limits::{LEGACY_TYPE_KEY, NAMESPACE_KEY, TYPE_KEY, VERSION_KEY};
use crate::upcast::{Upcasters, stored_version};

/// The namespace and type of an event, as `'static` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType {
    /// The namespace.
    pub namespace: &'static str,
    /// The type within the namespace.
    pub name: &'static str,
}

/// One kind of event: a struct with a namespace and a type name.
///
/// Derive it with `#[derive(Event)]` (and serde's `Serialize`/`Deserialize`):
///
/// ```
/// use event_store::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
/// #[event(namespace = "cmp-inventory", rename = "ItemAdded")]
/// struct Added { sku: String, quantity: u32 }
///
/// assert_eq!(Added::NAMESPACE, "cmp-inventory");
/// assert_eq!(Added::TYPE, "ItemAdded");
/// ```
///
/// Its JSON is the struct's fields with `event_namespace` and `event_type` beside them, as the
/// original design wrote it.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The namespace (usually the owning service): `A–Z a–z 0–9 _ -`.
    const NAMESPACE: &'static str;
    /// The type name (by default the struct's name).
    const TYPE: &'static str;
    /// Both, as an [`EventType`].
    const EVENT_TYPE: EventType = EventType {
        namespace: Self::NAMESPACE,
        name: Self::TYPE,
    };
    /// The schema version events of this type are written at (`#[event(version = N)]`, 1 by
    /// default). Older events are brought to it by [`Event::upcasters`] when decoded.
    const VERSION: u32 = 1;
    /// The JSON keys of the personal fields (`#[event(personal)]`), stored sealed with the
    /// subject's key (see [`crate::erasure`]); none by default.
    const PERSONAL: &'static [&'static str] = &[];
    /// The JSON key of the field naming the person the personal fields are about
    /// (`#[event(subject = "…")]`); none by default.
    const SUBJECT: Option<&'static str> = None;

    /// How to read events written at older versions (`#[event(upcasters = "path")]`, none by
    /// default). See [`crate::upcast`].
    fn upcasters() -> &'static Upcasters {
        Upcasters::none()
    }
}

/// A set of event types that can be encoded and decoded: every [`Event`], and enums of events
/// with `#[derive(Events)]`, which dispatch on namespace and type.
///
/// ```
/// use event_store::{Event, Events};
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
///
/// #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
/// #[event(namespace = "example")]
/// struct Incremented { by: i64 }
///
/// #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
/// #[event(namespace = "example")]
/// struct Decremented { by: i64 }
///
/// #[derive(Events, Debug, PartialEq)]
/// enum Counter { Incremented(Incremented), Decremented(Decremented) }
///
/// let data = json!({"by": 2, "event_namespace": "example", "event_type": "Decremented"});
/// let decoded = Counter::decode("example", "Decremented", &data).unwrap();
/// assert_eq!(decoded, Counter::Decremented(Decremented { by: 2 }));
/// assert!(Counter::decode("example", "Reset", &data).unwrap_err().to_string().contains("unknown"));
/// ```
pub trait Events: Sized + Send + Sync + 'static {
    /// Every namespace and type this set decodes.
    fn event_types() -> &'static [EventType];

    /// This event's namespace.
    fn namespace(&self) -> &'static str;

    /// This event's type.
    fn event_type(&self) -> &'static str;

    /// The event's data: a JSON object with `event_namespace` and `event_type`.
    fn encode(&self) -> Result<Value>;

    /// Decodes an event of `namespace.event_type` from its data.
    fn decode(namespace: &str, event_type: &str, data: &Value) -> Result<Self>;

    /// Whether this set decodes `namespace.event_type` (its types' current names, and the names
    /// their upcasters say they had before).
    fn handles(namespace: &str, event_type: &str) -> bool {
        Self::event_types()
            .iter()
            .any(|t| t.namespace == namespace && t.name == event_type)
    }

    /// Every name events of this set may be stored under: [`Events::event_types`] and the former
    /// names their upcasters declare (what a query for this set must match).
    fn read_types() -> Vec<EventType> {
        Self::event_types().to_vec()
    }

    /// A fingerprint of the schema versions and upcasters of this set's types: `0` when every
    /// type is version 1 without upcasters. Cached aggregate states are keyed by it.
    fn upcaster_fingerprint() -> u64 {
        0
    }

    /// This event's personal fields and subject field (see [`Event::PERSONAL`]).
    fn personal(&self) -> crate::erasure::Personal {
        crate::erasure::Personal::NONE
    }
}

impl<E: Event> Events for E {
    fn personal(&self) -> crate::erasure::Personal {
        crate::erasure::Personal {
            fields: E::PERSONAL,
            subject: E::SUBJECT,
        }
    }

    fn event_types() -> &'static [EventType] {
        const { &[E::EVENT_TYPE] }
    }

    fn namespace(&self) -> &'static str {
        E::NAMESPACE
    }

    fn event_type(&self) -> &'static str {
        E::TYPE
    }

    fn encode(&self) -> Result<Value> {
        let mut data = encode_event(self, E::NAMESPACE, E::TYPE)?;
        if E::VERSION > 1
            && let Value::Object(map) = &mut data
        {
            map.insert(VERSION_KEY.to_owned(), Value::from(E::VERSION));
        }
        Ok(data)
    }

    fn decode(namespace: &str, event_type: &str, data: &Value) -> Result<Self> {
        let current = namespace == E::NAMESPACE && event_type == E::TYPE;
        if !current && !E::upcasters().reads(E::EVENT_TYPE, namespace, event_type) {
            return Err(Error::UnknownEventType {
                namespace: namespace.to_owned(),
                event_type: event_type.to_owned(),
            });
        }
        let stored = stored_version(data)?;
        if current && stored == E::VERSION {
            return decode_event(data, E::NAMESPACE, E::TYPE);
        }
        let upcast = E::upcasters().apply(
            E::EVENT_TYPE,
            E::VERSION,
            (namespace, event_type, stored),
            data,
        )?;
        decode_owned(upcast, E::NAMESPACE, E::TYPE)
    }

    fn handles(namespace: &str, event_type: &str) -> bool {
        (namespace == E::NAMESPACE && event_type == E::TYPE)
            || E::upcasters().reads(E::EVENT_TYPE, namespace, event_type)
    }

    fn read_types() -> Vec<EventType> {
        let mut types = vec![E::EVENT_TYPE];
        for (t, _) in E::upcasters().former_names() {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        types
    }

    fn upcaster_fingerprint() -> u64 {
        E::upcasters().fingerprint(E::EVENT_TYPE, E::VERSION)
    }
}

/// Encodes `event` as an object with `event_namespace` and `event_type` beside its fields.
///
/// Used by the derives; a struct without fields encodes as an object with just those two keys.
pub fn encode_event<T: Serialize + ?Sized>(
    event: &T,
    namespace: &'static str,
    event_type: &'static str,
) -> Result<Value> {
    let what = || format!("encode a `{namespace}.{event_type}` event");
    let mut map = match serde_json::to_value(event).map_err(|e| Error::codec(what(), e))? {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(Error::invalid(
                "data",
                format!("{} must encode as a JSON object, not {other}", what()),
            ));
        }
    };
    map.insert(
        NAMESPACE_KEY.to_owned(),
        Value::String(namespace.to_owned()),
    );
    map.insert(TYPE_KEY.to_owned(), Value::String(event_type.to_owned()));
    Ok(Value::Object(map))
}

/// Decodes fields this code owns (an upcaster's output, without the envelope keys), moving them
/// out of the value rather than copying them.
fn decode_owned<T: DeserializeOwned>(
    fields: Value,
    namespace: &str,
    event_type: &str,
) -> Result<T> {
    T::deserialize(fields)
        .map_err(|e| Error::codec(format!("decode a `{namespace}.{event_type}` event"), e))
}

/// Decodes an event's data (ignoring `event_namespace`, `event_type` and `event_version`, even for
/// types that deny unknown fields, and the original store's legacy `type` key when it names this
/// event as `namespace.event_type`). No upcasting: [`Events::decode`] upcasts, then calls this.
pub fn decode_event<T: DeserializeOwned>(
    data: &Value,
    namespace: &str,
    event_type: &str,
) -> Result<T> {
    match T::deserialize(data) {
        Ok(v) => Ok(v),
        Err(first) => {
            // Types with `deny_unknown_fields` refuse the two keys: try again without them.
            if let Value::Object(map) = data {
                let legacy = map
                    .get(LEGACY_TYPE_KEY)
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.split_once('.') == Some((namespace, event_type)));
                if legacy
                    || [NAMESPACE_KEY, TYPE_KEY, VERSION_KEY]
                        .iter()
                        .any(|k| map.contains_key(*k))
                {
                    let mut bare = map.clone();
                    bare.remove(NAMESPACE_KEY);
                    bare.remove(TYPE_KEY);
                    bare.remove(VERSION_KEY);
                    if legacy {
                        bare.remove(LEGACY_TYPE_KEY);
                    }
                    if let Ok(v) = T::deserialize(&Value::Object(bare)) {
                        return Ok(v);
                    }
                }
            }
            Err(Error::codec(
                format!("decode a `{namespace}.{event_type}` event"),
                first,
            ))
        }
    }
}
