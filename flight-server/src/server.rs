//! Binding a listener and serving the Flight SQL service on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use fibers_engine::Engine;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::auth::Authenticator;
use crate::guard::AuthGuard;
use crate::{AuthConfig, Error, FibersFlightSqlService, Result, TlsConfig};

/// A Flight SQL server bound to its address, not yet serving.
///
/// Binding first lets the caller learn the actual address (port 0 picks
/// a free port) before requests can arrive. By default every call is
/// served, in plain text; [`FlightServer::with_auth`] and
/// [`FlightServer::with_tls`] change that.
pub struct FlightServer {
    listener: TcpListener,
    address: SocketAddr,
    auth: Option<Arc<Authenticator>>,
    server: Server,
}

impl FlightServer {
    /// Binds `address`. Nothing here checks who may connect: the caller
    /// decides whether the address is safe to serve without
    /// authentication.
    pub async fn bind(address: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Listen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Listen { address, source })?;
        Ok(FlightServer {
            listener,
            address,
            auth: None,
            server: Server::builder(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Requires authentication: a Flight `Handshake` with
    /// `authorization: Basic base64(user:password)` returns a bearer token
    /// (in the `authorization` response header and as the payload), and
    /// every other call must send `authorization: Bearer <token>` (or the
    /// Basic credentials). Anything else is answered `Unauthenticated`.
    pub fn with_auth(mut self, config: &AuthConfig) -> Result<Self> {
        self.auth = Some(Arc::new(Authenticator::new(config)?));
        Ok(self)
    }

    /// Serves over TLS with `config`'s certificate and key, read and
    /// checked now so that a bad file stops the server before it
    /// announces itself.
    pub fn with_tls(mut self, config: &TlsConfig) -> Result<Self> {
        let tls = config.load()?;
        self.server = self.server.tls_config(tls).map_err(|e| Error::Tls {
            cert: config.cert().to_path_buf(),
            key: config.key().to_path_buf(),
            reason: error_chain(&e),
        })?;
        Ok(self)
    }

    /// Serves Flight SQL over `engine` until `shutdown` completes, then
    /// stops accepting requests and waits for those in flight to finish.
    pub async fn serve(
        self,
        engine: Arc<Engine>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let service = FibersFlightSqlService::new(engine)?;
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut server = self.server;
        server
            .add_service(AuthGuard::new(FlightServiceServer::new(service), self.auth))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

/// An error and its sources, as one line: tonic's own message ("transport
/// error") says nothing without them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
