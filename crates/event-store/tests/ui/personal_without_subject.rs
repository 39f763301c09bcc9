use serde::{Deserialize, Serialize};

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok")]
struct Registered {
    user_id: String,
    #[event(personal)]
    email: Option<String>,
}

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", subject = "nobody")]
struct Named {
    user_id: String,
}

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", subject = "user_id")]
struct SubjectSealed {
    #[event(personal)]
    user_id: Option<String>,
}

#[derive(event_store::Event, Serialize, Deserialize)]
#[event(namespace = "ok", subject = "user_id")]
#[serde(rename_all = "camelCase")]
struct Renamed {
    user_id: String,
    #[event(personal)]
    email_address: Option<String>,
}

fn main() {}
