//! The documented limits on every input, and the checks behind them (design.md §4.8).
//!
//! Every append goes through [`AppendBatch::new`](crate::AppendBatch::new), which refuses bad
//! input before any backend sees it, with an [`Error::InvalidInput`] naming the field (`stream`,
//! `events[2].data`, …):
//!
//! | input | rule |
//! |---|---|
//! | stream id | 1 to [`MAX_STREAM_ID_BYTES`] bytes of UTF-8 in Unicode normalization form C (NFC); no control, white-space or format character (category Cf: zero-width spaces, direction marks and overrides, the byte-order mark, …); not starting with a combining mark. Every script is allowed: `order-1` and `order-1` followed by a zero-width space cannot be two streams that look alike |
//! | namespace, type | 1 to [`MAX_NAME_LEN`] characters of `A–Z a–z 0–9 _ -`, starting with a letter or digit (so `{namespace}.{type}` is a valid AMQP routing key) |
//! | data | a JSON object; `event_namespace`/`event_type` keys, when present, equal the event's namespace and type; `event_version`, when present, is an integer from 1 to 2³²−1 (the schema version, see [`crate::upcast`]) |
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

use serde_json::{Number, Value};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory as _};

use crate::error::{Error, Result};

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
/// The data key that carries an event's schema version (absent for version 1; see
/// [`crate::upcast`]).
pub const VERSION_KEY: &str = "event_version";
/// The original store's older data key naming an event as `namespace.type` (dropped when
/// decoding; see `LEGACY.md`).
pub const LEGACY_TYPE_KEY: &str = "type";

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

/// Longest checkpoint name, in bytes.
pub const MAX_CHECKPOINT_NAME_BYTES: usize = 255;

/// Checks a checkpoint name: 1 to 255 bytes, no control characters.
pub(crate) fn check_checkpoint_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_CHECKPOINT_NAME_BYTES
        || name.chars().any(char::is_control)
    {
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
pub(crate) fn check_event_json(field: &dyn Fn() -> String, value: &mut Value) -> Result<()> {
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
