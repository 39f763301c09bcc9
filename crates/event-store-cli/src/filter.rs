//! `--namespace`, `--type` and `--stream-prefix`: which events `read` and `tail` show.

use anyhow::Result;
use event_store::{Query, RecordedEvent};

use crate::cli::FilterArgs;
use crate::usage::usage;

/// A type to show: in one namespace, or (`--type TYPE`) in any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeName {
    namespace: Option<String>,
    name: String,
}

/// The filters, checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    namespace: Option<String>,
    types: Vec<TypeName>,
    prefix: Option<String>,
}

impl Filter {
    /// Checks the flags: `--type` is `NAMESPACE.TYPE` or `TYPE`, and a namespace in it agrees
    /// with `--namespace`.
    pub(crate) fn new(args: &FilterArgs) -> Result<Self> {
        let mut types = Vec::with_capacity(args.types.len());
        for text in &args.types {
            let t = match text.split_once('.') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => TypeName {
                    namespace: Some(ns.to_owned()),
                    name: name.to_owned(),
                },
                None if !text.is_empty() => TypeName {
                    namespace: args.namespace.clone(),
                    name: text.clone(),
                },
                _ => {
                    return Err(usage(format!(
                        "--type `{text}` is not NAMESPACE.TYPE or TYPE (like shop.OrderPlaced or OrderPlaced)"
                    )));
                }
            };
            if let (Some(given), Some(ns)) = (&args.namespace, &t.namespace)
                && given != ns
            {
                return Err(usage(format!(
                    "--type {text} is in namespace `{ns}`, not in --namespace `{given}`: nothing could match"
                )));
            }
            types.push(t);
        }
        for name in args
            .namespace
            .iter()
            .chain(types.iter().flat_map(|t| &t.namespace))
        {
            event_store::limits::check_name("--namespace", name)
                .map_err(|e| usage(e.to_string()))?;
        }
        Ok(Self {
            namespace: args.namespace.clone(),
            types,
            prefix: args.stream_prefix.clone(),
        })
    }

    /// Whether no filter was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.types.is_empty() && self.prefix.is_none()
    }

    /// The part of the filters the store can apply (`None`: none given), starting from `base`
    /// (all events, or one stream). Types without a namespace are left to [`Filter::matches`].
    pub(crate) fn query_from(&self, base: Query) -> Option<Query> {
        if self.is_empty() {
            return None;
        }
        let mut q = match &self.prefix {
            Some(p) => base.with_stream_prefix(p.clone()),
            None => base,
        };
        if self.types.is_empty() {
            if let Some(ns) = &self.namespace {
                q = q.namespace(ns.clone());
            }
        } else if self.types.iter().all(|t| t.namespace.is_some()) {
            for t in &self.types {
                if let Some(ns) = &t.namespace {
                    q = q.event_type(ns.clone(), t.name.clone());
                }
            }
        } else if let Some(ns) = &self.namespace {
            q = q.namespace(ns.clone());
        }
        Some(q)
    }

    /// [`Filter::query_from`] all events.
    pub(crate) fn query(&self) -> Option<Query> {
        self.query_from(Query::all())
    }

    /// Whether `e` passes every filter.
    pub(crate) fn matches(&self, e: &RecordedEvent) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == e.namespace)
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| e.stream.starts_with(p.as_str()))
            && (self.types.is_empty()
                || self.types.iter().any(|t| {
                    t.name == e.event_type
                        && t.namespace.as_ref().is_none_or(|ns| *ns == e.namespace)
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, ns: &str, t: &str) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: stream.into(),
            version: 0,
            position: event_store::Position::from_offset(1),
            namespace: ns.into(),
            event_type: t.into(),
            data: serde_json::json!({}),
            context: event_store::EventContext::now(),
        }
    }

    fn filter(namespace: Option<&str>, types: &[&str], prefix: Option<&str>) -> Result<Filter> {
        Filter::new(&FilterArgs {
            namespace: namespace.map(Into::into),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            stream_prefix: prefix.map(Into::into),
        })
    }

    #[test]
    fn types_with_and_without_their_namespace() {
        let f = filter(None, &["shop.Placed"], None).unwrap();
        assert!(f.matches(&event("s", "shop", "Placed")));
        assert!(!f.matches(&event("s", "bank", "Placed")));
        assert!(f.query().is_some());
        let f = filter(None, &["Placed"], None).unwrap();
        assert!(f.matches(&event("s", "shop", "Placed")));
        assert!(f.matches(&event("s", "bank", "Placed")));
        assert!(!f.matches(&event("s", "bank", "Paid")));
        let f = filter(Some("shop"), &["Placed", "shop.Paid"], Some("order-")).unwrap();
        assert!(f.matches(&event("order-1", "shop", "Paid")));
        assert!(!f.matches(&event("cart-1", "shop", "Paid")));
        assert!(!f.matches(&event("order-1", "bank", "Placed")));
    }

    #[test]
    fn contradictions_and_malformed_types_are_usage_errors() {
        let e = filter(Some("bank"), &["shop.Placed"], None).unwrap_err();
        assert!(e.is::<crate::usage::Usage>(), "{e}");
        assert!(filter(None, &["shop."], None).is_err());
        assert!(filter(None, &[".Placed"], None).is_err());
        assert!(filter(None, &["sh op.Placed"], None).is_err());
    }
}
