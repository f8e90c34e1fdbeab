//! The Flight SQL service: statements and metadata over the engine.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use fibers_engine::{Engine, ObjectKind, ParsedStatement, StatementResult};
use fibers_sql::Statement;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::ticket::StatementTicket;
use crate::{Error, Result};

/// The object kinds `GetTableTypes` lists, as Flight SQL table types.
const TABLE_TYPES: [&str; 3] = ["STREAM", "MATERIALIZED VIEW", "SINK"];

/// The catalog and schema metadata calls report every object in: the
/// names under which ad-hoc queries resolve them (DataFusion's defaults),
/// so a client that qualifies a name it was given still finds the table.
const CATALOG: &str = "datafusion";
const DB_SCHEMA: &str = "public";

fn table_type(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Stream => TABLE_TYPES[0],
        ObjectKind::View => TABLE_TYPES[1],
        ObjectKind::Sink => TABLE_TYPES[2],
    }
}

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A Flight SQL service running statements on one [`Engine`].
///
/// `CommandStatementQuery` accepts every statement: those returning rows
/// (`SELECT`, `SHOW`, `DESCRIBE`) run when the ticket is fetched with
/// `DoGet`; the others run at `GetFlightInfo` and their ticket returns one
/// `status` row (`CREATE STREAM`). `CommandStatementUpdate` runs a
/// statement and returns its affected row count.
pub struct FibersFlightSqlService {
    engine: Arc<Engine>,
    sql_info: SqlInfoData,
}

impl FibersFlightSqlService {
    /// A service over `engine`.
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "DataFibers");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        Ok(FibersFlightSqlService {
            engine,
            sql_info: info.build()?,
        })
    }

    async fn execute(&self, statement: &ParsedStatement) -> Result<StatementResult> {
        Ok(self.engine.execute(statement).await?)
    }
}

/// Parses `sql`, which must hold exactly one statement.
fn parse_one(sql: &str) -> Result<ParsedStatement> {
    let mut statements = fibers_engine::parse_script(sql).map_err(fibers_engine::Error::from)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(Error::InvalidRequest("no SQL statement was given".into())),
        n => Err(Error::InvalidRequest(format!(
            "a Flight SQL request runs one statement, but {n} were given"
        ))),
    }
}

/// Whether a statement returns rows (and so runs when its ticket is
/// fetched) rather than changing something.
fn returns_rows(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_)
        | Statement::Show(_)
        | Statement::Describe(_)
        | Statement::ShowTopics { .. }
        | Statement::DescribeTopic { .. } => true,
        Statement::CreateStream(_)
        | Statement::CreateView(_)
        | Statement::CreateSink(_)
        | Statement::Insert(_)
        | Statement::Drop { .. } => false,
    }
}

/// The schema of the one-row result of a statement that changes something.
fn status_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "status",
        DataType::Utf8,
        false,
    )]))
}

fn status_batch(outcome: &str) -> Result<RecordBatch> {
    let column: ArrayRef = Arc::new(StringArray::from(vec![outcome]));
    Ok(RecordBatch::try_new(status_schema(), vec![column])?)
}

/// The number of rows an `INSERT` reported (`INSERT 0 n`); 0 for other
/// statements.
fn affected_rows(outcome: &str) -> Result<i64> {
    match outcome.strip_prefix("INSERT 0 ") {
        Some(count) => count.parse().map_err(|_| {
            Error::InvalidRequest(format!(
                "the engine reported '{outcome}', which does not end in a row count"
            ))
        }),
        None => Ok(0),
    }
}

/// A FlightInfo answering `descriptor` with one endpoint, fetched with
/// `ticket`, and the result schema when it is known before running.
fn flight_info(
    ticket: Ticket,
    schema: Option<&Schema>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let mut info = FlightInfo::new()
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    if let Some(schema) = schema {
        info = info.try_with_schema(schema)?;
    }
    Ok(info)
}

/// The FlightInfo of a metadata command: the command itself is the
/// ticket, and the result schema is known before running.
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> std::result::Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    Ok(Response::new(flight_info(
        ticket,
        Some(schema),
        request.into_inner(),
    )?))
}

