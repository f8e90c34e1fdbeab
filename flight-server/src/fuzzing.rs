//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! bytes a client sends as a ticket or prepared statement handle, read as
//! the service reads them. Not a stable API.

use arrow_flight::sql::{Any, Command};
use prost::Message;

use crate::Result;
use crate::ticket::{self, Statement, StatementTicket};

/// Reads `bytes` as a `DoGet` ticket, or as a prepared statement handle,
/// down to the statement and its bound parameter values.
pub fn read_ticket(bytes: &[u8]) -> Result<()> {
    // The handle alone, as the prepared-statement calls receive it.
    if let Ok(statement) = ticket::decode_prepared(bytes) {
        bind(&statement)?;
    }
    if let Ok(StatementTicket::Query(statement)) = StatementTicket::decode(bytes) {
        bind(&statement)?;
    }
    // The whole ticket: a protobuf `Any` holding a Flight SQL command.
    let Ok(any) = Any::decode(bytes) else {
        return Ok(());
    };
    let Ok(command) = Command::try_from(any) else {
        return Ok(());
    };
    match command {
        Command::TicketStatementQuery(ticket) => {
            if let StatementTicket::Query(statement) =
                StatementTicket::decode(&ticket.statement_handle)?
            {
                bind(&statement)?;
            }
        }
        Command::CommandPreparedStatementQuery(query) => {
            bind(&ticket::decode_prepared(&query.prepared_statement_handle)?)?;
        }
        _ => {}
    }
    Ok(())
}

fn bind(statement: &Statement) -> Result<()> {
    fibers_engine::fuzzing::parameter_values(statement.parameters.as_ref())?;
    Ok(())
}

/// Inputs the `flight_ticket` target found crashing, run again through the
/// same entry point (`fuzz/regressions/flight_ticket/`).
#[cfg(test)]
mod regressions {
    /// Parameters whose Arrow IPC buffer points past the message body made
    /// arrow's reader panic; the ticket is refused like any foreign one.
    #[test]
    fn parameters_with_a_buffer_past_the_body_are_refused() {
        for data in [
            &include_bytes!("../../fuzz/regressions/flight_ticket/ipc-buffer-past-its-body-1")[..],
            &include_bytes!("../../fuzz/regressions/flight_ticket/ipc-buffer-past-its-body-2")[..],
            // A message length past the ticket: arrow allocated it first.
            &include_bytes!("../../fuzz/regressions/flight_ticket/message-longer-than-the-ticket")
                [..],
        ] {
            assert!(super::read_ticket(data).is_ok());
            assert!(crate::ticket::StatementTicket::decode(data).is_err());
            assert!(crate::ticket::decode_prepared(data).is_err());
        }
    }
}
