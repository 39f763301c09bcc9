//! Personal data through the facade: sealed on append, opened for folds and decisions, erased
//! once the subject is forgotten, cached only sealed, refused without keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use event_store::erasure::{Keys, MasterKey, MemoryKeyStore};
use event_store::{
    Aggregate, AppendBatch, Cache as _, CacheKey, CachedState, Error, EventStore, Events as _,
    ExpectedVersion, MemoryCache, MemoryStore, NewEvent, NoEmitter, Query, Store as _,
};
use event_store_testkit::{KitAccountProfile, Registered};
use serde_json::json;

type Account = KitAccountProfile;

fn registered(user: &str, email: &str) -> NewEvent {
    Registered::new_event(user, email)
}

fn account_key(user: &str) -> CacheKey {
    Account::cache_key(user)
}

fn keys(store: &MemoryKeyStore) -> Keys<MemoryKeyStore> {
    let master = MasterKey::new("k1", &[9; event_store::erasure::KEY_LEN]).unwrap();
    Keys::new(store.clone(), master, vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_values_are_sealed_opened_and_forgotten() {
    let (store, cache, key_store) = (
        MemoryStore::new(),
        MemoryCache::new(),
        MemoryKeyStore::new(),
    );
    let es = EventStore::new(store.clone(), cache.clone(), NoEmitter).with_keys(keys(&key_store));
    es.append(
        "user-7",
        ExpectedVersion::Any,
        vec![registered("7", "ada@example.com")],
    )
    .await
    .unwrap();
    es.append(
        "user-8",
        ExpectedVersion::Any,
        vec![registered("8", "bob@example.com")],
    )
    .await
    .unwrap();

    // Stored sealed: no plaintext in any raw read; the rest stays plain.
    let raw = store
        .read_all(event_store::Position::START, 10)
        .await
        .unwrap();
    let text = serde_json::to_string(&raw).unwrap();
    assert!(!text.contains("ada@") && !text.contains("bob@"), "{text}");
    assert!(
        text.contains("\"plan\":\"pro\"") && text.contains("\"user_id\":\"7\""),
        "{text}"
    );

    // Folds open them; the cache keeps such a state only sealed, naming its subject.
    let ada = es.aggregate::<Account>("7").await.unwrap();
    assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
    assert_eq!(cache.len(), 1);
    let entry = cache.get(&account_key("7")).await.unwrap().expect("cached");
    assert_eq!(entry.subjects, ["7"]);
    assert!(!entry.state.to_string().contains("ada@"), "{entry:?}");

    // A retry under the same id stores nothing new (the sealed bytes are reused).
    let id = event_store::Uuid::now_v7();
    let first = es
        .append(
            "user-8",
            ExpectedVersion::Any,
            vec![registered("8", "bob@example.com").with_id(id)],
        )
        .await
        .unwrap();
    let retried = es
        .append(
            "user-8",
            ExpectedVersion::Any,
            vec![registered("8", "bob@example.com").with_id(id)],
        )
        .await
        .unwrap();
    assert!(first.stored && !retried.stored, "an idempotent retry");
    assert_eq!(retried.events, first.events);
    // Other content under the same id is still a collision.
    let e = es
        .append(
            "user-8",
            ExpectedVersion::Any,
            vec![registered("8", "other@example.com").with_id(id)],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateId { .. }), "{e}");
    let raw = store
        .read_all(event_store::Position::START, 10)
        .await
        .unwrap();

    // Forget: the fold recomputes without the value; others are unaffected; the log is
    // untouched, byte for byte.
    let audit = es.forget("7", "ticket-4711").await.unwrap();
    assert_eq!(audit.stream, event_store::erasure::FORGOTTEN_STREAM);
    let forgotten = audit
        .decode::<event_store::erasure::SubjectForgotten>()
        .unwrap();
    assert_eq!(
        (
            forgotten.subject.as_str(),
            forgotten.by.as_str(),
            forgotten.had_key
        ),
        ("7", "ticket-4711", true)
    );
    assert_eq!(audit.context.action.as_deref(), Some("forget"));
    assert!(
        !audit.data.to_string().contains("ada@"),
        "no personal data in the audit"
    );
    // Again: harmless, recorded as such.
    let again = es.forget("7", "ticket-4711").await.unwrap();
    assert!(
        !again
            .decode::<event_store::erasure::SubjectForgotten>()
            .unwrap()
            .had_key
    );
    let ada = es.aggregate::<Account>("7").await.unwrap();
    assert_eq!((ada.email, ada.plan.as_deref()), (None, Some("pro")));
    let bob = es.aggregate::<Account>("8").await.unwrap();
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    // The log before the audit events is untouched, byte for byte.
    let after = store
        .read_all(event_store::Position::START, 10)
        .await
        .unwrap();
    assert_eq!(after[..raw.len()], raw[..]);
    // A forgotten subject's personal data is not stored again.
    let e = es
        .append(
            "user-7",
            ExpectedVersion::Any,
            vec![registered("7", "ada@new.example")],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("forgotten"), "{e}");

    // Opening a raw event by hand: erased for the forgotten, plain for the others.
    let mut first = raw[0].clone();
    assert!(es.open(&mut first).await.unwrap());
    assert_eq!(first.decode::<Registered>().unwrap().email, None);
    let mut second = raw[2].clone();
    es.open(&mut second).await.unwrap();
    assert_eq!(
        second.decode::<Registered>().unwrap().email.as_deref(),
        Some("bob@example.com")
    );

    // Without keys: reads see personal values erased; appends of them are refused.
    let keyless = EventStore::new(store.clone(), event_store::NoCache, NoEmitter);
    let bob = keyless.aggregate::<Account>("8").await.unwrap();
    assert_eq!((bob.email, bob.plan.as_deref()), (None, Some("pro")));
    let e = keyless
        .append(
            "user-9",
            ExpectedVersion::Any,
            vec![registered("9", "eve@example.com")],
        )
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("events[0].data.email"), "{e}");
    // Nor can a batch built by hand carry them in the clear; sealed first, it can.
    let e = AppendBatch::new(
        "user-9",
        ExpectedVersion::Any,
        vec![registered("9", "eve@x")],
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("events[0].data.email"), "{e}");
    let sealed = es
        .seal_events(vec![registered("9", "eve@x")])
        .await
        .unwrap();
    let batch = AppendBatch::new("user-9", ExpectedVersion::Any, sealed).unwrap();
    es.append_many(vec![batch]).await.unwrap();
    assert_eq!(
        es.aggregate::<Account>("9").await.unwrap().email.as_deref(),
        Some("eve@x")
    );
    assert_eq!(Registered::read_types().len(), 1);
}

