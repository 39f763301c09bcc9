//! Upcasting checks: events stored at older schema versions read through upcasters, on every
//! store, with the log untouched and the cache keyed by the upcasters.

use event_store::upcast::{Upcast, Upcasters};
use event_store::{
    Aggregate, Cache, CacheKey, Error, Event, EventStore, Events, ExpectedVersion, NewEvent,
    NoCache, Query, RecordedEvent, Store,
};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::support::{RecordingEmitter, suffix};

/// An account opening at schema version 3. Version 1 was `kit-upcast.Created` with a `name`;
/// version 2 renamed it `Opened` and the field `owner`; version 3 added `tier` (default
/// `basic`) and refuses an empty owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(
    namespace = "kit-upcast",
    rename = "Opened",
    version = 3,
    upcasters = "opened_upcasters"
)]
#[serde(deny_unknown_fields)]
pub struct OpenedV3 {
    /// Who.
    pub owner: String,
    /// Which tier.
    pub tier: String,
}

fn owner_not_empty(data: &mut serde_json::Map<String, Value>) -> Result<(), String> {
    match data.get("owner") {
        Some(Value::String(s)) if s.is_empty() => Err("the owner is empty".to_owned()),
        _ => Ok(()),
    }
}

fn opened_upcasters() -> Upcasters {
    chain("basic")
}

/// Version 1 → 2: the old name and field; 2 → 3: a tier (`default_tier` when absent), and an
/// empty owner refused.
fn chain(default_tier: &'static str) -> Upcasters {
    Upcasters::new()
        .to(
            2,
            Upcast::new()
                .renamed_from("kit-upcast", "Created")
                .rename("name", "owner"),
        )
        .to(
            3,
            Upcast::new()
                .add("tier", default_tier)
                .with("refuse an empty owner", owner_not_empty),
        )
}

/// The same type with one upcaster changed (the default tier is `premium`): a deployment that
/// changed its upcasters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(
    namespace = "kit-upcast",
    rename = "Opened",
    version = 3,
    upcasters = "premium_upcasters"
)]
pub struct OpenedPremium {
    /// Who.
    pub owner: String,
    /// Which tier.
    pub tier: String,
}

fn premium_upcasters() -> Upcasters {
    chain("premium")
}

/// The openings of one stream, in order, as `(owner, tier)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitOpenings(pub Vec<(String, String)>);

impl Aggregate for KitOpenings {
    const NAME: &'static str = "kit-openings";
    type Event = OpenedV3;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, e: &OpenedV3) {
        self.0.push((e.owner.clone(), e.tier.clone()));
    }
}

/// [`KitOpenings`] folded through [`OpenedPremium`]: same name, same version, other upcasters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitOpeningsPremium(pub Vec<(String, String)>);

impl Aggregate for KitOpeningsPremium {
    const NAME: &'static str = "kit-openings";
    type Event = OpenedPremium;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, e: &OpenedPremium) {
        self.0.push((e.owner.clone(), e.tier.clone()));
    }
}

/// Appends one event of every shape: v1 under the old name, v1 with the original store's legacy
/// `type` key, v2, and v3 written by the typed API. Returns the stored events.
async fn write_every_shape<S: Store, C: Send + Sync + 'static>(
    es: &EventStore<S, C, RecordingEmitter>,
    stream: &str,
) -> Vec<RecordedEvent> {
    let raw = vec![
        NewEvent::new("kit-upcast", "Created", json!({"name": "ada"})),
        NewEvent::new(
            "kit-upcast",
            "Created",
            json!({"name": "bo", "type": "kit-upcast.Created"}),
        ),
        NewEvent::new(
            "kit-upcast",
            "Opened",
            json!({"owner": "cy", "event_version": 2}),
        ),
        NewEvent::new(
            "kit-upcast",
            "Opened",
            json!({"owner": "di", "tier": "gold", "event_version": 2}),
        ),
    ];
    let mut stored = es
        .append(stream, ExpectedVersion::NoStream, raw)
        .await
        .expect("append the old shapes")
        .events;
    stored.push(
        es.save(
            stream,
            &OpenedV3 {
                owner: "ed".into(),
                tier: "silver".into(),
            },
        )
        .await
        .expect("save a v3 event"),
    );
    stored
}

/// The events of [`write_every_shape`], upcast by hand.
fn by_hand(premium: bool) -> Vec<(String, String)> {
    let default = if premium { "premium" } else { "basic" };
    [
        ("ada", default),
        ("bo", default),
        ("cy", default),
        ("di", "gold"),
        ("ed", "silver"),
    ]
    .into_iter()
    .map(|(o, t)| (o.to_owned(), t.to_owned()))
    .collect()
}

async fn raw_log<S: Store + Clone, C: Send + Sync + 'static>(
    es: &EventStore<S, C, RecordingEmitter>,
    stream: &str,
) -> Vec<String> {
    es.read_stream(stream, 0, event_store::Direction::Forward)
        .map_ok(|e| serde_json::to_string(&e.data).expect("json"))
        .try_collect()
        .await
        .expect("read")
}

