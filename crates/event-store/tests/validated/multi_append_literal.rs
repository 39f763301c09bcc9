// A multi-stream append cannot be built without its validation.
fn main() {
    let _ = event_store::MultiAppend { batches: Vec::new() };
}
