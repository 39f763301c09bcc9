// A store cannot be handed a batch that skipped validation: `AppendBatch` has private fields and
// no constructor but `AppendBatch::new`.
use event_store::{AppendBatch, ExpectedVersion, StreamId};

fn main() {
    let _ = AppendBatch {
        stream: StreamId::new("s").unwrap(),
        expected: ExpectedVersion::Any,
        events: Vec::new(),
    };
}
