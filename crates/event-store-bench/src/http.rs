//! The HTTP API (`event-store-server`) on a store: appends through HTTP against the same
//! appends through the library, and the live tail's fan-out latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_store::{EventStore, ExpectedVersion, NewEvent, Store};
use event_store_server::{Api, ServerConfig};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{BenchError, Result};
use crate::report::{Goal, Report, Sizes, ms, percentiles, rate};
use crate::workload::payload;

/// Clients appending at once, each on its own keep-alive connection and stream.
const CLIENTS: usize = 8;
/// Live-tail clients for the fan-out.
const TAILS: usize = 100;

fn unexpected(what: impl std::fmt::Display) -> BenchError {
    BenchError::Unexpected(what.to_string())
}

/// One keep-alive HTTP/1.1 connection to `address`.
async fn connect(address: &str) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(unexpected)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `POST /streams/{stream}` with one event; fails unless 201.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    address: &str,
    stream: &str,
    i: usize,
) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!([
        {"namespace": "bench", "type": "Moved", "data": payload(i)}
    ]))?;
    let request = hyper::Request::post(format!("/streams/{stream}"))
        .header(hyper::header::HOST, address)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(unexpected)?;
    sender.ready().await.map_err(unexpected)?;
    let response = sender.send_request(request).await.map_err(unexpected)?;
    let status = response.status();
    // Read the answer whole, so the connection is ready for the next request.
    response.into_body().collect().await.map_err(unexpected)?;
    if status != hyper::StatusCode::CREATED {
        return Err(unexpected(format!("an HTTP append answered {status}")));
    }
    Ok(())
}

/// The same appends as the HTTP clients do (one event per call, 8 writers on their own
/// streams), through the library: events/s.
async fn library_appends<S: Store + Clone>(
    es: &EventStore<S>,
    n: usize,
    round: usize,
) -> Result<f64> {
    let t = Instant::now();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let es = es.clone();
            tokio::spawn(async move {
                for i in 0..n / CLIENTS {
                    let event = NewEvent::new("bench", "Moved", payload(i));
                    es.append(
                        &format!("lib-{round}-{w}"),
                        ExpectedVersion::Any,
                        vec![event],
                    )
                    .await?;
                }
                Ok::<(), event_store::Error>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok(rate(n / CLIENTS * CLIENTS, t.elapsed()))
}

async fn http_appends(address: &str, n: usize) -> Result<f64> {
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let address = address.to_owned();
            tokio::spawn(async move {
                let mut sender = connect(&address).await?;
                for i in 0..n / CLIENTS {
                    post(&mut sender, &address, &format!("http-{w}"), i).await?;
                }
                Ok::<(), BenchError>(())
            })
        })
        .collect();
    for c in clients {
        c.await??;
    }
    Ok(rate(n / CLIENTS * CLIENTS, t.elapsed()))
}

/// When each fan-out event's append started, by its version in the stream.
type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

/// One live-tail client: reads events until it has `expect`, recording each one's delay from
/// its append.
async fn tail(
    address: String,
    sent: Sent,
    expect: usize,
    connected: oneshot::Sender<()>,
) -> Result<Vec<Duration>> {
    let mut sender = connect(&address).await?;
    let request = hyper::Request::get("/log/live")
        .header(hyper::header::HOST, &address)
        .header(hyper::header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(unexpected)?;
    let response = sender.send_request(request).await.map_err(unexpected)?;
    if response.status() != hyper::StatusCode::OK {
        return Err(unexpected(format!(
            "the live tail answered {}",
            response.status()
        )));
    }
    let _ = connected.send(());
    let mut body = response.into_body();
    let mut buffer = String::new();
    let mut delays = Vec::with_capacity(expect);
    while delays.len() < expect {
        let Some(frame) = body.frame().await else {
            return Err(unexpected("a live tail ended early"));
        };
        let frame = frame.map_err(unexpected)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let Some(data) = message.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let event: event_store::RecordedEvent = serde_json::from_str(data.trim())?;
            let appended = sent
                .lock()
                .map_err(|_| unexpected("poisoned"))?
                .get(&event.version)
                .copied()
                .ok_or_else(|| unexpected("an event the writer did not append"))?;
            delays.push(now.saturating_duration_since(appended));
        }
    }
    Ok(delays)
}

/// Serves `store` over HTTP on a free port and measures it.
pub(crate) async fn run<S: Store + Clone>(
    report: &mut Report,
    backend: &str,
    store: &S,
    sizes: Sizes,
) -> Result<()> {
    let es = EventStore::from_store(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Api::new(es.clone(), ServerConfig::default()).serve(
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let result = measure(report, backend, &es, &address, sizes).await;
    let _ = stop.send(());
    let _ = server.await;
    result
}

async fn measure<S: Store + Clone>(
    report: &mut Report,
    backend: &str,
    es: &EventStore<S>,
    address: &str,
    sizes: Sizes,
) -> Result<()> {
    let n = sizes.concurrent;
    // The library on either side of the HTTP run; the better of the two is the baseline.
    let library = library_appends(es, n, 0).await?;
    let http = http_appends(address, n).await?;
    let library = library.max(library_appends(es, n, 1).await?);
    report.add(
        "http_append",
        "HTTP appends, 1 event/request, 8 keep-alive clients",
        backend,
        http,
        "ev/s",
        Some(library),
        true,
        Goal::Ratio(0.5),
    );

    // Fan-out: 100 live tails; one writer appends, a few milliseconds apart.
    let events = sizes.latency / 4;
    let sent: Sent = Arc::default();
    let mut tails = Vec::with_capacity(TAILS);
    for _ in 0..TAILS {
        let (connected, ready) = oneshot::channel();
        tails.push(tokio::spawn(tail(
            address.to_owned(),
            Arc::clone(&sent),
            events,
            connected,
        )));
        ready
            .await
            .map_err(|_| unexpected("a live tail did not connect"))?;
    }
    for i in 0..events {
        // Noted before the append, so a tail never sees an event before its start time.
        sent.lock()
            .map_err(|_| unexpected("poisoned"))?
            .insert(i as u64, Instant::now());
        let event = NewEvent::new("bench", "Moved", payload(i));
        // One writer: the event gets version i.
        es.append("fanout", ExpectedVersion::Any, vec![event])
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut delays = Vec::with_capacity(events * TAILS);
    for t in tails {
        let got = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .map_err(|_| unexpected("a live tail fell silent"))???;
        delays.extend(got);
    }
    let (p50, p99) = percentiles(delays);
    report.add(
        "sse_fanout_p50",
        "SSE fan-out to 100 clients, append to delivery, p50",
        backend,
        ms(p50),
        "ms",
        None,
        false,
        Goal::None,
    );
    report.add(
        "sse_fanout_p99",
        "SSE fan-out to 100 clients, append to delivery, p99",
        backend,
        ms(p99),
        "ms",
        None,
        false,
        Goal::AtMost(100.0),
    );
    Ok(())
}
