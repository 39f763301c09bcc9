//! What the facade refuses at compile time, with messages that say what to do.

#[test]
fn facade_misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/facade_ui/*.rs");
}
