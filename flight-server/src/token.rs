//! Bearer tokens: what a Flight handshake hands out and every later call
//! presents.
//!
//! A token is signed, not stored: `base64url(expiry ‖ nonce ‖ tag)` where
//! `expiry` is when it stops being valid (milliseconds after the signer
//! was created, big-endian u64), `nonce` is 32 random bytes from the
//! operating system and `tag` is HMAC-SHA256 over both under a key drawn
//! at start-up. We chose this over random tokens kept in a map because
//! verification then needs no shared state or lock, memory does not grow
//! with the number of handshakes, and expired tokens need no clean-up.
//! What it gives up is revoking one token early; nothing revokes tokens
//! yet (there is no logout). Like tokens in a map, they do not outlive the
//! process: a restart draws a new key.
//!
//! Expiry counts on the monotonic clock ([`Instant`]), so changing the
//! wall clock neither extends nor cuts a token's life. Verification
//! compares the tag in constant time (`ring::hmac::verify`) and checks the
//! expiry only once the tag is genuine, so a forged token learns nothing.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

const EXPIRY_LEN: usize = 8;
const NONCE_LEN: usize = 32;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = EXPIRY_LEN + NONCE_LEN + TAG_LEN;

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not base64url, or not the length this server issues.
    #[error("the bearer token is malformed (not one this server issues)")]
    Malformed,
    /// Well-formed, but the signature does not match: issued by another
    /// server, by this one before a restart, or altered.
    #[error(
        "the bearer token was not issued by this server process (tokens do not survive \
         a restart) or was altered"
    )]
    NotIssuedHere,
    /// Genuine, but past its expiry.
    #[error("the bearer token expired {} seconds ago", .ago.as_secs())]
    Expired {
        /// How long ago it expired.
        ago: Duration,
    },
}

/// Issues and verifies bearer tokens valid for a fixed time to live.
pub(crate) struct TokenSigner {
    key: hmac::Key,
    random: SystemRandom,
    /// Expiries count from here.
    epoch: Instant,
    ttl: Duration,
}

impl TokenSigner {
    /// A signer with a fresh random key; its tokens live for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Result<Self> {
        let random = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &random).map_err(|_| Error::Random)?;
        Ok(TokenSigner {
            key,
            random,
            epoch: Instant::now(),
            ttl,
        })
    }

    /// A new token, valid for the time to live from now.
    pub(crate) fn issue(&self) -> Result<String> {
        self.issue_at(Instant::now())
    }

    /// Checks that `token` was issued here and has not expired.
    pub(crate) fn verify(&self, token: &str) -> Result<(), TokenError> {
        self.verify_at(token, Instant::now())
    }

    fn issue_at(&self, now: Instant) -> Result<String> {
        let expiry = self
            .millis_since_epoch(now)
            .saturating_add(millis(self.ttl));
        let mut token = [0u8; TOKEN_LEN];
        token[..EXPIRY_LEN].copy_from_slice(&expiry.to_be_bytes());
        self.random
            .fill(&mut token[EXPIRY_LEN..EXPIRY_LEN + NONCE_LEN])
            .map_err(|_| Error::Random)?;
        let tag = hmac::sign(&self.key, &token[..EXPIRY_LEN + NONCE_LEN]);
        token[EXPIRY_LEN + NONCE_LEN..].copy_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(token))
    }

    fn verify_at(&self, token: &str, now: Instant) -> Result<(), TokenError> {
        // Longer input cannot be a token; refuse it before decoding.
        if token.len() > URL_SAFE_NO_PAD_LEN {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = bytes.split_at(EXPIRY_LEN + NONCE_LEN);
        hmac::verify(&self.key, signed, tag).map_err(|_| TokenError::NotIssuedHere)?;
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(&signed[..EXPIRY_LEN]);
        let expiry = u64::from_be_bytes(expiry);
        let now = self.millis_since_epoch(now);
        if now >= expiry {
            return Err(TokenError::Expired {
                ago: Duration::from_millis(now - expiry),
            });
        }
        Ok(())
    }

    fn millis_since_epoch(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

/// The length of an encoded token: 4 characters per 3 bytes, unpadded.
const URL_SAFE_NO_PAD_LEN: usize = (TOKEN_LEN * 4).div_ceil(3);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_token_is_valid_until_its_time_to_live_has_passed() {
        let signer = TokenSigner::new(HOUR).unwrap();
        let start = signer.epoch + Duration::from_secs(10);
        let token = signer.issue_at(start).unwrap();
        assert_eq!(token.len(), URL_SAFE_NO_PAD_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );

        assert_eq!(signer.verify_at(&token, start), Ok(()));
        assert_eq!(
            signer.verify_at(&token, start + HOUR - Duration::from_millis(1)),
            Ok(())
        );
        assert_eq!(
            signer.verify_at(&token, start + HOUR),
            Err(TokenError::Expired {
                ago: Duration::ZERO
            })
        );
        let late = signer.verify_at(&token, start + HOUR + Duration::from_secs(90));
        assert_eq!(
            late,
            Err(TokenError::Expired {
                ago: Duration::from_secs(90)
            })
        );
        assert_eq!(
            late.unwrap_err().to_string(),
            "the bearer token expired 90 seconds ago"
        );
    }

    #[test]
    fn tokens_are_random_and_verified_with_the_current_time() {
        let signer = TokenSigner::new(Duration::from_secs(1)).unwrap();
        let first = signer.issue().unwrap();
        let second = signer.issue().unwrap();
        assert_ne!(first, second, "each token carries its own random nonce");
        assert_eq!(signer.verify(&first), Ok(()));
    }

    #[test]
    fn tokens_of_another_signer_or_altered_are_refused() {
        let signer = TokenSigner::new(HOUR).unwrap();
        let token = signer.issue().unwrap();

        // Another process (or this one before a restart) has another key.
        let other = TokenSigner::new(HOUR).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::NotIssuedHere));

        // Pushing the expiry out breaks the signature.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[0] ^= 0x01;
        let extended = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(signer.verify(&extended), Err(TokenError::NotIssuedHere));

        // So does changing one bit of the tag.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[TOKEN_LEN - 1] ^= 0x80;
        let altered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(signer.verify(&altered), Err(TokenError::NotIssuedHere));
    }

    #[test]
    fn malformed_tokens_are_refused_as_malformed() {
        let signer = TokenSigner::new(HOUR).unwrap();
        let token = signer.issue().unwrap();
        for bad in [
            String::new(),
            "not base64!".to_string(),
            token[..token.len() - 4].to_string(),
            format!("{token}AAAA"),
            "A".repeat(10_000),
        ] {
            assert_eq!(signer.verify(&bad), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_huge_time_to_live_saturates_instead_of_overflowing() {
        let signer = TokenSigner::new(Duration::MAX).unwrap();
        let token = signer.issue().unwrap();
        assert_eq!(
            signer.verify_at(&token, signer.epoch + Duration::from_secs(1 << 40)),
            Ok(())
        );
    }
}
