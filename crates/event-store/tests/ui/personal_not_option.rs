use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", subject = "user_id")]
struct Registered {
    user_id: String,
    #[event(personal)]
    email: String,
}

fn main() {}
