//! One line of an NDJSON import, from arbitrary bytes, through parsing and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_store_testkit::fuzz::ndjson_line(data);
});
