//! Forgetting a person, through every read path of a store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use event_store::erasure::{FORGOTTEN_STREAM, KeyStore, Keys, MasterKey, SubjectForgotten};
use event_store::projection::{AtLeastOnce, Handle, Projection, ProjectionStore, Scope};
use event_store::{
    BoxError, Cache, Direction, EventStore, NoEmitter, Position, Query, RecordedEvent, Store,
    StreamId,
};

use crate::keys::{KitAccountProfile, Registered};
use crate::projections::kit_options;
use crate::support::{PATIENCE, suffix};

/// Each subject with the email one of its events carried (`None`: erased).
type Sightings = Vec<(String, Option<String>)>;

/// What a projection of emails saw, and keeps, per subject.
#[derive(Clone, Default)]
pub struct EmailBook<const AFTER: bool> {
    prefix: String,
    /// The email each subject's events carried, in order (`None`: erased).
    seen: Arc<Mutex<Sightings>>,
    /// The read model: the last email per subject, dropped on `SubjectForgotten`.
    book: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl<const AFTER: bool> EmailBook<AFTER> {
    fn book(&self) -> BTreeMap<String, Option<String>> {
        self.book.lock().expect("book").clone()
    }
    fn seen(&self) -> Sightings {
        self.seen.lock().expect("seen").clone()
    }
}

impl<const AFTER: bool> Projection for EmailBook<AFTER> {
    const NAME: &'static str = if AFTER {
        "kit-email-book-after"
    } else {
        "kit-email-book"
    };
    fn query(&self) -> Query {
        Query::events::<Registered>().event_type("event_store", "SubjectForgotten")
    }
}

impl<const AFTER: bool> Handle for EmailBook<AFTER> {
    async fn handle(&self, _: Scope<'_>, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.stream == FORGOTTEN_STREAM {
            let forgotten: SubjectForgotten = event.decode()?;
            self.book.lock().expect("book").remove(&forgotten.subject);
        } else {
            let r: Registered = event.decode()?;
            if r.user_id.starts_with(&self.prefix) {
                self.seen
                    .lock()
                    .expect("seen")
                    .push((r.user_id.clone(), r.email.clone()));
                self.book.lock().expect("book").insert(r.user_id, r.email);
            }
        }
        Ok(())
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Every event of the store, raw, as text (to look for plaintext in): the log forward and by
/// query, the last page backward, and `streams` by stream.
async fn raw_text<S: Store>(store: &S, streams: &[String]) -> String {
    let mut all = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(after, 1000).await.expect("read_all");
        let Some(last) = page.last() else { break };
        after = last.position;
        all.extend(page);
    }
    all.extend(
        store
            .read_committed(&Query::all().check().expect("query"), Position::START, 1000)
            .await
            .expect("read_committed"),
    );
    all.extend(
        store
            .read_all_backward(None, 1000)
            .await
            .expect("read_all_backward"),
    );
    for s in streams {
        let id = StreamId::new(s.as_str()).expect("stream");
        all.extend(
            store
                .read_stream(&id, 0, Direction::Forward, 1000)
                .await
                .expect("read_stream"),
        );
    }
    serde_json::to_string(&all).expect("json")
}

