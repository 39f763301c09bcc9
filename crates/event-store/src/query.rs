//! Typed queries: which events an aggregate folds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::event::Events;
use crate::limits::{check_field_name, check_json, check_name, check_stream_id};
use crate::model::RecordedEvent;

/// A namespace, optionally narrowed to one type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TypeFilter {
    /// The namespace.
    pub namespace: String,
    /// The type; `None` matches every type of the namespace.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

impl TypeFilter {
    /// Whether an event of `namespace.event_type` passes this filter.
    pub fn matches(&self, namespace: &str, event_type: &str) -> bool {
        self.namespace == namespace && self.event_type.as_deref().is_none_or(|t| t == event_type)
    }

    /// Whether an event of `namespace.event_type` passes any of `filters` (none: every event
    /// passes).
    pub fn any_matches(filters: &[Self], namespace: &str, event_type: &str) -> bool {
        filters.is_empty() || filters.iter().any(|f| f.matches(namespace, event_type))
    }
}

/// Which events to read: every condition given must hold (an empty query matches every event).
///
/// Backends turn a query into bound parameters, never into SQL text built from its values.
///
/// ```
/// use event_store::Query;
/// use serde_json::json;
///
/// let q = Query::stream("order-42")
///     .namespace("shop")
///     .event_type("shop", "ItemAdded")
///     .subject_eq("user_id", json!(7));
/// assert_eq!(q.stream_id(), Some("order-42"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    /// The streams whose ids start with this (a category: `order-` for `order-1`, `order-2`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// Any of these namespace/type filters (empty: every type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    types: Vec<TypeFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subject: Vec<(String, Value)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    data: Vec<(String, Value)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<DateTime<Utc>>,
}

impl Query {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// The events of one stream.
    pub fn stream(stream: impl Into<String>) -> Self {
        Self {
            stream: Some(stream.into()),
            ..Self::default()
        }
    }

    /// The events of every stream whose id starts with `prefix` (a category of streams, such as
    /// `order-` for `order-1`, `order-2`, …).
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// Narrows to streams whose id starts with `prefix`.
    #[must_use]
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Every event of the types an [`Events`] set decodes.
    pub fn events<E: Events>() -> Self {
        Self::all().of::<E>()
    }

    /// Narrows to the types an [`Events`] set decodes.
    #[must_use]
    pub fn of<E: Events>(mut self) -> Self {
        for t in E::read_types() {
            self = self.event_type(t.namespace, t.name);
        }
        self
    }

    /// Also matches every event of `namespace`.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.types.push(TypeFilter {
            namespace: namespace.into(),
            event_type: None,
        });
        self.normalize();
        self
    }

    /// Also matches events of `namespace.event_type`.
    #[must_use]
    pub fn event_type(
        mut self,
        namespace: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        self.types.push(TypeFilter {
            namespace: namespace.into(),
            event_type: Some(event_type.into()),
        });
        self.normalize();
        self
    }

    /// Requires the context's `subject.{field}` to equal `value`.
    #[must_use]
    pub fn subject_eq(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.subject.push((field.into(), value.into()));
        self.normalize();
        self
    }

    /// Requires the data's top-level `field` to equal `value`.
    #[must_use]
    pub fn data_eq(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data.push((field.into(), value.into()));
        self.normalize();
        self
    }

    /// Requires the event's time to be at or after `time`.
    #[must_use]
    pub fn since(mut self, time: DateTime<Utc>) -> Self {
        self.since = Some(time);
        self
    }

    /// Requires the event's time to be before `time`.
    #[must_use]
    pub fn until(mut self, time: DateTime<Utc>) -> Self {
        self.until = Some(time);
        self
    }

    /// The stream, if the query is limited to one.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream.as_deref()
    }

    /// The stream-id prefix, if the query is limited to a category of streams.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The namespace/type filters (any of them matches; none: every type).
    pub fn types(&self) -> &[TypeFilter] {
        &self.types
    }

    /// The `subject` equalities.
    pub fn subject_fields(&self) -> &[(String, Value)] {
        &self.subject
    }

    /// The `data` equalities.
    pub fn data_fields(&self) -> &[(String, Value)] {
        &self.data
    }

    /// The time range `[since, until)`.
    pub fn time_range(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.since, self.until)
    }

    /// Checks every part of the query against the input rules of [`crate::limits`]: what a
    /// backend takes is a [`CheckedQuery`], so it never checks again.
    pub fn check(mut self) -> Result<CheckedQuery> {
        self.validate()?;
        self.normalize();
        Ok(CheckedQuery(self))
    }

    fn validate(&self) -> Result<()> {
        if let Some(s) = &self.stream {
            check_stream_id("query.stream", s)?;
        }
        if let Some(p) = &self.prefix {
            check_stream_id("query.stream_prefix", p)?;
        }
        for t in &self.types {
            check_name("query.namespace", &t.namespace)?;
            if let Some(ty) = &t.event_type {
                check_name("query.type", ty)?;
            }
        }
        for (k, v) in &self.subject {
            check_field_name("query.subject", k)?;
            check_json(&|| "query.subject".to_owned(), v)?;
        }
        for (k, v) in &self.data {
            check_field_name("query.data", k)?;
            check_json(&|| "query.data".to_owned(), v)?;
        }
        Ok(())
    }

    /// The canonical text of the query: equal queries, however built, give the same text (used
    /// in cache keys).
    pub fn canonical(&self) -> String {
        let mut q = self.clone();
        q.normalize();
        // A query is strings, JSON values and times: encoding it cannot fail.
        serde_json::to_string(&q).unwrap_or_default()
    }

    fn normalize(&mut self) {
        self.types.sort();
        self.types.dedup();
        // A namespace-wide filter covers the type filters of the same namespace.
        let wide: Vec<String> = self
            .types
            .iter()
            .filter(|t| t.event_type.is_none())
            .map(|t| t.namespace.clone())
            .collect();
        self.types
            .retain(|t| t.event_type.is_none() || !wide.contains(&t.namespace));
        for fields in [&mut self.subject, &mut self.data] {
            fields.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.to_string().cmp(&b.1.to_string()))
            });
            fields.dedup();
        }
    }

    /// Whether `event` matches the query (the memory backend's implementation, and the reference
    /// the other backends are tested against).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        if self.stream.as_deref().is_some_and(|s| s != event.stream) {
            return false;
        }
        if self
            .prefix
            .as_deref()
            .is_some_and(|p| !event.stream.starts_with(p))
        {
            return false;
        }
        if !TypeFilter::any_matches(&self.types, &event.namespace, &event.event_type) {
            return false;
        }
        if !self
            .subject
            .iter()
            .all(|(k, v)| event.context.subject.get(k).is_some_and(|x| json_eq(x, v)))
        {
            return false;
        }
        if !self
            .data
            .iter()
            .all(|(k, v)| event.data.get(k).is_some_and(|x| json_eq(x, v)))
        {
            return false;
        }
        let t = event.context.time;
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// A [`Query`] whose every part passed the input rules (made by [`Query::check`]): what the
/// backends take, so none of them checks again. Dereferences to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedQuery(Query);

