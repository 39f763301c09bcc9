//! Decoding recorded events (message bodies, exported lines) from arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_store_testkit::fuzz::decode_event(data);
});
