//! The contract of a [`KeyStore`]: what crypto-shredding relies on.

use event_store::erasure::{DataKey, KeyState, KeyStore, MasterKey, WrappedKey};

fn wrapped(master: &MasterKey, subject: &str) -> WrappedKey {
    master.wrap(subject, &DataKey::generate())
}

/// A key store keeps one key per subject (the first `create` wins, concurrent ones agree),
/// forgets for good (a tombstone that `create` does not replace), replaces only the key it was
/// asked to (compare-and-set), and lists active subjects in byte order, paged without loss.
/// `prefix` keeps the check's subjects apart from others in a shared store.
pub async fn key_store_contract<K: KeyStore + Clone>(store: &K, prefix: &str) {
    let master = MasterKey::new("kit", &[7; event_store::erasure::KEY_LEN]).expect("master");
    let subject = |n: usize| format!("{prefix}subject-{n:03}");
    let s0 = subject(0);
    assert_eq!(store.load(&s0).await.expect("load"), None, "no entry yet");

    // Concurrent first uses agree on one key.
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let (store, key, s0) = (store.clone(), wrapped(&master, &s0), s0.clone());
            tokio::spawn(async move { store.create(&s0, key).await.expect("create") })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tries {
        winners.push(t.await.expect("task"));
    }
    assert!(
        winners.windows(2).all(|w| w[0] == w[1]),
        "one key wins: {winners:?}"
    );
    let KeyState::Active(kept) = winners[0].clone() else {
        panic!("a new subject's key is active");
    };
    assert_eq!(
        store.load(&s0).await.expect("load"),
        Some(KeyState::Active(kept.clone()))
    );

    // Replace is a compare-and-set.
    let newer = wrapped(&master, &s0);
    let stale = wrapped(&master, &s0);
    assert!(
        !store
            .replace(&s0, &stale, newer.clone())
            .await
            .expect("replace")
    );
    assert!(
        store
            .replace(&s0, &kept, newer.clone())
            .await
            .expect("replace")
    );
    assert_eq!(
        store.load(&s0).await.expect("load"),
        Some(KeyState::Active(newer.clone()))
    );

    // Forget: a tombstone that stays.
    assert!(store.forget(&s0).await.expect("forget"));
    assert!(!store.forget(&s0).await.expect("forget again"));
    assert_eq!(
        store.load(&s0).await.expect("load"),
        Some(KeyState::Forgotten)
    );
    assert_eq!(
        store
            .create(&s0, wrapped(&master, &s0))
            .await
            .expect("create"),
        KeyState::Forgotten,
        "a forgotten subject gets no key again"
    );
    assert!(
        !store
            .replace(&s0, &newer, wrapped(&master, &s0))
            .await
            .expect("replace")
    );
    // Forgetting a subject that never had a key leaves a tombstone too.
    let never = subject(999);
    assert!(!store.forget(&never).await.expect("forget"));
    assert_eq!(
        store.load(&never).await.expect("load"),
        Some(KeyState::Forgotten)
    );

    // Active subjects, in byte order, paged; forgotten ones left out.
    for n in 1..=7 {
        store
            .create(&subject(n), wrapped(&master, &subject(n)))
            .await
            .expect("create");
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = Some(format!("{prefix}subject-"));
    loop {
        let page = store.active(after.as_deref(), 3).await.expect("active");
        let Some(last) = page.last().map(|(s, _)| s.clone()) else {
            break;
        };
        listed.extend(
            page.into_iter()
                .map(|(s, _)| s)
                .filter(|s| s.starts_with(prefix)),
        );
        after = Some(last);
    }
    let expected: Vec<String> = (1..=7).map(subject).collect();
    assert_eq!(
        listed, expected,
        "active subjects in order, without the forgotten"
    );
}

/// An event with personal data: `email` is sealed with the key of the subject `user_id`.
#[derive(event_store::Event, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[event(namespace = "accounts", subject = "user_id")]
pub struct Registered {
    /// The subject.
    pub user_id: String,
    /// Personal: read as `None` once the subject is forgotten.
    #[event(personal)]
    pub email: Option<String>,
    /// Not personal.
    pub plan: String,
}

impl Registered {
    /// `user` registered with `email` on the `pro` plan, as an event to append.
    pub fn new_event(user: &str, email: &str) -> event_store::NewEvent {
        event_store::NewEvent::from_event(&Self {
            user_id: user.to_owned(),
            email: Some(email.to_owned()),
            plan: "pro".to_owned(),
        })
        .expect("encodes")
    }
}

/// Appends one [`Registered`] per `(user, email)` through `es` (which seals the email), each to
/// a new stream `user-{user}`, and waits until they are final, so folds may cache what they
/// read. Returns the last one's position.
pub async fn register<S, C, E>(
    es: &event_store::EventStore<S, C, E>,
    users: &[(&str, &str)],
) -> event_store::Position
where
    S: event_store::Store,
    C: Send + Sync + 'static,
    E: event_store::Publish,
{
    let mut last = event_store::Position::START;
    for (user, email) in users {
        let appended = es
            .append(
                &format!("user-{user}"),
                event_store::ExpectedVersion::NoStream,
                vec![Registered::new_event(user, email)],
            )
            .await
            .expect("append");
        last = last.max(appended.events[0].position);
    }
    crate::support::wait_final(es.store(), last).await;
    last
}

/// The account of one user (stream `user-{id}`), folded from [`Registered`].
#[derive(Default, Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct KitAccountProfile {
    /// The last email registered (`None` once forgotten).
    pub email: Option<String>,
    /// The last plan.
    pub plan: Option<String>,
}

impl KitAccountProfile {
    /// The cache key of `user`'s account (to look at what a cache keeps for them). Panics, as
    /// a test's assertion, when `user` makes no valid stream id.
    pub fn cache_key(user: &str) -> event_store::CacheKey {
        use event_store::{Aggregate as _, Events as _};
        event_store::CacheKey {
            aggregate: Self::NAME.to_owned(),
            version: Self::VERSION,
            upcasters: Registered::upcaster_fingerprint(),
            query: event_store::Query::stream(format!("user-{user}"))
                .of::<Registered>()
                .check()
                .expect("a valid query")
                .canonical(),
        }
    }
}

impl event_store::Aggregate for KitAccountProfile {
    const NAME: &'static str = "kit-account-profile";
    type Event = Registered;
    type Args = str;
    fn query(user: &str) -> event_store::Query {
        event_store::Query::stream(format!("user-{user}"))
    }
    fn apply(&mut self, e: &Registered) {
        self.email.clone_from(&e.email);
        self.plan = Some(e.plan.clone());
    }
}
