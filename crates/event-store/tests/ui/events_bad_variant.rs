use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok")]
struct A {}

#[derive(event_store::Events)]
enum Bad {
    A(A),
    Named { x: u32 },
}

fn main() {}
