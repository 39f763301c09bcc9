//! `event-store serve`: the HTTP API over the store, until Ctrl-C or SIGTERM.

use std::future::Future;

use anyhow::{Context as _, Result};
use event_store::EventStore;
use event_store_server::{Api, ServerConfig, Tls, Tokens};

use crate::backend::AnyStore;
use crate::cli::ServeArgs;
use crate::usage::usage;

/// The tokens from `--tokens FILE`, else from `EVENT_STORE_TOKENS`, else none.
fn tokens(args: &ServeArgs) -> Result<Option<Tokens>> {
    let (text, whence) = match &args.tokens {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the tokens file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var("EVENT_STORE_TOKENS") {
            Ok(text) if !text.trim().is_empty() => (text, "EVENT_STORE_TOKENS".to_owned()),
            _ => return Ok(None),
        },
    };
    Tokens::parse(&text)
        .map(Some)
        .map_err(|e| usage(format!("tokens in {whence}: {e}")))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are in place when this returns, so a
/// signal sent once the start line is printed is never missed.
fn stop_signal() -> Result<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(Box::pin(async {
            // Without a signal handler there is no Ctrl-C to wait for: serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }))
    }
}

pub(crate) async fn run(es: EventStore<AnyStore>, args: ServeArgs, quiet: bool) -> Result<()> {
    let tokens = tokens(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(Tls::from_pem_files(cert, key).map_err(|e| usage(e.to_string()))?)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let stop = stop_signal()?;
    if !quiet {
        eprintln!(
            "serving the HTTP API on {}://{address}{} (Ctrl-C stops)",
            if tls.is_some() { "https" } else { "http" },
            if tokens.is_some() {
                ", tokens required"
            } else {
                ""
            }
        );
        if !args.no_explorer {
            eprintln!(
                "the web explorer is at {}://{address}/explorer/",
                if tls.is_some() { "https" } else { "http" }
            );
        }
        if tokens.is_none() && !address.ip().is_loopback() {
            eprintln!(
                "warning: no tokens: anyone who reaches {address} can read and append (give --tokens FILE)"
            );
        }
        if tokens.is_some() && tls.is_none() && !address.ip().is_loopback() {
            eprintln!(
                "warning: no TLS: tokens cross the network in clear text (give --tls-cert and --tls-key)"
            );
        }
    }
    let metrics = crate::prometheus::install()?;
    let config = ServerConfig {
        tokens,
        tls,
        explorer: !args.no_explorer,
        metrics: Some(metrics),
        ..ServerConfig::default()
    };
    Api::new(es, config).serve(listener, stop).await;
    if !quiet {
        eprintln!("stopped");
    }
    Ok(())
}
