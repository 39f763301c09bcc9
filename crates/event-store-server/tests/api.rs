//! The HTTP API against the memory and SQLite stores, in process (the router as a tower
//! service): every route, every error status, tokens, limits and the live tail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use event_store::{EventStore, MemoryStore, Store};
use event_store_server::{Api, Scope, ServerConfig, Tokens};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

async fn call(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (parts.status, parts.headers, value)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn events(n: usize, ty: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"namespace": "shop", "type": ty, "data": {"i": i}}))
            .collect(),
    )
}

/// Every route but the live tail, on `es`.
async fn exercise<S: Store + Clone>(es: EventStore<S>) {
    let store = es.store().clone();
    let api = Api::new(
        es,
        ServerConfig {
            page_limit: 3,
            ..ServerConfig::default()
        },
    );
    let router = api.router();
    assert_eq!(call(&router, get("/health")).await.0, StatusCode::OK);
    assert_eq!(call(&router, get("/ready")).await.0, StatusCode::OK);

    // Appends: created, retried, conflicting, refused.
    let id = uuid::Uuid::now_v7();
    let body = json!({"events": [{"id": id, "namespace": "shop", "type": "Placed", "data": {"total": 12}}],
                      "expected_version": "no-stream"});
    let (status, _, created) = call(&router, post("/streams/order-1", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["stored"], true);
    assert_eq!(created["events"][0]["version"], 0);
    let (status, _, retried) = call(&router, post("/streams/order-1", &body)).await;
    assert_eq!(status, StatusCode::OK, "a retry of the same ids: {retried}");
    assert_eq!(retried["stored"], false);
    assert_eq!(retried["events"], created["events"]);
    let mut conflict = post("/streams/order-1", &events(1, "Paid"));
    conflict
        .headers_mut()
        .insert("expected-version", "no-stream".parse().unwrap());
    let (status, _, e) = call(&router, conflict).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"], "conflict");
    assert_eq!(e["stream"], "order-1");
    assert_eq!(e["actual"], 0);
    let mut ok = post("/streams/order-1", &events(4, "Paid"));
    ok.headers_mut()
        .insert("expected-version", "0".parse().unwrap());
    assert_eq!(call(&router, ok).await.0, StatusCode::CREATED);
    for (uri, body, field) in [
        (
            "/streams/order-1",
            json!({"events": [{"namespace": "shop", "type": "X", "data": [1]}]}),
            "events[0].data",
        ),
        (
            "/streams/order-1",
            json!({"events": [{"namespace": "shop", "type": "X", "colour": 1}]}),
            "events[0]",
        ),
        (
            "/streams/order-1",
            json!({"events": [{"namespace": "shop", "type": "X", "context": {"time": "soon"}}]}),
            "events[0].context.time",
        ),
        (
            "/streams/order-1",
            json!({"events": [], "expected_version": "soon"}),
            "expected_version",
        ),
        ("/streams/order-1", json!({"evnts": []}), "events"),
        ("/streams/has%20space", events(1, "X"), "stream"),
    ] {
        let (status, _, e) = call(&router, post(uri, &body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"], "invalid", "{e}");
        assert!(
            e["field"].as_str().unwrap().starts_with(field),
            "{body}: {e}"
        );
    }
    // Hostile JSON, as the CLI refuses it: a key twice, an integer beyond 64 bits.
    for text in [
        r#"[{"namespace":"shop","type":"X","data":{"k":1,"k":2}}]"#,
        r#"[{"namespace":"shop","type":"X","data":{"n":123456789012345678901234}}]"#,
        "not json",
    ] {
        let request = Request::post("/streams/order-1")
            .body(Body::from(text))
            .unwrap();
        let (status, _, e) = call(&router, request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {e}");
    }

    // A stream, paged with cursors and Link headers.
    let (status, headers, first) = call(&router, get("/streams/order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    assert_eq!(first["next"], "3");
    let link = headers[header::LINK].to_str().unwrap().to_owned();
    assert_eq!(link, "</streams/order-1?from=3&limit=3>; rel=\"next\"");
    let (_, headers, second) = call(&router, get("/streams/order-1?from=3&limit=3")).await;
    assert_eq!(second["events"].as_array().unwrap().len(), 2);
    assert_eq!(second["next"], Value::Null);
    assert!(headers.get(header::LINK).is_none());
    let (_, _, back) = call(&router, get("/streams/order-1?backward=true&limit=2")).await;
    assert_eq!(back["events"][0]["version"], 4);
    assert_eq!(back["next"], "2");
    let (status, _, e) = call(&router, get("/streams/nothing-here")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    for uri in [
        "/streams/order-1?limit=0",
        "/streams/order-1?from=x",
        "/streams/order-1?colour=1",
        "/streams/order-1?limit=1&limit=2",
    ] {
        let (status, _, e) = call(&router, get(uri)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {e}");
    }

    // The global log, forward and backward, paged: final events only, so wait until the last
    // append is final (on PostgreSQL, other transactions may still run).
    let (_, _, last) = call(&router, post("/streams/cart-1", &events(2, "Added"))).await;
    let last: event_store::Position = last["events"][1]["position"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    event_store_testkit::wait_final(&store, last).await;
    let mut log = Vec::new();
    let mut uri = "/log".to_owned();
    loop {
        let (status, headers, page) = call(&router, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        log.extend(page["events"].as_array().unwrap().iter().cloned());
        match headers.get(header::LINK) {
            Some(link) => {
                let link = link.to_str().unwrap();
                link[1..link.find('>').unwrap()].clone_into(&mut uri);
            }
            None => break,
        }
    }
    assert_eq!(log.len(), 7);
    let positions: Vec<String> = log
        .iter()
        .map(|e| e["position"].as_str().unwrap().to_owned())
        .collect();
    let (_, _, newest) = call(&router, get("/log?backward=true&limit=2")).await;
    assert_eq!(newest["events"][0]["position"], positions[6]);
    let (_, _, older) = call(&router, get(&format!("/log?before={}", positions[5]))).await;
    assert_eq!(older["events"][0]["position"], positions[4]);
    let (status, _, _) = call(&router, get("/log?after=1&backward=true")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // One event by id.
    let one = &log[3];
    let (status, _, found) = call(
        &router,
        get(&format!("/events/{}", one["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&found, one);
    let (status, _, _) = call(&router, get(&format!("/events/{}", uuid::Uuid::now_v7()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, e) = call(&router, get("/events/not-a-uuid")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // Streams and stats.
    let (_, headers, streams) = call(&router, get("/streams?limit=1")).await;
    assert_eq!(streams["streams"][0]["stream"], "cart-1");
    assert_eq!(streams["streams"][0]["events"], 2);
    assert!(
        headers[header::LINK]
            .to_str()
            .unwrap()
            .contains("after=cart-1")
    );
    let (_, _, rest) = call(&router, get("/streams?after=cart-1")).await;
    assert_eq!(rest["streams"][0]["stream"], "order-1");
    assert_eq!(rest["streams"][0]["events"], 5);
    let (_, _, stats) = call(&router, get("/stats")).await;
    assert_eq!(stats["events"], 7);
    assert_eq!(stats["streams"], 2);

    // Search: by type, paged, the next page's link keeping the filter.
    let (status, headers, found) = call(&router, get("/search?type=shop.Paid")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let page_one = found["events"].as_array().unwrap().clone();
    assert_eq!(page_one.len(), 3);
    let link = headers[header::LINK].to_str().unwrap().to_owned();
    assert!(link.contains("type=shop.Paid"), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let (_, _, rest) = call(&router, get(next)).await;
    let all: Vec<Value> = page_one
        .into_iter()
        .chain(rest["events"].as_array().unwrap().iter().cloned())
        .collect();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .all(|e| e["type"] == "Paid" && e["stream"] == "order-1")
    );
    assert_eq!(rest["next"], Value::Null);
    // By stream prefix and a time range.
    let (_, _, carts) = call(&router, get("/search?stream_prefix=cart-")).await;
    assert_eq!(carts["events"].as_array().unwrap().len(), 2);
    let (_, _, old) = call(&router, get("/search?until=2000-01-01T00:00:00Z")).await;
    assert_eq!(old["events"].as_array().unwrap().len(), 0);
    let (_, _, recent) = call(&router, get("/search?since=2000-01-01T00:00:00Z&limit=1")).await;
    assert_eq!(recent["events"].as_array().unwrap().len(), 1);
    for (uri, field) in [
        ("/search?subject=no-value", "subject"),
        ("/search?since=yesterday", "since"),
        ("/search?type=Paid", "type"),
        ("/stats/timeline?minutes=0", "minutes"),
        ("/stats/timeline?minutes=1441", "minutes"),
    ] {
        let (status, _, e) = call(&router, get(uri)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(e["field"], field, "{uri}: {e}");
    }

    // The timeline: every event of the last minutes, by type.
    let (status, _, timeline) = call(&router, get("/stats/timeline?minutes=5")).await;
    assert_eq!(status, StatusCode::OK);
    let minutes = timeline["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 5);
    assert_eq!(timeline["events"], 7);
    let paid: u64 = minutes
        .iter()
        .filter_map(|m| m["counts"]["shop.Paid"].as_u64())
        .sum();
    assert_eq!(paid, 4);
    assert_eq!(timeline["truncated"], false);

    // A closed stream: appends and reads by stream are 410, it leaves the list, its events
    // stay in the log.
    let closing = "order-1".to_owned();
    assert!(
        store
            .close_stream(&event_store::StreamId::new(closing.as_str()).unwrap(), true)
            .await
            .unwrap()
    );
    let (status, _, e) = call(
        &router,
        post(&format!("/streams/{closing}"), &events(1, "Late")),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{e}");
    assert_eq!(
        (e["error"].as_str(), e["stream"].as_str()),
        (Some("stream_closed"), Some(closing.as_str()))
    );
    let (status, _, e) = call(&router, get(&format!("/streams/{closing}"))).await;
    assert_eq!(status, StatusCode::GONE, "{e}");
    let (_, _, after) = call(&router, get("/streams")).await;
    assert!(
        after["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["stream"] != closing.as_str())
    );
    let (_, _, log) = call(&router, get("/log?limit=3")).await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["stream"] == closing.as_str()),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_memory() {
    exercise(EventStore::from_store(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store_sqlite::SqliteStore::open(dir.path().join("e.db"))
        .await
        .unwrap();
    exercise(EventStore::from_store(store)).await;
}

/// Drops a test schema when the test ends, passed or failed.
struct DropSchema(String, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_postgres() {
    let url = std::env::var("EVENT_STORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "es_http_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let _guard = DropSchema(url.clone(), schema.clone());
    let mut config = event_store_postgres::PgConfig::with_schema(&schema);
    config.connect_timeout = Duration::from_secs(5);
    let Some(store) = event_store_testkit::require_service(
        "PostgreSQL (EVENT_STORE_TEST_PG)",
        event_store_postgres::PgStore::connect(&url, config).await,
    ) else {
        return;
    };
    store.migrate().await.unwrap();
    exercise(EventStore::from_store(store)).await;
}

/// The document served at `/openapi.json` is the router's: every documented operation answers
/// (with a documented status) and every parameter it names is accepted; an operation that is
/// not documented does not exist (the explorer's page and assets aside: they are not the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_router() {
    let es = EventStore::from_store(MemoryStore::new());
    let api = Api::new(es, ServerConfig::default());
    let router = api.router();
    let (status, _, doc) = call(&router, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, event_store_server::openapi());
    // An append first, so the reads below find a stream and an event.
    let (status, _, appended) = call(&router, post("/streams/doc-1", &events(1, "Placed"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = appended["events"][0]["id"].as_str().unwrap().to_owned();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations.push(format!("{method} {path}"));
            let concrete = path.replace("{stream}", "doc-1").replace("{id}", &id);
            // Every documented query parameter, with a value of its type.
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter(|p| !(path == "/log" && p["name"] == "before"))
                .map(|p| {
                    let value = match p["name"].as_str().unwrap() {
                        "limit" => "2",
                        "from" | "after" if path != "/streams" => "0",
                        "backward" => "false",
                        "type" => "shop.Placed",
                        "namespace" => "shop",
                        "subject" => "user=1",
                        "since" => "2020-01-01T00:00:00Z",
                        "until" => "2100-01-01T00:00:00Z",
                        "minutes" => "5",
                        _ => "doc",
                    };
                    format!("{}={value}", p["name"].as_str().unwrap())
                })
                .collect();
            let uri = if query.is_empty() {
                concrete
            } else {
                format!("{concrete}?{}", query.join("&"))
            };
            let (status, headers) = if path == "/log/live" {
                // The tail never ends: only its head is read.
                let response = router.clone().oneshot(get(&uri)).await.unwrap();
                (response.status(), response.headers().clone())
            } else if method == "post" {
                let (s, h, _) = call(&router, post(&uri, &events(1, "Placed"))).await;
                (s, h)
            } else {
                let (s, h, _) = call(&router, get(&uri)).await;
                (s, h)
            };
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                documented.contains(&&status.as_u16().to_string()),
                "{method} {uri}: {status} is not documented ({documented:?})"
            );
            // Everything but `/metrics` (off without a recorder) succeeds with these values.
            if path != "/metrics" {
                assert!(status.is_success(), "{method} {uri}: {status}");
            }
            if let Some(content) = op["responses"][status.as_str()]["content"].as_object() {
                let given = headers[header::CONTENT_TYPE].to_str().unwrap();
                assert!(
                    content.keys().any(|c| given.starts_with(c.as_str())),
                    "{method} {uri}: {given} is not one of {:?}",
                    content.keys()
                );
            }
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "get /events/{id}",
            "get /health",
            "get /log",
            "get /log/live",
            "get /metrics",
            "get /openapi.json",
            "get /ready",
            "get /search",
            "get /stats",
            "get /stats/timeline",
            "get /streams",
            "get /streams/{stream}",
            "post /streams/{stream}",
        ]
    );
    // Not documented, not served.
    assert_eq!(
        call(
            &router,
            Request::delete("/streams/doc-1")
                .body(Body::empty())
                .unwrap()
        )
        .await
        .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&router, get("/nothing")).await.0,
        StatusCode::NOT_FOUND
    );
    // The error bodies are the documented `ErrorBody`: its required keys are there.
    let (status, _, e) = call(&router, get("/log?limit=0")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for key in doc["components"]["schemas"]["ErrorBody"]["required"]
        .as_array()
        .unwrap()
    {
        assert!(
            e.get(key.as_str().unwrap()).is_some(),
            "{key} missing in {e}"
        );
    }
    assert_eq!(
        (e["error"].as_str(), e["field"].as_str()),
        (Some("invalid"), Some("limit"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let mut tokens = Tokens::new();
    tokens
        .add("reader-0123456789abcdef", &[Scope::Read])
        .unwrap();
    tokens
        .add("writer-0123456789abcdef", &[Scope::Read, Scope::Append])
        .unwrap();
    tokens
        .add("admin-0123456789abcdefg", &[Scope::Admin])
        .unwrap();
    let api = Api::new(
        EventStore::from_store(MemoryStore::new()),
        ServerConfig {
            tokens: Some(tokens),
            ..ServerConfig::default()
        },
    );
    let router = api.router();
    let with = |mut r: Request<Body>, token: &str| {
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        r
    };
    // Liveness, readiness and the explorer's page (which holds no data) need no token.
    assert_eq!(call(&router, get("/health")).await.0, StatusCode::OK);
    assert_eq!(call(&router, get("/ready")).await.0, StatusCode::OK);
    let (status, headers, _) = call(&router, get("/")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "explorer/");
    for (asset, kind) in [
        ("/explorer/", "text/html"),
        ("/explorer/app.js", "text/javascript"),
        ("/explorer/app.css", "text/css"),
    ] {
        let (status, headers, _) = call(&router, get(asset)).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        // Scripts from the server only: no inline script, no CDN, no framing.
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    }
    let closed = Api::new(
        EventStore::from_store(MemoryStore::new()),
        ServerConfig {
            explorer: false,
            ..ServerConfig::default()
        },
    );
    assert_eq!(
        call(&closed.router(), get("/explorer/")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, headers, e) = call(&router, get("/stats")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{e}");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = call(&router, with(get("/stats"), "reader-0123456789abcdeX")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong token");
    assert_eq!(
        call(&router, with(get("/stats"), "reader-0123456789abcdef"))
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, e) = call(
        &router,
        with(
            post("/streams/s", &events(1, "A")),
            "reader-0123456789abcdef",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    assert!(e["message"].as_str().unwrap().contains("append"));
    assert_eq!(
        call(
            &router,
            with(
                post("/streams/s", &events(1, "A")),
                "writer-0123456789abcdef"
            )
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &router,
            with(
                post("/streams/s", &events(1, "A")),
                "admin-0123456789abcdefg"
            )
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&router, with(get("/log/live"), "nobody-0123456789abcdef"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_refused_by_its_length() {
    let api = Api::new(
        EventStore::from_store(MemoryStore::new()),
        ServerConfig {
            body_limit: 1 << 20,
            ..ServerConfig::default()
        },
    );
    let router = api.router();
    // It says 100 MB and sends a few bytes: refused on the header alone, so a body of that
    // size is never read.
    let request = Request::post("/streams/s")
        .header(header::CONTENT_LENGTH, 100_000_000)
        .body(Body::from("[]"))
        .unwrap();
    let (status, _, _) = call(&router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A body that grows past the limit without a length is cut off as it streams.
    let chunks = futures::stream::iter(
        (0..200).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let request = Request::post("/streams/s")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, _, e) = call(&router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
}

/// One SSE event: its id, name and data.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    name: String,
    data: String,
}

/// Reads SSE events from a live response until `n` events or the end of the stream.
async fn read_sse(body: &mut Body, n: usize, slow: Option<Duration>) -> Vec<Sse> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.unwrap();
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buffer.push_str(std::str::from_utf8(data).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut e = Sse {
                id: None,
                name: "message".into(),
                data: String::new(),
            };
            let mut fields = 0;
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("id: ")
                    .or_else(|| line.strip_prefix("id:"))
                {
                    e.id = Some(v.to_owned());
                    fields += 1;
                } else if let Some(v) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    v.clone_into(&mut e.name);
                    fields += 1;
                } else if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    e.data.push_str(v);
                    fields += 1;
                }
            }
            if fields > 0 {
                out.push(e);
            }
        }
        if let Some(pause) = slow {
            tokio::time::sleep(pause).await;
        }
    }
    out
}

async fn live(router: &Router, uri: &str, last_event_id: Option<&str>) -> Body {
    let mut request = get(uri);
    if let Some(id) = last_event_id {
        request
            .headers_mut()
            .insert("last-event-id", id.parse().unwrap());
    }
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    response.into_body()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_resumes_exactly_and_drops_a_slow_client() {
    let es = EventStore::from_store(MemoryStore::new());
    let api = Api::new(es.clone(), ServerConfig::default());
    let router = api.router();
    for i in 0..10 {
        let stream = format!("s-{}", i % 3);
        call(
            &router,
            post(&format!("/streams/{stream}"), &events(1, "A")),
        )
        .await;
    }
    let log = es
        .store()
        .read_all(event_store::Position::START, 100)
        .await
        .unwrap();
    // From the start: the first five, with their positions as ids.
    let mut body = live(&router, "/log/live?after=0", None).await;
    let first = read_sse(&mut body, 5, None).await;
    let ids: Vec<String> = first.iter().map(|e| e.id.clone().unwrap()).collect();
    let expected: Vec<String> = log[..5].iter().map(|e| e.position.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(first.iter().all(|e| e.name == "event"));
    let decoded: Value = serde_json::from_str(&first[0].data).unwrap();
    assert_eq!(decoded["id"], log[0].id.to_string());
    drop(body);
    // Reconnecting with Last-Event-ID resumes right after it, whatever `after` says.
    let mut body = live(&router, "/log/live?after=0", Some(&ids[4])).await;
    let rest = read_sse(&mut body, 5, None).await;
    let rest_ids: Vec<String> = rest.iter().map(|e| e.id.clone().unwrap()).collect();
    let expected: Vec<String> = log[5..].iter().map(|e| e.position.to_string()).collect();
    assert_eq!(rest_ids, expected, "no gap, no duplicate");
    // New events arrive live, filtered.
    let mut typed = live(&router, "/log/live?type=shop.B", None).await;
    call(&router, post("/streams/s-9", &events(1, "A"))).await;
    call(&router, post("/streams/s-9", &events(1, "B"))).await;
    let next = read_sse(&mut typed, 1, None).await;
    let e: Value = serde_json::from_str(&next[0].data).unwrap();
    assert_eq!(e["type"], "B");
    drop(body);

    // A client that stops reading while 500 events wait: its buffer of four stays full past
    // `slow_client`, it is told so and disconnected; what it got is a gapless prefix of the log.
    for _ in 0..50 {
        call(&router, post("/streams/bulk", &events(10, "C"))).await;
    }
    let strict = Api::new(
        es.clone(),
        ServerConfig {
            live_buffer: 4,
            slow_client: Duration::from_millis(50),
            ..ServerConfig::default()
        },
    );
    let mut slow = live(&strict.router(), "/log/live?after=0", None).await;
    let got = read_sse(&mut slow, usize::MAX, Some(Duration::from_millis(250))).await;
    let last = got.last().unwrap();
    assert_eq!(last.name, "dropped", "{last:?}");
    let log = es
        .store()
        .read_all(event_store::Position::START, 1000)
        .await
        .unwrap();
    let got_ids: Vec<String> = got[..got.len() - 1]
        .iter()
        .map(|e| e.id.clone().unwrap())
        .collect();
    let prefix: Vec<String> = log[..got_ids.len()]
        .iter()
        .map(|e| e.position.to_string())
        .collect();
    assert_eq!(got_ids, prefix);
    assert!(got_ids.len() < log.len());

    // Stopping the server ends the live tails.
    api.stop();
    let after_stop = read_sse(&mut typed, usize::MAX, None).await;
    assert!(after_stop.is_empty(), "{after_stop:?}");
    let (status, _, e) = call(&router, get("/log/live?type=nodot")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_and_twenty_reconnecting_tails_all_see_the_log() {
    writers_and_reconnecting_tails(ServerConfig::default()).await;
}

/// The same with a shared tail of four events: clients keep falling behind it and catching up
/// from the store, and still see the log exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_behind_the_shared_tail_catch_up_exactly() {
    writers_and_reconnecting_tails(ServerConfig {
        live_broadcast: 4,
        ..ServerConfig::default()
    })
    .await;
}

async fn writers_and_reconnecting_tails(config: ServerConfig) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    const CLIENTS: usize = 20;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let dir = tempfile::tempdir().unwrap();
    let store = event_store_sqlite::SqliteStore::open(dir.path().join("e.db"))
        .await
        .unwrap();
    let api = Api::new(EventStore::from_store(store.clone()), config);
    let router = api.router();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let router = router.clone();
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut reconnects = 0usize;
            while seen.len() < TOTAL {
                let last = seen.last().cloned();
                let mut body = live(&router, "/log/live?after=0", last.as_deref()).await;
                // Each connection is dropped on purpose after a few events (the last one
                // reads to the end).
                let take = if reconnects < 3 {
                    7 + (c * 13 + reconnects * 29) % 60
                } else {
                    TOTAL
                };
                let got = read_sse(&mut body, take.min(TOTAL - seen.len()), None).await;
                assert!(got.iter().all(|e| e.name == "event"), "{got:?}");
                seen.extend(got.into_iter().map(|e| e.id.unwrap()));
                reconnects += 1;
            }
            (seen, reconnects)
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let router = router.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..PER_WRITER {
                let (status, _, e) =
                    call(&router, post(&format!("/streams/w-{w}"), &events(1, "W"))).await;
                assert_eq!(status, StatusCode::CREATED, "{e}");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let log: Vec<String> = store
        .read_all(event_store::Position::START, TOTAL + 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position.to_string())
        .collect();
    assert_eq!(log.len(), TOTAL);
    // A hang guard, not a speed check: every client ends once it has seen the whole log.
    for client in clients {
        let (seen, reconnects) = tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("a client never saw the whole log")
            .unwrap();
        assert!(reconnects >= 4, "{reconnects}");
        assert_eq!(seen, log, "no gap, no duplicate, in log order");
    }
}
