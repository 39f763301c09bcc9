//! The request/response routes: health, appends, paged reads, streams, stats.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use event_store::{Direction, EventContext, ExpectedVersion, NewEvent, Position, Store, StreamId};
use event_store::{RecordedEvent, StoreStats, StreamInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::Shared;
use crate::error::{ApiError, ErrorBody};

pub(crate) type St<S> = State<Arc<Shared<S>>>;

/// Routes without authentication: liveness and readiness.
pub(crate) fn open<S: Store + Clone>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready::<S>))
        .route("/openapi.json", get(crate::openapi::document))
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
        .route("/search", get(crate::search::search::<S>))
        .route("/stats/timeline", get(crate::search::timeline::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(shared)
}

/// What `/health` and `/ready` answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    /// `live` or `ready`.
    status: &'static str,
}

/// Whether the process runs.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process runs", body = Status)))]
pub(crate) async fn health() -> Json<Status> {
    Json(Status { status: "live" })
}

/// Whether the store answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = Status),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub(crate) async fn ready<S: Store + Clone>(
    State(shared): St<S>,
) -> Result<Json<Status>, ApiError> {
    shared.es.store().watermark().await?;
    Ok(Json(Status { status: "ready" }))
}

/// Query parameters, checked: unknown or repeated ones are refused, each value parsed with a
/// message naming it.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// The query `pairs` of a route whose parameters `P` documents: only those are accepted.
    pub(crate) fn of<P: IntoParams>(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let known: Vec<String> = P::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            if !known.contains(&key) {
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
    pub(crate) fn limit(&self, most: usize) -> Result<usize, ApiError> {
        match self.parse::<i32>("limit", "a whole number from 1 to 2147483647")? {
            None => Ok(most),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n > 0 => Ok(n.min(most)),
                _ => Err(ApiError::invalid("limit", "must be at least 1")),
            },
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

/// A page of events: `next` is the cursor of the next page (`null` on the last one), which the
/// `Link: <…>; rel="next"` header also gives as a URL.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventPage {
    /// The events, in the order read.
    pub(crate) events: Vec<RecordedEvent>,
    /// Where the next page starts (a version for a stream, a position for the log); `null`
    /// when this page is the last.
    pub(crate) next: Option<String>,
}

/// A page of streams, in byte order of their ids.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamPage {
    /// The streams with their count and last event.
    streams: Vec<StreamInfo>,
    /// The last stream id of this page, to give as `after`; `null` when this page is the last.
    next: Option<String>,
}

/// `body` as JSON, with a `Link: <link>; rel="next"` header when there is a next page.
pub(crate) fn page(body: &impl Serialize, link: Option<String>) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(codec)?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if let Some(link) = link
        && let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// A path segment, or 422 naming `what` when it is not text.
pub(crate) fn segment(
    path: Result<Path<String>, PathRejection>,
    what: &str,
) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(what, e.body_text()))
}

fn stream_id(stream: &str) -> Result<StreamId, ApiError> {
    StreamId::new(stream).map_err(ApiError::from)
}

/// The query of `GET /streams/{stream}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct StreamQuery {
    /// The version to start at (default: 0 forward, the last version backward).
    #[param(minimum = 0)]
    from: Option<i64>,
    /// The most events in the page (1 or more; at most the server's page limit, 1 000 by
    /// default).
    #[param(minimum = 1)]
    limit: Option<i32>,
    /// Newest first.
    backward: Option<bool>,
}

