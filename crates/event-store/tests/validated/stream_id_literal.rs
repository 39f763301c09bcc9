// A stream id is made by `StreamId::new`, which validates it.
fn main() {
    let _ = event_store::StreamId(String::from("a b"));
}