impl CheckedQuery {
    /// The query.
    pub fn query(&self) -> &Query {
        &self.0
    }

    /// The query, taken out.
    pub fn into_query(self) -> Query {
        self.0
    }
}

impl std::ops::Deref for CheckedQuery {
    type Target = Query;
    fn deref(&self) -> &Query {
        &self.0
    }
}

/// JSON equality with numbers compared by their exact decimal value (`7 == 7.0 == 7e0`, and
/// `-0 == 0`), as PostgreSQL's `jsonb` compares them: every backend decides idempotent retries
/// and query equalities with this rule.
pub fn json_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => {
            if let (Some(l), Some(r)) = (l.as_i64(), r.as_i64()) {
                l == r
            } else if let (Some(l), Some(r)) = (l.as_u64(), r.as_u64()) {
                l == r
            } else {
                Decimal::of(l) == Decimal::of(r)
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            l.len() == r.len() && l.iter().zip(r).all(|(l, r)| json_eq(l, r))
        }
        (Value::Object(l), Value::Object(r)) => {
            l.len() == r.len()
                && l.iter()
                    .all(|(k, l)| r.get(k).is_some_and(|r| json_eq(l, r)))
        }
        _ => left == right,
    }
}

/// A JSON number as an exact decimal: sign, significant digits (no leading or trailing zero) and
/// the exponent of the last digit; zero is `(false, "", 0)` whatever its sign.
#[derive(PartialEq, Eq, Debug)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// The decimal value of the number's JSON text (floats print their shortest exact form).
    fn of(n: &serde_json::Number) -> Self {
        let text = n.to_string();
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.as_str()),
        };
        let (mantissa, exp) = match rest.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all: String = int.chars().chain(frac.chars()).collect();
        let exponent = exp - i64::try_from(frac.len()).unwrap_or(0);
        let trimmed = all.trim_start_matches('0');
        let significant = trimmed.trim_end_matches('0');
        let dropped = i64::try_from(trimmed.len() - significant.len()).unwrap_or(0);
        if significant.is_empty() {
            return Self {
                negative: false,
                digits: String::new(),
                exponent: 0,
            };
        }
        Self {
            negative,
            digits: significant.to_owned(),
            exponent: exponent + dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_ignores_build_order() {
        let a = Query::stream("s")
            .event_type("b", "T")
            .namespace("a")
            .subject_eq("u", 1)
            .data_eq("x", "y");
        let b = Query::stream("s")
            .data_eq("x", "y")
            .namespace("a")
            .subject_eq("u", 1)
            .event_type("b", "T")
            .event_type("a", "Covered");
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), Query::stream("s").canonical());
        assert_eq!(Query::all().canonical(), "{}");
    }

    #[test]
    fn numbers_compare_by_exact_decimal_value() {
        assert!(json_eq(&json!(7), &json!(7.0)));
        assert!(json_eq(&json!(-0.0), &json!(0)));
        assert!(json_eq(&json!(1.5), &json!(15e-1)));
        assert!(json_eq(&json!(100), &json!(1e2)));
        assert!(!json_eq(&json!(1.5), &json!(-1.5)));
        assert!(!json_eq(&json!(0.1), &json!(0.100_000_000_000_000_02)));
        // 2^64 as a float prints as 18446744073709552000: not u64::MAX, as in PostgreSQL.
        assert!(!json_eq(
            &json!(u64::MAX),
            &json!(18_446_744_073_709_551_616.0_f64)
        ));
        assert!(!json_eq(
            &json!(i64::MIN),
            &json!(-9.223_372_036_854_776e18)
        ));
        assert!(json_eq(&json!(1_000_000_000_000_000_000_i64), &json!(1e18)));
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!(7), &json!("7")));
        assert!(!json_eq(&json!([1]), &json!([1, 1])));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
    }

    #[test]
    fn check_refuses_bad_parts() {
        assert!(Query::stream("a b").check().is_err());
        assert!(Query::all().namespace("a.b").check().is_err());
        assert!(Query::all().subject_eq("", 1).check().is_err());
        assert!(Query::all().data_eq("k", json!("\u{0}")).check().is_err());
        assert!(
            Query::stream("ok")
                .namespace("ns")
                .data_eq("k", 1)
                .check()
                .is_ok()
        );
    }
}
