//! The process's metrics in the Prometheus text format: one recorder per process, and for the
//! commands without an HTTP API of their own (`publish`, `subscribe`), `--metrics ADDRESS:PORT`
//! serving `GET /metrics`.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process's Prometheus recorder: durations as histograms with buckets from
/// 0.5 ms to 10 s. The names are listed in `event_store::metrics`.
pub(crate) fn install() -> Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ])
        .and_then(PrometheusBuilder::install_recorder)
        .context("cannot install the metrics recorder")
}

/// With `Some(address)`: installs the recorder and serves `GET /metrics` on the address in the
/// background, for as long as the process runs. Returns the address bound (port 0: any).
pub(crate) async fn serve(address: Option<SocketAddr>) -> Result<Option<SocketAddr>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let handle = install()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for --metrics"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(Some(bound))
}
