use event_store::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "ok", version = 0)]
struct Zero {}

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "ok", version = 5000000000)]
struct TooBig {}

fn chain() -> event_store::upcast::Upcasters {
    event_store::upcast::Upcasters::new()
}

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "ok", upcasters = "chain")]
struct UpcastersWithoutVersion {}

#[derive(Event, Serialize, Deserialize)]
#[event(namespace = "ok", version = 2)]
struct Reserved {
    event_version: u32,
}

fn main() {}
