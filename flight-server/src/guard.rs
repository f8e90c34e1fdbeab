//! Authentication enforced around the Flight service, before any handler
//! runs, so no method (present or added later) can forget it.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::header::AUTHORIZATION;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_service::Service;

use crate::auth::{Authenticator, HandshakeError, Rejection};
use crate::throttle::LoginThrottle;

/// The gRPC path of Flight's `Handshake`, the one call that authenticates
/// with credentials rather than a token.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Wraps the Flight service: with an [`Authenticator`], a call gets through
/// only with a valid `authorization` header, and a `Handshake` with good
/// credentials gets through carrying the token it issued (see
/// [`crate::auth::handshake_response`]); everything else is answered
/// `Unauthenticated` here. Without one, every call gets through.
///
/// Wrong credentials spend the client address's budget of failed logins
/// ([`LoginThrottle`]); past it, its logins are refused unchecked for a
/// while, so passwords cannot be guessed at the speed of the network.
#[derive(Clone)]
pub(crate) struct AuthGuard<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
    throttle: Arc<LoginThrottle>,
}

impl<S> AuthGuard<S> {
    /// Guards `inner` with `auth`, or lets everything through if `None`.
    pub(crate) fn new(inner: S, auth: Option<Arc<Authenticator>>) -> Self {
        AuthGuard {
            inner,
            auth,
            throttle: Arc::default(),
        }
    }
}

impl<S: NamedService> NamedService for AuthGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for AuthGuard<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible> + Clone,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(auth) = &self.auth {
            let client = client_address(&request);
            if let Some(client) = client
                && presents_credentials(&request)
                && let Err(wait) = self.throttle.check(client)
            {
                tracing::warn!("login from {client} refused unchecked: too many failed logins");
                let status = Status::resource_exhausted(format!(
                    "too many failed logins from this address; try again in {} s",
                    wait.as_secs().max(1)
                ));
                return Either::Right(ready(Ok(status.into_http())));
            }
            if let Err((status, wrong_credentials)) = authorize(auth, &mut request) {
                if wrong_credentials && let Some(client) = client {
                    tracing::warn!("failed login from {client}");
                    self.throttle.failed(client);
                }
                return Either::Right(ready(Ok(status.into_http())));
            }
        }
        // Call the instance `poll_ready` readied; keep a clone for the next.
        let fresh = self.inner.clone();
        let mut readied = std::mem::replace(&mut self.inner, fresh);
        Either::Left(readied.call(request))
    }
}

/// Checks `request`'s `authorization` header(s). A handshake must present
/// Basic credentials and gets the issued token in its extensions; any
/// other call may present either a bearer token or Basic credentials.
/// When several headers are sent, one that passes is enough; otherwise the
/// first one's rejection is reported. The header is removed once checked,
/// so credentials go no further than this.
/// A refusal also says whether credentials were wrong (rather than
/// missing, malformed or a token), which counts against the client.
fn authorize<B>(
    auth: &Authenticator,
    request: &mut http::Request<B>,
) -> Result<(), (Status, bool)> {
    let handshake = request.uri().path() == HANDSHAKE_PATH;
    let mut first_error: Option<Status> = None;
    let mut wrong_credentials = false;
    let mut issued = None;
    for header in request.headers().get_all(AUTHORIZATION) {
        let outcome = if handshake {
            auth.handshake(header.as_bytes()).map(Some)
        } else {
            auth.admit(header.as_bytes())
                .map(|()| None)
                .map_err(HandshakeError::from)
        };
        match outcome {
            Ok(token) => {
                issued = Some(token);
                break;
            }
            Err(error) => {
                wrong_credentials |=
                    matches!(error, HandshakeError::Rejected(Rejection::WrongCredentials));
                first_error.get_or_insert_with(|| error.into());
            }
        }
    }
    let Some(token) = issued else {
        let status = first_error.unwrap_or_else(|| Rejection::Missing.into());
        return Err((status, wrong_credentials));
    };
    request.headers_mut().remove(AUTHORIZATION);
    if let Some(token) = token {
        request.extensions_mut().insert(token);
    }
    Ok(())
}

