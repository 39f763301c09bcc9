//! The event model: streams, versions, positions, new and recorded events.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{BoxError, Error, Result};
use crate::event::Events;
use crate::upcast::stored_version;
use crate::version::ExpectedVersion;

/// The impls every validated string type shares: `Debug` and `Display` as the text, `AsRef<str>`,
/// `FromStr`, `TryFrom<&str>`, `TryFrom<String>`, and a `Deserialize` that validates.
macro_rules! validated_string {
    ($name:ident) => {
        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, as a `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The id of a stream: the entity a sequence of events belongs to (`order-42`, `user:7f3a…`).
///
/// A stream id is 1 to [`MAX_STREAM_ID_BYTES`](crate::limits::MAX_STREAM_ID_BYTES) bytes of
/// UTF-8 in Unicode NFC, with no control, white-space or invisible format character and no
/// leading combining mark (see [`crate::limits`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// Validates `id` as a stream id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        crate::limits::check_stream_id("stream", &id)?;
        Ok(Self(id))
    }
}

validated_string!(StreamId);

/// The name of a checkpoint kept in the store (a relay's, a projection's): 1 to
/// [`MAX_CHECKPOINT_NAME_BYTES`](crate::limits::MAX_CHECKPOINT_NAME_BYTES) bytes without
/// control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CheckpointName(String);

impl CheckpointName {
    /// Validates `name` as a checkpoint name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        crate::limits::check_checkpoint_name(&name)?;
        Ok(Self(name))
    }
}

validated_string!(CheckpointName);

impl FromStr for ExpectedVersion {
    type Err = Error;

    /// Parses `any`, `no-stream`, `exists` or a version number.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "any" => Ok(Self::Any),
            "no-stream" => Ok(Self::NoStream),
            "exists" | "stream-exists" => Ok(Self::StreamExists),
            n => n.parse().map(Self::Exact).map_err(|_| {
                Error::invalid(
                    "expected_version",
                    format!("`{n}` is not `any`, `no-stream`, `exists` or a version number"),
                )
            }),
        }
    }
}

/// A place in the global log, used as a checkpoint: "everything up to here is processed".
///
/// Positions are opaque: they are totally ordered (the global log is read in position order),
/// printable and parseable (the CLI takes them as `--from`), and each backend decides what they
/// are made of. [`Position::START`] is before every event; reading *after* a position returns
/// the events that follow it.
///
/// A position prints as one number (`42`) when its high part is zero and as `high:low`
/// (`7741:42`) otherwise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    high: u64,
    low: u64,
}

impl Position {
    /// Before the first event.
    pub const START: Self = Self { high: 0, low: 0 };

    /// A position from its two parts (for backends; compared high part first).
    pub const fn from_parts(high: u64, low: u64) -> Self {
        Self { high, low }
    }

    /// A position with a zero high part (the memory and SQLite backends number the log 1, 2, …).
    pub const fn from_offset(low: u64) -> Self {
        Self { high: 0, low }
    }

    /// The two parts of the position, high first.
    pub const fn parts(self) -> (u64, u64) {
        (self.high, self.low)
    }

    /// Whether this is [`Position::START`].
    pub const fn is_start(self) -> bool {
        self.high == 0 && self.low == 0
    }
}

impl fmt::Debug for Position {
    /// `Position(42)` or `Position(7741:42)`: the same form as `Display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({self})")
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high == 0 {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}:{}", self.high, self.low)
        }
    }
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        fn part(s: &str, whole: &str) -> Result<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(
                    "position",
                    format!(
                        "`{whole}` is not a checkpoint (a number, or two numbers as `high:low`)"
                    ),
                ));
            }
            s.parse().map_err(|_| {
                Error::invalid(
                    "position",
                    format!("`{whole}` is out of range for a checkpoint"),
                )
            })
        }
        match s.split_once(':') {
            None => Ok(Self::from_offset(part(s, s)?)),
            Some((h, l)) => Ok(Self::from_parts(part(h, s)?, part(l, s)?)),
        }
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Number(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Repr::Number(n) => Ok(Self::from_offset(n)),
        }
    }
}

