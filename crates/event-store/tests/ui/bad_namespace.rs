use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "has.dot")]
struct BadNamespace {
    a: u32,
}

fn main() {}
