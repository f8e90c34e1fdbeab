//! Binding a listener and serving the Flight SQL service on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use fibers_engine::Engine;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::{Error, FibersFlightSqlService, Result};

/// A Flight SQL server bound to its address, not yet serving.
///
/// Binding first lets the caller learn the actual address (port 0 picks
/// a free port) before requests can arrive.
pub struct FlightServer {
    listener: TcpListener,
    address: SocketAddr,
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
        Ok(FlightServer { listener, address })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
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
        Server::builder()
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
