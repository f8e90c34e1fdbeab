//! The shell's connection: Flight SQL calls only, so anything the shell
//! does, any Flight SQL client can do.

use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightInfo, HandshakeRequest, Ticket};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use futures::TryStreamExt;
use tonic::Code;
use tonic::codegen::http::Uri;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::commands::ObjectKind;
use super::error::{Error, Result, root_cause, status_message};

/// The port of `fibers serve` when the address names none.
pub const DEFAULT_PORT: u16 = 50051;

/// How long to wait for the TCP and HTTP/2 connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server address: `HOST:PORT`, `HOST` (port 50051),
/// `http://HOST:PORT` or `https://HOST:PORT` (TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `HOST:PORT`, as messages name it.
    name: String,
    /// `HOST`, the name a TLS certificate must carry.
    domain: String,
    /// Whether to connect over TLS.
    tls: bool,
}

impl Host {
    /// Parses an address given with `--host` or `FIBERS_HOST`.
    pub fn parse(address: &str) -> std::result::Result<Host, String> {
        let address = address.trim();
        let (rest, tls) = match address.split_once("://") {
            None => (address, false),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, false),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (rest, true),
            Some((scheme, _)) => {
                return Err(format!(
                    "'{address}': unsupported scheme '{scheme}://'; give HOST:PORT, \
                     http://HOST:PORT or https://HOST:PORT"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let invalid =
            || format!("'{address}' is not an address; give HOST:PORT or http://HOST:PORT");
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(invalid());
        }
        let uri: Uri = format!("http://{rest}").parse().map_err(|_| invalid())?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(invalid)?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let port = match uri.port_u16() {
            Some(port) => port,
            // "host:" or "host:x" parse as a host with a bad port.
            None if authority.ends_with(':') || authority.len() > host.len() => {
                return Err(invalid());
            }
            None => DEFAULT_PORT,
        };
        Ok(Host {
            name: format!("{host}:{port}"),
            domain: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            tls,
        })
    }

    /// `HOST:PORT`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A Flight SQL connection to the server.
pub struct Client {
    flight: FlightSqlServiceClient<Channel>,
    host: Host,
}

impl Client {
    /// Connects to `host`; fails at once if nothing answers there. Over
    /// TLS when the host says `https://` or `tls_ca` names the PEM
    /// certificate(s) to trust (otherwise the system's roots are).
    pub async fn connect(host: &Host, tls_ca: Option<&Path>) -> Result<Client> {
        let connect_error = |reason: String| Error::Connect {
            host: host.name.clone(),
            reason,
        };
        let tls = host.tls || tls_ca.is_some();
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", host.name))
            .map_err(|e| connect_error(root_cause(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if tls {
            fibers_flight::install_tls_provider();
            let mut config = ClientTlsConfig::new().domain_name(host.domain.clone());
            config = match tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        connect_error(format!("cannot read --tls-ca {}: {e}", path.display()))
                    })?;
                    config.ca_certificate(Certificate::from_pem(pem))
                }
                None => config.with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| connect_error(root_cause(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_error(root_cause(&e)))?;
        Ok(Client {
            flight: FlightSqlServiceClient::new(channel),
            host: host.clone(),
        })
    }

    /// Authenticates with the standard Flight handshake: the credentials
    /// go as HTTP basic auth on the Handshake call, and the bearer token
    /// of the response's `authorization` header goes with every later
    /// call.
    ///
    /// This is the exchange `FlightSqlServiceClient::handshake` performs;
    /// it is written out here because that method turns the server's
    /// status into text, and the shell must tell a wrong password from a
    /// server without authentication.
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Result<()> {
        let failed = |reason: String| Error::Authenticate {
            user: user.to_string(),
            host: self.host.name.clone(),
            reason,
        };
        let credentials = BASE64_STANDARD.encode(format!("{user}:{password}"));
        let header = MetadataValue::try_from(format!("Basic {credentials}"))
            .map_err(|_| failed("the credentials cannot be sent in a header".into()))?;
        let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
        request.metadata_mut().insert("authorization", header);
        let response = self
            .flight
            .inner_mut()
            .handshake(request)
            .await
            .map_err(|status| {
                failed(match status.code() {
                    Code::Unimplemented => "the server does not authenticate (it does not \
                                            implement the Flight handshake); connect without \
                                            --user"
                        .into(),
                    _ => status_message(&status),
                })
            })?;
        let token = match response.metadata().get("authorization") {
            None => {
                return Err(failed(
                    "the server accepted the handshake but sent no bearer token \
                     (no 'authorization' header)"
                        .into(),
                ));
            }
            Some(value) => {
                let value = value.to_str().map_err(|_| {
                    failed("the server's 'authorization' header is not text".into())
                })?;
                bearer_token(value).ok_or_else(|| {
                    failed("the server's 'authorization' header is not a bearer token".into())
                })?
            }
        };
        // The handshake's response messages carry nothing the shell needs,
        // but a failure among them is a failed handshake.
        response
            .into_inner()
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|status| failed(status_message(&status)))?;
        self.flight.set_token(token);
        Ok(())
    }

    /// Sends `sql` as a Flight SQL query (GetFlightInfo with
    /// CommandStatementQuery). Statements that change something run now;
    /// a query runs when its endpoints are fetched.
    pub async fn execute(&mut self, sql: &str) -> Result<FlightInfo> {
        Ok(self.flight.execute(sql.to_string(), None).await?)
    }

    /// Fetches one endpoint's rows (DoGet). Endpoints are fetched over
    /// this connection: DataFibers serves every endpoint itself, and
    /// the locations an endpoint may list are not followed.
    pub async fn fetch(&mut self, ticket: Ticket) -> Result<FlightRecordBatchStream> {
        Ok(self.flight.do_get(ticket).await?)
    }

    /// The objects of the given kinds (all when empty) whose names match
    /// the Flight SQL pattern `name_pattern`, with their schemas if asked:
    /// GetTables' rows, fetched whole (a catalog listing is small).
    pub async fn tables(
        &mut self,
        kinds: &[ObjectKind],
        name_pattern: Option<&str>,
        include_schema: bool,
    ) -> Result<Vec<RecordBatch>> {
        let info = self
            .flight
            .get_tables(CommandGetTables {
                table_name_filter_pattern: name_pattern.map(str::to_string),
                table_types: kinds.iter().map(|k| k.table_type().to_string()).collect(),
                include_schema,
                ..Default::default()
            })
            .await?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| {
                Error::Server("GetTables returned an endpoint without a ticket".into())
            })?;
            batches.extend(self.fetch(ticket).await?.try_collect::<Vec<_>>().await?);
        }
        Ok(batches)
    }
}

/// The token of a `Bearer TOKEN` header value (the scheme is
/// case-insensitive, as in RFC 6750).
fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(address: &str) -> String {
        let host = Host::parse(address).unwrap_or_else(|e| panic!("{address}: {e}"));
        assert!(!host.tls, "{address}");
        host.name
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(host("127.0.0.1:50051"), "127.0.0.1:50051");
        assert_eq!(host("http://localhost:7000"), "localhost:7000");
        assert_eq!(host("HTTP://localhost:7000/"), "localhost:7000");
        assert_eq!(host("localhost"), "localhost:50051");
        assert_eq!(host("[::1]:9000"), "[::1]:9000");
        assert_eq!(host("[::1]"), "[::1]:50051");
        assert_eq!(host(" db.example:1 "), "db.example:1");
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for address in [
            "",
            "http://",
            "host:port",
            "host:",
            "a:1/path",
            "user@h:1",
            "h:99999",
        ] {
            let error = Host::parse(address).expect_err(address);
            assert!(error.contains("is not an address"), "{address}: {error}");
        }
        let tls = Host::parse("https://h:1").unwrap();
        assert!(tls.tls && tls.name == "h:1" && tls.domain == "h", "{tls:?}");
        let other = Host::parse("grpc://h:1").unwrap_err();
        assert!(other.contains("unsupported scheme 'grpc://'"), "{other}");
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def".into()));
        assert_eq!(bearer_token("bearer  xyz "), Some("xyz".into()));
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
