// A query reaches a store only through `Query::check`.
fn main() {
    let _ = event_store::CheckedQuery(event_store::Query::stream("a b"));
}
