//! Who may call the server: one user with a password, exchanged in a Flight
//! handshake for expiring bearer tokens.
//!
//! A client authenticates the way Flight clients do it (the Rust
//! `FlightSqlServiceClient::handshake`, pyarrow's `authenticate_basic_token`,
//! the ADBC Flight SQL driver given a username and password): a `Handshake`
//! call with the header `authorization: Basic base64(user:password)`. The
//! answer carries `authorization: Bearer <token>`, which every later call
//! sends. [`crate::guard`] enforces this around the whole service.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use arrow_flight::HandshakeResponse;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures::Stream;
use ring::hmac;
use ring::rand::SystemRandom;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::token::{TokenError, TokenSigner};
use crate::{Error, Result};

/// How long a bearer token stays valid unless configured otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The shortest token lifetime accepted: shorter tokens could expire
/// between the handshake and the first call.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(1);

/// Authentication settings: the one user allowed in, its password, and how
/// long the bearer tokens a handshake issues stay valid.
#[derive(Clone)]
pub struct AuthConfig {
    user: String,
    password: String,
    token_ttl: Duration,
}

impl AuthConfig {
    /// Lets `user` in with `password`; tokens live for
    /// [`DEFAULT_TOKEN_TTL`]. Both must be non-empty, and the user name
    /// cannot contain `:` (Basic authentication separates the two with
    /// the first `:`).
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Result<Self> {
        let user = user.into();
        let password = password.into();
        if user.is_empty() {
            return Err(Error::InvalidAuthConfig("the user name is empty".into()));
        }
        if user.contains(':') {
            return Err(Error::InvalidAuthConfig(format!(
                "the user name '{user}' contains ':', which Basic authentication cannot carry"
            )));
        }
        if password.is_empty() {
            return Err(Error::InvalidAuthConfig(format!(
                "the password of user '{user}' is empty"
            )));
        }
        Ok(AuthConfig {
            user,
            password,
            token_ttl: DEFAULT_TOKEN_TTL,
        })
    }

    /// Sets how long a token stays valid after the handshake that issued
    /// it; at least [`MIN_TOKEN_TTL`].
    pub fn with_token_ttl(mut self, token_ttl: Duration) -> Result<Self> {
        if token_ttl < MIN_TOKEN_TTL {
            return Err(Error::InvalidAuthConfig(format!(
                "the token lifetime {token_ttl:?} is shorter than the minimum of {}s",
                MIN_TOKEN_TTL.as_secs()
            )));
        }
        self.token_ttl = token_ttl;
        Ok(self)
    }

    /// The user allowed in.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// How long a token stays valid.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }
}

impl fmt::Debug for AuthConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// Why a call is refused; each becomes `Unauthenticated` at the gRPC edge,
/// with a message saying what to send instead. None says whether the user
/// name or the password was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    /// No `authorization` header at all.
    #[error(
        "this server requires authentication: no `authorization` header. {}",
        HOW_TO_AUTHENTICATE
    )]
    Missing,
    /// A header this server cannot read.
    #[error("the `authorization` header {0}. {HOW_TO_AUTHENTICATE}")]
    Malformed(&'static str),
    /// Basic credentials that do not match.
    #[error("invalid user name or password")]
    WrongCredentials,
    /// A handshake that presented a token instead of credentials.
    #[error(
        "a Flight handshake needs `authorization: Basic base64(user:password)`; \
         a bearer token cannot be exchanged for a new one"
    )]
    HandshakeWithoutCredentials,
    /// A bearer token that is malformed, foreign or expired.
    #[error("{0}; authenticate again with a Flight handshake (user and password) to get a new one")]
    Token(#[from] TokenError),
}

const HOW_TO_AUTHENTICATE: &str = "Authenticate with a Flight handshake carrying \
    `authorization: Basic base64(user:password)`, then send the `authorization: Bearer <token>` \
    header it returns on every call";

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Self {
        Status::unauthenticated(rejection.to_string())
    }
}

/// What an `authorization` header presents.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// `Basic base64(user:password)`.
    Basic { user: Vec<u8>, password: Vec<u8> },
    /// `Bearer <token>`.
    Bearer(&'a str),
}

/// Standard base64 with or without padding: Go's Flight client encodes
/// Basic credentials without it, most others with it.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longer headers are refused unread: no credentials this server accepts
/// come near it.
const MAX_HEADER_LEN: usize = 8 * 1024;

