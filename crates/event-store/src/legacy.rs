//! The original event store's data shapes (`LEGACY.md`), and how they are read.
//!
//! The original store kept `events(id, data, context)` rows per service, ordered by the writer's
//! clock, in shapes that drifted over the years. Reading them is a set of built-in upcasters:
//!
//! - **Legacy `type` key.** Older rows carry `"type": "ns.Type"` in their data, the oldest *only*
//!   that. [`clean`] takes the namespace and type from it when `event_namespace`/`event_type` are
//!   missing, and drops it (as the original's unifier did); decoding ([`crate::decode_event`])
//!   ignores it when it names the event.
//! - **`null` or missing subject**: read as `{}` (an empty subject), everywhere.
//! - **Times that are not RFC 3339** (a space for the `T`, no offset, `+01`/`+0100` offsets):
//!   [`parse_time`] reads them, everywhere an [`EventContext`] is decoded; a time without an
//!   offset is UTC.
//!
//! ```
//! use event_store::legacy::{Fix, clean};
//! use serde_json::json;
//!
//! let id = uuid::Uuid::nil();
//! let cleaned = clean(
//!     id,
//!     json!({"type": "accounts.UserRegistered", "email": "ada@example.com"}),
//!     json!({"time": "2019-03-04 10:20:30", "subject": null}),
//! )
//! .unwrap();
//! assert_eq!((cleaned.event.namespace.as_str(), cleaned.event.event_type.as_str()),
//!            ("accounts", "UserRegistered"));
//! assert_eq!(cleaned.event.context.time.to_rfc3339(), "2019-03-04T10:20:30+00:00");
//! assert!(cleaned.fixes.contains(&Fix::NameFromLegacyType));
//! assert!(cleaned.fixes.contains(&Fix::NullSubject));
//! assert!(cleaned.fixes.contains(&Fix::Time));
//! ```

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::limits::{LEGACY_TYPE_KEY, NAMESPACE_KEY, TYPE_KEY};
use crate::model::{EventContext, NewEvent};

/// Reads a time as the original store wrote it: RFC 3339, or ISO 8601 with a space instead of
/// the `T`, without seconds' fraction or seconds, with an offset of `Z`, `±hh`, `±hhmm` or
/// `±hh:mm` (up to 15:59), or without an offset (then UTC). `None` for anything else.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let (date, rest) = text.split_at_checked(10)?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // The time runs to the offset (`Z`, `+` or `-`), if any.
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, offset) = rest.split_at(split);
    let clock = clock.trim_end();
    let time = ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(clock, f).ok())?;
    let local = NaiveDateTime::new(date, time);
    let offset_seconds = match offset {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let hours: i32 = digits[..2].parse().ok()?;
            let minutes: i32 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            // Offsets run from -15:59 to +15:59, as PostgreSQL reads them.
            if hours > 15 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let utc = local.checked_sub_signed(chrono::TimeDelta::seconds(i64::from(offset_seconds)))?;
    Some(utc.and_utc())
}

/// What [`clean`] changed in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fix {
    /// The data's legacy `type` key was dropped (it agreed with `event_namespace`/`event_type`).
    DroppedLegacyType,
    /// The namespace and type were taken from the legacy `type` key (the data had no
    /// `event_namespace`/`event_type`), which was then dropped.
    NameFromLegacyType,
    /// The context's `subject` was `null`.
    NullSubject,
    /// The context had no `subject`.
    MissingSubject,
    /// The context's time was not RFC 3339 and was rewritten.
    Time,
    /// The context was `null` or missing.
    MissingContext,
    /// The context had keys the store's context does not (they were moved into `metadata`).
    ContextKeysToMetadata,
}

impl Fix {
    /// A short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::DroppedLegacyType => "dropped legacy `type`",
            Self::NameFromLegacyType => "namespace and type from legacy `type`",
            Self::NullSubject => "null subject",
            Self::MissingSubject => "missing subject",
            Self::Time => "time rewritten as RFC 3339",
            Self::MissingContext => "missing context",
            Self::ContextKeysToMetadata => "context keys moved to metadata",
        }
    }
}

