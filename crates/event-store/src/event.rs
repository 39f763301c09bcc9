//! Typed events: plain Rust types with a namespace and a type.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::limits::{NAMESPACE_KEY, TYPE_KEY};

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

    /// Whether this set decodes `namespace.event_type`.
    fn handles(namespace: &str, event_type: &str) -> bool {
        Self::event_types()
            .iter()
            .any(|t| t.namespace == namespace && t.name == event_type)
    }
}

impl<E: Event> Events for E {
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
        encode_event(self, E::NAMESPACE, E::TYPE)
    }

    fn decode(namespace: &str, event_type: &str, data: &Value) -> Result<Self> {
        if namespace != E::NAMESPACE || event_type != E::TYPE {
            return Err(Error::UnknownEventType {
                namespace: namespace.to_owned(),
                event_type: event_type.to_owned(),
            });
        }
        decode_event(data, E::NAMESPACE, E::TYPE)
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

/// Decodes an event's data (ignoring `event_namespace` and `event_type`, even for types that deny
/// unknown fields).
pub fn decode_event<T: DeserializeOwned>(
    data: &Value,
    namespace: &str,
    event_type: &str,
) -> Result<T> {
    match T::deserialize(data) {
        Ok(v) => Ok(v),
        Err(first) => {
            // Types with `deny_unknown_fields` refuse the two keys: try again without them.
            if let Value::Object(map) = data
                && (map.contains_key(NAMESPACE_KEY) || map.contains_key(TYPE_KEY))
            {
                let mut bare = map.clone();
                bare.remove(NAMESPACE_KEY);
                bare.remove(TYPE_KEY);
                if let Ok(v) = T::deserialize(&Value::Object(bare)) {
                    return Ok(v);
                }
            }
            Err(Error::codec(
                format!("decode a `{namespace}.{event_type}` event"),
                first,
            ))
        }
    }
}
