//! The message form of a recorded event.

use event_store::{Error, Event, Position, RecordedEvent, Result};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::{Deserialize, Serialize};

/// Header: the event's stream.
pub const HEADER_STREAM: &str = "stream";
/// Header: the event's version in its stream.
pub const HEADER_VERSION: &str = "version";
/// Header: the event's position (checkpoint text).
pub const HEADER_POSITION: &str = "position";
/// Header on messages sent in answer to a replay request: `true`.
pub const HEADER_REPLAY: &str = "x-event-store-replay";
/// Header on dead letters: why the message was dead-lettered.
pub const HEADER_DEAD_LETTER_REASON: &str = "x-event-store-dead-letter-reason";
/// Header on dead letters: the group whose handler gave up.
pub const HEADER_DEAD_LETTER_GROUP: &str = "x-event-store-dead-letter-group";

/// A request, published by a group that does not share the store, for the stored events of one
/// namespace and type after a checkpoint. The relay answers by sending them to `queue`, marked
/// with [`HEADER_REPLAY`].
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "event_store", rename = "ReplayRequested")]
pub struct ReplayRequested {
    /// The namespace to replay.
    pub namespace: String,
    /// The type to replay.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Replay the events after this checkpoint (`"0"`: from the start).
    pub since: Position,
    /// The queue to send them to (the requesting group's queue).
    pub queue: String,
}

pub(crate) fn routing_key(e: &RecordedEvent) -> String {
    format!("{}.{}", e.namespace, e.event_type)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The body and properties of an event's message: the recorded event's JSON, or with `legacy`
/// the original's `{"id", "data", "context"}`.
pub(crate) fn encode(
    e: &RecordedEvent,
    replay: bool,
    legacy: bool,
) -> Result<(Vec<u8>, BasicProperties)> {
    let body = if legacy {
        serde_json::to_vec(&serde_json::json!({"id": e.id, "data": e.data, "context": e.context}))
    } else {
        serde_json::to_vec(e)
    }
    .map_err(|err| Error::codec("encode an event", err))?;
    let mut headers = FieldTable::default();
    headers.insert(HEADER_STREAM.into(), text(&e.stream));
    headers.insert(
        HEADER_VERSION.into(),
        AMQPValue::LongLongInt(i64::try_from(e.version).unwrap_or(i64::MAX)),
    );
    headers.insert(HEADER_POSITION.into(), text(&e.position.to_string()));
    if replay {
        headers.insert(HEADER_REPLAY.into(), AMQPValue::Boolean(true));
    }
    let props = BasicProperties::default()
        .with_message_id(e.id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(e.context.time.timestamp()).unwrap_or_default())
        .with_headers(headers);
    Ok((body, props))
}

/// The recorded event in a message's body.
pub(crate) fn decode(body: &[u8]) -> std::result::Result<RecordedEvent, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a recorded event: {e}"))
}

/// The event in a message of the original wire format, `{"id", "data", "context"}`, cleaned as
/// the original's data is (`event_store::legacy::clean`); its stream, version and position come
/// from the headers our relay sets (absent from an original service's messages: empty, 0, 0).
pub(crate) fn decode_legacy(
    body: &[u8],
    props: &BasicProperties,
) -> std::result::Result<RecordedEvent, String> {
    #[derive(Deserialize)]
    struct Wire {
        id: uuid::Uuid,
        data: serde_json::Value,
        #[serde(default)]
        context: serde_json::Value,
    }
    let wire: Wire = serde_json::from_slice(body)
        .map_err(|e| format!("not an event of the original format: {e}"))?;
    let cleaned = event_store::legacy::clean(wire.id, wire.data, wire.context)?;
    let e = cleaned.event;
    let header_u64 = |key: &str| match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        _ => None,
    };
    Ok(RecordedEvent {
        id: wire.id,
        stream: header_text(props, HEADER_STREAM).unwrap_or_default(),
        version: header_u64(HEADER_VERSION).unwrap_or(0),
        position: header_text(props, HEADER_POSITION)
            .and_then(|p| p.parse().ok())
            .unwrap_or(Position::START),
        namespace: e.namespace,
        event_type: e.event_type,
        data: e.data,
        context: e.context,
    })
}

/// The original's replay request: its data (bare, or inside `{"id", "data", "context"}`) names
/// the namespace and type to replay, and the time after which to replay them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegacyReplayRequest {
    pub(crate) namespace: String,
    pub(crate) event_type: String,
    pub(crate) since: chrono::DateTime<chrono::Utc>,
}

pub(crate) fn decode_legacy_replay(
    body: &[u8],
) -> std::result::Result<LegacyReplayRequest, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let data = match value.get("data") {
        Some(d @ serde_json::Value::Object(_)) => d,
        _ => &value,
    };
    let text = |key: &str| {
        data.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("the replay request has no `{key}`"))
    };
    let namespace = text("requested_event_namespace")?;
    let event_type = text("requested_event_type")?;
    let since = text("since")?;
    let since = event_store::legacy::parse_time(&since)
        .ok_or_else(|| format!("the replay request's since {since:?} is not a time"))?;
    Ok(LegacyReplayRequest {
        namespace,
        event_type,
        since,
    })
}

/// Properties of a dead letter: the original ones plus the reason and the group.
pub(crate) fn dead_letter_props(
    original: &BasicProperties,
    group: &str,
    reason: &str,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(HEADER_DEAD_LETTER_REASON.into(), text(reason));
    headers.insert(HEADER_DEAD_LETTER_GROUP.into(), text(group));
    original.clone().with_headers(headers).with_delivery_mode(2)
}

/// A header's text, if the message has it.
pub fn header_text(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => Some(format!("{other:?}")),
    }
}