/// An original event, cleaned into an event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleaned {
    /// The event, with the original id.
    pub event: NewEvent,
    /// What was changed, in no particular order, each once.
    pub fixes: Vec<Fix>,
}

/// Cleans one original event (`id`, `data`, `context` as the original's `events` table holds
/// them) into an event to append, as the original's unifier did and more: the name from the
/// legacy `type` key, a `null`/missing subject as `{}`, the time as RFC 3339, unknown context
/// keys into `metadata`.
///
/// # Errors
/// A sentence saying why the event cannot be read: data that is not an object, no namespace and
/// type, a legacy `type` that disagrees with them, no readable time, a subject or action of the
/// wrong JSON type.
pub fn clean(id: Uuid, data: Value, context: Value) -> Result<Cleaned, String> {
    let mut fixes = Vec::new();
    let Value::Object(mut data) = data else {
        return Err("the data is not a JSON object".to_owned());
    };
    let (namespace, event_type) = clean_name(&mut data, &mut fixes)?;
    let context = clean_context(context, &mut fixes)?;
    fixes.sort_unstable();
    fixes.dedup();
    Ok(Cleaned {
        event: NewEvent {
            id: Some(id),
            namespace,
            event_type,
            data: Value::Object(data),
            context,
            personal: crate::erasure::Personal::NONE,
        },
        fixes,
    })
}

