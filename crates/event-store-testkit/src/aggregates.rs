//! The kit's event types and aggregates.

use event_store::{Aggregate, Event, Events, Query};
use serde::{Deserialize, Serialize};

/// Events of the kit's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-counter")]
pub struct Added {
    /// How much.
    pub n: i64,
}

/// Events of the kit's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-counter")]
pub struct Removed {
    /// How much.
    pub n: i64,
}

/// The kit's counter events.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum CounterEvent {
    /// Added.
    Added(Added),
    /// Removed.
    Removed(Removed),
}

/// A counter whose state also remembers the order it saw events in (so a fold that skips,
/// repeats or reorders events is caught).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitCounter {
    /// The sum.
    pub total: i64,
    /// How many events.
    pub count: u64,
    /// An order-sensitive digest of the events.
    pub digest: u64,
}

impl KitCounter {
    pub(crate) fn step(&mut self, signed: i64) {
        self.total += signed;
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(1_000_003)
            .wrapping_add(signed.unsigned_abs() * 2 + u64::from(signed < 0));
    }
}

impl Aggregate for KitCounter {
    const NAME: &'static str = "kit-counter";
    type Event = CounterEvent;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(a) => self.step(a.n),
            CounterEvent::Removed(r) => self.step(-r.n),
        }
    }
}

/// The same counter with a changed fold (removals count double) and a bumped version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitCounterV2(pub KitCounter);

impl Aggregate for KitCounterV2 {
    const NAME: &'static str = "kit-counter";
    const VERSION: u32 = 2;
    type Event = CounterEvent;
    type Args = str;

    fn query(stream: &str) -> Query {
        Query::stream(stream)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added(a) => self.0.step(a.n),
            CounterEvent::Removed(r) => self.0.step(-2 * r.n),
        }
    }
}

/// A counter over every stream, narrowed by subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitUserTotal(pub KitCounter);

impl Aggregate for KitUserTotal {
    const NAME: &'static str = "kit-user-total";
    type Event = CounterEvent;
    type Args = str;

    fn query(user: &str) -> Query {
        Query::events::<CounterEvent>().subject_eq("user", user)
    }

    fn apply(&mut self, event: &CounterEvent) {
        KitCounter::apply(&mut self.0, event);
    }
}

pub(crate) fn fold_local(events: &[(bool, i64)]) -> KitCounter {
    let mut c = KitCounter::default();
    for &(add, n) in events {
        c.step(if add { n } else { -n });
    }
    c
}

/// Money paid into a kit account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-bank")]
pub struct Deposited {
    /// How much.
    pub amount: i64,
}

/// Money taken out of a kit account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(namespace = "kit-bank")]
pub struct Withdrawn {
    /// How much.
    pub amount: i64,
}

/// The kit account's events.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum AccountEvent {
    /// Deposited.
    Deposited(Deposited),
    /// Withdrawn.
    Withdrawn(Withdrawn),
}

/// An account whose balance must never go below zero (the invariant `execute` keeps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KitAccount {
    /// The balance.
    pub balance: i64,
}

impl Aggregate for KitAccount {
    const NAME: &'static str = "kit-account";
    type Event = AccountEvent;
    type Args = str;

    fn query(id: &str) -> Query {
        Query::stream(id)
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(d) => self.balance += d.amount,
            AccountEvent::Withdrawn(w) => self.balance -= w.amount,
        }
    }
}

impl KitAccount {
    /// The decision of a withdrawal: refused when the balance does not cover it.
    pub fn withdraw(&self, amount: i64) -> Result<Vec<Withdrawn>, String> {
        if self.balance < amount {
            Err(format!("balance {} does not cover {amount}", self.balance))
        } else {
            Ok(vec![Withdrawn { amount }])
        }
    }
}
