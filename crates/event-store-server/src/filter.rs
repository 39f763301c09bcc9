//! The event filter shared by the search and the live tail: namespace, `NAMESPACE.TYPE`, stream
//! prefix, one subject field, a time range.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use event_store::Query as EventQuery;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};

use crate::error::ApiError;
use crate::routes::Params;

/// The filter's query parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Names the accepted parameters; `Params` parses them.
pub(crate) struct Filter {
    /// Only events of this namespace.
    namespace: Option<String>,
    /// Only events of this type, as `NAMESPACE.TYPE` (like `shop.OrderPlaced`).
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only events of streams whose id starts with this text.
    stream_prefix: Option<String>,
    /// Only events whose context's subject has this field with this value, as `FIELD=VALUE`
    /// (like `user_id=42`; the value is read as JSON when it is JSON, else as text).
    subject: Option<String>,
    /// Only events at or after this time (RFC 3339, like `2026-11-28T09:00:00Z`).
    since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
}

/// The parameters of `A` and those of `B`, for a route that takes both.
pub(crate) struct Both<A, B>(PhantomData<(A, B)>);

impl<A: IntoParams, B: IntoParams> IntoParams for Both<A, B> {
    fn into_params(parameter_in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = A::into_params(&parameter_in_provider);
        params.extend(B::into_params(&parameter_in_provider));
        params
    }
}

fn time(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .text(name)
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::invalid(name, format!("`{t}` is not an RFC 3339 time ({e})"))
                })
        })
        .transpose()
}

/// The query `params` ask for (`None`: no filter, every event).
pub(crate) fn query(params: &Params) -> Result<Option<EventQuery>, ApiError> {
    let namespace = params.text("namespace");
    let event_type = params.text("type");
    let prefix = params.text("stream_prefix");
    let subject = params.text("subject");
    let since = time(params, "since")?;
    let until = time(params, "until")?;
    if namespace.is_none()
        && event_type.is_none()
        && prefix.is_none()
        && subject.is_none()
        && since.is_none()
        && until.is_none()
    {
        return Ok(None);
    }
    let mut q = match prefix {
        Some(p) => EventQuery::stream_prefix(p),
        None => EventQuery::all(),
    };
    match (namespace, event_type) {
        (_, Some(t)) => {
            let Some((ns, name)) = t.split_once('.') else {
                return Err(ApiError::invalid(
                    "type",
                    format!("`{t}` is not NAMESPACE.TYPE (like shop.OrderPlaced)"),
                ));
            };
            if namespace.is_some_and(|n| n != ns) {
                return Err(ApiError::invalid(
                    "type",
                    "is in another namespace than `namespace`: nothing could match",
                ));
            }
            q = q.event_type(ns, name);
        }
        (Some(ns), None) => q = q.namespace(ns),
        (None, None) => {}
    }
    if let Some(s) = subject {
        let Some((field, value)) = s.split_once('=') else {
            return Err(ApiError::invalid(
                "subject",
                format!("`{s}` is not FIELD=VALUE (like user_id=42)"),
            ));
        };
        let value = serde_json::from_str::<Value>(value)
            .unwrap_or_else(|_| Value::String(value.to_owned()));
        q = q.subject_eq(field, value);
    }
    if let Some(t) = since {
        q = q.since(t);
    }
    if let Some(t) = until {
        q = q.until(t);
    }
    q.clone().check()?;
    Ok(Some(q))
}
