// An aggregate that does not serialize cannot be folded through a cache: a compile error that
// says what to do. (Without a cache it can: see `uncached_aggregate_without_serde`.)
use event_store::{Aggregate, Event, EventStore, Query};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "shop")]
struct Placed {}

#[derive(Default, Clone)]
struct Orders(u32);

impl Aggregate for Orders {
    const NAME: &'static str = "orders";
    type Event = Placed;
    type Args = str;
    fn query(id: &str) -> Query {
        Query::stream(id)
    }
    fn apply(&mut self, _e: &Placed) {
        self.0 += 1;
    }
}

fn main() {
    let es = EventStore::memory();
    let _ = es.aggregate::<Orders>("o-1");
}
