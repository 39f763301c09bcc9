//! Reading: the global log, paging, streams, queries, stats, and what the facade refuses.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use event_store::limits::{MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_STREAM_ID_BYTES};
use event_store::{
    Direction, Error, EventStore, ExpectedVersion, NewEvent, Position, Query, RecordedEvent, Store,
};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Rng, append, ev, head, log_after, sid, stream_events, suffix, wait_for_log};

/// Concurrent writers on shared streams: the global log agrees with every stream's version order
/// and holds each event once.
pub async fn global_order<S: Store + Clone>(store: &S) {
    let ns = format!("order{}", &suffix()[..8]);
    let streams: Vec<String> = (0..5).map(|i| format!("go-{i}-{}", suffix())).collect();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (store, streams, ns) = (store.clone(), streams.clone(), ns.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(w + 1);
                for i in 0..25 {
                    let s = &streams[rng.below(streams.len() as u64) as usize];
                    let n = 1 + rng.below(3) as usize;
                    let events = (0..n)
                        .map(|j| ev(&ns, "Step", json!({"w": w, "i": i, "j": j})))
                        .collect();
                    append(&store, s, ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let mut total = 0;
    let mut by_stream = HashMap::new();
    for s in &streams {
        let events = stream_events(store, s).await;
        total += events.len();
        by_stream.insert(s.clone(), events);
    }
    let log = wait_for_log(store, Position::START, total, |e| e.namespace == ns).await;
    assert_eq!(log.len(), total, "the global log holds every event once");
    assert!(
        log.windows(2).all(|w| w[0].position < w[1].position),
        "the global log is in position order"
    );
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in &log {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(
            e.version, *v,
            "the global log follows stream {}'s version order",
            e.stream
        );
        *v += 1;
        assert_eq!(
            &by_stream[&e.stream][e.version as usize], e,
            "log and stream agree"
        );
    }
}

/// Reading the global log in pages of any size, from every checkpoint, returns each later event
/// exactly once.
pub async fn paging<S: Store>(store: &S) {
    let ns = format!("page{}", &suffix()[..8]);
    let start = head(store).await;
    for i in 0..30 {
        let s = format!("page-{}-{}", i % 3, &ns);
        append(
            store,
            &s,
            ExpectedVersion::Any,
            vec![ev(&ns, "P", json!({"i": i}))],
        )
        .await
        .expect("append");
    }
    let own = |e: &RecordedEvent| e.namespace == ns;
    let all = wait_for_log(store, start, 30, own).await;
    assert_eq!(all.len(), 30);
    let checkpoints: Vec<Position> = std::iter::once(start)
        .chain(all.iter().map(|e| e.position))
        .collect();
    for (k, cp) in checkpoints.iter().enumerate() {
        for page in [1, 7, 1000] {
            let got = log_after(store, *cp, page, own).await;
            assert_eq!(
                got,
                all[k..].to_vec(),
                "paging by {page} from checkpoint {cp}"
            );
        }
    }
    let cp = all[10].position;
    let parsed: Position = cp.to_string().parse().expect("checkpoints parse back");
    assert_eq!(parsed, cp);

    // Backward, from the end and from every checkpoint, in pages of any size.
    let reversed: Vec<RecordedEvent> = all.iter().rev().cloned().collect();
    for (k, before) in std::iter::once(None)
        .chain(all.iter().map(|e| Some(e.position)))
        .enumerate()
    {
        for page in [1, 7, 1000] {
            let got = log_before(store, before, start, page, own).await;
            let want = if k == 0 {
                reversed.clone()
            } else {
                reversed[all.len() - k + 1..].to_vec()
            };
            assert_eq!(got, want, "backward paging by {page} before {before:?}");
        }
    }
}

/// Reads the global log backward from `before` down to (excluding) `stop`.
pub(crate) async fn log_before<S: Store>(
    store: &S,
    before: Option<Position>,
    stop: Position,
    page: usize,
    keep: impl Fn(&RecordedEvent) -> bool,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut cursor = before;
    loop {
        let events = store
            .read_all_backward(cursor, page)
            .await
            .expect("read_all_backward");
        let Some(last) = events.last() else {
            return out;
        };
        assert!(
            cursor.is_none_or(|c| last.position < c),
            "read_all_backward went forward"
        );
        assert!(
            events.windows(2).all(|w| w[0].position > w[1].position),
            "newest first"
        );
        cursor = Some(last.position);
        for e in events {
            if e.position <= stop {
                return out;
            }
            if keep(&e) {
                out.push(e);
            }
        }
    }
}

/// `stats` counts events, streams and types, and reports the head.
pub async fn stats_counts<S: Store>(store: &S) {
    let ns = format!("stats{}", &suffix()[..8]);
    for i in 0..12u32 {
        let ty = if i % 3 == 0 { "Rare" } else { "Common" };
        append(
            store,
            &format!("st-{}-{ns}", i % 4),
            ExpectedVersion::Any,
            vec![ev(&ns, ty, json!({"i": i}))],
        )
        .await
        .expect("append");
    }
    let last = wait_for_log(store, Position::START, 12, |e| e.namespace == ns).await;
    let stats = store.stats().await.expect("stats");
    let mine: Vec<(String, u64)> = stats
        .types
        .iter()
        .filter(|t| t.namespace == ns)
        .map(|t| (t.event_type.clone(), t.events))
        .collect();
    assert_eq!(
        mine,
        vec![("Common".to_owned(), 8), ("Rare".to_owned(), 4)],
        "events per type, sorted"
    );
    assert!(stats.events >= 12 && stats.streams >= 4);
    assert_eq!(
        stats.types.iter().map(|t| t.events).sum::<u64>(),
        stats.events,
        "types add up to the total"
    );
    let head = stats.head.expect("a head");
    assert!(
        head >= last[11].position,
        "the head is at or after the last final event"
    );
}

/// Streams read forward and backward from any version, with limits, and page through the
/// facade's streams.
pub async fn read_stream_directions<S: Store + Clone>(store: &S) {
    let s = format!("dir-{}", suffix());
    let events = (0..10).map(|i| ev("kit", "D", json!({"i": i}))).collect();
    append(store, &s, ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    let versions = |v: Vec<RecordedEvent>| v.into_iter().map(|e| e.version).collect::<Vec<_>>();
    let id = sid(&s);
    let read = |from, dir, limit| store.read_stream(&id, from, dir, limit);
    assert_eq!(
        versions(read(0, Direction::Forward, 4).await.expect("read")),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        versions(read(8, Direction::Forward, 4).await.expect("read")),
        vec![8, 9]
    );
    assert_eq!(
        versions(read(10, Direction::Forward, 4).await.expect("read")),
        Vec::<u64>::new()
    );
    assert_eq!(
        versions(read(u64::MAX, Direction::Backward, 3).await.expect("read")),
        vec![9, 8, 7]
    );
    assert_eq!(
        versions(read(2, Direction::Backward, 10).await.expect("read")),
        vec![2, 1, 0]
    );
    assert_eq!(
        versions(read(0, Direction::Backward, 10).await.expect("read")),
        vec![0]
    );
    let none = sid(&format!("dir-none-{}", suffix()));
    assert!(
        store
            .read_stream(&none, 0, Direction::Forward, 10)
            .await
            .expect("read")
            .is_empty()
    );

    let big = format!("dir-big-{}", suffix());
    let n = event_store::PAGE_SIZE + 88;
    for chunk in 0..n.div_ceil(500) {
        let count = 500.min(n - chunk * 500);
        let events = (0..count)
            .map(|i| ev("kit", "B", json!({"i": chunk * 500 + i})))
            .collect();
        append(store, &big, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let es = EventStore::from_store(store.clone());
    let fwd: Vec<u64> = es
        .read_stream(&big, 0, Direction::Forward)
        .map(|e| e.expect("read").version)
        .collect()
        .await;
    assert_eq!(
        fwd,
        (0..n as u64).collect::<Vec<_>>(),
        "a forward stream pages through every event"
    );
    let bwd: Vec<u64> = es
        .read_stream(&big, u64::MAX, Direction::Backward)
        .map(|e| e.expect("read").version)
        .collect()
        .await;
    assert_eq!(
        bwd,
        (0..n as u64).rev().collect::<Vec<_>>(),
        "a backward stream pages through every event"
    );
}

/// Typed queries (stream, namespace, type, subject, data, time range) return exactly the events
/// [`Query::matches`] accepts, in position order, and page with a checkpoint.
pub async fn queries<S: Store + Clone>(store: &S) {
    let tag = &suffix()[..8];
    let (ns1, ns2) = (format!("qa{tag}"), format!("qb{tag}"));
    let t0 = Utc
        .with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    for i in 0..40u32 {
        let ns = if i % 3 == 0 { &ns2 } else { &ns1 };
        let ty = ["Created", "Renamed", "Closed"][(i % 4 % 3) as usize];
        let stream = format!("q-{}-{tag}", i % 4);
        let e = ev(
            ns,
            ty,
            json!({"n": i, "parity": i % 2, "label": format!("l{}", i % 5)}),
        )
        .with_subject("user", i % 3)
        .with_time(t0 + chrono::Duration::hours(i.into()));
        append(store, &stream, ExpectedVersion::Any, vec![e])
            .await
            .expect("append");
    }
    let mine = |e: &RecordedEvent| e.namespace == ns1 || e.namespace == ns2;
    let all = wait_for_log(store, Position::START, 40, mine).await;
    assert_eq!(all.len(), 40);
    let queries = vec![
        Query::stream(format!("q-1-{tag}")),
        Query::stream(format!("q-2-{tag}")).namespace(ns1.clone()),
        Query::all().namespace(ns2.clone()),
        Query::all().event_type(ns1.clone(), "Renamed"),
        Query::all()
            .event_type(ns1.clone(), "Closed")
            .event_type(ns2.clone(), "Created"),
        Query::all().namespace(ns1.clone()).subject_eq("user", 1),
        Query::all()
            .namespace(ns1.clone())
            .data_eq("parity", 0)
            .data_eq("label", "l2"),
        Query::all()
            .namespace(ns2.clone())
            .since(t0 + chrono::Duration::hours(10))
            .until(t0 + chrono::Duration::hours(30)),
        Query::all().namespace(ns1.clone()).subject_eq("user", "1"),
        Query::all().namespace(ns1.clone()).data_eq("n", 7.0),
    ];
    for q in queries {
        let q = q.check().expect("a valid query");
        let want: Vec<RecordedEvent> = all.iter().filter(|e| q.matches(e)).cloned().collect();
        let got = store
            .read_committed(&q, Position::START, 1000)
            .await
            .expect("read_committed");
        let got: Vec<RecordedEvent> = got.into_iter().filter(mine).collect();
        assert_eq!(got, want, "query {}", q.canonical());
        if want.len() > 2 {
            let after = want[1].position;
            let rest = store
                .read_committed(&q, after, 1000)
                .await
                .expect("read_committed");
            assert_eq!(
                rest.into_iter().filter(mine).collect::<Vec<_>>(),
                want[2..].to_vec(),
                "query {} after a checkpoint",
                q.canonical()
            );
            let first = store
                .read_committed(&q, Position::START, 1)
                .await
                .expect("read_committed");
            assert_eq!(first.len(), 1, "the limit holds");
        }
    }
}

/// Every bad input of design.md §4.8 is refused by the facade with the field named, and nothing
/// is written. (The store itself cannot be handed one: it takes only validated types, an
/// `AppendBatch`, a `StreamId`, a `CheckedQuery`; `event-store/tests/ui` proves that no other
/// way to make them compiles.)
pub async fn bad_input<S: Store + Clone>(store: &S) {
    let es = EventStore::from_store(store.clone());
    let s = format!("bad-{}", suffix());
    let ok = || ev("kit", "Fine", json!({}));
    let mut deep = json!(0);
    for _ in 0..500 {
        deep = json!([deep]);
    }
    let long_stream = "s".repeat(MAX_STREAM_ID_BYTES + 1);
    let cases: Vec<(&str, String, Vec<NewEvent>)> = vec![
        ("stream", String::new(), vec![ok()]),
        ("stream", "nul\0inside".into(), vec![ok()]),
        ("stream", "line\nbreak".into(), vec![ok()]),
        ("stream", long_stream, vec![ok()]),
        ("events", s.clone(), vec![]),
        (
            "events",
            s.clone(),
            (0..=MAX_BATCH_EVENTS).map(|_| ok()).collect(),
        ),
        (
            "events[1].namespace",
            s.clone(),
            vec![ok(), ev("has.dot", "T", json!({}))],
        ),
        (
            "events[0].namespace",
            s.clone(),
            vec![ev("", "T", json!({}))],
        ),
        (
            "events[0].type",
            s.clone(),
            vec![ev("kit", "has space", json!({}))],
        ),
        (
            "events[0].type",
            s.clone(),
            vec![ev("kit", "'; DROP TABLE events;--", json!({}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!([1, 2]))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!("text"))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!(null))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": "a\u{0}b"}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": deep}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"x": "y".repeat(MAX_EVENT_BYTES)}))],
        ),
        (
            "events[0].data",
            s.clone(),
            vec![ev("kit", "T", json!({"event_type": "Other"}))],
        ),
        (
            "events[0].context.action",
            s.clone(),
            vec![ok().with_action("a\u{7}")],
        ),
        (
            "events[1].id",
            s.clone(),
            vec![ok().with_id(Uuid::nil()), ok().with_id(Uuid::nil())],
        ),
    ];
    for (field, stream, events) in cases {
        let r = es.append(&stream, ExpectedVersion::Any, events).await;
        match r {
            Err(Error::InvalidInput { field: f, .. }) => {
                assert_eq!(f, field, "the refused field is named");
            }
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
    assert_eq!(
        store.stream_version(&sid(&s)).await.expect("version"),
        None,
        "nothing was written"
    );
    // A bad query cannot reach the store (it takes a `CheckedQuery`); the facade refuses it.
    for q in [
        Query::stream("has space"),
        Query::all().namespace("a.b"),
        Query::all().data_eq("", 1),
    ] {
        let first = Box::pin(es.read_committed(q, Position::START)).next().await;
        assert!(
            matches!(first, Some(Err(Error::InvalidInput { .. }))),
            "a bad query is refused: {first:?}"
        );
    }
}

/// Streamed reads ([`Store::read_all_rows`], [`Store::read_stream_rows`],
/// [`Store::read_committed_rows`]) return exactly the pages of `read_all`, `read_stream` and
/// `read_committed`; the facade's read-ahead of the log and of a stream
/// crosses its chunks without losing, repeating or reordering an event, and a caller that stops
/// early stops it.
pub async fn streamed_reads_agree<S: Store + Clone>(store: &S) {
    let ns = format!("rows{}", &suffix()[..8]);
    let start = head(store).await;
    let s = format!("rows-{}", suffix());
    let n = event_store::READ_AHEAD_CHUNK + 300;
    for chunk in 0..n.div_ceil(1000) {
        let count = 1000.min(n - chunk * 1000);
        let events = (0..count)
            .map(|i| ev(&ns, "R", json!({"i": chunk * 1000 + i})))
            .collect();
        append(store, &s, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let own = |e: &RecordedEvent| e.namespace == ns;
    let all = wait_for_log(store, start, n, own).await;
    assert_eq!(all.len(), n);

    let id = sid(&s);
    for (after, limit) in [
        (start, 1),
        (start, 700),
        (all[99].position, 1000),
        (all[n - 2].position, 50),
        (all[n - 1].position, 10),
    ] {
        let page = store.read_all(after, limit).await.expect("read_all");
        let rows: Vec<RecordedEvent> = store
            .read_all_rows(after, limit)
            .map(|e| e.expect("read_all_rows"))
            .collect()
            .await;
        assert_eq!(
            rows, page,
            "read_all_rows({after}, {limit}) is read_all's page"
        );
    }
    for (from, direction, limit) in [
        (0, Direction::Forward, 1),
        (0, Direction::Forward, 700),
        (4000, Direction::Forward, 1000),
        (n as u64 + 5, Direction::Forward, 10),
        (u64::MAX, Direction::Backward, 300),
        (10, Direction::Backward, 100),
    ] {
        let page = store
            .read_stream(&id, from, direction, limit)
            .await
            .expect("read_stream");
        let rows: Vec<RecordedEvent> = store
            .read_stream_rows(&id, from, direction, limit)
            .map(|e| e.expect("read_stream_rows"))
            .collect()
            .await;
        same(
            &rows,
            &page,
            &format!("read_stream_rows({from}, {direction:?}, {limit}) is read_stream's page"),
        );
    }

    for (query, after, limit) in [
        (Query::stream(&s), start, 700),
        (Query::stream(&s), all[99].position, 5000),
        (Query::all().namespace(&ns), all[n - 2].position, 10),
        (Query::all().event_type(&ns, "R"), start, 1),
    ] {
        let query = query.check().expect("a valid query");
        let page = store
            .read_committed(&query, after, limit)
            .await
            .expect("read_committed");
        let rows: Vec<RecordedEvent> = store
            .read_committed_rows(&query, after, limit)
            .map(|e| e.expect("read_committed_rows"))
            .collect()
            .await;
        same(
            &rows,
            &page,
            &format!("read_committed_rows({after}, {limit}) is read_committed's page"),
        );
    }

    let es = EventStore::from_store(store.clone());
    let stream: Vec<RecordedEvent> = es
        .read_stream(&s, 0, Direction::Forward)
        .map(|e| e.expect("read"))
        .collect()
        .await;
    same(
        &stream,
        &all,
        "the stream read ahead is the stream, in order",
    );
    let tail: Vec<RecordedEvent> = es
        .read_stream(&s, 17, Direction::Forward)
        .map(|e| e.expect("read"))
        .collect()
        .await;
    same(&tail, &all[17..], "read ahead from a version");
    for from in [start, all[4000].position] {
        let log: Vec<RecordedEvent> = es
            .read_all(from)
            .map(|e| e.expect("read"))
            .filter(|e| std::future::ready(own(e)))
            .collect()
            .await;
        let k = all.iter().take_while(|e| e.position <= from).count();
        same(&log, &all[k..], &format!("the log read ahead after {from}"));
    }
    // A caller that stops early: the read-ahead stops when the stream is dropped.
    let first: Vec<RecordedEvent> = es
        .read_all(start)
        .filter_map(|e| std::future::ready(e.ok().filter(|e| own(e))))
        .take(5)
        .collect()
        .await;
    same(&first, &all[..5], "the first events read ahead");
}

/// `got == want`, reported by the first difference rather than by printing thousands of events.
fn same(got: &[RecordedEvent], want: &[RecordedEvent], what: &str) {
    if let Some(k) = (0..got.len().min(want.len())).find(|&k| got[k] != want[k]) {
        panic!(
            "{what}: event {k} differs: got {:?}, want {:?}",
            got[k], want[k]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: how many events");
}

/// [`Store::streams`] lists the streams of a prefix in the byte order of their ids, each with
/// its count and last event, paged by the last id of the previous page; an id that holds the
/// prefix elsewhere than at its start is not listed.
pub async fn streams_are_listed<S: Store>(store: &S) {
    let p = format!("ls{}-", &suffix()[..8]);
    // Byte order: "a-10" < "a-2" < "b-1" < "é-1" (é is 0xC3 0xA9 in UTF-8).
    let layout: [(&str, usize); 4] = [("b-1", 3), ("a-2", 1), ("a-10", 2), ("é-1", 1)];
    for (name, count) in layout {
        let events = (0..count)
            .map(|i| ev("kit", "Listed", json!({"i": i})))
            .collect();
        append(
            store,
            &format!("{p}{name}"),
            ExpectedVersion::NoStream,
            events,
        )
        .await
        .expect("append");
    }
    append(
        store,
        &format!("x{p}a-3"),
        ExpectedVersion::NoStream,
        vec![ev("kit", "Listed", json!({}))],
    )
    .await
    .expect("append");
    let listed = store.streams(&p, None, 100).await.expect("streams");
    let ids: Vec<&str> = listed.iter().map(|s| s.stream.as_str()).collect();
    let expected: Vec<String> = ["a-10", "a-2", "b-1", "é-1"]
        .iter()
        .map(|n| format!("{p}{n}"))
        .collect();
    assert_eq!(ids, expected, "the prefix's streams, in byte order");
    for info in &listed {
        let events = stream_events(store, &info.stream).await;
        let last = events.last().expect("a listed stream has events");
        assert_eq!(info.events, events.len() as u64, "{}", info.stream);
        assert_eq!(info.last_version, last.version, "{}", info.stream);
        assert_eq!(info.last_position, last.position, "{}", info.stream);
        assert_eq!(info.last_time, last.context.time, "{}", info.stream);
    }
    // Pages of two, each after the previous page's last id.
    let first = store.streams(&p, None, 2).await.expect("streams");
    assert_eq!(first, listed[..2].to_vec());
    let after = sid(&first[1].stream);
    let second = store.streams(&p, Some(&after), 2).await.expect("streams");
    assert_eq!(second, listed[2..].to_vec());
    let end = sid(&second[1].stream);
    assert!(
        store
            .streams(&p, Some(&end), 2)
            .await
            .expect("streams")
            .is_empty()
    );
    // A narrower prefix; every stream of the store includes these.
    let narrow = store
        .streams(&format!("{p}a-"), None, 100)
        .await
        .expect("streams");
    assert_eq!(narrow, listed[..2].to_vec());
    let everything = store.streams("", None, usize::MAX).await.expect("streams");
    for info in &listed {
        assert!(
            everything.contains(info),
            "{} missing from the whole list",
            info.stream
        );
    }
    assert!(
        everything
            .windows(2)
            .all(|w| w[0].stream.as_bytes() < w[1].stream.as_bytes())
    );
}

/// [`Store::read_event`] finds each event by its id, as the stream holds it; an unknown id is
/// `None`.
pub async fn events_are_found_by_id<S: Store>(store: &S) {
    let s = format!("byid-{}", suffix());
    let stored = append(
        store,
        &s,
        ExpectedVersion::NoStream,
        vec![
            ev("kit", "Found", json!({"n": 1})),
            ev("kit", "Found", json!({"n": 2})),
        ],
    )
    .await
    .expect("append");
    let in_stream = stream_events(store, &s).await;
    assert_eq!(in_stream.len(), 2);
    for e in &in_stream {
        let found = store.read_event(e.id).await.expect("read_event");
        assert_eq!(found.as_ref(), Some(e), "event {} by id", e.id);
    }
    assert_eq!(stored.len(), 2);
    let unknown = Uuid::now_v7();
    assert_eq!(store.read_event(unknown).await.expect("read_event"), None);
}
