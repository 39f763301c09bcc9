//! A bank-account service over TCP, sharing one event store between connections: commands go
//! through `execute` (decide on current state, save expecting its version, decide again after a
//! lost race), and a read model follows the log live with a checkpoint in the store.
//!
//! `cargo run -p event-store --example bank` starts it on a free port, runs a few clients
//! against it concurrently (20 withdrawals racing for 15 units), prints what they got, and
//! stops. `cargo run -p event-store --example bank -- 127.0.0.1:7000` serves until Ctrl-C:
//! `printf 'deposit acc-1 50\nwithdraw acc-1 20\nbalance acc-1\n' | nc 127.0.0.1 7000`.
//! The memory store keeps the example self-contained; `SqliteStore` or `PgStore` (with their
//! caches) drop in unchanged.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use event_store::{
    Aggregate, Event, EventStore, Events, ExecuteError, MemoryEventStore, Position, Query,
};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "bank")]
struct Deposited {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(namespace = "bank")]
struct Withdrawn {
    amount: u64,
}

#[derive(Events, Debug, Clone)]
enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

#[derive(Default, Clone, Debug, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    type Args = str;
    fn query(id: &str) -> Query {
        Query::stream(id)
    }
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(e) => self.balance += e.amount,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount,
        }
    }
}

/// Total money moved, per account: the read model the log feeds.
type Turnover = Arc<Mutex<BTreeMap<String, u64>>>;

/// One command line, answered with one line.
async fn command(es: &MemoryEventStore, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let amount = |w: &str| {
        w.parse::<u64>()
            .map_err(|_| format!("`{w}` is not an amount"))
    };
    let result = match words.as_slice() {
        ["deposit", id, n] => match amount(n) {
            Ok(n) => es
                .execute(*id, |_: &Account| {
                    Ok::<_, String>(vec![Deposited { amount: n }])
                })
                .await
                .map(|done| format!("ok {}", done.state.balance)),
            Err(e) => return format!("error {e}"),
        },
        ["withdraw", id, n] => match amount(n) {
            Ok(n) => es
                .execute(*id, |a: &Account| {
                    if a.balance < n {
                        Err(format!("insufficient funds: balance {}", a.balance))
                    } else {
                        Ok(vec![Withdrawn { amount: n }])
                    }
                })
                .await
                .map(|done| format!("ok {}", done.state.balance)),
            Err(e) => return format!("error {e}"),
        },
        ["balance", id] => match es.aggregate::<Account>(id).await {
            Ok(a) => return format!("ok {}", a.balance),
            Err(e) => return format!("error {e}"),
        },
        _ => return "error commands: deposit ID N | withdraw ID N | balance ID".to_owned(),
    };
    match result {
        Ok(answer) => answer,
        Err(ExecuteError::Rejected(why)) => format!("refused {why}"),
        Err(ExecuteError::Store(e)) => format!("error {e}"),
    }
}

async fn serve_connection(es: MemoryEventStore, socket: TcpStream) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = command(&es, &line).await;
        write.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Follows the log live and keeps the turnover; its checkpoint lives in the store.
async fn read_model(es: MemoryEventStore, turnover: Turnover) -> event_store::Result<()> {
    const NAME: &str = "read-model:turnover";
    let after = es.load_checkpoint(NAME).await?.unwrap_or(Position::START);
    let mut events = Box::pin(es.tail(after, Some(Query::all().namespace("bank"))));
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue }; // a failed read: the tail goes on
        let amount = match event.decode::<AccountEvent>()? {
            AccountEvent::Deposited(e) => e.amount,
            AccountEvent::Withdrawn(e) => e.amount,
        };
        *turnover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(event.stream.clone())
            .or_default() += amount;
        es.save_checkpoint(NAME, event.position).await?;
    }
    Ok(())
}

async fn client(addr: std::net::SocketAddr, lines: Vec<String>) -> std::io::Result<Vec<String>> {
    let socket = TcpStream::connect(addr).await?;
    let (read, mut write) = socket.into_split();
    let mut answers = BufReader::new(read).lines();
    let mut out = Vec::new();
    for line in &lines {
        write.write_all(format!("{line}\n").as_bytes()).await?;
        out.push(answers.next_line().await?.unwrap_or_default());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let es = EventStore::memory();
    let turnover = Turnover::default();
    tokio::spawn(read_model(es.clone(), Arc::clone(&turnover)));
    let bind = std::env::args().nth(1);
    let listener = TcpListener::bind(bind.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?;
    let server = {
        let es = es.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(es.clone(), socket));
            }
        })
    };
    if bind.is_some() {
        println!("serving on {addr} (Ctrl-C stops)");
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }

    println!("bank service on {addr}");
    let opened = client(addr, vec!["deposit acc-1 15".to_owned()]).await?;
    println!("deposit acc-1 15 -> {}", opened[0]);
    // 20 clients race to withdraw 1 each from 15: each decision is made on current state.
    let racers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client(addr, vec!["withdraw acc-1 1".to_owned()])))
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for r in racers {
        let answer = r.await??.remove(0);
        if answer.starts_with("ok") {
            ok += 1;
        } else if answer.starts_with("refused") {
            refused += 1;
        } else {
            return Err(format!("unexpected answer: {answer}").into());
        }
    }
    let balance = client(addr, vec!["balance acc-1".to_owned()]).await?;
    println!(
        "20 racing withdrawals of 1: {ok} ok, {refused} refused; balance {}",
        &balance[0][3..]
    );
    // The read model catches up with every movement.
    for _ in 0..200 {
        let moved = turnover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get("acc-1")
            .copied();
        if moved == Some(30) {
            println!("read model: turnover of acc-1 = 30 (15 in, 15 out)");
            server.abort();
            return if (ok, refused) == (15, 5) {
                Ok(())
            } else {
                Err("the invariant did not hold".into())
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err("the read model did not catch up".into())
}