impl<'a> Presented<'a> {
    /// Reads an `authorization` header value. The scheme is
    /// case-insensitive (RFC 9110); messages never repeat the credentials.
    pub(crate) fn parse(header: &'a [u8]) -> Result<Self, Rejection> {
        if header.len() > MAX_HEADER_LEN {
            return Err(Rejection::Malformed("is too long"));
        }
        let header = std::str::from_utf8(header)
            .map_err(|_| Rejection::Malformed("is not UTF-8 text"))?
            .trim();
        let (scheme, value) = header.split_once(' ').ok_or(Rejection::Malformed(
            "has no scheme (expected `Bearer` or `Basic`)",
        ))?;
        let value = value.trim_start();
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Presented::Bearer(value))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = BASIC_BASE64
                .decode(value)
                .map_err(|_| Rejection::Malformed("has Basic credentials that are not base64"))?;
            let colon = decoded
                .iter()
                .position(|&b| b == b':')
                .ok_or(Rejection::Malformed(
                    "has Basic credentials without the ':' between user and password",
                ))?;
            Ok(Presented::Basic {
                user: decoded[..colon].to_vec(),
                password: decoded[colon + 1..].to_vec(),
            })
        } else {
            Err(Rejection::Malformed(
                "has an unsupported scheme (expected `Bearer` or `Basic`)",
            ))
        }
    }
}

/// Checks credentials and tokens for one configured user.
pub(crate) struct Authenticator {
    /// HMAC tags of the configured user name and password under
    /// `compare_key`: comparing tags of the presented values against them
    /// takes the same time whatever the values and their lengths.
    user_tag: Vec<u8>,
    password_tag: Vec<u8>,
    compare_key: hmac::Key,
    tokens: TokenSigner,
}

impl Authenticator {
    /// Prepares to check `config`'s credentials; draws the keys.
    pub(crate) fn new(config: &AuthConfig) -> Result<Self> {
        let compare_key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| Error::Random)?;
        Ok(Authenticator {
            user_tag: hmac::sign(&compare_key, config.user.as_bytes())
                .as_ref()
                .to_vec(),
            password_tag: hmac::sign(&compare_key, config.password.as_bytes())
                .as_ref()
                .to_vec(),
            compare_key,
            tokens: TokenSigner::new(config.token_ttl)?,
        })
    }

    /// Whether `user` and `password` are the configured ones, in time that
    /// does not depend on where they differ: both are always compared.
    pub(crate) fn check_credentials(&self, user: &[u8], password: &[u8]) -> Result<(), Rejection> {
        let user_ok = hmac::verify(&self.compare_key, user, &self.user_tag).is_ok();
        let password_ok = hmac::verify(&self.compare_key, password, &self.password_tag).is_ok();
        // `&`, not `&&`: no short cut that would time which one failed.
        if user_ok & password_ok {
            Ok(())
        } else {
            Err(Rejection::WrongCredentials)
        }
    }

    /// Admits an ordinary call presenting `header`: a valid bearer token,
    /// or (for clients that skip the handshake) Basic credentials.
    pub(crate) fn admit(&self, header: &[u8]) -> Result<(), Rejection> {
        match Presented::parse(header)? {
            Presented::Bearer(token) => Ok(self.tokens.verify(token)?),
            Presented::Basic { user, password } => self.check_credentials(&user, &password),
        }
    }

    /// Runs the server side of a handshake presenting `header`: checks the
    /// Basic credentials and issues a token.
    pub(crate) fn handshake(&self, header: &[u8]) -> Result<IssuedToken, HandshakeError> {
        match Presented::parse(header)? {
            Presented::Basic { user, password } => {
                self.check_credentials(&user, &password)?;
                Ok(IssuedToken(self.tokens.issue()?))
            }
            Presented::Bearer(_) => Err(Rejection::HandshakeWithoutCredentials.into()),
        }
    }
}

/// A token issued by a successful handshake, handed from the guard to the
/// service's `Handshake` method in the request's extensions.
#[derive(Clone)]
pub(crate) struct IssuedToken(pub(crate) String);

impl fmt::Debug for IssuedToken {
    /// Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedToken(<redacted>)")
    }
}

/// The response stream of a Flight `Handshake`.
pub(crate) type HandshakeStream =
    Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// Answers a `Handshake` the guard let through. With a token issued, it
/// goes back in the `authorization: Bearer` header (where Flight clients
/// look for it) and as the payload of the one response; without
/// authentication the response is empty. The request stream is not read:
/// the credentials travel in the header, and clients such as Go's close
/// their side without sending any message.
pub(crate) fn handshake_response<T>(
    request: &Request<T>,
) -> Result<Response<HandshakeStream>, Status> {
    let token = request.extensions().get::<IssuedToken>();
    let payload = token.map(|IssuedToken(token)| token.clone().into_bytes());
    let message = HandshakeResponse {
        protocol_version: 0,
        payload: payload.unwrap_or_default().into(),
    };
    let stream: HandshakeStream = Box::pin(futures::stream::once(async { Ok(message) }));
    let mut response = Response::new(stream);
    if let Some(IssuedToken(token)) = token {
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| Status::internal(format!("cannot send the issued token: {e}")))?;
        response.metadata_mut().insert("authorization", header);
    }
    Ok(response)
}

/// Why a handshake failed: refused credentials, or (rarely) no randomness
/// to make a token with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The client's to fix.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The server's.
    #[error("cannot issue a token: {0}")]
    Issue(#[from] Error),
}

