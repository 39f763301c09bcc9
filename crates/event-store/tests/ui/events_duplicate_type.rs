use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", rename = "Same")]
struct A {}

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", rename = "Same")]
struct B {}

#[derive(event_store::Events)]
enum Clash {
    A(A),
    B(B),
}

fn main() {}
