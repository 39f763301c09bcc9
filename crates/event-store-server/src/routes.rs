//! The request/response routes: health, appends, paged reads, streams, stats.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use event_store::{Direction, EventContext, ExpectedVersion, NewEvent, Position, Store, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Shared;
use crate::error::ApiError;

type St<S> = State<Arc<Shared<S>>>;

/// Routes without authentication: liveness and readiness.
pub(crate) fn open<S: Store + Clone>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready::<S>))
        .with_state(shared)
}

/// The routes that answer within the request timeout.
pub(crate) fn bounded<S: Store + Clone>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/streams", get(streams::<S>))
        .route("/streams/{stream}", get(read_stream::<S>).post(append::<S>))
        .route("/log", get(read_log::<S>))
        .route("/events/{id}", get(read_event::<S>))
        .route("/stats", get(stats::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(shared)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "live"}))
}

async fn ready<S: Store + Clone>(State(shared): St<S>) -> Result<Json<Value>, ApiError> {
    shared.es.store().watermark().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// Query parameters, checked: unknown or repeated ones are refused, each value parsed with a
/// message naming it.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn new(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for (key, value) in pairs {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::invalid(
                    key,
                    format!("unknown parameter (known: {})", known.join(", ")),
                ));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::invalid(key, "given twice"));
            }
        }
        Ok(Self(map))
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn parse<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::invalid(name, format!("`{v}` is not {what}")))
            })
            .transpose()
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        Ok(self.parse::<bool>(name, "true or false")?.unwrap_or(false))
    }

    /// `limit`: 1 to the page limit (default: the page limit).
    fn limit(&self, most: usize) -> Result<usize, ApiError> {
        match self.parse::<usize>("limit", "a whole number")? {
            None => Ok(most),
            Some(0) => Err(ApiError::invalid("limit", "must be at least 1")),
            Some(n) => Ok(n.min(most)),
        }
    }

    pub(crate) fn position(&self, name: &str) -> Result<Option<Position>, ApiError> {
        self.parse(name, "a position (like 42, or 7741:42)")
    }
}

/// A path segment or query value, percent-encoded (everything but `A-Za-z0-9-._~`).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// A page: `{"<key>": items, "next": cursor or null}`, with a `Link: <…>; rel="next"` header
/// when there is a next page.
fn page<T: serde::Serialize>(
    key: &str,
    items: &[T],
    next: Option<(String, String)>,
) -> Result<Response, ApiError> {
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), serde_json::to_value(items).map_err(codec)?);
    body.insert(
        "next".to_owned(),
        next.as_ref()
            .map_or(Value::Null, |(cursor, _)| Value::String(cursor.clone())),
    );
    let body = Value::Object(body);
    let mut response = Json(body).into_response();
    if let Some((_, link)) = next
        && let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

fn stream_id(stream: &str) -> Result<StreamId, ApiError> {
    StreamId::new(stream).map_err(ApiError::from)
}

async fn read_stream<S: Store + Clone>(
    State(shared): St<S>,
    Path(stream): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(pairs, &["from", "limit", "backward"])?;
    let id = stream_id(&stream)?;
    let limit = params.limit(shared.config.page_limit)?;
    let backward = params.flag("backward")?;
    let from = params
        .parse::<u64>("from", "a stream version (0, 1, 2, …)")?
        .unwrap_or(if backward { u64::MAX } else { 0 });
    let direction = if backward {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let store = shared.es.store();
    let events = store.read_stream(&id, from, direction, limit).await?;
    if events.is_empty() && store.stream_version(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no stream `{stream}`")));
    }
    let next = events
        .last()
        .filter(|_| events.len() == limit)
        .and_then(|last| direction.after(last.version))
        .map(|v| {
            let link = format!(
                "/streams/{}?from={v}&limit={limit}{}",
                encode(&stream),
                if backward { "&backward=true" } else { "" }
            );
            (v.to_string(), link)
        });
    page("events", &events, next)
}

async fn read_log<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(pairs, &["after", "before", "limit", "backward"])?;
    let limit = params.limit(shared.config.page_limit)?;
    let before = params.position("before")?;
    let backward = params.flag("backward")? || before.is_some();
    let after = params.position("after")?;
    if backward && after.is_some() {
        return Err(ApiError::invalid(
            "after",
            "reads forward; newest first, give `before`",
        ));
    }
    let store = shared.es.store();
    let events = if backward {
        store.read_all_backward(before, limit).await?
    } else {
        store
            .read_all(after.unwrap_or(Position::START), limit)
            .await?
    };
    let next = events.last().filter(|_| events.len() == limit).map(|last| {
        let p = last.position.to_string();
        let link = if backward {
            format!("/log?before={}&limit={limit}", encode(&p))
        } else {
            format!("/log?after={}&limit={limit}", encode(&p))
        };
        (p, link)
    });
    page("events", &events, next)
}

