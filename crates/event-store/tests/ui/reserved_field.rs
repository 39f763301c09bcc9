use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok")]
struct Reserved {
    event_type: String,
}

fn main() {}
