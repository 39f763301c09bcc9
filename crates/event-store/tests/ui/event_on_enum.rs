#[derive(event_store::Event)]
#[event(namespace = "ok")]
enum NotAStruct {
    A,
}

fn main() {}
