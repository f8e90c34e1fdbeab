//! `fibers serve` with authentication and TLS, through real clients: the
//! Flight SQL client's handshake, raw Flight calls to see status codes and
//! headers, token expiry, the loopback rule and TLS with a self-signed
//! certificate.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, HandshakeRequest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};

use crate::server::{Server, fetch, query};

pub(crate) const PASSWORD: &str = "correct horse";

/// What `SELECT 1 AS one` returns.
const ONE: &str = "+-----+\n| one |\n+-----+\n| 1   |\n+-----+";

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A server requiring user `alice` with [`PASSWORD`].
pub(crate) fn start_with_auth(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--user", "alice"];
    args.extend_from_slice(extra);
    Server::start_with_env(dir, &args, &[("FIBERS_PASSWORD", PASSWORD)])
}

pub(crate) async fn raw_client(server: &Server) -> FlightServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .expect("endpoint URL")
        .connect()
        .await
        .expect("connect to fibers serve");
    FlightServiceClient::new(channel)
}

fn with_authorization<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("header value"));
    }
    request
}

/// GetFlightInfo for `SHOW STREAMS`, the first call of any query.
async fn raw_query(
    client: &mut FlightServiceClient<Channel>,
    authorization: Option<&str>,
) -> Result<(), Status> {
    let command = CommandStatementQuery {
        query: "SHOW STREAMS".to_string(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    client
        .get_flight_info(with_authorization(descriptor, authorization))
        .await
        .map(|_| ())
}

/// A handshake; returns the `authorization` response header and the
/// payloads.
pub(crate) async fn raw_handshake(
    client: &mut FlightServiceClient<Channel>,
    authorization: Option<&str>,
) -> Result<(Option<String>, Vec<Vec<u8>>), Status> {
    let requests = futures::stream::iter([HandshakeRequest::default()]);
    let response = client
        .handshake(with_authorization(requests, authorization))
        .await?;
    let header = response
        .metadata()
        .get("authorization")
        .map(|value| value.to_str().expect("ASCII header").to_string());
    let payloads = response
        .into_inner()
        .map_ok(|message| message.payload.to_vec())
        .try_collect()
        .await?;
    Ok((header, payloads))
}

fn assert_unauthenticated(result: Result<impl std::fmt::Debug, Status>, expected: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    assert!(status.message().contains(expected), "{status}");
}

/// Runs `fibers serve`, expecting it to refuse to start; returns stderr.
fn serve_fails(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fibers"))
        .args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .env_remove("FIBERS_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run fibers serve");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "fibers serve started: {stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_user_calls_need_no_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path());
    let mut client = server.client().await;

    query(&mut client, "SHOW STREAMS")
        .await
        .expect("a query without a handshake");
    // Clients that always handshake still can: nothing to hand out.
    let payload = client
        .handshake("anyone", "anything")
        .await
        .expect("a handshake without authentication");
    assert!(payload.is_empty());
    assert_eq!(client.token(), None);

    let (_, stderr) = server.terminate();
    assert!(
        stderr.contains("authentication off (loopback only); TLS off"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_user_calls_need_a_token_from_the_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start_with_auth(dir.path(), &[]);
    let mut raw = raw_client(&server).await;

    assert_unauthenticated(
        raw_query(&mut raw, None).await,
        "no `authorization` header. Authenticate with a Flight handshake",
    );
    assert_unauthenticated(raw_handshake(&mut raw, None).await, "Flight handshake");
    // The same answer whichever half is wrong.
    for (user, password) in [("alice", "wrong"), ("mallory", PASSWORD), ("alice", "")] {
        let refused = raw_handshake(&mut raw, Some(&basic(user, password))).await;
        let status = refused.expect_err("wrong credentials");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "invalid user name or password");
    }
    assert_unauthenticated(
        raw_query(&mut raw, Some("Bearer not-a-token")).await,
        "the bearer token is malformed",
    );
    assert_unauthenticated(
        raw_query(&mut raw, Some("Token abc")).await,
        "unsupported scheme",
    );

    // The token comes back in the header and as the payload.
    let (header, payloads) = raw_handshake(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect("handshake with the right credentials");
    let token = header
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("an `authorization: Bearer` header");
    assert_eq!(payloads, vec![token.as_bytes().to_vec()]);
    raw_query(&mut raw, Some(&format!("Bearer {token}")))
        .await
        .expect("a call with the token");
    // Clients that skip the handshake may send Basic credentials instead.
    raw_query(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect("a call with Basic credentials");

    // The Flight SQL client keeps the token and sends it on every call,
    // DoGet included.
    let mut client = server.client().await;
    let error = query(&mut client, "SHOW STREAMS")
        .await
        .expect_err("a query before the handshake");
    assert!(error.contains("no `authorization` header"), "{error}");
    let wrong = client
        .handshake("alice", "nope")
        .await
        .expect_err("a handshake with a wrong password")
        .to_string();
    assert!(wrong.contains("invalid user name or password"), "{wrong}");
    let payload = client
        .handshake("alice", PASSWORD)
        .await
        .expect("handshake");
    assert_eq!(client.token().map(String::as_bytes), Some(&payload[..]));
    let one = query(&mut client, "SELECT 1 AS one")
        .await
        .expect("a query after the handshake");
    assert_eq!(one, ONE);
    let info = client.get_catalogs().await.expect("GetCatalogs");
    let catalogs = fetch(&mut client, info).await.expect("GetCatalogs rows");
    assert_eq!(catalogs.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    let (_, stderr) = server.terminate();
    assert!(
        stderr.contains("authentication on (user 'alice', tokens expire after 12h); TLS off"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_naming_expiry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        "[auth]\nuser = \"alice\"\npassword_env = \"ALICE_PASSWORD\"\ntoken_ttl = \"2s\"\n",
    )
    .expect("write the config file");
    let config = config.to_str().expect("UTF-8 path");
    let server = Server::start_with_env(
        dir.path(),
        &["--config", config],
        &[("ALICE_PASSWORD", PASSWORD)],
    );
    let mut raw = raw_client(&server).await;

    let issued = Instant::now();
    let (header, _) = raw_handshake(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect("handshake");
    let bearer = header.expect("a token");
    raw_query(&mut raw, Some(&bearer))
        .await
        .expect("a call with a fresh token");

    tokio::time::sleep(
        (issued + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_unauthenticated(raw_query(&mut raw, Some(&bearer)).await, "expired");
    let status = raw_query(&mut raw, Some(&bearer)).await.unwrap_err();
    assert!(
        status
            .message()
            .contains("authenticate again with a Flight handshake"),
        "{status}"
    );
    // A new handshake gives a new token.
    let (header, _) = raw_handshake(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect("handshake again");
    raw_query(&mut raw, Some(&header.expect("a new token")))
        .await
        .expect("a call with the new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_a_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = serve_fails(dir.path(), &["--listen", "0.0.0.0:0"], &[]);
    assert!(
        refused.contains(
            "refusing to listen on 0.0.0.0:0 without authentication: anyone who can reach it \
             could run statements. Configure a user (--user NAME with the password in \
             FIBERS_PASSWORD, or [auth] in the --config file)"
        ),
        "{refused}"
    );

    let mut server = start_with_auth(dir.path(), &["--listen", "0.0.0.0:0"]);
    let mut client = server.client().await;
    client
        .handshake("alice", PASSWORD)
        .await
        .expect("handshake");
    query(&mut client, "SHOW STREAMS")
        .await
        .expect("a query after the handshake");
    let (_, stderr) = server.terminate();
    assert!(
        stderr.contains("warning: serving 0.0.0.0:0 without TLS: passwords and tokens cross"),
        "{stderr}"
    );
}

#[test]
fn misconfigured_authentication_or_tls_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let no_password = serve_fails(dir.path(), &["--user", "alice"], &[]);
    assert!(
        no_password.contains("user 'alice' has no password: set the FIBERS_PASSWORD"),
        "{no_password}"
    );

    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "[auth]\nuser = \"alice\"\npasword = \"typo\"\n").expect("write");
    let typo = serve_fails(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    assert!(
        typo.contains(&format!("invalid config file {}", config.display()))
            && typo.contains("unknown field `pasword`"),
        "{typo}"
    );

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let no_cert = serve_fails(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            missing,
            "--tls-key",
            missing,
        ],
        &[],
    );
    assert!(
        no_cert.contains(&format!("TLS certificate {missing}: cannot be read")),
        "{no_cert}"
    );
    // Nothing was started: the data dir was never opened.
    assert!(!dir.path().join("data").exists());
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written to
/// `dir`; returns the certificate PEM and both paths.
pub fn self_signed_certificate(dir: &Path) -> (String, String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate a certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    (
        cert_pem,
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

async fn tls_channel(server: &Server, tls: ClientTlsConfig) -> Result<Channel, String> {
    Channel::from_shared(format!("https://localhost:{}", server.address.port()))
        .expect("endpoint URL")
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert_pem, cert, key) = self_signed_certificate(dir.path());
    let mut server = Server::start_with(dir.path(), &["--tls-cert", &cert, "--tls-key", &key]);

    let trusting = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = tls_channel(&server, trusting)
        .await
        .expect("a TLS connection trusting the certificate");
    let mut client = FlightSqlServiceClient::new(channel);
    let one = query(&mut client, "SELECT 1 AS one")
        .await
        .expect("a query over TLS");
    assert_eq!(one, ONE);

    // A client that does not trust it cannot connect.
    let untrusting = ClientTlsConfig::new().domain_name("localhost");
    let refused = match tls_channel(&server, untrusting).await {
        Ok(channel) => query(&mut FlightSqlServiceClient::new(channel), "SHOW STREAMS")
            .await
            .expect_err("a query without trusting the certificate"),
        Err(e) => e,
    };
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");

    // Nor can a plain-text client.
    let plain = tokio::time::timeout(Duration::from_secs(30), async {
        let channel = Channel::from_shared(format!("http://{}", server.address))
            .expect("endpoint URL")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        query(&mut FlightSqlServiceClient::new(channel), "SHOW STREAMS").await
    })
    .await
    .expect("the plain-text attempt ends");
    assert!(plain.is_err(), "a plain-text query succeeded: {plain:?}");

    let (_, stderr) = server.terminate();
    assert!(stderr.contains(&format!("TLS on ({cert})")), "{stderr}");
}
