// A checkpoint name is made by `CheckpointName::new`, which validates it.
fn main() {
    let _ = event_store::CheckpointName(String::new());
}
