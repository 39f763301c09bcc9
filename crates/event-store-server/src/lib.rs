#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod auth;
mod error;
mod explorer;
mod filter;
mod hub;
mod listen;
mod live;
mod openapi;
mod routes;
mod search;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use event_store::{EventStore, Store};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use auth::{MIN_TOKEN_LEN, Scope, Tokens};
pub use error::{ApiError, ErrorBody, ErrorKind};
pub use listen::{Tls, TlsError};
pub use openapi::openapi;

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer tokens and their scopes; `None`: no authentication (the default, for a server
    /// bound to 127.0.0.1).
    pub tokens: Option<Tokens>,
    /// The largest request body in bytes (default: the largest append batch, 16 MiB, plus room
    /// for the JSON around it). A larger `Content-Length` is refused before the body is read;
    /// a body that grows past it while streaming is cut off.
    pub body_limit: usize,
    /// How long a request other than the live tail may take (default 30 s).
    pub request_timeout: Duration,
    /// Events buffered for one live-tail client (default 1 024). The tail reads only as the
    /// client drains them, so memory per client is bounded.
    pub live_buffer: usize,
    /// Events the tail shared by every live client holds for the slowest of them (default
    /// 4 096); a client further behind catches up with reads of its own.
    pub live_broadcast: usize,
    /// How long a live-tail client's buffer may stay full before the client is sent a
    /// `dropped` event and disconnected (default 30 s).
    pub slow_client: Duration,
    /// How often an idle live tail sends a keep-alive comment (default 15 s).
    pub keep_alive: Duration,
    /// The most events or streams one page returns (default 1 000; `limit` asks for fewer).
    pub page_limit: usize,
    /// What `GET /metrics` renders: the handle of the Prometheus recorder the process installed
    /// (`None`: no `/metrics` route). The names are listed in [`event_store::metrics`].
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// HTTPS with this certificate and key ([`Api::serve`]); `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// The largest request head (request line and headers) in bytes (default 16 KiB; at least
    /// 8 KiB). A larger one is answered 431 and the connection closed.
    pub header_limit: usize,
    /// The most headers in a request (default 64); more is answered 431.
    pub max_headers: usize,
    /// How long a client may take to send a request's head, or to finish a TLS handshake
    /// (default 10 s), so idle half-open connections do not pile up.
    pub header_timeout: Duration,
    /// Serve the web explorer at `/explorer/` (default `true`).
    pub explorer: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            tokens: None,
            body_limit: event_store::limits::MAX_BATCH_BYTES + 64 * 1024,
            request_timeout: Duration::from_secs(30),
            live_buffer: 1024,
            live_broadcast: 4096,
            slow_client: Duration::from_secs(30),
            keep_alive: Duration::from_secs(15),
            page_limit: 1000,
            metrics: None,
            tls: None,
            header_limit: 16 * 1024,
            max_headers: 64,
            header_timeout: Duration::from_secs(10),
            explorer: true,
        }
    }
}

/// What every handler shares.
pub(crate) struct Shared<S> {
    pub(crate) es: EventStore<S>,
    pub(crate) config: ServerConfig,
    /// Becomes `true` when the server shuts down: live tails end.
    pub(crate) stopping: watch::Receiver<bool>,
    /// The tail every live client shares.
    pub(crate) hub: hub::Hub,
}

/// The HTTP API over an event store: build it, then [`Api::router`] to mount it in an axum
/// application of your own, or [`Api::serve`] to run it.
pub struct Api<S> {
    shared: Arc<Shared<S>>,
    stop: watch::Sender<bool>,
}

impl<S: Store + Clone> Api<S> {
    /// The API over `es`.
    pub fn new(es: EventStore<S>, config: ServerConfig) -> Self {
        let (stop, stopping) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                es,
                config,
                stopping,
                hub: hub::Hub::default(),
            }),
            stop,
        }
    }

    /// The routes (see the crate documentation), with authentication, body limits and
    /// timeouts applied.
    pub fn router(&self) -> Router {
        let config = &self.shared.config;
        let bounded =
            routes::bounded(Arc::clone(&self.shared)).layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                config.request_timeout,
            ));
        let api = bounded.merge(live::routes(Arc::clone(&self.shared))).layer(
            axum::middleware::from_fn_with_state(Arc::clone(&self.shared), auth::require::<S>),
        );
        let open = if config.explorer {
            routes::open(Arc::clone(&self.shared)).merge(explorer::routes())
        } else {
            routes::open(Arc::clone(&self.shared))
        };
        open.merge(api)
            .layer(axum::middleware::from_fn(routes::count))
            .layer(DefaultBodyLimit::max(config.body_limit))
            .layer(RequestBodyLimitLayer::new(config.body_limit))
    }

    /// Tells live tails to end (as [`Api::serve`] does when its `shutdown` completes).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Serves the API on `listener` (over TLS when [`ServerConfig::tls`] is set) until
    /// `shutdown` completes; then live tails end, no connection is accepted, requests in flight
    /// finish, and it returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let router = self.router();
        let config = &self.shared.config;
        let limits = listen::HeadLimits {
            bytes: config.header_limit,
            count: config.max_headers,
            timeout: config.header_timeout,
        };
        listen::run(
            listener,
            router,
            config.tls.clone(),
            limits,
            shutdown,
            || {
                self.stop();
            },
        )
        .await;
    }
}
