// An event store built without an emitter has no `subscribe`: a compile error that says why,
// instead of a refusal at run time.
use event_store::{Event, EventStore, MemoryStore};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "shop")]
struct Placed {}

fn main() {
    let es = EventStore::from_store(MemoryStore::new());
    let _ = es.subscribe("g", |_e: Placed, _| async { Ok(()) });
}
