use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", colour = "blue")]
struct UnknownKey {
    a: u32,
}

fn main() {}