/// A page of a stream's events.
#[utoipa::path(get, path = "/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream's id"), StreamQuery),
    responses(
        (status = 200, description = "A page of the stream", body = EventPage,
            headers(("link" = String, description = "The next page: `<URL>; rel=\"next\"`"))),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 410, description = "The stream is closed (`event-store close`); its events \
            are still in the global log", body = ErrorBody),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn read_stream<S: Store + Clone>(
    State(shared): St<S>,
    stream: Result<Path<String>, PathRejection>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let stream = segment(stream, "stream")?;
    let params = Params::of::<StreamQuery>(pairs)?;
    let id = stream_id(&stream)?;
    let limit = params.limit(shared.config.page_limit)?;
    let backward = params.flag("backward")?;
    // Versions are stored as signed 64-bit numbers (PostgreSQL's bigint).
    let from = params
        .parse::<i64>("from", "a stream version (0, 1, 2, …)")?
        .map(|v| u64::try_from(v).map_err(|_| ApiError::invalid("from", "must not be negative")))
        .transpose()?
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
        .and_then(|last| direction.after(last.version));
    let link = next.map(|v| {
        format!(
            "/streams/{}?from={v}&limit={limit}{}",
            encode(&stream),
            if backward { "&backward=true" } else { "" }
        )
    });
    let next = next.map(|v| v.to_string());
    page(&EventPage { events, next }, link)
}

/// The query of `GET /log`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct LogQuery {
    /// Oldest first, after this position (default: from the start).
    after: Option<event_store::Position>,
    /// Newest first, before this position.
    before: Option<event_store::Position>,
    /// The most events in the page (1 or more; at most the server's page limit).
    #[param(minimum = 1)]
    limit: Option<i32>,
    /// Newest first, from the head (also implied by `before`).
    backward: Option<bool>,
}

/// A page of the global log: every stream's events in commit order.
#[utoipa::path(get, path = "/log", tag = "log",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of the log", body = EventPage,
            headers(("link" = String, description = "The next page: `<URL>; rel=\"next\"`"))),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn read_log<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::of::<LogQuery>(pairs)?;
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
    let next = events
        .last()
        .filter(|_| events.len() == limit)
        .map(|last| last.position.to_string());
    let link = next.as_ref().map(|p| {
        let key = if backward { "before" } else { "after" };
        format!("/log?{key}={}&limit={limit}", encode(p))
    });
    page(&EventPage { events, next }, link)
}

/// One event by its id.
#[utoipa::path(get, path = "/events/{id}", tag = "log",
    params(("id" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event", body = RecordedEvent),
        (status = 404, description = "No event has this id", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn read_event<S: Store + Clone>(
    State(shared): St<S>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RecordedEvent>, ApiError> {
    let id = segment(id, "id")?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("`{id}` is not a UUID")))?;
    let event = shared
        .es
        .store()
        .read_event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id}")))?;
    Ok(Json(event))
}

/// The query of `GET /streams`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct StreamsQuery {
    /// Only streams whose id starts with this text.
    prefix: Option<String>,
    /// Only streams whose id sorts after this one (the `next` of the previous page).
    #[param(min_length = 1)]
    after: Option<String>,
    /// The most streams in the page (1 or more; at most the server's page limit).
    #[param(minimum = 1)]
    limit: Option<i32>,
}

/// The streams, in byte order of their ids, with their count and last event.
#[utoipa::path(get, path = "/streams", tag = "streams",
    params(StreamsQuery),
    responses(
        (status = 200, description = "A page of streams", body = StreamPage,
            headers(("link" = String, description = "The next page: `<URL>; rel=\"next\"`"))),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn streams<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = Params::of::<StreamsQuery>(pairs)?;
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
    let next = list
        .last()
        .filter(|_| list.len() == limit)
        .map(|last| last.stream.clone());
    let link = next.as_ref().map(|after| {
        format!(
            "/streams?prefix={}&after={}&limit={limit}",
            encode(prefix),
            encode(after)
        )
    });
    page(
        &StreamPage {
            streams: list,
            next,
        },
        link,
    )
}

/// The process's metrics in the Prometheus text format (the names are listed in the
/// `event_store::metrics` documentation).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text format", body = String,
            content_type = "text/plain"),
        (status = 404, description = "The server was started without a metrics recorder",
            body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn metrics<S: Store + Clone>(State(shared): St<S>) -> Result<Response, ApiError> {
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

/// What the store holds: counts per namespace and type, size, head.
#[utoipa::path(get, path = "/stats", tag = "operations",
    responses((status = 200, description = "The store's statistics", body = StoreStats)),
    security(("bearer" = ["read"])))]
