//! Property test: generated sequences of operations give identical observable results on the
//! memory, SQLite and PostgreSQL stores (PostgreSQL when reachable; required in CI). Numbers come
//! in the forms that backends could disagree on (`1` and `1.0`, negative zero, the neighbours of
//! 2^64), in data, in reused ids' content and in query values; data is compared as text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use event_store::{
    Direction, Error, EventStore, ExpectedVersion, MemoryStore, NewEvent, Position, Query, Store,
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: u8,
        expected: u8,
        n: u8,
        reuse: Option<u8>,
        value: u8,
    },
    ReadStream {
        stream: u8,
        from: u8,
        backward: bool,
        limit: u8,
    },
    Query {
        stream: Option<u8>,
        event_type: Option<u8>,
        value: Option<u8>,
    },
    Version {
        stream: u8,
    },
    Log,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 0..8u8, 1..4u8, proptest::option::weighted(0.25, 0..40u8), 0..NUMBERS)
            .prop_map(|(stream, expected, n, reuse, value)| Op::Append { stream, expected, n, reuse, value }),
        1 => (0..4u8, 0..6u8, any::<bool>(), 1..5u8).prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        1 => (proptest::option::of(0..4u8), proptest::option::of(0..2u8), proptest::option::of(0..NUMBERS))
            .prop_map(|(stream, event_type, value)| Op::Query { stream, event_type, value }),
        1 => (0..4u8).prop_map(|stream| Op::Version { stream }),
        1 => Just(Op::Log),
    ]
}

/// How many number forms [`number`] has.
const NUMBERS: u8 = 12;

/// A JSON number in one of the forms backends could disagree on.
fn number(code: u8) -> serde_json::Value {
    match code {
        0 => json!(0),
        1 => json!(0.0),
        2 => json!(-0.0),
        3 => json!(1),
        4 => json!(1.0),
        5 => json!(-1),
        6 => json!(100),
        7 => json!(1e2),
        8 => json!(1.5),
        9 => json!(u64::MAX),
        10 => json!(18_446_744_073_709_551_616.0_f64),
        _ => json!(i64::MIN),
    }
}

/// What an operation showed, without positions (each backend has its own).
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Appended {
        versions: Vec<u64>,
        stored: bool,
    },
    Conflict {
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    Duplicate,
    Events(Vec<(String, u64, String, String, uuid::Uuid)>),
    Version(Option<u64>),
}

fn expected(code: u8) -> ExpectedVersion {
    match code {
        0 | 1 => ExpectedVersion::Any,
        2 => ExpectedVersion::NoStream,
        3 => ExpectedVersion::StreamExists,
        v => ExpectedVersion::Exact(u64::from(v) - 4),
    }
}

fn events(list: Vec<event_store::RecordedEvent>, prefix: &str) -> Seen {
    Seen::Events(
        list.into_iter()
            .filter(|e| e.stream.starts_with(prefix))
            .map(|e| {
                (
                    e.stream.trim_start_matches(prefix).to_owned(),
                    e.version,
                    e.event_type,
                    serde_json::to_string(&e.data).unwrap(),
                    e.id,
                )
            })
            .collect(),
    )
}