async fn read_event<S: Store + Clone>(
    State(shared): St<S>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("`{id}` is not a UUID")))?;
    let event = shared
        .es
        .store()
        .read_event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id}")))?;
    Ok(Json(serde_json::to_value(&event).map_err(codec)?))
}

async fn streams<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::new(pairs, &["prefix", "after", "limit"])?;
    let limit = params.limit(shared.config.page_limit)?;
    let prefix = params.text("prefix").unwrap_or("");
    let after = params
        .text("after")
        .map(|a| StreamId::new(a).map_err(|e| ApiError::invalid("after", e.to_string())))
        .transpose()?;
    let list = shared
        .es
        .store()
        .streams(prefix, after.as_ref(), limit)
        .await?;
    let next = list.last().filter(|_| list.len() == limit).map(|last| {
        let link = format!(
            "/streams?prefix={}&after={}&limit={limit}",
            encode(prefix),
            encode(&last.stream)
        );
        (last.stream.clone(), link)
    });
    page("streams", &list, next)
}

/// `GET /metrics`: the Prometheus text format, when the process installed a recorder.
async fn metrics<S: Store + Clone>(State(shared): St<S>) -> Result<Response, ApiError> {
    let Some(handle) = &shared.config.metrics else {
        return Err(ApiError::NotFound(
            "no metrics: this server was started without a recorder".to_owned(),
        ));
    };
    let text = handle.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Counts every request and its duration (`event_store_http_requests_total`,
/// `event_store_http_request_seconds`).
pub(crate) async fn count(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!("event_store_http_request_seconds", "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "event_store_http_requests_total",
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

async fn stats<S: Store + Clone>(State(shared): St<S>) -> Result<Json<Value>, ApiError> {
    let stats = shared.es.store().stats().await?;
    Ok(Json(serde_json::to_value(&stats).map_err(codec)?))
}

fn codec(e: serde_json::Error) -> ApiError {
    ApiError::Store(event_store::Error::codec("a response", e))
}

/// One event of an append's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(default)]
    id: Option<Uuid>,
    namespace: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    context: Option<EventContext>,
}

/// The header that carries the expected version.
pub(crate) const EXPECTED_VERSION: &str = "expected-version";

fn expected(text: &str, field: &str) -> Result<ExpectedVersion, ApiError> {
    text.parse().map_err(|_| {
        ApiError::invalid(
            field,
            format!("`{text}` is not any, no-stream, exists or a version number"),
        )
    })
}

async fn append<S: Store + Clone>(
    State(shared): St<S>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::invalid("body", format!("not valid UTF-8 ({e})")))?;
    // The store's strict reading: no integer beyond 64 bits, no key twice.
    let value = event_store::json::value_from_str("body", text)?;
    let (events, in_body) = if value.is_array() {
        (parse_events(value)?, None)
    } else {
        let mut de = value;
        let expected_version = de
            .as_object_mut()
            .and_then(|o| o.remove("expected_version"));
        let events = de
            .as_object_mut()
            .and_then(|o| o.remove("events"))
            .ok_or_else(|| ApiError::invalid("events", "missing (give an array of events)"))?;
        if let Some(extra) = de.as_object().and_then(|o| o.keys().next()) {
            return Err(ApiError::invalid(extra.clone(), "unknown field"));
        }
        let expected_version = match expected_version {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ApiError::invalid(
                    "expected_version",
                    "must be a string or a number",
                ));
            }
        };
        (parse_events(events)?, expected_version)
    };
    let in_header = headers
        .get(EXPECTED_VERSION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Expected-Version", "not text"))
        })
        .transpose()?;
    let expected = match (in_header, in_body.as_deref()) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid(
                "expected_version",
                "differs from the Expected-Version header",
            ));
        }
        (Some(h), _) => expected(h, "Expected-Version")?,
        (None, Some(b)) => expected(b, "expected_version")?,
        (None, None) => ExpectedVersion::Any,
    };
    let appended = shared.es.append(&stream, expected, events).await?;
    let status = if appended.stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({"stored": appended.stored, "events": appended.events});
    Ok((status, Json(body)).into_response())
}

/// The events of an append's body, each field error named by its place
/// (`events[2].context.time`).
fn parse_events(value: Value) -> Result<Vec<NewEvent>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::invalid("events", "must be an array of events"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_path_to_error::deserialize::<_, EventIn>(item)
                .map(to_new_event)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let field = if path == "." {
                        format!("events[{i}]")
                    } else {
                        format!("events[{i}].{path}")
                    };
                    ApiError::invalid(field, e.into_inner().to_string())
                })
        })
        .collect()
}

fn to_new_event(e: EventIn) -> NewEvent {
    let mut event = NewEvent::new(
        e.namespace,
        e.event_type,
        e.data
            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
    );
    event.id = e.id;
    if let Some(context) = e.context {
        event.context = context;
    }
    event
}
