//! Replays the fuzzing corpus (`fuzz/corpus/`) through the fuzzing harnesses, so every input the
//! fuzzers keep is checked by the normal test suite.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        harness(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "the {target} corpus has inputs");
}

#[test]
fn decode_event_corpus() {
    replay("decode_event", event_store_testkit::fuzz::decode_event);
}

#[test]
fn ndjson_line_corpus() {
    replay("ndjson_line", event_store_testkit::fuzz::ndjson_line);
}
