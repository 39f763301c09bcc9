use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
struct NoNamespace {
    a: u32,
}

fn main() {}
