//! The NDJSON line format of `event-store append --ndjson` and `import`: one event per line,
//! either `{"stream","namespace","type","data"?,"id"?,"context"?}` or a recorded event as
//! `export` writes it (its `version` is kept, its `position` ignored: the store assigns its own).

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{EventContext, NewEvent};

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The event's id, if given.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The stream.
    pub stream: String,
    /// The version the event had where it was exported, if given.
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    position: Option<Value>,
    /// The namespace.
    pub namespace: String,
    /// The type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The data (default `{}`).
    #[serde(default = "empty_object")]
    pub data: Value,
    /// The context, if given.
    #[serde(default)]
    pub context: Option<EventContext>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Line {
    /// The event to append.
    pub fn to_new_event(&self) -> NewEvent {
        let mut e = NewEvent::new(&self.namespace, &self.event_type, self.data.clone());
        e.id = self.id;
        if let Some(c) = &self.context {
            e.context = c.clone();
        }
        e
    }

    /// The event to append, taking the line apart.
    pub fn into_new_event(self) -> NewEvent {
        let mut e = NewEvent::new(self.namespace, self.event_type, self.data);
        e.id = self.id;
        if let Some(c) = self.context {
            e.context = c;
        }
        e
    }
}

/// Parses one line (`Ok(None)` for a blank line). A field of the wrong type is
/// [`Error::InvalidInput`] on that field's path (`context.subject`); invalid UTF-8, invalid JSON
/// and a missing or unknown field are [`Error::InvalidInput`] on the field `line`; JSON nested deeper than 128 levels is refused by
/// the parser, without recursion trouble. The JSON is read strictly (see [`crate::json`]): an
/// integer beyond 64 bits or a key twice in one object is refused on the field where it is
/// (`data.items[2]`). A byte-order mark at the start of the line is skipped.
pub fn parse_line(bytes: &[u8]) -> Result<Option<Line>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::invalid("line", format!("not valid UTF-8 ({e})")))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let line: Line = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // The field is named by its path; the position in a one-line text adds nothing.
        let text = inner.to_string();
        let at = format!(" at line {} column {}", inner.line(), inner.column());
        let reason = text.strip_suffix(&at).unwrap_or(&text).to_owned();
        if path == "." || path.is_empty() {
            Error::invalid("line", format!("not an event: {reason}"))
        } else {
            Error::invalid(path, reason)
        }
    })?;
    de.end()
        .map_err(|e| Error::invalid("line", format!("not an event: {e}")))?;
    crate::json::check_text("", text)?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse_line(b"  \n").unwrap(), None);
        let l = parse_line(br#"{"stream":"s","namespace":"n","type":"T"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((l.stream.as_str(), l.data.clone()), ("s", empty_object()));
        let exported = br#"{"id":"01a21d00-8bc7-7519-ac12-ab0360e0160b","stream":"o","version":3,"position":"7:9","namespace":"n","type":"T","data":{"a":1},"context":{"time":"2026-01-01T00:00:00Z"}}"#;
        let l = parse_line(exported).unwrap().unwrap();
        assert_eq!(l.version, Some(3));
        assert!(
            parse_line(b"\xff")
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        assert!(parse_line(br#"{"stream":"s","namespace":"n","type":"T","colour":1}"#).is_err());
        // A field of the wrong type is named by its path.
        match parse_line(br#"{"stream":"s","namespace":"n","type":"T","context":{"subject":5}}"#) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "context.subject");
                assert!(
                    reason.contains("expected a map") && !reason.contains("column"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_line(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let l =
            parse_line("\u{feff}{\"stream\":\"s\",\"namespace\":\"n\",\"type\":\"T\"}".as_bytes())
                .unwrap()
                .unwrap();
        assert_eq!(l.stream, "s");
    }

    #[test]
    fn lines_are_read_strictly() {
        let e = parse_line(
            br#"{"stream":"s","namespace":"n","type":"T","data":{"n":123456789012345678901234}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("data.n"), "{e}");
        let e = parse_line(br#"{"stream":"s","namespace":"n","type":"T","data":{"k":1,"k":2}}"#)
            .unwrap_err();
        assert_eq!(e.field(), Some("data.k"), "{e}");
    }
}
