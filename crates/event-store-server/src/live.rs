//! The live tail over Server-Sent Events: `GET /log/live`.
//!
//! Each event is sent as an SSE event named `event` whose `id:` is its position and whose data
//! is the recorded event as JSON. A client that reconnects with `Last-Event-ID` resumes exactly
//! after it: the tail reads final events in log order, so nothing is skipped or repeated.
//!
//! Each client has a buffer of `live_buffer` events between the tail and its connection. It
//! catches up with reads of its own, which go on only as the buffer drains, so a client catching
//! up reads at its own pace; once caught up it takes the events of the one tail every client
//! shares ([`crate::hub`]). One whose buffer stays full for `slow_client` is sent a `dropped`
//! event and disconnected.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use event_store::{CheckedQuery, Position, Store};
use futures::{Stream, StreamExt as _};
use tokio::sync::{broadcast, mpsc, watch};
use utoipa::IntoParams;

use crate::Shared;
use crate::error::{ApiError, ErrorBody};
use crate::filter::{self, Both, Filter};
use crate::hub::Item;
use crate::routes::Params;

pub(crate) fn routes<S: Store + Clone>(shared: Arc<Shared<S>>) -> Router {
    Router::new()
        .route("/log/live", get(live::<S>))
        .with_state(shared)
}

/// Where `GET /log/live` starts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct LiveFrom {
    /// Start after this position (default: at the head, only new events). A `Last-Event-ID`
    /// header, sent by a reconnecting client, wins.
    after: Option<Position>,
}

/// The live tail: every final event from a position on, as Server-Sent Events, then each new
/// one as it is appended. Each SSE event is named `event`, its `id:` is the position and its
/// data the recorded event as JSON; a client that fell behind gets a `dropped` event and is
/// disconnected. A reconnect with `Last-Event-ID` resumes exactly after it.
#[utoipa::path(get, path = "/log/live", tag = "log",
    params(
        LiveFrom,
        Filter,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The position of the last event the client saw: resume after it"),
    ),
    responses(
        (status = 200, description = "The event stream (never ends while the server runs)",
            body = String, content_type = "text/event-stream"),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn live<S: Store + Clone>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let params = Params::of::<Both<LiveFrom, Filter>>(pairs)?;
    let query = filter::query(&params)?;
    // Where to start: after the last event the client saw, else after `after`, else at the
    // head (only new events).
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<Position>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "not a position"))
        })
        .transpose()?;
    let start = match resume.or(params.position("after")?) {
        Some(p) => p,
        None => event_store::head(shared.es.store()).await?,
    };
    let (tx, rx) = mpsc::channel::<Arc<Item>>(shared.config.live_buffer.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    let query = query
        .unwrap_or_else(event_store::Query::all)
        .check()
        .map_err(ApiError::from)?;
    tokio::spawn(feed(
        Arc::clone(&shared),
        start,
        query,
        tx,
        Arc::clone(&overflowed),
    ));
    let connected = Connected::new();
    let events = futures::stream::unfold(
        (rx, overflowed, connected),
        |(mut rx, overflowed, connected)| async move {
            let event = match rx.recv().await {
                Some(item) => to_sse(&item),
                // The sender stopped because this client fell behind: say so, once, then end.
                None if overflowed.swap(false, Ordering::SeqCst) => Event::default()
                    .event("dropped")
                    .data("the client fell too far behind; reconnect with Last-Event-ID"),
                None => return None,
            };
            Some((event, (rx, overflowed, connected)))
        },
    );
    Ok(Sse::new(events.map(Ok)).keep_alive(KeepAlive::new().interval(shared.config.keep_alive)))
}

/// A connected live-tail client, counted in `event_store_live_clients` while it lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!("event_store_live_clients").increment(1.0);
        Self
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("event_store_live_clients").decrement(1.0);
    }
}

/// Completes when the server is stopping.
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the server is gone: stop too.
    let _ = stopping.wait_for(|stop| *stop).await;
}

fn to_sse(item: &Item) -> Event {
    Event::default()
        .id(item.position().to_string())
        .event("event")
        .data(&item.json)
}

/// Events read per call while a client catches up.
const CATCH_UP_PAGE: usize = 256;

/// Why a client's feed ended.
enum End {
    /// The client left, the server stops, or the hub is gone.
    Done,
    /// The client did not drain its buffer for `slow_client`.
    Slow,
}

/// Feeds one client from `after` on: its own reads until it has caught up, then the hub's
/// broadcast (see [`crate::hub`]), into its buffer.
async fn feed<S: Store + Clone>(
    shared: Arc<Shared<S>>,
    after: Position,
    query: CheckedQuery,
    tx: mpsc::Sender<Arc<Item>>,
    overflowed: Arc<AtomicBool>,
) {
    let mut stopping = shared.stopping.clone();
    let mut last = after;
    let slow_client = shared.config.slow_client;
    // The buffer holds the client back from the store (reads go on only as it is drained); a
    // client that does not drain it for `slow_client` is dropped.
    let send = |item: Arc<Item>, stopping: &mut watch::Receiver<bool>| {
        let tx = tx.clone();
        let mut stopping = stopping.clone();
        async move {
            tokio::select! {
                () = stopped(&mut stopping) => Err(End::Done),
                sent = tokio::time::timeout(slow_client, tx.send(item)) => match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(End::Done),
                    Err(_) => Err(End::Slow),
                },
            }
        }
    };
    let end = 'feed: loop {
        // Subscribe first, then catch up: see the hub's documentation.
        let subscribed = tokio::select! {
            () = stopped(&mut stopping) => break End::Done,
            () = tx.closed() => break End::Done,
            r = shared.hub.subscribe(&shared.es, shared.config.live_broadcast, &shared.stopping) => r,
        };
        let mut live = match subscribed {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "a live tail could not start; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let page = tokio::select! {
                () = stopped(&mut stopping) => break 'feed End::Done,
                () = tx.closed() => break 'feed End::Done,
                page = shared.es.store().read_final(&query, last, CATCH_UP_PAGE) => page,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "a live tail's read failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let caught_up = page.len() < CATCH_UP_PAGE;
            for event in page {
                last = event.position;
                if let Err(end) = send(Item::new(event), &mut stopping).await {
                    break 'feed end;
                }
            }
            if caught_up {
                break;
            }
        }
        loop {
            let next = tokio::select! {
                () = stopped(&mut stopping) => break 'feed End::Done,
                () = tx.closed() => break 'feed End::Done,
                next = live.recv() => next,
            };
            match next {
                Ok(item) => {
                    if item.position() <= last || !query.query().matches(&item.event) {
                        continue;
                    }
                    last = item.position();
                    if let Err(end) = send(item, &mut stopping).await {
                        break 'feed end;
                    }
                }
                // Fell behind the broadcast: catch up from the store again.
                Err(broadcast::error::RecvError::Lagged(_)) => continue 'feed,
                Err(broadcast::error::RecvError::Closed) => break 'feed End::Done,
            }
        }
    };
    if matches!(end, End::Slow) {
        overflowed.store(true, Ordering::SeqCst);
    }
}