/// An aggregate over events of versions 1, 2 and 3 (old name, legacy `type` key, typed writes)
/// equals the fold of the same events upcast by hand; typed reads decode every one; the stored
/// JSON is byte for byte what was written, after all of that; the schema versions are visible on
/// the recorded events.
pub async fn upcasting_reads_every_version<S: Store + Clone>(store: &S) {
    let es = EventStore::new(store.clone(), NoCache, RecordingEmitter::default());
    let s = format!("upcast-{}", suffix());
    let stored = write_every_shape(&es, &s).await;
    assert_eq!(
        stored
            .iter()
            .map(RecordedEvent::schema_version)
            .collect::<Vec<_>>(),
        [1, 1, 2, 2, 3],
        "each event keeps the version it was written at"
    );
    let before = raw_log(&es, &s).await;

    let folded = es.aggregate::<KitOpenings>(&s).await.expect("aggregate");
    assert_eq!(folded.0, by_hand(false));
    let typed: Vec<OpenedV3> = es
        .read_stream(&s, 0, event_store::Direction::Forward)
        .map_ok(|e| e.decode::<OpenedV3>())
        .try_collect::<Vec<_>>()
        .await
        .expect("read")
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every version decodes");
    assert_eq!(
        typed
            .into_iter()
            .map(|e| (e.owner, e.tier))
            .collect::<Vec<_>>(),
        by_hand(false)
    );
    let all = Query::stream(s.clone())
        .of::<OpenedV3>()
        .check()
        .expect("query");
    assert_eq!(
        store
            .read_committed(&all, event_store::Position::START, 100)
            .await
            .expect("query")
            .len(),
        5,
        "a query for the type matches its former name too"
    );
    assert_eq!(
        raw_log(&es, &s).await,
        before,
        "upcasting never writes back: the log is byte for byte what was stored"
    );
    assert!(
        before[0].contains("\"name\":\"ada\"") && !before[0].contains("owner"),
        "the stored v1 event keeps its shape: {}",
        before[0]
    );
}

/// A cached aggregate made under one set of upcasters is not used under another (same aggregate
/// name and version); each fold equals its own fold from scratch.
pub async fn changed_upcasters_invalidate_the_cache<S: Store + Clone, C: Cache + Clone>(
    store: &S,
    cache: &C,
) {
    let es = EventStore::new(store.clone(), cache.clone(), RecordingEmitter::default());
    let s = format!("upcast-cache-{}", suffix());
    write_every_shape(&es, &s).await;
    let basic = es.fold::<KitOpenings>(&s).await.expect("fold");
    assert_eq!(basic.state.0, by_hand(false));
    let warm = es.fold::<KitOpenings>(&s).await.expect("fold");
    assert!(warm.from_cache, "the second fold is served by the cache");
    let premium = es.fold::<KitOpeningsPremium>(&s).await.expect("fold");
    assert!(
        !premium.from_cache,
        "a state folded under other upcasters is not used"
    );
    assert_eq!(premium.state.0, by_hand(true));
    assert_ne!(
        OpenedV3::upcaster_fingerprint(),
        OpenedPremium::upcaster_fingerprint()
    );
    let again = es.fold::<KitOpenings>(&s).await.expect("fold");
    assert_eq!(
        again.state.0,
        by_hand(false),
        "each set keeps its own entry"
    );
}

/// An upcaster that fails on an event fails the fold with an error naming the event's id and
/// type, and nothing is cached; an event from a newer schema version than the code knows is a
/// clear error too, never a silent default.
pub async fn upcasting_failures_are_named<S: Store + Clone, C: Cache + Clone>(
    store: &S,
    cache: &C,
) {
    let es = EventStore::new(store.clone(), cache.clone(), RecordingEmitter::default());
    let s = format!("upcast-bad-{}", suffix());
    es.save(
        &s,
        &OpenedV3 {
            owner: "fine".into(),
            tier: "basic".into(),
        },
    )
    .await
    .expect("save");
    let bad = es
        .append(
            &s,
            ExpectedVersion::Exact(0),
            vec![NewEvent::new("kit-upcast", "Created", json!({"name": ""}))],
        )
        .await
        .expect("append")
        .events
        .remove(0);
    let err = es
        .fold::<KitOpenings>(&s)
        .await
        .expect_err("the upcaster refuses it");
    match &err {
        Error::Decode {
            id,
            namespace,
            event_type,
            source,
            ..
        } => {
            assert_eq!(*id, bad.id);
            assert_eq!(
                (namespace.as_str(), event_type.as_str()),
                ("kit-upcast", "Created")
            );
            let cause = source.downcast_ref::<Error>();
            assert!(
                matches!(cause, Some(Error::Upcast { from: 2, to: 3, .. })),
                "{source}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&bad.id.to_string()) && text.contains("the owner is empty"),
        "{text}"
    );
    let key = CacheKey {
        aggregate: KitOpenings::NAME.to_owned(),
        version: KitOpenings::VERSION,
        upcasters: OpenedV3::upcaster_fingerprint(),
        query: Query::stream(s.clone()).of::<OpenedV3>().canonical(),
    };
    assert_eq!(
        cache.get(&key).await.expect("get"),
        None,
        "a failed fold caches nothing"
    );

    let f = format!("upcast-future-{}", suffix());
    let future = es
        .append(
            &f,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                "kit-upcast",
                "Opened",
                json!({"owner": "zed", "tier": "x", "event_version": 4}),
            )],
        )
        .await
        .expect("a store keeps events of any version")
        .events
        .remove(0);
    assert_eq!(future.schema_version(), 4);
    let err = es
        .aggregate::<KitOpenings>(&f)
        .await
        .expect_err("version 4 is unknown");
    let text = err.to_string();
    assert!(
        text.contains(&future.id.to_string())
            && text.contains("`kit-upcast.Opened` version 4 was written by newer code")
            && text.contains("versions 1 to 3"),
        "{text}"
    );
    let refused = es
        .append(
            &f,
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "kit-upcast",
                "Opened",
                json!({"owner": "x", "event_version": 0}),
            )],
        )
        .await
        .expect_err("version 0 does not exist");
    assert_eq!(refused.field(), Some("events[0].data"), "{refused}");
}
