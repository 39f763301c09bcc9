use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok")]
struct Tuple(u32);

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok")]
struct Unit;

fn main() {}
