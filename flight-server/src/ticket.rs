//! What ticket and prepared statement handles carry.
//!
//! The server keeps no per-request state: a handle says everything the
//! next call needs. A statement that returns rows travels as its SQL (with
//! its bound parameters, if any) and runs when the ticket is fetched; a
//! statement that changes something has already run when the ticket was
//! issued, and its ticket carries the outcome (`CREATE STREAM`), so
//! fetching it twice never runs it twice.
//!
//! A prepared statement's handle is its SQL; binding parameters returns a
//! new handle carrying them too (Flight SQL's stateless prepared
//! statements), so a server restart or another replica can run it.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

const QUERY: u8 = b'Q';
const DONE: u8 = b'D';
const PREPARED: u8 = b'P';

/// The content of a `TicketStatementQuery` handle issued by this server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StatementTicket {
    /// A statement returning rows, run when fetched, with the values of
    /// its parameters.
    Query(Statement),
    /// A statement that already ran, with the engine's outcome.
    Done(String),
}

/// A statement's SQL and its bound parameters (one row, a column each).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub sql: String,
    pub parameters: Option<RecordBatch>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            parameters: None,
        }
    }

    /// One tag byte, the SQL's length (4 bytes, little-endian), the SQL,
    /// then the parameters as an Arrow IPC stream, if any.
    fn encode(&self, tag: u8) -> Result<Vec<u8>> {
        let sql = self.sql.as_bytes();
        let length = u32::try_from(sql.len())
            .map_err(|_| Error::InvalidRequest("the SQL text is too long".into()))?;
        let mut handle = Vec::with_capacity(5 + sql.len());
        handle.push(tag);
        handle.extend_from_slice(&length.to_le_bytes());
        handle.extend_from_slice(sql);
        if let Some(parameters) = &self.parameters {
            let mut writer = StreamWriter::try_new(&mut handle, &parameters.schema())?;
            writer.write(parameters)?;
            writer.finish()?;
        }
        Ok(handle)
    }

    fn decode(body: &[u8]) -> Result<Self> {
        let (length, rest) = body.split_first_chunk::<4>().ok_or_else(foreign)?;
        let length = usize::try_from(u32::from_le_bytes(*length)).map_err(|_| foreign())?;
        if rest.len() < length {
            return Err(foreign());
        }
        let (sql, parameters) = rest.split_at(length);
        let sql = std::str::from_utf8(sql).map_err(|_| foreign())?.to_string();
        let parameters = if parameters.is_empty() {
            None
        } else {
            // Arrow's reader can panic on damaged buffers: a forged
            // ticket is refused like any other.
            fibers_engine::check_ipc_bounds(parameters, false).map_err(|_| foreign())?;
            let first = fibers_engine::catch_decoder_panic(|| {
                StreamReader::try_new(Cursor::new(parameters), None)
                    .ok()?
                    .next()?
                    .ok()
            });
            match first {
                Ok(Some(batch)) => Some(batch),
                _ => return Err(foreign()),
            }
        };
        Ok(Statement { sql, parameters })
    }
}

fn foreign() -> Error {
    Error::InvalidRequest("the ticket or handle was not issued by this server".into())
}

impl StatementTicket {
    /// The handle bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        match self {
            StatementTicket::Query(statement) => statement.encode(QUERY),
            StatementTicket::Done(outcome) => {
                let mut handle = Vec::with_capacity(1 + outcome.len());
                handle.push(DONE);
                handle.extend_from_slice(outcome.as_bytes());
                Ok(handle)
            }
        }
    }

    /// Reads a handle; anything this server did not issue is an
    /// [`Error::InvalidRequest`].
    pub(crate) fn decode(handle: &[u8]) -> Result<Self> {
        match handle.split_first() {
            Some((&QUERY, body)) => Ok(StatementTicket::Query(Statement::decode(body)?)),
            Some((&DONE, outcome)) => Ok(StatementTicket::Done(
                std::str::from_utf8(outcome)
                    .map_err(|_| foreign())?
                    .to_string(),
            )),
            _ => Err(foreign()),
        }
    }
}

/// A prepared statement's handle.
pub(crate) fn encode_prepared(statement: &Statement) -> Result<Vec<u8>> {
    statement.encode(PREPARED)
}

/// Reads a prepared statement's handle.
pub(crate) fn decode_prepared(handle: &[u8]) -> Result<Statement> {
    match handle.split_first() {
        Some((&PREPARED, body)) => Statement::decode(body),
        _ => Err(foreign()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn parameters() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("$1", DataType::Int64, true),
                Field::new("$2", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["AAPL"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trips() {
        for ticket in [
            StatementTicket::Query(Statement::new("SELECT 'é' AS x")),
            StatementTicket::Query(Statement {
                sql: "SELECT $1, $2".into(),
                parameters: Some(parameters()),
            }),
            StatementTicket::Done("CREATE STREAM".into()),
            StatementTicket::Query(Statement::new("")),
        ] {
            let handle = ticket.encode().unwrap();
            assert_eq!(StatementTicket::decode(&handle).unwrap(), ticket);
        }
        let prepared = Statement {
            sql: "SELECT $1".into(),
            parameters: Some(parameters()),
        };
        let handle = encode_prepared(&prepared).unwrap();
        assert_eq!(decode_prepared(&handle).unwrap(), prepared);
        // A prepared handle is not a ticket, nor the other way round.
        assert!(StatementTicket::decode(&handle).is_err());
        let ticket = StatementTicket::Query(prepared).encode().unwrap();
        assert!(decode_prepared(&ticket).is_err());
    }

    #[test]
    fn rejects_foreign_handles() {
        for handle in [
            &b""[..],
            b"Xfoo",
            b"D\xff\xfe",
            b"Q\x05\x00\x00\x00abc",
            b"Q\x01\x00\x00\x00\xff",
            b"Q\x01\x00\x00\x00xnot ipc",
            b"Q\x01\x00",
        ] {
            let error = StatementTicket::decode(handle).unwrap_err();
            assert!(
                error.to_string().contains("not issued by this server"),
                "{error}"
            );
        }
    }
}