/// A store with keys, ada (user 7) registered in it, and her sealed value copied by hand into
/// an event of user 8 (bound to its own event, it never opens there); returns the copy.
async fn store_with_a_moved_value() -> (
    EventStore<MemoryStore, event_store::NoCache, NoEmitter>,
    event_store::RecordedEvent,
) {
    let (store, key_store) = (MemoryStore::new(), MemoryKeyStore::new());
    let es =
        EventStore::new(store.clone(), event_store::NoCache, NoEmitter).with_keys(keys(&key_store));
    let appended = es
        .append(
            "user-7",
            ExpectedVersion::Any,
            vec![registered("7", "ada@example.com")],
        )
        .await
        .unwrap();
    let mut data = appended.events[0].data.clone();
    data["user_id"] = json!("8");
    let mut moved = NewEvent::new("accounts", "Registered", data);
    moved.id = Some(event_store::Uuid::now_v7());
    let copy = store
        .append(AppendBatch::new("user-8", ExpectedVersion::Any, vec![moved]).unwrap())
        .await
        .unwrap();
    (es, copy.events[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_value_is_an_error_naming_the_event() {
    let (es, copy) = store_with_a_moved_value().await;
    let e = es.aggregate::<Account>("8").await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, Error::Unauthentic { .. }) && text.contains(&copy.id.to_string()),
        "{text}"
    );
}

/// Every user's email: a state that folds several people's personal values.
#[derive(Default, Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Emails(std::collections::BTreeMap<String, Option<String>>);

impl Aggregate for Emails {
    const NAME: &'static str = "test-emails";
    type Event = Registered;
    type Args = ();
    fn query((): &()) -> Query {
        Query::events::<Registered>()
    }
    fn apply(&mut self, e: &Registered) {
        self.0.insert(e.user_id.clone(), e.email.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_state_opens_only_while_every_subject_has_a_key() {
    let (store, cache, key_store) = (
        MemoryStore::new(),
        MemoryCache::new(),
        MemoryKeyStore::new(),
    );
    let es = EventStore::new(store.clone(), cache.clone(), NoEmitter).with_keys(keys(&key_store));
    for (user, email) in [("7", "ada@example.com"), ("8", "bob@example.com")] {
        es.append(
            &format!("user-{user}"),
            ExpectedVersion::Any,
            vec![registered(user, email)],
        )
        .await
        .unwrap();
    }
    let both = |a: Option<&str>, b: Option<&str>| {
        Emails(
            [("7", a), ("8", b)]
                .into_iter()
                .map(|(u, e)| (u.to_owned(), e.map(str::to_owned)))
                .collect(),
        )
    };
    let first = es.fold::<Emails>(&()).await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(
        first.state,
        both(Some("ada@example.com"), Some("bob@example.com"))
    );
    let key = CacheKey {
        aggregate: Emails::NAME.to_owned(),
        version: Emails::VERSION,
        upcasters: Registered::upcaster_fingerprint(),
        query: Query::events::<Registered>().check().unwrap().canonical(),
    };
    let entry = cache.get(&key).await.unwrap().expect("cached");
    assert_eq!(entry.subjects, ["7", "8"], "both people, in byte order");
    let text = entry.state.to_string();
    assert!(!text.contains("ada@") && !text.contains("bob@"), "{text}");
    let again = es.fold::<Emails>(&()).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.state, first.state);

    // Moved to a later checkpoint (or any other entry), the sealed state does not open: the
    // entry is removed and the fold starts from scratch, still right.
    let moved = CachedState {
        checkpoint: event_store::Position::from_parts(0, u64::from(u32::MAX)),
        ..entry.clone()
    };
    cache.put(&key, moved).await.unwrap();
    let refolded = es.fold::<Emails>(&()).await.unwrap();
    assert!(!refolded.from_cache);
    assert_eq!(refolded.state, first.state);

    // Forgetting one of the two removes the entry; a copy put back (a cache that failed to
    // remove it) no longer opens, and is removed when next loaded.
    let kept = cache.get(&key).await.unwrap().expect("cached again");
    es.forget("8", "ticket-1").await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache.put(&key, kept).await.unwrap();
    let after = es.fold::<Emails>(&()).await.unwrap();
    assert!(
        !after.from_cache,
        "a state sealed for a forgotten person is of no use"
    );
    assert_eq!(after.state, both(Some("ada@example.com"), None));
    // A state with an erased value is not cached: what it holds depends on who folded it.
    assert_eq!(cache.get(&key).await.unwrap(), None);

    // Without keys, a sealed entry is not used, nor replaced by the keyless fold (whose values
    // are erased).
    let ada = es.fold::<Account>("7").await.unwrap();
    assert_eq!(ada.state.email.as_deref(), Some("ada@example.com"));
    let sealed = cache.get(&account_key("7")).await.unwrap().expect("cached");
    let keyless = EventStore::new(store.clone(), cache.clone(), NoEmitter);
    let folded = keyless.fold::<Account>("7").await.unwrap();
    assert!(!folded.from_cache);
    assert_eq!(folded.state.email, None);
    assert_eq!(cache.get(&account_key("7")).await.unwrap(), Some(sealed));
    let ada = es.fold::<Account>("7").await.unwrap();
    assert!(ada.from_cache);
    assert_eq!(ada.state.email.as_deref(), Some("ada@example.com"));
}

/// A user and the email an event carried (`None`: erased).
type Email = (String, Option<String>);

/// The emails a projection saw, in log order.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<Email>>>);

impl event_store::projection::Projection for Seen {
    const NAME: &'static str = "test-seen-emails";
    fn query(&self) -> Query {
        Query::events::<Registered>()
    }
}

impl event_store::projection::Handle for Seen {
    async fn handle(
        &self,
        _: event_store::projection::Scope<'_>,
        event: &event_store::RecordedEvent,
    ) -> Result<(), event_store::BoxError> {
        let r: Registered = event.decode()?;
        self.0.lock().unwrap().push((r.user_id, r.email));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_parks_on_a_value_that_never_opens() {
    let (es, bad) = store_with_a_moved_value().await;
    es.append(
        "user-9",
        ExpectedVersion::Any,
        vec![registered("9", "eve@example.com")],
    )
    .await
    .unwrap();

    let seen = Seen::default();
    let runner = es
        .runner(event_store::projection::AtLeastOnce(seen.clone()))
        .with_options(event_store_testkit::kit_options(1))
        .spawn();
    let projections = es.projections();
    let deadline = tokio::time::Instant::now() + event_store_testkit::PATIENCE;
    let parked = loop {
        let status = projections
            .status(<Seen as event_store::projection::Projection>::NAME)
            .await
            .unwrap();
        if let Some(p) = status
            .and_then(|s| s.active)
            .and_then(|a| a.partitions.into_iter().find_map(|p| p.parked))
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partition parks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    runner.stop().await.unwrap();
    assert_eq!(parked.event_id, bad.id, "parked on the copy");
    assert!(
        parked.error.contains(&bad.id.to_string()),
        "{}",
        parked.error
    );
    assert_eq!(
        *seen.0.lock().unwrap(),
        [("7".to_owned(), Some("ada@example.com".to_owned()))],
        "what came before was applied, opened; nothing after"
    );
}
