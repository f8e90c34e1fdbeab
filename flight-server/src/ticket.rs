//! What a statement ticket's handle carries.
//!
//! The server keeps no per-request state: a ticket says everything `DoGet`
//! needs. A statement that returns rows travels as its SQL and runs when
//! the ticket is fetched; a statement that changes something has already
//! run when the ticket was issued, and its ticket carries the outcome
//! (`CREATE STREAM`), so fetching it twice never runs it twice.

use crate::{Error, Result};

const QUERY: u8 = b'Q';
const DONE: u8 = b'D';

/// The content of a `TicketStatementQuery` handle issued by this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatementTicket {
    /// A statement returning rows, run when fetched.
    Query(String),
    /// A statement that already ran, with the engine's outcome.
    Done(String),
}

impl StatementTicket {
    /// The handle bytes: one tag byte, then the UTF-8 text.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (tag, text) = match self {
            StatementTicket::Query(sql) => (QUERY, sql),
            StatementTicket::Done(outcome) => (DONE, outcome),
        };
        let mut handle = Vec::with_capacity(1 + text.len());
        handle.push(tag);
        handle.extend_from_slice(text.as_bytes());
        handle
    }

    /// Reads a handle; anything this server did not issue is an
    /// [`Error::InvalidRequest`].
    pub(crate) fn decode(handle: &[u8]) -> Result<Self> {
        let invalid = || Error::InvalidRequest("the ticket was not issued by this server".into());
        let (&tag, text) = handle.split_first().ok_or_else(invalid)?;
        let text = std::str::from_utf8(text)
            .map_err(|_| invalid())?
            .to_string();
        match tag {
            QUERY => Ok(StatementTicket::Query(text)),
            DONE => Ok(StatementTicket::Done(text)),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ticket in [
            StatementTicket::Query("SELECT 'é' AS x".into()),
            StatementTicket::Done("CREATE STREAM".into()),
            StatementTicket::Query(String::new()),
        ] {
            assert_eq!(StatementTicket::decode(&ticket.encode()).unwrap(), ticket);
        }
    }

    #[test]
    fn rejects_foreign_handles() {
        for handle in [&b""[..], b"Xfoo", b"Q\xff\xfe"] {
            let error = StatementTicket::decode(handle).unwrap_err();
            assert!(
                error.to_string().contains("not issued by this server"),
                "{error}"
            );
        }
    }
}
