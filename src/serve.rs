//! `fibers serve`: the engine behind a Flight SQL endpoint.

use std::sync::Arc;

use anyhow::Context;
use fibers_engine::Engine;
use fibers_flight::FlightServer;

use crate::config::{ServeArgs, ServeSettings};

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = ServeSettings::resolve(args, &|name| std::env::var(name))?;
    // Bad TLS files or a busy port stop us before the engine resumes any
    // job. Connections that arrive while it opens wait in the backlog.
    let server = start(&settings).await?;
    let engine = Arc::new(
        Engine::open(settings.engine_config())
            .await
            .with_context(|| format!("cannot open data dir {}", settings.data_dir.display()))?,
    );
    if settings.auth.is_some() && settings.tls.is_none() && settings.beyond_loopback() {
        eprintln!(
            "warning: serving {} without TLS: passwords and tokens cross the network in \
             clear text (add --tls-cert and --tls-key, or [tls] in the config file)",
            settings.listen
        );
    }
    // Tests and scripts read the actual address (port 0 picks one) from
    // this exact line.
    eprintln!("Flight SQL listening on {}", server.local_addr());
    eprintln!("{}", describe_security(&settings));
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

/// Binds the listener and sets up authentication and TLS.
async fn start(settings: &ServeSettings) -> anyhow::Result<FlightServer> {
    let mut server = FlightServer::bind(settings.listen).await?;
    if let Some(auth) = &settings.auth {
        server = server.with_auth(auth)?;
    }
    if let Some(tls) = &settings.tls {
        server = server.with_tls(tls)?;
    }
    Ok(server)
}

/// One line saying whether authentication and TLS are on.
fn describe_security(settings: &ServeSettings) -> String {
    let auth = match &settings.auth {
        Some(auth) => format!(
            "authentication on (user '{}', tokens expire after {})",
            auth.user(),
            humantime::format_duration(auth.token_ttl())
        ),
        None => "authentication off (loopback only)".to_string(),
    };
    let tls = match &settings.tls {
        Some(tls) => format!("TLS on ({})", tls.cert().display()),
        None => "TLS off".to_string(),
    };
    format!("{auth}; {tls}")
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
