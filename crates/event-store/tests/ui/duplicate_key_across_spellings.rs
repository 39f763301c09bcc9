use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "a")]
#[event_store(namespace = "b")]
struct Twice {
    a: u32,
}

fn main() {}
