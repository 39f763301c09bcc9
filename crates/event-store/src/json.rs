//! Strict reading of JSON text that users give (NDJSON lines, the CLI's data argument, request
//! bodies): what `serde_json` would silently change is refused, naming where it is.
//!
//! - An **integer that does not fit in 64 bits** (`i64` when negative, `u64` otherwise) would
//!   become an approximate float: `12345678901234567890123` would read back as
//!   `1.2345678901234568e22`. Write such a number as a string.
//! - An **object with the same key twice** would keep only the last value.
//!
//! Numbers are otherwise compared by value everywhere (see [`crate::json_eq`]).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// Parses `text` as `T`, refusing what [the module](self) describes. Errors are
/// [`Error::InvalidInput`] on `field` (with the path inside the value appended, like
/// `data.items[2]`), with serde's message for malformed JSON.
pub fn from_str<T: DeserializeOwned>(field: &str, text: &str) -> Result<T> {
    let value: T = serde_json::from_str(text)
        .map_err(|e| Error::invalid(field.to_owned(), format!("not valid JSON: {e}")))?;
    check_text(field, text)?;
    Ok(value)
}

/// Checks JSON text that already parses for what [the module](self) refuses; the error's field
/// is `field` with the path inside the value appended.
pub fn check_text(field: &str, text: &str) -> Result<()> {
    check(text).map_err(|(path, reason)| {
        let at = join(field, &path);
        Error::invalid(if at.is_empty() { "json".to_owned() } else { at }, reason)
    })
}

/// Parses `text` as a JSON value, refusing what [the module](self) describes.
pub fn value_from_str(field: &str, text: &str) -> Result<Value> {
    from_str(field, text)
}

fn join(field: &str, path: &str) -> String {
    match (field.is_empty(), path.is_empty()) {
        (_, true) => field.to_owned(),
        (true, false) => path.to_owned(),
        (false, false) if path.starts_with('[') => format!("{field}{path}"),
        (false, false) => format!("{field}.{path}"),
    }
}

enum Frame {
    Object {
        keys: HashSet<String>,
        key: String,
        expecting_key: bool,
    },
    Array {
        index: usize,
    },
}

fn path(frames: &[Frame]) -> String {
    let mut out = String::new();
    for f in frames {
        match f {
            Frame::Object { key, .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Array { index } => {
                use std::fmt::Write as _;
                // Writing to a String cannot fail.
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

/// Scans JSON text (already known to parse) without recursion; `Err((path, reason))` on the
/// first integer that does not fit in 64 bits or key that appears twice in one object.
fn check(text: &str) -> std::result::Result<(), (String, String)> {
    let bytes = text.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                frames.push(Frame::Object {
                    keys: HashSet::new(),
                    key: String::new(),
                    expecting_key: true,
                });
                i += 1;
            }
            b'[' => {
                frames.push(Frame::Array { index: 0 });
                i += 1;
            }
            b'}' | b']' => {
                frames.pop();
                i += 1;
            }
            b',' => {
                match frames.last_mut() {
                    Some(Frame::Array { index }) => *index += 1,
                    Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                    None => {}
                }
                i += 1;
            }
            b'"' => {
                let end = string_end(bytes, i);
                let mut twice = None;
                if let Some(Frame::Object {
                    keys,
                    key,
                    expecting_key,
                }) = frames.last_mut()
                    && *expecting_key
                {
                    let name: String = serde_json::from_str(&text[i..end]).unwrap_or_default();
                    if keys.insert(name.clone()) {
                        *expecting_key = false;
                    } else {
                        twice = Some(format!("the key {name:?} appears twice in one object"));
                    }
                    *key = name;
                }
                if let Some(reason) = twice {
                    return Err((path(&frames), reason));
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                let fits = if token.starts_with('-') {
                    token.parse::<i64>().is_ok()
                } else {
                    token.parse::<u64>().is_ok()
                };
                if integer && !fits {
                    return Err((
                        path(&frames),
                        format!(
                            "the integer {token} does not fit in 64 bits (it would lose \
                             precision as a float); write it as a string"
                        ),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the string token starting at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> (String, String) {
        match value_from_str("data", text) {
            Err(Error::InvalidInput { field, reason }) => (field.into_owned(), reason),
            other => panic!("{text}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn integers_that_do_not_fit_are_refused_with_their_place() {
        let (field, reason) = refused(r#"{"a": {"b": [1, 2, 12345678901234567890123]}}"#);
        assert_eq!(field, "data.a.b[2]");
        assert!(reason.contains("12345678901234567890123"), "{reason}");
        assert_eq!(refused("-9223372036854775809").0, "data");
        for ok in [
            "18446744073709551615",
            "-9223372036854775808",
            "1.2345678901234567890123e22",
            "12345678901234567890123.0",
            r#"{"s": "12345678901234567890123"}"#,
        ] {
            assert!(value_from_str("data", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_place() {
        let (field, reason) = refused(r#"{"a": 1, "b": {"c": 1, "c": 2}}"#);
        assert_eq!(field, "data.b.c");
        assert!(reason.contains("twice"), "{reason}");
        // The same key decoded from two spellings is the same key.
        assert_eq!(refused(r#"{"a": 1, "\u0061": 2}"#).0, "data.a");
        for ok in [
            r#"{"a": {"a": {"a": 1}}}"#,
            r#"[{"a": 1}, {"a": 2}]"#,
            r#"{"a\"b": 1, "a": 2}"#,
        ] {
            assert!(value_from_str("data", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_json_is_refused_by_serde() {
        let (field, reason) = refused("{not json");
        assert_eq!(field, "data");
        assert!(reason.contains("not valid JSON"), "{reason}");
    }
}