async fn run<S: Store + Clone>(store: &S, prefix: &str, key: u64, ops: &[Op]) -> Vec<Seen> {
    let es = EventStore::from_store(store.clone());
    let stream = |k: u8| format!("{prefix}{k}");
    // Ids are the same on every backend: derived from the case's key, the op and the event.
    let id = |op: usize, i: usize| {
        uuid::Uuid::from_u128((u128::from(key) << 64) | ((op as u128) << 8) | i as u128)
    };
    let mut out = Vec::new();
    let start = {
        let mut last = Position::START;
        loop {
            let page = store.read_all(last, 1000).await.unwrap();
            match page.last() {
                Some(e) => last = e.position,
                None => break last,
            }
        }
    };
    for (k, op) in ops.iter().enumerate() {
        let seen = match op {
            Op::Append {
                stream: s,
                expected: x,
                n,
                reuse,
                value,
            } => {
                let batch: Vec<NewEvent> = (0..usize::from(*n))
                    .map(|i| {
                        let ty = if i % 2 == 0 { "Added" } else { "Removed" };
                        let (event_id, v) = match reuse {
                            // Reuse an earlier op's id: the same content when the value matches.
                            Some(r) if i == 0 => (id(usize::from(*r) % (k + 1), 0), number(*value)),
                            _ => (id(k, i), number(*value)),
                        };
                        NewEvent::new("eq", ty, json!({"v": v})).with_id(event_id)
                    })
                    .collect();
                match es.append(&stream(*s), expected(*x), batch).await {
                    Ok(a) => Seen::Appended {
                        versions: a.events.iter().map(|e| e.version).collect(),
                        stored: a.stored,
                    },
                    Err(Error::Conflict {
                        expected, actual, ..
                    }) => Seen::Conflict { expected, actual },
                    Err(Error::DuplicateId { .. }) => Seen::Duplicate,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            Op::ReadStream {
                stream: s,
                from,
                backward,
                limit,
            } => {
                let dir = if *backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let id = event_store::StreamId::new(stream(*s)).unwrap();
                events(
                    store
                        .read_stream(&id, u64::from(*from), dir, usize::from(*limit))
                        .await
                        .unwrap(),
                    prefix,
                )
            }
            Op::Query {
                stream: s,
                event_type,
                value,
            } => {
                let mut q = s.map_or_else(Query::all, |s| Query::stream(stream(s)));
                q = match event_type {
                    Some(0) => q.event_type("eq", "Added"),
                    Some(_) => q.event_type("eq", "Removed"),
                    None => q.namespace("eq"),
                };
                if let Some(v) = value {
                    q = q.data_eq("v", number(*v));
                }
                let q = q.check().unwrap();
                events(store.read_committed(&q, start, 1000).await.unwrap(), prefix)
            }
            Op::Version { stream: s } => {
                Seen::Version(es.stream_version(&stream(*s)).await.unwrap())
            }
            Op::Log => {
                let mut all = Vec::new();
                let mut after = start;
                loop {
                    let page = store.read_all(after, 7).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.position;
                    all.extend(page);
                }
                events(all, prefix)
            }
        };
        out.push(seen);
    }
    out
}

#[test]
fn memory_sqlite_and_postgres_agree() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, pg, schema) = rt.block_on(async {
        let sqlite = event_store_sqlite::SqliteStore::open(dir.path().join("eq.db"))
            .await
            .unwrap();
        let url = std::env::var("EVENT_STORE_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("es_eq_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let pg = match event_store_postgres::PgStore::connect(
            &url,
            event_store_postgres::PgConfig::with_schema(&schema),
        )
        .await
        {
            Ok(s) => {
                s.migrate().await.unwrap();
                Some(s)
            }
            Err(e) => event_store_testkit::require_service(
                "PostgreSQL (EVENT_STORE_TEST_PG), for its part",
                Err(e),
            ),
        };
        (sqlite, pg, schema)
    });
    let memory = MemoryStore::new();
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        proptest!(config, |(ops in proptest::collection::vec(op(), 1..30))| {
            let case = uuid::Uuid::now_v7().simple().to_string();
            let key = u64::from_str_radix(&case[16..], 16).unwrap_or_default();
            let prefix = format!("c{}-", &case[20..]);
            let (m, s, p) = rt.block_on(async {
                let m = run(&memory, &prefix, key, &ops).await;
                let s = run(&sqlite, &prefix, key, &ops).await;
                let p = match &pg { Some(pg) => Some(run(pg, &prefix, key, &ops).await), None => None };
                (m, s, p)
            });
            prop_assert_eq!(&m, &s, "memory and SQLite disagree");
            if let Some(p) = p {
                prop_assert_eq!(&m, &p, "memory and PostgreSQL disagree");
            }
        });
    }));
    if let Some(pg) = &pg {
        rt.block_on(async {
            let client = pg.pool().get().await.unwrap();
            client
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .unwrap();
        });
    }
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