/// The namespace and type, from `event_namespace`/`event_type` or the legacy `type` key.
fn clean_name(
    data: &mut Map<String, Value>,
    fixes: &mut Vec<Fix>,
) -> Result<(String, String), String> {
    let named = |key: &str, data: &Map<String, Value>| match data.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` is {other}, not a string")),
    };
    let namespace = named(NAMESPACE_KEY, data)?;
    let event_type = named(TYPE_KEY, data)?;
    let legacy = match data.get(LEGACY_TYPE_KEY) {
        Some(Value::String(t)) => t.split_once('.').map(|(n, t)| (n.to_owned(), t.to_owned())),
        _ => None,
    };
    let (namespace, event_type) = match (namespace, event_type, legacy) {
        (Some(n), Some(t), Some((ln, lt))) => {
            if (ln.as_str(), lt.as_str()) != (n.as_str(), t.as_str()) {
                return Err(format!(
                    "the legacy `type` `{ln}.{lt}` disagrees with `event_namespace`/`event_type` `{n}.{t}`"
                ));
            }
            data.remove(LEGACY_TYPE_KEY);
            fixes.push(Fix::DroppedLegacyType);
            (n, t)
        }
        (Some(n), Some(t), None) => (n, t),
        (None, None, Some((n, t))) => {
            data.remove(LEGACY_TYPE_KEY);
            data.insert(NAMESPACE_KEY.to_owned(), Value::String(n.clone()));
            data.insert(TYPE_KEY.to_owned(), Value::String(t.clone()));
            fixes.push(Fix::NameFromLegacyType);
            (n, t)
        }
        _ => {
            return Err(
                "no namespace and type (`event_namespace`/`event_type`, or a legacy `type` of the form `ns.Type`)"
                    .to_owned(),
            );
        }
    };
    Ok((namespace, event_type))
}

/// The context, with a readable time, an object subject and unknown keys in `metadata`.
fn clean_context(context: Value, fixes: &mut Vec<Fix>) -> Result<EventContext, String> {
    let mut context = match context {
        Value::Object(map) => map,
        Value::Null => {
            fixes.push(Fix::MissingContext);
            Map::new()
        }
        other => return Err(format!("the context is {other}, not an object")),
    };
    let time = match context.remove("time") {
        Some(Value::String(text)) => {
            let Some(time) = parse_time(&text) else {
                return Err(format!("the context's time {text:?} is not a time"));
            };
            if DateTime::parse_from_rfc3339(text.trim()).is_err() {
                fixes.push(Fix::Time);
            }
            time
        }
        Some(other) => return Err(format!("the context's time is {other}, not a string")),
        None => return Err("the context has no time".to_owned()),
    };
    let subject = match context.remove("subject") {
        Some(Value::Object(map)) => map,
        Some(Value::Null) => {
            fixes.push(Fix::NullSubject);
            Map::new()
        }
        None => {
            fixes.push(Fix::MissingSubject);
            Map::new()
        }
        Some(other) => return Err(format!("the context's subject is {other}, not an object")),
    };
    let action = match context.remove("action") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(format!("the context's action is {other}, not a string")),
    };
    let mut metadata = match context.remove("metadata") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => Map::new(),
        Some(other) => return Err(format!("the context's metadata is {other}, not an object")),
    };
    let uuid_key = |key: &str, context: &mut Map<String, Value>| match context.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<Uuid>()
            .map(Some)
            .map_err(|_| format!("the context's {key} {s:?} is not a UUID")),
        Some(other) => Err(format!("the context's {key} is {other}, not a UUID")),
    };
    let correlation_id = uuid_key("correlation_id", &mut context)?;
    let causation_id = uuid_key("causation_id", &mut context)?;
    if !context.is_empty() {
        fixes.push(Fix::ContextKeysToMetadata);
        for (k, v) in context {
            metadata.entry(k).or_insert(v);
        }
    }
    Ok(EventContext {
        time,
        action,
        subject,
        correlation_id,
        causation_id,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_legacy_time_form() {
        let want = "2019-03-04T10:20:30Z".parse::<DateTime<Utc>>().unwrap();
        for text in [
            "2019-03-04T10:20:30Z",
            "2019-03-04T10:20:30+00:00",
            "2019-03-04 10:20:30",
            "2019-03-04T10:20:30",
            "2019-03-04 10:20:30Z",
            "2019-03-04 11:20:30+01",
            "2019-03-04 11:20:30+0100",
            "2019-03-04 11:20:30 +01:00",
            "2019-03-04T08:50:30-01:30",
            " 2019-03-04 10:20:30.000 ",
        ] {
            assert_eq!(parse_time(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_time("2019-03-04 10:20"),
            Some("2019-03-04T10:20:00Z".parse().unwrap())
        );
        for bad in [
            "",
            "yesterday",
            "2019-02-30 10:00:00",
            "2019-03-04",
            "2019-03-04 25:00:00",
            "2019-03-04 10:00:00+1",
            "2019-03-04 10:00:00+16",
            "2019-03-04X10:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn cleans_every_shape() {
        let id = Uuid::nil();
        let both = clean(
            id,
            json!({"event_namespace": "a", "event_type": "B", "type": "a.B", "x": 1}),
            json!({"time": "2019-03-04T10:20:30Z", "subject": {"u": 1}, "action": "go", "extra": true}),
        )
        .unwrap();
        assert_eq!(
            both.fixes,
            [Fix::DroppedLegacyType, Fix::ContextKeysToMetadata]
        );
        assert_eq!(
            both.event.data,
            json!({"event_namespace": "a", "event_type": "B", "x": 1})
        );
        assert_eq!(
            both.event.context.metadata,
            *json!({"extra": true}).as_object().unwrap()
        );
        assert_eq!(both.event.context.action.as_deref(), Some("go"));
        let missing = clean(
            id,
            json!({"type": "a.B"}),
            json!({"time": "2019-03-04 10:20:30"}),
        )
        .unwrap();
        assert_eq!(
            missing.fixes,
            [Fix::NameFromLegacyType, Fix::MissingSubject, Fix::Time]
        );
        for (data, context, why) in [
            (json!([]), json!({}), "not a JSON object"),
            (
                json!({"x": 1}),
                json!({"time": "2019-03-04T10:20:30Z"}),
                "no namespace",
            ),
            (
                json!({"event_namespace": "a", "event_type": "B", "type": "a.C"}),
                json!({"time": "2019-03-04T10:20:30Z"}),
                "disagree",
            ),
            (
                json!({"type": "a.B"}),
                json!({"time": "soon"}),
                "not a time",
            ),
            (json!({"type": "a.B"}), json!({}), "no time"),
            (
                json!({"type": "a.B"}),
                json!({"time": "2019-03-04T10:20:30Z", "subject": 3}),
                "subject",
            ),
        ] {
            let err = clean(id, data, context).unwrap_err();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
    }
}
