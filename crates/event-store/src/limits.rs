//! Validation of every input, with the documented limits (DESIGN §4.8).
//!
//! Every append goes through [`AppendBatch::new`], which refuses bad input before any backend
//! sees it, with an [`Error::InvalidInput`] naming the field (`stream`, `events[2].data`, …):
//!
//! | input | rule |
//! |---|---|
//! | stream id | 1 to [`MAX_STREAM_ID_BYTES`] bytes of UTF-8 in Unicode normalization form C (NFC); no control, white-space or format character (category Cf: zero-width spaces, direction marks and overrides, the byte-order mark, …); not starting with a combining mark. Every script is allowed: `order-1` and `order-1` followed by a zero-width space cannot be two streams that look alike |
//! | namespace, type | 1 to [`MAX_NAME_LEN`] characters of `A–Z a–z 0–9 _ -`, starting with a letter or digit (so `{namespace}.{type}` is a valid AMQP routing key) |
//! | data | a JSON object; `event_namespace`/`event_type` keys, when present, equal the event's namespace and type |
//! | any JSON (data, subject, metadata) | nested at most [`MAX_JSON_DEPTH`] deep; no string or key containing NUL (`\u0000`, which PostgreSQL's `jsonb` cannot store); a negative zero is stored as `0.0` (PostgreSQL's numbers have no negative zero) |
//! | action | at most [`MAX_ACTION_BYTES`] bytes, no control character |
//! | one event | data + context at most [`MAX_EVENT_BYTES`] bytes of JSON |
//! | one batch | 1 to [`MAX_BATCH_EVENTS`] events, at most [`MAX_BATCH_BYTES`] bytes, no id twice |
//!
//! **Numbers.** Every backend compares JSON numbers by their decimal value, as PostgreSQL's
//! `jsonb` does: `1`, `1.0` and `1e0` are equal (so re-appending an event whose data says `1.0`
//! where the stored one says `1` is an idempotent retry, not a collision), and query equalities
//! match across the forms. Numbers read back as they were written (`1.0` stays `1.0`), except
//! negative zero. JSON *text* taken from users (NDJSON lines, the CLI's data argument) is read
//! strictly by [`crate::ndjson`]: an integer that does not fit in 64 bits (it would silently
//! become an approximate float) and an object with the same key twice (all but one value would be
//! silently dropped) are refused, naming where.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory as _};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{EventContext, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId};

/// Longest stream id, in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 255;
/// Longest namespace or type, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Longest action, in bytes.
pub const MAX_ACTION_BYTES: usize = 255;
/// Deepest nesting of JSON arrays and objects.
pub const MAX_JSON_DEPTH: usize = 64;
/// Largest event (data and context as JSON), in bytes: 1 MiB.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most events in one append.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Largest append (the sum of its events), in bytes: 16 MiB.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// Longest field name in a query (`subject` and `data` equality), in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 128;

/// The data keys that carry an event's namespace and type (the original design's JSON).
pub const NAMESPACE_KEY: &str = "event_namespace";
/// See [`NAMESPACE_KEY`].
pub const TYPE_KEY: &str = "event_type";

pub(crate) fn check_stream_id(field: &'static str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_STREAM_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long; the limit is {MAX_STREAM_ID_BYTES}",
                id.len()
            ),
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            field,
            format!(
                "contains the character {c:?}; control and white-space characters are not allowed"
            ),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(Error::invalid(
            field,
            format!(
                "contains the invisible format character U+{:04X}; format characters (zero-width \
                 spaces, direction marks, byte-order marks, …) are not allowed",
                u32::from(c)
            ),
        ));
    }
    if let Some(c) = id
        .chars()
        .next()
        .filter(|c| c.general_category_group() == GeneralCategoryGroup::Mark)
    {
        return Err(Error::invalid(
            field,
            format!(
                "starts with the combining mark U+{:04X}; a stream id starts with a base character",
                u32::from(c)
            ),
        ));
    }
    if !unicode_normalization::is_nfc(id) {
        return Err(Error::invalid(
            field,
            "is not in Unicode normalization form C (NFC); normalize it first, so one name is one \
             stream",
        ));
    }
    Ok(())
}