/// Streams `batches` (already computed) as Flight data.
fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightDataStream {
    let batches = futures::stream::iter(batches.into_iter().map(Ok));
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

fn not_implemented(what: &str) -> Status {
    Status::unimplemented(format!("{what}: not implemented by DataFibers yet"))
}

fn statement_ticket(ticket: &StatementTicket) -> Ticket {
    let command = TicketStatementQuery {
        statement_handle: ticket.encode().into(),
    };
    Ticket::new(command.as_any().encode_to_vec())
}

#[tonic::async_trait]
impl FlightSqlService for FibersFlightSqlService {
    type FlightService = FibersFlightSqlService;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let statement = parse_one(&query.query)?;
        let descriptor = request.into_inner();
        let info = if returns_rows(&statement.statement) {
            // The schema is known only once the statement runs.
            flight_info(
                statement_ticket(&StatementTicket::Query(statement.text)),
                None,
                descriptor,
            )?
        } else {
            let outcome = match self.execute(&statement).await? {
                StatementResult::Done(outcome) => outcome,
                StatementResult::Rows { .. } => {
                    return Err(Status::internal(format!(
                        "the engine returned rows for a statement that changes something: {}",
                        statement.text
                    )));
                }
            };
            flight_info(
                statement_ticket(&StatementTicket::Done(outcome)),
                Some(&status_schema()),
                descriptor,
            )?
        };
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (schema, batches) = match StatementTicket::decode(&ticket.statement_handle)? {
            StatementTicket::Done(outcome) => (status_schema(), vec![status_batch(&outcome)?]),
            StatementTicket::Query(sql) => {
                let statement = parse_one(&sql)?;
                if !returns_rows(&statement.statement) {
                    // Such tickets are never issued: the statement ran at
                    // GetFlightInfo.
                    return Err(Error::InvalidRequest(
                        "the ticket was not issued by this server".into(),
                    )
                    .into());
                }
                match self.execute(&statement).await? {
                    StatementResult::Rows { schema, batches } => (schema, batches),
                    StatementResult::Done(outcome) => {
                        (status_schema(), vec![status_batch(&outcome)?])
                    }
                }
            }
        };
        Ok(Response::new(encode(schema, batches)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let statement = parse_one(&command.query)?;
        match self.execute(&statement).await? {
            StatementResult::Done(outcome) => Ok(affected_rows(&outcome)?),
            StatementResult::Rows { .. } => Err(Error::InvalidRequest(format!(
                "'{}' returns rows: send it as a query (CommandStatementQuery), not an update",
                statement.text
            ))
            .into()),
        }
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build().map_err(Error::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Error::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(Error::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        // The builder applies the request's catalog and pattern filters.
        let mut builder = query.into_builder();
        builder.append(CATALOG, DB_SCHEMA);
        let schema = builder.schema();
        let batch = builder.build().map_err(Error::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        // The builder applies the request's catalog, pattern and table type
        // filters, and includes the schemas only if asked.
        let mut builder = query.into_builder();
        for table in self.engine.tables().await {
            builder
                .append(
                    CATALOG,
                    DB_SCHEMA,
                    &table.name,
                    table_type(table.kind),
                    &table.schema,
                )
                .map_err(Error::from)?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(Error::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    // The commands below are planned for later slices. They are refused
    // here, not in arrow-flight's defaults, so the message says in the
    // user's words what is missing. Other commands keep the defaults,
    // which also answer Unimplemented, naming the handler.

    async fn do_action_create_prepared_statement(
        &self,
        _query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(not_implemented(
            "prepared statements (ActionCreatePreparedStatementRequest)",
        ))
    }

    async fn do_put_statement_ingest(
        &self,
        _command: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(not_implemented("bulk ingest (CommandStatementIngest)"))
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(not_implemented(
            "Substrait plans (CommandStatementSubstraitPlan)",
        ))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(not_implemented(
            "transactions (ActionBeginTransactionRequest)",
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inserted_rows() {
        assert_eq!(affected_rows("INSERT 0 42").unwrap(), 42);
        assert_eq!(affected_rows("CREATE STREAM").unwrap(), 0);
        assert!(affected_rows("INSERT 0 many").is_err());
    }

    #[test]
    fn takes_exactly_one_statement() {
        assert!(parse_one("SHOW STREAMS").is_ok());
        let two = parse_one("SHOW STREAMS; SHOW VIEWS").unwrap_err();
        assert!(two.to_string().contains("2 were given"), "{two}");
        let none = parse_one("  ").unwrap_err();
        assert!(none.to_string().contains("no SQL statement"), "{none}");
    }

    #[test]
    fn classifies_statements() {
        let rows = parse_one("SELECT 1").unwrap();
        assert!(returns_rows(&rows.statement));
        let ddl = parse_one("DROP STREAM IF EXISTS s").unwrap();
        assert!(!returns_rows(&ddl.statement));
    }
}