/// A position is text in the API's documents: `42`, or `7741:42`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Position {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[0-9]{1,20}(:[0-9]{1,20})?$"))
            .description(Some(
                "A place in the global log: one number (`42`), or two as `high:low` (`7741:42`).",
            ))
            .examples(["42"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Position {}

/// Which way a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

impl Direction {
    /// The version a read in this direction goes on from after `version` (`None`: past the
    /// first or the last possible version).
    pub fn after(self, version: u64) -> Option<u64> {
        match self {
            Self::Forward => version.checked_add(1),
            Self::Backward => version.checked_sub(1),
        }
    }
}

/// The context of an event: when, why and on whose behalf it happened.
///
/// Its JSON form keeps the original design's keys: `time` (RFC 3339), `action`, `subject`; plus
/// `correlation_id`, `causation_id` and `metadata` when set. An empty `subject` and a missing one
/// mean the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventContext {
    /// When the event happened (defaults to now; kept to the microsecond). Read from RFC 3339,
    /// and from the original store's other ISO 8601 forms (see
    /// [`legacy::parse_time`](crate::legacy::parse_time)).
    #[serde(default = "Utc::now", deserialize_with = "lenient_time")]
    pub time: DateTime<Utc>,
    /// The action that caused the event (a command name, an endpoint, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Who or what the event is about or done by (`{"user_id": …}`); queries can match its fields.
    #[serde(
        default,
        deserialize_with = "object_or_null",
        skip_serializing_if = "Map::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub subject: Map<String, Value>,
    /// The id shared by every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the event (or message) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Free metadata.
    #[serde(
        default,
        deserialize_with = "object_or_null",
        skip_serializing_if = "Map::is_empty"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(d)?;
    crate::legacy::parse_time(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{text:?} is not a time (RFC 3339, e.g. 2019-03-04T10:20:30Z)"
        ))
    })
}

fn object_or_null<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

impl Default for EventContext {
    fn default() -> Self {
        Self {
            time: Utc::now(),
            action: None,
            subject: Map::new(),
            correlation_id: None,
            causation_id: None,
            metadata: Map::new(),
        }
    }
}

impl EventContext {
    /// A context for an event happening now.
    pub fn now() -> Self {
        Self::default()
    }

    /// Rounds the time to the microsecond, the precision every backend keeps.
    pub(crate) fn normalize(&mut self) {
        self.time = self.time.trunc_subsecs(6);
    }
}

/// An event to append: what the caller knows before the store records it.
///
/// Build one from a typed event with [`NewEvent::from_event`], or from raw parts with
/// [`NewEvent::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's id. When `None`, a UUID v7 is assigned. Appends are idempotent by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The event's namespace (usually the service that owns it).
    pub namespace: String,
    /// The event's type within its namespace.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's fields: a JSON object. `event_namespace` and `event_type` are added to it when
    /// missing (and must match when present).
    pub data: Value,
    /// The event's context.
    #[serde(default)]
    pub context: EventContext,
    /// Which fields are personal, set by [`NewEvent::from_event`] from the event's type; sealed
    /// on append by a store with keys (see [`crate::erasure`]). Not part of the JSON.
    #[serde(skip)]
    pub personal: crate::erasure::Personal,
}

impl NewEvent {
    /// A new event from raw parts, with a fresh context.
    pub fn new(namespace: impl Into<String>, event_type: impl Into<String>, data: Value) -> Self {
        Self {
            id: None,
            namespace: namespace.into(),
            event_type: event_type.into(),
            data,
            context: EventContext::now(),
            personal: crate::erasure::Personal::NONE,
        }
    }

    /// A new event from a typed event (see [`Events`]).
    pub fn from_event<E: Events>(event: &E) -> Result<Self> {
        Ok(Self {
            id: None,
            namespace: event.namespace().to_owned(),
            event_type: event.event_type().to_owned(),
            data: event.encode()?,
            context: EventContext::now(),
            personal: event.personal(),
        })
    }

    /// Sets the event's id (appends are idempotent by id).
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Replaces the event's context.
    #[must_use]
    pub fn with_context(mut self, context: EventContext) -> Self {
        self.context = context;
        self
    }

    /// Sets the context's action.
    #[must_use]
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.context.action = Some(action.into());
        self
    }

    /// Sets one field of the context's subject.
    #[must_use]
    pub fn with_subject(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.context.subject.insert(key.into(), value.into());
        self
    }

    /// Sets the context's correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.context.correlation_id = Some(id);
        self
    }

    /// Sets the context's causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.context.causation_id = Some(id);
        self
    }

    /// Sets the context's time.
    #[must_use]
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.context.time = time;
        self
    }

    /// Sets one field of the context's metadata.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.context.metadata.insert(key.into(), value.into());
        self
    }
}

/// An event as the store recorded it.
///
/// Its JSON form (one line of `event-store read --format ndjson`) has the keys `id`, `stream`,
/// `version`, `position`, `namespace`, `type`, `data` and `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordedEvent {
    /// The event's id (unique in the store).
    pub id: Uuid,
    /// The stream the event belongs to.
    pub stream: String,
    /// The event's 0-based index in its stream.
    pub version: u64,
    /// The event's place in the global log.
    pub position: Position,
    /// The event's namespace.
    pub namespace: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's fields, with `event_namespace` and `event_type` beside them.
    pub data: Value,
    /// The event's context.
    pub context: EventContext,
}

