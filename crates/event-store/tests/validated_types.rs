//! Backends take validated values only (`AppendBatch`, `StreamId`, `CheckedQuery`,
//! `CheckpointName`), and there is no way to make one without its validation: each of these
//! programs must fail to compile.
#![allow(clippy::unwrap_used)]

#[test]
fn validated_types_have_no_other_constructor() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/validated/*.rs");
}
