//! An ordered group (`partitions` > 0) on the real broker: three instances, each its own process,
//! compete for 10 000 events over 100 streams; one is killed with SIGKILL mid-run. Every event is
//! handled, and every stream's events are handled in version order — by one instance, then
//! (after the kill) by the one its partitions went to, from no later than where the dead one
//! stopped. A test binary of its own (`harness = false`): it starts itself again as the
//! instances, which report what they handle on their standard output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Names, config, names, start_relay, store, wait_until};
use event_store::{
    BoxError, Emitter as _, ExpectedVersion, Handler, NewEvent, RecordedEvent, SubscriptionSpec,
};
use event_store_amqp::AmqpEmitter;
use serde_json::json;

const CHILD: &str = "EVENT_STORE_AMQP_ORDERED_CHILD";
const GROUP: &str = "ordered";
const PARTITIONS: u16 = 4;
const STREAMS: usize = 100;
const PER_STREAM: usize = 100;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(exchange) = std::env::var(CHILD) {
        rt.block_on(instance(exchange));
        return;
    }
    println!("test an_ordered_group_keeps_stream_order_when_an_instance_dies ...");
    rt.block_on(an_ordered_group_keeps_stream_order_when_an_instance_dies());
    println!("test an_ordered_group_keeps_stream_order_when_an_instance_dies ... ok");
}

fn ordered_config(names: &Names) -> event_store_amqp::AmqpConfig {
    let mut c = config(names);
    c.partitions = PARTITIONS;
    c.prefetch = 16;
    c
}

fn spec() -> SubscriptionSpec {
    SubscriptionSpec {
        group: GROUP.to_owned(),
        types: vec![],
    }
}

/// A child: one instance of the group, printing `stream version` for each event it handles
/// (flushed before the handler returns, so before the acknowledgement), until killed.
async fn instance(exchange: String) {
    let names = Names {
        exchange,
        groups: vec![],
        partitions: 0,
        extra_queues: Vec::new(),
    };
    let emitter = AmqpEmitter::new(ordered_config(&names)).unwrap();
    std::mem::forget(names); // the parent cleans up
    let handler: Handler = Arc::new(|e: RecordedEvent| {
        Box::pin(async move {
            // Slow enough that the kill lands mid-run.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{} {}", e.stream, e.version)?;
            out.flush()?;
            Ok::<(), BoxError>(())
        })
    });
    let sub = emitter.subscribe(spec(), handler).await.unwrap();
    let outcome = sub.into_future().await;
    panic!("the subscription ended: {outcome:?}");
}

type Lines = Arc<Mutex<Vec<(String, u64)>>>;

fn spawn_instance(exchange: &str) -> (Child, Lines) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, exchange)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start an instance");
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Some((stream, version)) = line.split_once(' ') else {
                continue;
            };
            sink.lock()
                .unwrap()
                .push((stream.to_owned(), version.parse().unwrap()));
        }
    });
    (child, lines)
}

async fn an_ordered_group_keeps_stream_order_when_an_instance_dies() {
    if common::broker().await.is_none() {
        return;
    }
    let mut names = names(&[GROUP]);
    names.partitions = PARTITIONS;
    // The group's exchange and partitions exist before any event is relayed.
    let emitter = AmqpEmitter::new(ordered_config(&names)).unwrap();
    let noop: Handler = Arc::new(|_| Box::pin(async { Ok::<(), BoxError>(()) }));
    drop(emitter.subscribe(spec(), noop).await.unwrap());

    let mut instances: Vec<(Child, Lines)> =
        (0..3).map(|_| spawn_instance(&names.exchange)).collect();
    let es = store(&names);
    let (_metrics, relay) = start_relay(&es, &names);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                // Writer w owns the streams s ≡ w (mod 4), appending 5 events at a time.
                for round in 0..PER_STREAM / 5 {
                    for s in (w..STREAMS).step_by(4) {
                        let events = (0..5)
                            .map(|i| {
                                NewEvent::new(
                                    "amqp-test",
                                    "Ordered",
                                    json!({"round": round, "i": i}),
                                )
                            })
                            .collect();
                        es.append(&format!("s-{s}"), ExpectedVersion::Any, events)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let total = STREAMS * PER_STREAM;
    let handled = |instances: &[(Child, Lines)]| -> usize {
        instances.iter().map(|(_, l)| l.lock().unwrap().len()).sum()
    };
    wait_until(
        "a quarter of the events handled",
        Duration::from_secs(120),
        || handled(&instances) >= total / 4,
    )
    .await;
    // Kill the busiest instance: it holds partitions.
    let victim = (0..instances.len())
        .max_by_key(|i| instances[*i].1.lock().unwrap().len())
        .unwrap();
    instances[victim].0.kill().unwrap();
    instances[victim].0.wait().unwrap();
    let distinct = |instances: &[(Child, Lines)]| -> usize {
        let mut all = HashSet::new();
        for (_, lines) in instances {
            all.extend(lines.lock().unwrap().iter().cloned());
        }
        all.len()
    };
    wait_until("every event handled", Duration::from_secs(180), || {
        distinct(&instances) == total
    })
    .await;
    for (i, (child, _)) in instances.iter_mut().enumerate() {
        if i != victim {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    relay.abort();

    // Per instance and stream: consecutive versions, in order.
    // Per stream: one instance from version 0; after the kill, at most one other, starting no
    // later than right after the dead instance's last.
    let mut by_stream: BTreeMap<String, Vec<(usize, Vec<u64>)>> = BTreeMap::new();
    for (i, (_, lines)) in instances.iter().enumerate() {
        let mut mine: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (stream, version) in lines.lock().unwrap().iter() {
            mine.entry(stream.clone()).or_default().push(*version);
        }
        for (stream, versions) in mine {
            assert!(
                versions.windows(2).all(|w| w[1] == w[0] + 1),
                "instance {i} handled {stream} out of order: {versions:?}"
            );
            by_stream.entry(stream).or_default().push((i, versions));
        }
    }
    assert_eq!(by_stream.len(), STREAMS, "every stream handled");
    let mut handed_over = 0;
    let last = u64::try_from(PER_STREAM).unwrap() - 1;
    for (stream, mut handlers) in by_stream {
        handlers.sort_by_key(|(i, _)| usize::from(*i != victim));
        match handlers.as_slice() {
            [(_, only)] => {
                assert_eq!(
                    (only[0], *only.last().unwrap()),
                    (0, last),
                    "{stream}: one instance handled it whole"
                );
            }
            [(first, before), (_, after)] => {
                assert_eq!(
                    *first, victim,
                    "{stream}: only the killed instance hands over"
                );
                assert_eq!(before[0], 0, "{stream} starts at version 0");
                assert!(
                    after[0] <= before.last().unwrap() + 1,
                    "{stream}: the survivor went on from {} after the dead one's {}",
                    after[0],
                    before.last().unwrap()
                );
                assert_eq!(*after.last().unwrap(), last, "{stream} handled to its end");
                handed_over += 1;
            }
            more => panic!("{stream} was handled by {} instances", more.len()),
        }
    }
    assert!(
        handed_over > 0,
        "the killed instance's partitions went to a survivor"
    );
    drop(names);
}