pub(crate) async fn stats<S: Store + Clone>(
    State(shared): St<S>,
) -> Result<Json<StoreStats>, ApiError> {
    Ok(Json(shared.es.store().stats().await?))
}

fn codec(e: serde_json::Error) -> ApiError {
    ApiError::Store(event_store::Error::codec("a response", e))
}

/// One event to append.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn {
    /// The event's id (default: a new UUIDv7). Give it to make a retry idempotent: the same ids
    /// with the same content are answered 200 with `stored: false`.
    #[serde(default)]
    id: Option<Uuid>,
    /// The event's namespace (like `shop`).
    // The pattern is the rule of `event_store::limits::check_name`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    namespace: String,
    /// The event's type (like `OrderPlaced`).
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    event_type: String,
    /// The event's fields: an object (default: `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// When, why and on whose behalf (default: now, with nothing else).
    #[serde(default)]
    context: Option<EventContext>,
}

/// An expected version: `any`, `no-stream`, `exists`, or the stream's current version.
#[derive(Deserialize, ToSchema)]
#[serde(untagged, expecting = "a string or a number")]
pub(crate) enum ExpectedIn {
    /// The stream's current version (its last event's).
    Version(u64),
    /// `any`, `no-stream`, `exists`, or a version as text.
    Text(String),
}

/// The body of an append, in its long form.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Documents what `append` parses (by parts, for messages naming the field).
pub(crate) struct AppendBatch {
    /// The events, in order (1 or more), all appended or none.
    events: Vec<EventIn>,
    /// What the stream's version must be (default: `any`); also the `Expected-Version` header.
    #[schema(nullable = false)]
    expected_version: Option<ExpectedIn>,
}

/// The body of an append: an array of events, or an object with the events and an expected
/// version.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents what `append` parses (by parts, for messages naming the field).
pub(crate) enum AppendBody {
    /// The events alone.
    Events(Vec<EventIn>),
    /// The events and an expected version.
    Batch(AppendBatch),
}

/// What an append stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppendResult {
    /// `false` for an idempotent retry: every event was already stored with the same content,
    /// and `events` are the originals.
    stored: bool,
    /// The events as recorded (with their versions and positions).
    events: Vec<RecordedEvent>,
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

/// Appends events to a stream, all or none.
#[utoipa::path(post, path = "/streams/{stream}", tag = "streams",
    params(
        ("stream" = String, Path, description = "The stream's id"),
        ("Expected-Version" = Option<String>, Header,
            description = "What the stream's version must be: `any`, `no-stream`, `exists` or a number"),
    ),
    request_body(content = AppendBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = AppendResult, links(
            ("stream" = (operation_id = "read_stream",
                parameters(("stream" = "$request.path.stream")),
                description = "The stream appended to")),
            ("event" = (operation_id = "read_event",
                parameters(("id" = "$response.body#/events/0/id")),
                description = "The first event stored")),
        )),
        (status = 200, description = "An idempotent retry: already stored, nothing new",
            body = AppendResult),
        (status = 409, description = "The stream is not at the expected version, or an id is \
            stored with other content", body = ErrorBody),
        (status = 410, description = "The stream is closed: it takes no appends", body = ErrorBody),
        (status = 413, description = "The body is larger than the server's limit"),
        (status = 422, description = "A field of the body or a header is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["append"])))]
pub(crate) async fn append<S: Store + Clone>(
    State(shared): St<S>,
    stream: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let stream = segment(stream, "stream")?;
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
            Some(v) => match serde_json::from_value(v) {
                Ok(ExpectedIn::Version(n)) => Some(n.to_string()),
                Ok(ExpectedIn::Text(s)) => Some(s),
                Err(e) => return Err(ApiError::invalid("expected_version", e.to_string())),
            },
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
    let body = AppendResult {
        stored: appended.stored,
        events: appended.events,
    };
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