/// Checks a namespace or an event type against the documented character set.
pub fn check_name(field: impl Into<Cow<'static, str>>, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("is longer than {MAX_NAME_LEN} characters"))
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some(format!(
            "`{}` must start with a letter or a digit",
            name.escape_debug()
        ))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map(|c| {
                format!(
                    "`{}` contains {c:?}; only A-Z, a-z, 0-9, `_` and `-` are allowed",
                    name.escape_debug()
                )
            })
    };
    match problem {
        Some(reason) => Err(Error::invalid(field, reason)),
        None => Ok(()),
    }
}

/// Checks a checkpoint name: 1 to 255 bytes, no control characters.
pub fn check_checkpoint_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "checkpoint",
            "checkpoint names are 1 to 255 bytes without control characters",
        ));
    }
    Ok(())
}

/// Checks a field name used in a query.
pub(crate) fn check_field_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::invalid(
            field,
            format!("field names are 1 to {MAX_FIELD_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "field names contain no control character",
        ));
    }
    Ok(())
}

/// Checks depth and NUL characters without recursion (a hostile value may be nested very deep).
pub(crate) fn check_json(field: &dyn Fn() -> String, value: &Value) -> Result<()> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        check_node(field, v, depth)?;
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// [`check_json`], storing every negative zero as `0.0` on the way.
fn check_event_json(field: &dyn Fn() -> String, value: &mut Value) -> Result<()> {
    let mut stack: Vec<(&mut Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        check_node(field, v, depth)?;
        match v {
            Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => {
                *n = Number::from_f64(0.0).unwrap_or_else(|| Number::from(0));
            }
            Value::Array(items) => stack.extend(items.iter_mut().map(|i| (i, depth + 1))),
            Value::Object(map) => stack.extend(map.values_mut().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// The checks of one node of a JSON value at `depth`.
fn check_node(field: &dyn Fn() -> String, v: &Value, depth: usize) -> Result<()> {
    match v {
        Value::String(s) if s.contains('\0') => Err(Error::invalid(
            field(),
            "strings must not contain NUL (\\u0000)",
        )),
        Value::Array(_) | Value::Object(_) if depth >= MAX_JSON_DEPTH => Err(Error::invalid(
            field(),
            format!("is nested deeper than {MAX_JSON_DEPTH} levels"),
        )),
        Value::Object(map) if map.keys().any(|k| k.contains('\0')) => Err(Error::invalid(
            field(),
            "keys must not contain NUL (\\u0000)",
        )),
        _ => Ok(()),
    }
}

/// Takes a refused value apart without recursion, so that dropping a hostile, very deeply nested
/// value cannot overflow the stack.
pub(crate) fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn dismantle_event(event: NewEvent) {
    dismantle(event.data);
    dismantle(Value::Object(event.context.subject));
    dismantle(Value::Object(event.context.metadata));
}

/// The length of a value's compact JSON, without building the text.
pub(crate) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing a `Value` (or a context of them) into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// An event that passed validation: its id is set, its data is an object holding
/// `event_namespace`/`event_type`, its time is rounded to the microsecond.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// The event's id.
    pub id: Uuid,
    /// The event's namespace.
    pub namespace: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data: a JSON object.
    pub data: Value,
    /// The event's context.
    pub context: EventContext,
}

impl PendingEvent {
    /// The recorded form of this event, once a backend has given it a version and a position.
    pub fn record(&self, stream: &StreamId, version: u64, position: Position) -> RecordedEvent {
        RecordedEvent {
            id: self.id,
            stream: stream.as_str().to_owned(),
            version,
            position,
            namespace: self.namespace.clone(),
            event_type: self.event_type.clone(),
            data: self.data.clone(),
            context: self.context.clone(),
        }
    }

    /// The recorded form of this event, moving its parts instead of copying them.
    pub fn into_record(self, stream: &StreamId, version: u64, position: Position) -> RecordedEvent {
        RecordedEvent {
            id: self.id,
            stream: stream.as_str().to_owned(),
            version,
            position,
            namespace: self.namespace,
            event_type: self.event_type,
            data: self.data,
            context: self.context,
        }
    }

    /// Whether `stored` (an event with the same id) has the same content: the same stream,
    /// namespace, type and data (numbers compared by value, see [`crate::query::json_eq`]). The
    /// context is not compared, so a retry that stamped a new time
    /// is still recognised as the same event.
    pub fn same_content(&self, stream: &StreamId, stored: &RecordedEvent) -> bool {
        stored.stream == stream.as_str()
            && stored.namespace == self.namespace
            && stored.event_type == self.event_type
            && crate::query::json_eq(&stored.data, &self.data)
    }

    /// The event's time.
    pub fn time(&self) -> DateTime<Utc> {
        self.context.time
    }
}

/// A validated append: one stream, an expectation, and 1 to [`MAX_BATCH_EVENTS`] events.
///
/// Backends take this type, so nothing unvalidated reaches them.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendBatch {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<PendingEvent>,
}

impl AppendBatch {
    /// Validates an append; see the [module docs](self) for the rules.
    pub fn new(
        stream: impl AsRef<str>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Self> {
        let stream = StreamId::new(stream.as_ref())?;
        if events.is_empty() {
            return Err(Error::invalid(
                "events",
                "an append needs at least one event",
            ));
        }
        if events.len() > MAX_BATCH_EVENTS {
            return Err(Error::invalid(
                "events",
                format!(
                    "{} events in one append; the limit is {MAX_BATCH_EVENTS}",
                    events.len()
                ),
            ));
        }
        let mut ids = HashSet::with_capacity(events.len());
        let mut total = 0usize;
        let mut pending = Vec::with_capacity(events.len());
        let mut events = events.into_iter().enumerate();
        let refused = loop {
            let Some((i, event)) = events.next() else {
                break None;
            };
            let p = match validate_event(i, event) {
                Ok(p) => p,
                Err(e) => break Some(e),
            };
            if !ids.insert(p.id) {
                break Some(Error::invalid(
                    format!("events[{i}].id"),
                    format!("{} appears twice in one append", p.id),
                ));
            }
            total += json_len(&p.data) + json_len(&p.context);
            if total > MAX_BATCH_BYTES {
                break Some(Error::invalid(
                    "events",
                    format!("the append is larger than {MAX_BATCH_BYTES} bytes"),
                ));
            }
            pending.push(p);
        };
        if let Some(e) = refused {
            // The events not looked at yet may be nested arbitrarily deep.
            events.for_each(|(_, event)| dismantle_event(event));
            return Err(e);
        }
        Ok(Self {
            stream,
            expected,
            events: pending,
        })
    }

    /// The stream appended to.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// What the append expects of the stream.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The events, in order.
    pub fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    /// The stream, the expectation and the events, taken apart.
    pub fn into_parts(self) -> (StreamId, ExpectedVersion, Vec<PendingEvent>) {
        (self.stream, self.expected, self.events)
    }

    /// The number of events (at least one).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Always false: a batch holds at least one event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

fn validate_event(i: usize, mut event: NewEvent) -> Result<PendingEvent> {
    // Depth first, on the untouched event: a refused one is taken apart without recursion.
    let deep = check_event_json(&|| format!("events[{i}].data"), &mut event.data)
        .and_then(|()| {
            check_object(
                &|| format!("events[{i}].context.subject"),
                &mut event.context.subject,
            )
        })
        .and_then(|()| {
            check_object(
                &|| format!("events[{i}].context.metadata"),
                &mut event.context.metadata,
            )
        });
    if let Err(e) = deep {
        dismantle_event(event);
        return Err(e);
    }
    let NewEvent {
        id,
        namespace,
        event_type,
        data,
        mut context,
    } = event;
    check_name(format!("events[{i}].namespace"), &namespace)?;
    check_name(format!("events[{i}].type"), &event_type)?;
    let field = |name: &str| format!("events[{i}].{name}");
    let Value::Object(mut map) = data else {
        return Err(Error::invalid(
            field("data"),
            format!("must be a JSON object, not {}", kind_of(&data)),
        ));
    };
    for (key, want) in [(NAMESPACE_KEY, &namespace), (TYPE_KEY, &event_type)] {
        match map.get(key) {
            None => {
                map.insert(key.to_owned(), Value::String(want.clone()));
            }
            Some(Value::String(have)) if have == want => {}
            Some(other) => {
                return Err(Error::invalid(
                    field("data"),
                    format!("`{key}` is {other} but the event's is {want:?}"),
                ));
            }
        }
    }
    let data = Value::Object(map);
    if let Some(action) = &context.action {
        if action.len() > MAX_ACTION_BYTES {
            return Err(Error::invalid(
                field("context.action"),
                format!("is longer than {MAX_ACTION_BYTES} bytes"),
            ));
        }
        if action.chars().any(char::is_control) {
            return Err(Error::invalid(
                field("context.action"),
                "must not contain control characters",
            ));
        }
    }
    context.normalize();
    let size = json_len(&data) + json_len(&context);
    if size > MAX_EVENT_BYTES {
        return Err(Error::invalid(
            field("data"),
            format!("the event is {size} bytes of JSON; the limit is {MAX_EVENT_BYTES}"),
        ));
    }
    Ok(PendingEvent {
        id: id.unwrap_or_else(Uuid::now_v7),
        namespace,
        event_type,
        data,
        context,
    })
}

fn check_object(field: &dyn Fn() -> String, map: &mut Map<String, Value>) -> Result<()> {
    if map.keys().any(|k| k.contains('\0')) {
        return Err(Error::invalid(
            field(),
            "keys must not contain NUL (\\u0000)",
        ));
    }
    for v in map.values_mut() {
        check_event_json(field, v)?;
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev(data: Value) -> NewEvent {
        NewEvent::new("ns", "Type", data)
    }

    fn field_of(r: Result<AppendBatch>) -> String {
        match r {
            Err(Error::InvalidInput { field, .. }) => field.into_owned(),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn adds_namespace_and_type_to_data() {
        let b = AppendBatch::new("s", ExpectedVersion::Any, vec![ev(json!({"a": 1}))]).unwrap();
        assert_eq!(
            b.events()[0].data,
            json!({"a": 1, "event_namespace": "ns", "event_type": "Type"})
        );
    }

    #[test]
    fn refuses_bad_streams() {
        for s in ["", "a b", "a\0b", "tab\there", &"x".repeat(256)] {
            assert_eq!(
                field_of(AppendBatch::new(
                    s,
                    ExpectedVersion::Any,
                    vec![ev(json!({}))]
                )),
                "stream",
                "{s:?}"
            );
        }
        assert!(
            AppendBatch::new("x".repeat(255), ExpectedVersion::Any, vec![ev(json!({}))]).is_ok()
        );
        assert!(
            AppendBatch::new("ünïcødé:ok/1", ExpectedVersion::Any, vec![ev(json!({}))]).is_ok()
        );
    }

    #[test]
    fn refuses_stream_ids_that_look_like_others() {
        for (s, why) in [
            ("order-1\u{200b}", "U+200B"),   // zero-width space
            ("\u{200f}order-1", "U+200F"),   // right-to-left mark
            ("order-\u{202e}1", "U+202E"),   // right-to-left override
            ("\u{feff}order-1", "U+FEFF"),   // byte-order mark
            ("order\u{2060}-1", "U+2060"),   // word joiner
            ("\u{301}order-1", "combining"), // a leading combining mark
            ("orde\u{301}r-1", "NFC"),       // e + combining acute: not NFC
        ] {
            match AppendBatch::new(s, ExpectedVersion::Any, vec![ev(json!({}))]) {
                Err(Error::InvalidInput { field, reason }) => {
                    assert_eq!(field, "stream", "{s:?}");
                    assert!(reason.contains(why), "{s:?}: {reason}");
                }
                other => panic!("{s:?} accepted: {other:?}"),
            }
        }
        for s in ["ordér-1", "заказ-1", "注文-1", "طلب-1", "ऑर्डर-1", "🧾-1"]
        {
            assert!(
                AppendBatch::new(s, ExpectedVersion::Any, vec![ev(json!({}))]).is_ok(),
                "{s} is a valid stream id"
            );
        }
    }

    #[test]
    fn negative_zero_is_stored_as_zero() {
        let b = AppendBatch::new(
            "s",
            ExpectedVersion::Any,
            vec![ev(json!({"z": -0.0, "deep": [{"z": -0.0}], "one": 1.0})).with_subject("z", -0.0)],
        )
        .unwrap();
        let e = &b.events()[0];
        assert_eq!(
            serde_json::to_string(&e.data).unwrap(),
            r#"{"deep":[{"z":0.0}],"event_namespace":"ns","event_type":"Type","one":1.0,"z":0.0}"#
        );
        assert_eq!(
            serde_json::to_string(&e.context.subject).unwrap(),
            r#"{"z":0.0}"#
        );
    }

    #[test]
    fn refuses_bad_names() {
        for n in ["", "a.b", "a b", "-a", "a*", "é", &"n".repeat(65)] {
            let e = NewEvent::new(n, "T", json!({}));
            assert_eq!(
                field_of(AppendBatch::new("s", ExpectedVersion::Any, vec![e])),
                "events[0].namespace",
                "{n:?}"
            );
            let e = NewEvent::new("ns", n, json!({}));
            assert_eq!(
                field_of(AppendBatch::new("s", ExpectedVersion::Any, vec![e])),
                "events[0].type",
                "{n:?}"
            );
        }
        for ok in ["cmp-inventory", "a", "A_1", "9lives"] {
            check_name("namespace", ok).unwrap();
        }
    }

    #[test]
    fn refuses_bad_data() {
        let mut deep = json!(1);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        let cases = [
            json!(null),
            json!([1]),
            json!("text"),
            json!({"event_type": "Other"}),
            json!({"event_namespace": 3}),
            json!({"s": "nul\u{0}inside"}),
            json!({"nul\u{0}key": 1}),
            json!({"big": "x".repeat(MAX_EVENT_BYTES)}),
            json!({ "deep": deep }),
        ];
        for (i, data) in cases.into_iter().enumerate() {
            let batch = vec![ev(json!({})), ev(data)];
            assert_eq!(
                field_of(AppendBatch::new("s", ExpectedVersion::Any, batch)),
                "events[1].data",
                "case {i}"
            );
        }
    }

    #[test]
    fn refuses_a_value_nested_100_000_deep_without_overflowing() {
        // Built and checked on a small stack: neither the check nor dropping the refused value
        // may recurse.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut deep = json!(1);
                for _ in 0..100_000 {
                    deep = Value::Array(vec![deep]);
                }
                let mut data = Map::new();
                data.insert("deep".to_owned(), deep); // not json!: it would serialize `deep`
                let batch = vec![ev(Value::Object(data)), ev(json!({}))];
                AppendBatch::new("s", ExpectedVersion::Any, batch)
                    .map(|_| ())
                    .map_err(|e| e.field().map(str::to_owned))
            })
            .unwrap();
        assert_eq!(
            handle.join().unwrap(),
            Err(Some("events[0].data".to_owned()))
        );
    }

    #[test]
    fn refuses_bad_batches() {
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, vec![])),
            "events"
        );
        let many = (0..=MAX_BATCH_EVENTS).map(|_| ev(json!({}))).collect();
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, many)),
            "events"
        );
        let big = (0..20)
            .map(|_| ev(json!({"x": "y".repeat(MAX_EVENT_BYTES - 200)})))
            .collect();
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, big)),
            "events"
        );
        let id = Uuid::now_v7();
        let twice = vec![ev(json!({})).with_id(id), ev(json!({})).with_id(id)];
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, twice)),
            "events[1].id"
        );
    }

    #[test]
    fn refuses_bad_context() {
        let e = ev(json!({})).with_action("a\nb");
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, vec![e])),
            "events[0].context.action"
        );
        let e = ev(json!({})).with_subject("k", "nul\u{0}");
        assert_eq!(
            field_of(AppendBatch::new("s", ExpectedVersion::Any, vec![e])),
            "events[0].context.subject"
        );
    }

    #[test]
    fn time_is_kept_to_the_microsecond() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let b =
            AppendBatch::new("s", ExpectedVersion::Any, vec![ev(json!({})).with_time(t)]).unwrap();
        assert_eq!(
            b.events()[0].time().to_rfc3339(),
            "2026-01-02T03:04:05.123456+00:00"
        );
    }
}
