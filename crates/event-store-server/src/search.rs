//! Finding events: a filtered read of the log, and the recent activity per minute and type.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use event_store::{Position, Store};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::filter::{self, Both, Filter};
use crate::routes::{EventPage, Params, St, encode, page};

/// Where a search's page starts and how long it is.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct SearchFrom {
    /// Matching events after this position (default: from the start).
    after: Option<Position>,
    /// The most events in the page (1 or more; at most the server's page limit).
    #[param(minimum = 1)]
    limit: Option<i32>,
}

/// The events that match a filter, oldest first, paged like the log.
#[utoipa::path(get, path = "/search", tag = "log",
    params(SearchFrom, Filter),
    responses(
        (status = 200, description = "A page of matching events", body = EventPage,
            headers(("link" = String, description = "The next page: `<URL>; rel=\"next\"`"))),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn search<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let link_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "after" && k != "limit")
        .cloned()
        .collect();
    let params = Params::of::<Both<SearchFrom, Filter>>(pairs)?;
    let limit = params.limit(shared.config.page_limit)?;
    let after = params.position("after")?.unwrap_or(Position::START);
    let query = filter::query(&params)?
        .unwrap_or_else(event_store::Query::all)
        .check()?;
    let events = shared.es.store().read_final(&query, after, limit).await?;
    let next = events
        .last()
        .filter(|_| events.len() == limit)
        .map(|last| last.position.to_string());
    let link = next.as_ref().map(|p| {
        let mut link = format!("/search?after={}&limit={limit}", encode(p));
        for (k, v) in &link_pairs {
            link.push('&');
            link.push_str(&encode(k));
            link.push('=');
            link.push_str(&encode(v));
        }
        link
    });
    page(&EventPage { events, next }, link)
}

/// How far back the timeline looks.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct TimelineQuery {
    /// Minutes back from now (default 60, at most 1 440).
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<i32>,
}

/// Events per minute and type over the last minutes.
#[derive(Serialize, ToSchema)]
pub(crate) struct Timeline {
    /// The first minute (inclusive).
    since: DateTime<Utc>,
    /// One entry per minute, oldest first, every minute present.
    minutes: Vec<Minute>,
    /// Events counted.
    events: u64,
    /// `true` when the window held more than the most events counted (100 000): the oldest
    /// minutes are then incomplete.
    truncated: bool,
}

/// One minute of the timeline.
#[derive(Serialize, ToSchema)]
pub(crate) struct Minute {
    /// The minute's start.
    minute: DateTime<Utc>,
    /// Events of the minute by `NAMESPACE.TYPE` (types without events are left out).
    counts: BTreeMap<String, u64>,
}

/// The most events a timeline counts.
const TIMELINE_EVENTS: usize = 100_000;

/// Events per minute and type over the last minutes (by each event's time), read newest
/// first from the head of the log.
#[utoipa::path(get, path = "/stats/timeline", tag = "operations",
    params(TimelineQuery),
    responses(
        (status = 200, description = "Events per minute and type", body = Timeline),
        (status = 422, description = "A parameter is wrong", body = ErrorBody),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn timeline<S: Store + Clone>(
    State(shared): St<S>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Timeline>, ApiError> {
    let params = Params::of::<TimelineQuery>(pairs)?;
    let minutes = match params.parse::<i32>("minutes", "a whole number from 1 to 1440")? {
        None => 60,
        Some(n @ 1..=1440) => n,
        Some(_) => return Err(ApiError::invalid("minutes", "must be from 1 to 1440")),
    };
    let now = Utc::now();
    let this_minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let since = this_minute - TimeDelta::minutes(i64::from(minutes) - 1);
    let mut buckets: Vec<BTreeMap<String, u64>> = (0..minutes).map(|_| BTreeMap::new()).collect();
    let store = shared.es.store();
    let (mut before, mut counted, mut truncated) = (None, 0usize, false);
    // Newest first: stop at a page wholly older than the window (events are in the log in
    // about the order of their times), or at the cap.
    'pages: loop {
        let events = store.read_all_backward(before, 1000).await?;
        let Some(last) = events.last() else { break };
        before = Some(last.position);
        let mut any_inside = false;
        for e in &events {
            if counted == TIMELINE_EVENTS {
                truncated = true;
                break 'pages;
            }
            counted += 1;
            let t = e.context.time;
            if t < since || t > now + TimeDelta::minutes(1) {
                continue;
            }
            any_inside = true;
            let index = usize::try_from((t - since).num_minutes()).unwrap_or(usize::MAX);
            if let Some(bucket) = buckets.get_mut(index) {
                *bucket
                    .entry(format!("{}.{}", e.namespace, e.event_type))
                    .or_default() += 1;
            }
        }
        if !any_inside || events.len() < 1000 {
            break;
        }
    }
    let mut total = 0;
    let minutes = buckets
        .into_iter()
        .enumerate()
        .map(|(i, counts)| {
            total += counts.values().sum::<u64>();
            Minute {
                minute: since + TimeDelta::minutes(i64::try_from(i).unwrap_or(0)),
                counts,
            }
        })
        .collect();
    Ok(Json(Timeline {
        since,
        minutes,
        events: total,
        truncated,
    }))
}
