//! `fibers serve`: the engine behind a Flight SQL endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use fibers_engine::{Engine, EngineConfig};
use fibers_flight::FlightServer;

pub async fn serve(listen: SocketAddr, data_dir: PathBuf) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: authentication is not implemented yet, so the \
             server only listens on a loopback address (such as 127.0.0.1 or [::1])"
        );
    }
    let engine = Arc::new(
        Engine::open(EngineConfig::new(&data_dir))
            .await
            .with_context(|| format!("cannot open data dir {}", data_dir.display()))?,
    );
    let server = match FlightServer::bind(listen).await {
        Ok(server) => server,
        Err(e) => {
            engine.shutdown().await;
            return Err(e.into());
        }
    };
    // Tests and scripts read the actual address (port 0 picks one).
    eprintln!("Flight SQL listening on {}", server.local_addr());
    // Subscriptions never end by themselves: end them first, so the server
    // can finish the requests in flight.
    let subscriptions = Arc::clone(&engine);
    let shutdown = async move {
        shutdown_signal().await;
        subscriptions.close_subscriptions();
    };
    let served = server.serve(Arc::clone(&engine), shutdown).await;
    engine.shutdown().await;
    served?;
    Ok(())
}

/// Completes on Ctrl-C or (on Unix) SIGTERM. If a handler cannot be
/// installed, the server runs until the other signal instead of stopping
/// at once.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    eprintln!("shutting down: stopping jobs");
}
