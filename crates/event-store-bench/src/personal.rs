//! Personal data (issue 17): the same events with and without 2 personal fields, appended one
//! per call and read typed through the same facade, so sealing and opening with the subjects'
//! keys (kept in the store's own key table) are the only difference.

use std::time::Instant;

use event_store::erasure::{KeyStore, Keys, MasterKey};
use event_store::{Direction, Event, EventStore, ExpectedVersion, NewEvent, NoCache, NoEmitter};
use event_store::{Events, Store};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ensure};
use crate::report::{Goal, Report, Sizes, rate};

/// Subjects the read stream's events are about (each event's neighbours are other people).
const READ_SUBJECTS: usize = 1000;
/// Subjects per append round: every round makes keys for this many new people.
const APPEND_SUBJECTS: usize = 100;

/// A customer signed up: `name` and `email` are personal, sealed with the customer's key.
#[derive(Event, Serialize, Deserialize, Clone)]
#[event(namespace = "bench", subject = "customer")]
struct Signed {
    customer: String,
    #[event(personal)]
    name: Option<String>,
    #[event(personal)]
    email: Option<String>,
    plan: String,
    note: String,
}

/// The same event with nothing personal.
#[derive(Event, Serialize, Deserialize, Clone)]
#[event(namespace = "bench")]
struct SignedPlain {
    customer: String,
    name: Option<String>,
    email: Option<String>,
    plan: String,
    note: String,
}

impl Signed {
    fn of(customer: String) -> Self {
        Self {
            name: Some(format!("Customer {customer}")),
            email: Some(format!("{customer}@example.com")),
            customer,
            plan: "pro".to_owned(),
            note: "n".repeat(60),
        }
    }
}

fn signed(customer: String) -> Result<NewEvent> {
    Ok(NewEvent::from_event(&Signed::of(customer))?)
}

/// The same fields as [`signed`], as an event with nothing personal.
fn signed_plain(customer: String) -> Result<NewEvent> {
    let Signed {
        customer,
        name,
        email,
        plan,
        note,
    } = Signed::of(customer);
    let plain = SignedPlain {
        customer,
        name,
        email,
        plan,
        note,
    };
    Ok(NewEvent::from_event(&plain)?)
}

/// `n` appends of one event each over 100 streams, each event about one of 100 people new to
/// this round: events/s.
async fn appends<S: Store, E: event_store::Publish>(
    es: &EventStore<S, NoCache, E>,
    n: usize,
    round: &str,
    make: fn(String) -> Result<NewEvent>,
) -> Result<f64> {
    let t = Instant::now();
    for i in 0..n {
        let who = i % APPEND_SUBJECTS;
        es.append(
            &format!("{round}-{who}"),
            ExpectedVersion::Any,
            vec![make(format!("{round}-c{who}"))?],
        )
        .await?;
    }
    Ok(rate(n, t.elapsed()))
}

/// Reads `stream` through `es`, decoding each event as `Ev`, with its personal fields opened
/// when `open` (else as any typed reader decodes): events/s and the events read.
async fn typed_read<Ev: Events, S: Store + Clone, E: event_store::Publish>(
    es: &EventStore<S, NoCache, E>,
    stream: &str,
    open: bool,
    check: fn(&Ev) -> bool,
) -> Result<(f64, usize)> {
    let started = Instant::now();
    let mut n = 0usize;
    let mut events = Box::pin(es.read_stream(stream, 0, Direction::Forward));
    while let Some(e) = events.next().await {
        let e = e?;
        let typed = if open {
            es.decode::<Ev>(&e).await?
        } else {
            e.decode::<Ev>()?
        };
        ensure(check(&typed), "a personal field did not open")?;
        std::hint::black_box(typed);
        n += 1;
    }
    Ok((rate(n, started.elapsed()), n))
}

/// The personal-data rows for `backend`: `store` with its own `key_store`.
pub(crate) async fn run<S: Store + Clone, K: KeyStore>(
    report: &mut Report,
    backend: &str,
    store: &S,
    key_store: K,
    sizes: Sizes,
) -> Result<()> {
    let (master, _) = MasterKey::generate("bench")?;
    let keys = Keys::new(key_store, master, vec![]);
    keys.check().await?;
    let sealed = EventStore::new(store.clone(), NoCache, NoEmitter).with_keys(keys);
    let plain = EventStore::new(store.clone(), NoCache, NoEmitter);

    // Appends: plain and personal alternate, each keeping its better round.
    let (mut plain_rate, mut sealed_rate) = (0f64, 0f64);
    for round in 0..2 {
        let p = appends(&plain, sizes.single, &format!("plain{round}"), signed_plain).await?;
        let s = appends(&sealed, sizes.single, &format!("sealed{round}"), signed).await?;
        plain_rate = plain_rate.max(p);
        sealed_rate = sealed_rate.max(s);
    }

    // Typed reads of one stream each, about 1 000 people (filled in batches; not measured).
    let length = sizes.stream / 4;
    for start in (0..length).step_by(1000) {
        let end = (start + 1000).min(length);
        let who = |i: usize| format!("r-c{}", i % READ_SUBJECTS);
        let s: Vec<NewEvent> = (start..end)
            .map(|i| signed(who(i)))
            .collect::<Result<_>>()?;
        let p: Vec<NewEvent> = (start..end)
            .map(|i| signed_plain(who(i)))
            .collect::<Result<_>>()?;
        sealed
            .append("personal-long", ExpectedVersion::Any, s)
            .await?;
        plain.append("plain-long", ExpectedVersion::Any, p).await?;
    }
    let (mut plain_read, mut sealed_read, mut read) = (0f64, 0f64, 0usize);
    for _ in 0..2 {
        let (p, _) =
            typed_read::<SignedPlain, _, _>(&plain, "plain-long", false, |e| e.email.is_some())
                .await?;
        let (s, n) =
            typed_read::<Signed, _, _>(&sealed, "personal-long", true, |e| e.email.is_some())
                .await?;
        plain_read = plain_read.max(p);
        sealed_read = sealed_read.max(s);
        read = n;
    }

    report.add(
        "personal_append",
        "append 1 event/call with 2 personal fields (vs the same without)",
        backend,
        sealed_rate,
        "ev/s",
        Some(plain_rate),
        true,
        Goal::Ratio(0.8),
    );
    report.add(
        "personal_read",
        &format!("typed read of one stream, 2 personal fields ({read} events, vs without)"),
        backend,
        sealed_read,
        "ev/s",
        Some(plain_read),
        true,
        Goal::Ratio(0.8),
    );
    Ok(())
}
