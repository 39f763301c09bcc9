//! A validated append: [`AppendBatch`] and its [`PendingEvent`]s, and the decisions every
//! adapter that checks in code (memory, SQLite) shares: whether a batch is a retry, a clash or
//! new, and whether its expectation holds.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::limits::{
    MAX_ACTION_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, NAMESPACE_KEY, TYPE_KEY,
    check_event_json, check_name, dismantle, json_len,
};
use crate::model::{EventContext, NewEvent, Position, RecordedEvent, StreamId};
use crate::upcast::stored_version;
use crate::version::ExpectedVersion;

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
    /// The JSON size of the events (data and context).
    bytes: usize,
}

impl AppendBatch {
    /// Validates an append; see [`crate::limits`] for the rules.
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
            bytes: total,
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

    /// The size of the events' JSON (data and context), as the limits count it.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Always false: a batch holds at least one event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Decides what the batch is, given what the store holds under each of its ids (in batch
    /// order; `None` where an id is not stored):
    /// - `Ok(Some(originals))`: every event is stored with the same content — an idempotent
    ///   retry, which reports the originals and stores nothing;
    /// - `Ok(None)`: no id is stored — a new append;
    /// - [`Error::DuplicateId`]: an id is stored with other content, or only some ids are
    ///   stored (storing the rest would break the batch's atomicity).
    pub fn check_stored(
        &self,
        stored: Vec<Option<RecordedEvent>>,
    ) -> Result<Option<Vec<RecordedEvent>>> {
        let mut originals = Vec::with_capacity(stored.len());
        let mut first_known = None;
        for (event, found) in self.events.iter().zip(stored) {
            if let Some(r) = found {
                if !event.same_content(&self.stream, &r) {
                    return Err(Error::DuplicateId { id: event.id });
                }
                first_known.get_or_insert(event.id);
                originals.push(r);
            }
        }
        match first_known {
            None => Ok(None),
            Some(_) if originals.len() == self.events.len() => Ok(Some(originals)),
            Some(id) => Err(Error::DuplicateId { id }),
        }
    }

    /// Checks the batch's expectation against the stream's version (`None`: no stream) and
    /// returns the version of the batch's first event; a mismatch is [`Error::Conflict`].
    pub fn check_expected(&self, actual: Option<u64>) -> Result<u64> {
        if self.expected.admits(actual) {
            Ok(actual.map_or(0, |a| a + 1))
        } else {
            Err(Error::Conflict {
                stream: self.stream.to_string(),
                expected: self.expected,
                actual,
            })
        }
    }
}

/// Appends to several streams in one call, all or nothing: each [`AppendBatch`] keeps its own
/// stream and expected version, and either every batch is stored (or was, by an idempotent
/// retry) or none is. A conflict names its stream, expected and actual versions.
///
/// Validated as one append: at least one batch, no event id twice, at most
/// [`MAX_BATCH_EVENTS`] events and [`MAX_BATCH_BYTES`] bytes in all. Batches are applied in
/// order, so events get positions in the order of the batches, and a stream may have several
/// batches (each checked against the stream's version after the ones before it): interleaved
/// input keeps its order. Backends lock the streams in one global order, so two multi-stream
/// appends never deadlock.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiAppend {
    batches: Vec<AppendBatch>,
}

impl MultiAppend {
    /// Validates the batches as one append.
    pub fn new(batches: Vec<AppendBatch>) -> Result<Self> {
        if batches.is_empty() {
            return Err(Error::invalid(
                "batches",
                "an append needs at least one batch",
            ));
        }
        let events: usize = batches.iter().map(AppendBatch::len).sum();
        if events > MAX_BATCH_EVENTS {
            return Err(Error::invalid(
                "batches",
                format!("{events} events in one append; the limit is {MAX_BATCH_EVENTS}"),
            ));
        }
        if batches.iter().map(|b| b.bytes).sum::<usize>() > MAX_BATCH_BYTES {
            return Err(Error::invalid(
                "batches",
                format!("the append is larger than {MAX_BATCH_BYTES} bytes"),
            ));
        }
        let mut ids = HashSet::with_capacity(events);
        for (i, b) in batches.iter().enumerate() {
            for e in &b.events {
                if !ids.insert(e.id) {
                    return Err(Error::invalid(
                        format!("batches[{i}].events"),
                        format!("{} appears twice in one append", e.id),
                    ));
                }
            }
        }
        Ok(Self { batches })
    }

    /// The batches, in order.
    pub fn batches(&self) -> &[AppendBatch] {
        &self.batches
    }

    /// The batches, taken out.
    pub fn into_batches(self) -> Vec<AppendBatch> {
        self.batches
    }

    /// The number of events in all batches.
    pub fn len(&self) -> usize {
        self.batches.iter().map(AppendBatch::len).sum()
    }

    /// Always false: a multi-stream append holds at least one event.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
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
    // Personal values are stored only sealed (`EventStore::append` seals them when it has keys).
    crate::erasure::check_sealed(i, &event)?;
    let NewEvent {
        id,
        namespace,
        event_type,
        data,
        mut context,
        ..
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
    stored_version(&data).map_err(|e| match e {
        Error::InvalidInput { reason, .. } => Error::invalid(field("data"), reason),
        other => other,
    })?;
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

fn dismantle_event(event: NewEvent) {
    dismantle(event.data);
    dismantle(Value::Object(event.context.subject));
    dismantle(Value::Object(event.context.metadata));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::limits::check_name;

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