/// The address of the client that sent `request`, over TCP or TLS.
fn client_address<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(TlsConnectInfo::get_ref)
    })?;
    tcp.remote_addr().map(|a| a.ip().to_canonical())
}

/// Whether `request` presents a user and password (Basic), the kind of
/// login the throttle guards.
fn presents_credentials<B>(request: &http::Request<B>) -> bool {
    request.headers().get_all(AUTHORIZATION).iter().any(|h| {
        h.as_bytes()
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
    })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Waker;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use tonic::Code;

    use super::*;
    use crate::auth::{AuthConfig, IssuedToken};

    /// What reached the service: the path, the token that came along and
    /// whether the authorization header did.
    type Seen = (String, Option<String>, bool);

    /// Records the calls that reach it.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    }

    impl Service<http::Request<()>> for Recorder {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            self.seen.lock().unwrap().push((
                request.uri().path().to_string(),
                request
                    .extensions()
                    .get::<IssuedToken>()
                    .map(|t| t.0.clone()),
                request.headers().contains_key(AUTHORIZATION),
            ));
            ready(Ok(http::Response::new(Body::empty())))
        }
    }

    fn call(guard: &mut AuthGuard<Recorder>, path: &str, headers: &[&str]) -> Result<(), Status> {
        let mut request = http::Request::builder().uri(path);
        for header in headers {
            request = request.header(AUTHORIZATION, *header);
        }
        let future = guard.call(request.body(()).unwrap());
        let Poll::Ready(Ok(response)) = pin!(future).poll(&mut Context::from_waker(Waker::noop()))
        else {
            panic!("the guard answers at once");
        };
        match Status::from_header_map(response.headers()) {
            Some(status) if status.code() != Code::Ok => Err(status),
            _ => Ok(()),
        }
    }

    fn guard() -> (AuthGuard<Recorder>, Recorder) {
        let auth = Authenticator::new(&AuthConfig::new("alice", "pw").unwrap()).unwrap();
        let recorder = Recorder::default();
        (
            AuthGuard::new(recorder.clone(), Some(Arc::new(auth))),
            recorder,
        )
    }

    const GET_FLIGHT_INFO: &str = "/arrow.flight.protocol.FlightService/GetFlightInfo";

    #[test]
    fn calls_need_a_token_from_a_handshake() {
        let (mut guard, recorder) = guard();
        let basic = format!("Basic {}", STANDARD.encode("alice:pw"));

        let missing = call(&mut guard, GET_FLIGHT_INFO, &[]).unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        assert!(
            missing.message().contains("no `authorization` header"),
            "{missing}"
        );
        let no_credentials = call(&mut guard, HANDSHAKE_PATH, &[]).unwrap_err();
        assert_eq!(no_credentials.code(), Code::Unauthenticated);
        let wrong = format!("Basic {}", STANDARD.encode("alice:nope"));
        let refused = call(&mut guard, HANDSHAKE_PATH, &[&wrong]).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(
            recorder.seen.lock().unwrap().is_empty(),
            "nothing got through"
        );

        call(&mut guard, HANDSHAKE_PATH, &[&basic]).unwrap();
        let token = {
            let seen = recorder.seen.lock().unwrap();
            let (path, token, header) = &seen[0];
            assert_eq!(path, HANDSHAKE_PATH);
            assert!(!header, "credentials are not passed on");
            token.clone().expect("a token for the handshake")
        };

        // A stale header first, the token second: one good one is enough.
        call(
            &mut guard,
            GET_FLIGHT_INFO,
            &["Bearer stale", &format!("Bearer {token}")],
        )
        .unwrap();
        call(&mut guard, GET_FLIGHT_INFO, &[&basic]).unwrap();
        let seen = recorder.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], (GET_FLIGHT_INFO.to_string(), None, false));
    }

    #[test]
    fn without_authentication_everything_gets_through() {
        let recorder = Recorder::default();
        let mut guard = AuthGuard::new(recorder.clone(), None);
        call(&mut guard, GET_FLIGHT_INFO, &[]).unwrap();
        call(&mut guard, HANDSHAKE_PATH, &["Bearer whatever"]).unwrap();
        let seen = recorder.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1, None, "no token is issued");
    }
}
