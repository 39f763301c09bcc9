use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", rename = "no spaces allowed")]
struct BadRename {
    a: u32,
}

fn main() {}
