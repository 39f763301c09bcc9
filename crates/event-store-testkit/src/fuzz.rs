//! Fuzzing harnesses, shared by the cargo-fuzz targets in `fuzz/` and by the test that replays
//! their corpus (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and
//! checks an invariant on what it manages to parse.

use event_store::ndjson::parse_line;
use event_store::{AppendBatch, ExpectedVersion, RecordedEvent};

/// Decoding a recorded event (a message body, an exported line): whatever decodes re-encodes
/// to JSON that decodes to the same event, and decoding it as a typed event never panics.
pub fn decode_event(bytes: &[u8]) {
    let Ok(event) = serde_json::from_slice::<RecordedEvent>(bytes) else {
        return;
    };
    let text = serde_json::to_vec(&event).unwrap_or_default();
    let again: Option<RecordedEvent> = serde_json::from_slice(&text).ok();
    assert_eq!(again.as_ref(), Some(&event), "a decoded event round-trips");
    let _ = event.decode::<crate::CounterEvent>();
}

/// One line of an NDJSON import: parsing and validating never panic, and a line that validates
/// keeps its stream, namespace, type and data.
pub fn ndjson_line(bytes: &[u8]) {
    let Ok(Some(line)) = parse_line(bytes) else {
        return;
    };
    let event = line.to_new_event();
    if let Ok(batch) = AppendBatch::new(&line.stream, ExpectedVersion::Any, vec![event]) {
        let pending = &batch.events()[0];
        assert_eq!(batch.stream().as_str(), line.stream);
        assert_eq!(pending.namespace, line.namespace);
        assert_eq!(pending.event_type, line.event_type);
        if let (Some(stored), Some(given)) = (pending.data.as_object(), line.data.as_object()) {
            assert!(
                given.iter().all(|(k, v)| stored.get(k) == Some(v)),
                "data is kept"
            );
        }
    }
}