/// Crypto-shredding on `store`, its `cache` and its `keys`: personal values are stored sealed
/// (no raw read — the log, a stream, a query, backward — shows the plaintext), open for folds
/// and projections run by the facade, and are cached only sealed, each entry naming its
/// subjects. After `forget`: the subject's cached states are gone, every read path shows their
/// values erased (`None`), for that subject only; aggregates recompute without them; a
/// projection drops its copy on `SubjectForgotten`, and one built afterwards sees them erased;
/// the log is unchanged, byte for byte.
pub async fn forgetting_erases_every_read_path<S, C, K>(store: &S, cache: &C, keys: &K)
where
    S: ProjectionStore,
    C: Cache + Clone,
    K: KeyStore + Clone,
{
    let p = format!("f{}-", &suffix()[..8]);
    let (ada, bob) = (format!("{p}ada"), format!("{p}bob"));
    let (ada_mail, bob_mail) = (format!("{p}ada@example.com"), format!("{p}bob@example.com"));
    let master = MasterKey::new("kit", &[3; event_store::erasure::KEY_LEN]).expect("master");
    let es = EventStore::new(store.clone(), cache.clone(), NoEmitter).with_keys(Keys::new(
        keys.clone(),
        master,
        vec![],
    ));
    let streams = [format!("user-{ada}"), format!("user-{bob}")];
    crate::keys::register(&es, &[(&ada, &ada_mail), (&bob, &bob_mail)]).await;
    let before = raw_text(store, &streams).await;
    assert!(
        !before.contains(&ada_mail) && !before.contains(&bob_mail),
        "sealed in every raw read"
    );
    assert!(
        before.contains("$sealed"),
        "the sealed form is what raw reads return"
    );

    // Open for folds and for a projection run by the facade; cached only sealed.
    for user in [&ada, &bob] {
        let folded = es.fold::<KitAccountProfile>(user).await.expect("fold");
        assert!(!folded.from_cache);
    }
    let folded = es.fold::<KitAccountProfile>(&ada).await.expect("fold");
    assert!(folded.from_cache, "a personal state is cached (sealed)");
    assert_eq!(folded.state.email.as_deref(), Some(ada_mail.as_str()));
    let key = KitAccountProfile::cache_key;
    for (user, mail) in [(&ada, &ada_mail), (&bob, &bob_mail)] {
        let entry = cache.get(&key(user)).await.expect("cache").expect("cached");
        assert_eq!(
            &entry.subjects,
            std::slice::from_ref(user),
            "the entry names its subject"
        );
        let text = entry.state.to_string();
        assert!(!text.contains(mail.as_str()), "cached sealed: {text}");
        assert!(!text.contains("pro"), "the whole state is sealed: {text}");
    }
    let book = EmailBook::<false> {
        prefix: p.clone(),
        ..EmailBook::default()
    };
    let runner = es
        .runner(AtLeastOnce(book.clone()))
        .with_options(kit_options(1))
        .spawn();
    eventually("the projection sees both emails opened", || {
        let b = book.book();
        (b.get(&ada) == Some(&Some(ada_mail.clone()))
            && b.get(&bob) == Some(&Some(bob_mail.clone())))
        .then_some(())
    })
    .await;

    // Forget ada: her cached state goes at once, bob's stays.
    es.forget(&ada, "kit").await.expect("forget");
    assert_eq!(
        cache.get(&key(&ada)).await.expect("cache"),
        None,
        "nothing cached for the subject"
    );
    assert!(cache.get(&key(&bob)).await.expect("cache").is_some());
    eventually("the projection drops its copy on SubjectForgotten", || {
        let b = book.book();
        (!b.contains_key(&ada)).then_some(b)
    })
    .await;
    assert_eq!(
        book.book().get(&bob),
        Some(&Some(bob_mail.clone())),
        "bob is unaffected"
    );
    runner.stop().await.expect("stop");

    let folded = es.aggregate::<KitAccountProfile>(&ada).await.expect("fold");
    assert_eq!(
        (folded.email, folded.plan.as_deref()),
        (None, Some("pro")),
        "recomputed without it"
    );
    let other = es.fold::<KitAccountProfile>(&bob).await.expect("fold");
    assert!(other.from_cache);
    assert_eq!(other.state.email.as_deref(), Some(bob_mail.as_str()));
    // A state with her email erased is not cached either (it depends on who folds it).
    assert_eq!(cache.get(&key(&ada)).await.expect("cache"), None);
    let mut raw = store
        .read_stream(
            &StreamId::new(streams[0].as_str()).expect("id"),
            0,
            Direction::Forward,
            10,
        )
        .await
        .expect("read");
    assert!(es.open(&mut raw[0]).await.expect("open"));
    assert_eq!(
        raw[0].decode::<Registered>().expect("decode").email,
        None,
        "opened by hand: erased"
    );

    // A projection built after the forget sees ada erased, bob plain.
    let later = EmailBook::<true> {
        prefix: p.clone(),
        ..EmailBook::default()
    };
    let runner = es
        .runner(AtLeastOnce(later.clone()))
        .with_options(kit_options(1))
        .spawn();
    let seen = eventually("a new projection catches up", || {
        let s = later.seen();
        (s.len() == 2).then_some(s)
    })
    .await;
    runner.stop().await.expect("stop");
    assert!(seen.contains(&(ada.clone(), None)), "{seen:?}");
    assert!(
        seen.contains(&(bob.clone(), Some(bob_mail.clone()))),
        "{seen:?}"
    );

    // The log is unchanged: the same bytes (plus the audit event), still no plaintext.
    let after = raw_text(store, &streams).await;
    assert!(!after.contains(&ada_mail) && !after.contains(&bob_mail));
    let before_events: Vec<RecordedEvent> = serde_json::from_str(&before).expect("json");
    let after_events: Vec<RecordedEvent> = serde_json::from_str(&after).expect("json");
    for e in &before_events {
        assert!(after_events.contains(e), "event {} unchanged", e.id);
    }
}