impl RecordedEvent {
    /// Decodes the event into a typed event (see [`Events`]), through the type's upcasters when
    /// it was stored at an older schema version (see [`crate::upcast`]). A failure to decode, to
    /// upcast or to read a version newer than the type knows is [`Error::Decode`], naming this
    /// event's id, stream, version and type, with the cause as source.
    pub fn decode<E: Events>(&self) -> Result<E> {
        self.decode_data(&self.data)
    }

    /// Decodes `data` (this event's, changed: its personal values opened) as this event.
    pub(crate) fn decode_data<E: Events>(&self, data: &Value) -> Result<E> {
        E::decode(&self.namespace, &self.event_type, data).map_err(|e| {
            let source: BoxError = match e {
                Error::Codec { source, .. } => Box::new(source),
                e @ (Error::Upcast { .. }
                | Error::FutureVersion { .. }
                | Error::InvalidInput { .. }) => Box::new(e),
                other => return other,
            };
            Error::Decode {
                id: self.id,
                stream: self.stream.clone(),
                version: self.version,
                namespace: self.namespace.clone(),
                event_type: self.event_type.clone(),
                source,
            }
        })
    }

    /// The schema version the event was written at (its data's `event_version`, 1 when absent;
    /// see [`crate::upcast`]).
    pub fn schema_version(&self) -> u32 {
        stored_version(&self.data).unwrap_or(1)
    }

    /// Whether a typed event set handles this event's namespace and type.
    pub fn is<E: Events>(&self) -> bool {
        E::handles(&self.namespace, &self.event_type)
    }

    /// The routing key of the event, `{namespace}.{type}`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.namespace, self.event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trips_through_text() {
        for p in [
            Position::START,
            Position::from_offset(42),
            Position::from_parts(7741, 42),
            Position::from_parts(u64::MAX, u64::MAX),
        ] {
            let text = p.to_string();
            assert_eq!(text.parse::<Position>().ok(), Some(p), "{text}");
            let json = serde_json::to_string(&p).ok();
            assert_eq!(json.as_deref().map(|j| j.trim_matches('"')), Some(&*text));
        }
        assert_eq!(Position::from_offset(42).to_string(), "42");
        assert_eq!(Position::from_parts(3, 4).to_string(), "3:4");
    }

    #[test]
    fn position_parse_refuses_garbage() {
        for bad in [
            "",
            "-1",
            "+1",
            "1:",
            ":1",
            "a",
            "1:2:3",
            " 1",
            "99999999999999999999",
        ] {
            let err = bad.parse::<Position>().err();
            assert_eq!(
                err.as_ref().and_then(Error::field),
                Some("position"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn positions_order_high_part_first() {
        assert!(Position::from_parts(1, 0) > Position::from_offset(u64::MAX));
        assert!(Position::START < Position::from_offset(1));
        assert!(Position::from_parts(2, 1) < Position::from_parts(2, 2));
    }

    #[test]
    fn expected_version_admits() {
        use ExpectedVersion::*;
        assert!(Any.admits(None) && Any.admits(Some(3)));
        assert!(NoStream.admits(None) && !NoStream.admits(Some(0)));
        assert!(!StreamExists.admits(None) && StreamExists.admits(Some(0)));
        assert!(Exact(2).admits(Some(2)) && !Exact(2).admits(Some(1)) && !Exact(0).admits(None));
        assert_eq!("no-stream".parse::<ExpectedVersion>().ok(), Some(NoStream));
        assert_eq!("exists".parse::<ExpectedVersion>().ok(), Some(StreamExists));
        assert_eq!("7".parse::<ExpectedVersion>().ok(), Some(Exact(7)));
        assert!("seven".parse::<ExpectedVersion>().is_err());
    }

    #[test]
    fn empty_and_missing_subject_are_the_same() {
        let a: EventContext =
            serde_json::from_str(r#"{"time":"2020-01-01T00:00:00Z","subject":{}}"#).unwrap();
        let b: EventContext = serde_json::from_str(r#"{"time":"2020-01-01T00:00:00Z"}"#).unwrap();
        let c: EventContext =
            serde_json::from_str(r#"{"time":"2020-01-01T00:00:00Z","subject":null}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        let legacy: EventContext =
            serde_json::from_str(r#"{"time":"2020-01-01 01:00:00+01"}"#).unwrap();
        assert_eq!(legacy, a, "the original store's time forms are read");
        assert!(serde_json::from_str::<EventContext>(r#"{"time":"soon"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"time":"2020-01-01T00:00:00Z"}"#
        );
    }
}