impl From<HandshakeError> for Status {
    fn from(error: HandshakeError) -> Self {
        match error {
            HandshakeError::Rejected(rejection) => rejection.into(),
            HandshakeError::Issue(_) => Status::internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    use super::*;

    fn basic(credentials: &str) -> String {
        format!("Basic {}", STANDARD.encode(credentials))
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig::new("alice", "s3cret:pw").unwrap()).unwrap()
    }

    #[test]
    fn parses_basic_and_bearer_headers() {
        assert_eq!(
            Presented::parse(basic("alice:s3cret:pw").as_bytes()),
            Ok(Presented::Basic {
                user: b"alice".to_vec(),
                password: b"s3cret:pw".to_vec()
            })
        );
        // Go's client leaves out the padding; schemes are case-insensitive.
        let unpadded = format!("basic  {}", STANDARD_NO_PAD.encode("al:x"));
        assert_eq!(
            Presented::parse(unpadded.as_bytes()),
            Ok(Presented::Basic {
                user: b"al".to_vec(),
                password: b"x".to_vec()
            })
        );
        assert_eq!(
            Presented::parse(b"Bearer abc-_123"),
            Ok(Presented::Bearer("abc-_123"))
        );
        assert_eq!(
            Presented::parse(b"BEARER abc"),
            Ok(Presented::Bearer("abc"))
        );
    }

    #[test]
    fn refuses_malformed_headers_without_repeating_them() {
        let cases: [(Vec<u8>, &str); 6] = [
            (b"Basic !!!notbase64".to_vec(), "not base64"),
            (basic("alice-no-colon").into_bytes(), "without the ':'"),
            (b"Token abc".to_vec(), "unsupported scheme"),
            (b"sometokenwithoutscheme".to_vec(), "has no scheme"),
            (b"Bearer \xff\xfe".to_vec(), "not UTF-8"),
            (vec![b'a'; MAX_HEADER_LEN + 1], "too long"),
        ];
        for (header, expected) in cases {
            let error = Presented::parse(&header).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("Flight handshake"), "{error}");
            assert!(
                !error.contains("notbase64") && !error.contains("sometoken"),
                "{error}"
            );
        }
    }

    #[test]
    fn credentials_match_only_exactly() {
        let auth = authenticator();
        assert_eq!(auth.check_credentials(b"alice", b"s3cret:pw"), Ok(()));
        for (user, password) in [
            (&b"alice"[..], &b"s3cret"[..]),
            (b"alice", b"s3cret:pw!"),
            (b"alice", b""),
            (b"Alice", b"s3cret:pw"),
            (b"alic", b"s3cret:pw"),
            (b"", b""),
            (b"bob", b"s3cret:pw"),
        ] {
            assert_eq!(
                auth.check_credentials(user, password),
                Err(Rejection::WrongCredentials),
                "{user:?} {password:?}"
            );
        }
        // One message whichever part is wrong.
        assert_eq!(
            Status::from(Rejection::WrongCredentials).message(),
            "invalid user name or password"
        );
    }

    #[test]
    fn a_handshake_exchanges_credentials_for_a_token() {
        let auth = authenticator();
        let IssuedToken(token) = auth.handshake(basic("alice:s3cret:pw").as_bytes()).unwrap();
        assert_eq!(auth.admit(format!("Bearer {token}").as_bytes()), Ok(()));
        assert_eq!(auth.admit(basic("alice:s3cret:pw").as_bytes()), Ok(()));

        let wrong = auth.handshake(basic("alice:nope").as_bytes()).unwrap_err();
        assert_eq!(Status::from(wrong).code(), tonic::Code::Unauthenticated);
        let with_token = auth
            .handshake(format!("Bearer {token}").as_bytes())
            .unwrap_err();
        let status = Status::from(with_token);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().contains("needs `authorization: Basic"),
            "{status}"
        );

        let foreign = auth.admit(b"Bearer AAAA").unwrap_err().to_string();
        assert!(
            foreign.contains("malformed") && foreign.contains("handshake"),
            "{foreign}"
        );
    }

    #[test]
    fn settings_are_validated() {
        let error = |result: Result<AuthConfig>| result.unwrap_err().to_string();
        assert!(error(AuthConfig::new("", "pw")).contains("user name is empty"));
        assert!(error(AuthConfig::new("a:b", "pw")).contains("contains ':'"));
        assert!(error(AuthConfig::new("alice", "")).contains("password of user 'alice' is empty"));
        let short = AuthConfig::new("alice", "pw")
            .unwrap()
            .with_token_ttl(Duration::from_millis(500));
        assert!(error(short).contains("shorter than the minimum of 1s"));

        let config = AuthConfig::new("alice", "pw").unwrap();
        assert_eq!(config.token_ttl(), DEFAULT_TOKEN_TTL);
        let debug = format!("{config:?}");
        assert!(
            debug.contains("alice") && !debug.contains("\"pw\""),
            "{debug}"
        );
    }
}
