//! The Flight SQL service: statements and metadata over the engine.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use fibers_engine::{Engine, ObjectKind, ParsedStatement, StatementOutput};
use fibers_sql::Statement;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::ticket::{self, StatementTicket};
use crate::{Error, Result};

/// Parameter rows read before a binding is refused: one row binds a
/// query, a few more tell the client what it sent.
const MAX_PARAMETER_ROWS: usize = 1;

/// The object kinds `GetTableTypes` lists, as Flight SQL table types.
const TABLE_TYPES: [&str; 4] = ["STREAM", "MATERIALIZED VIEW", "SINK", "TABLE"];

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
        ObjectKind::Table => TABLE_TYPES[3],
    }
}

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A Flight SQL service running statements on one [`Engine`].
///
/// `CommandStatementQuery` accepts every statement: those returning rows
/// (`SELECT`, `SHOW`, `DESCRIBE`, `SUBSCRIBE`) run when the ticket is
/// fetched with `DoGet`, their rows streamed as they are computed (a
/// subscription's until the client cancels); the others run at
/// `GetFlightInfo` and their ticket returns one `status` row
/// (`CREATE STREAM`). `CommandStatementUpdate` runs a statement and returns
/// its affected row count. Prepared statements bind one row of parameters
/// (`$1`, `$2`, ...) and are stateless: binding returns a handle carrying
/// the values. `CommandStatementIngest` appends batches to a Kafka stream.
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

    async fn run(
        &self,
        statement: &ParsedStatement,
        parameters: Option<&RecordBatch>,
    ) -> Result<StatementOutput> {
        Ok(self.engine.run(statement, parameters).await?)
    }

    /// The FlightInfo of a statement: one that returns rows gets a ticket
    /// to run it with its parameters, and its schema; one that changes
    /// something runs now, and its ticket returns the outcome.
    async fn statement_info(
        &self,
        statement: ticket::Statement,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo> {
        let parsed = parse_one(&statement.sql)?;
        if returns_rows(&parsed.statement) {
            let prepared = self.engine.prepare(&parsed).await?;
            let schema = prepared.schema.unwrap_or_else(status_schema);
            return flight_info(
                statement_ticket(&StatementTicket::Query(statement))?,
                Some(&schema),
                descriptor,
            );
        }
        let outcome = match self.run(&parsed, statement.parameters.as_ref()).await? {
            StatementOutput::Done(outcome) => outcome,
            StatementOutput::Rows(_) => {
                return Err(Error::InvalidRequest(format!(
                    "the engine returned rows for a statement that changes something: {}",
                    parsed.text
                )));
            }
        };
        flight_info(
            statement_ticket(&StatementTicket::Done(outcome))?,
            Some(&status_schema()),
            descriptor,
        )
    }

    /// Runs a statement that changes something; the rows it affected.
    async fn update(&self, statement: &ticket::Statement) -> Result<i64> {
        let parsed = parse_one(&statement.sql)?;
        match self.run(&parsed, statement.parameters.as_ref()).await? {
            StatementOutput::Done(outcome) => affected_rows(&outcome),
            StatementOutput::Rows(_) => Err(Error::InvalidRequest(format!(
                "'{}' returns rows: send it as a query (CommandStatementQuery), not an update",
                parsed.text
            ))),
        }
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
        | Statement::DescribeTopic { .. }
        | Statement::Subscribe { .. } => true,
        Statement::CreateStream(_)
        | Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateSink(_)
        | Statement::Insert(_)
        | Statement::Restart { .. }
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

/// An Arrow schema as Flight SQL carries it in messages (an IPC message).
fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

/// The client sent Flight data that does not decode.
fn unreadable(what: &str, error: FlightError) -> Error {
    Error::InvalidRequest(format!("cannot read the {what}: {error}"))
}

/// The Arrow messages of a `DoPut`. Messages without one are left out: a
/// request's first message may carry only its descriptor (as an update
/// of a prepared statement with no new values does).
fn flight_data(
    request: Request<PeekableFlightDataStream>,
) -> impl Stream<Item = std::result::Result<FlightData, FlightError>> {
    request
        .into_inner()
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from)
}

/// Reads the parameter values a client binds: one row.
async fn read_parameters(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>> {
    let mut batches = FlightRecordBatchStream::new_from_flight_data(flight_data(request));
    let mut rows = Vec::new();
    let mut count = 0;
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| unreadable("parameter values", e))?
    {
        count += batch.num_rows();
        if count > MAX_PARAMETER_ROWS {
            return Err(Error::InvalidRequest(
                "bind one row of parameter values; running a query once per row is not supported"
                    .into(),
            ));
        }
        if batch.num_rows() > 0 {
            rows.push(batch);
        }
    }
    Ok(rows.pop())
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

/// Streams a statement's output as Flight data, rows as they come; an
/// error mid-stream ends it with the error's status.
fn encode_output(output: StatementOutput) -> Result<FlightDataStream> {
    match output {
        StatementOutput::Done(outcome) => {
            Ok(encode(status_schema(), vec![status_batch(&outcome)?]))
        }
        StatementOutput::Rows(rows) => {
            let schema = rows.schema();
            let batches = rows
                .into_stream()
                .map_err(|e| FlightError::Tonic(Box::new(Status::from(Error::from(e)))));
            Ok(Box::pin(
                FlightDataEncoderBuilder::new()
                    .with_schema(schema)
                    .build(batches)
                    .map_err(Status::from),
            ))
        }
    }
}

/// Refuses ingest options a stream cannot honour: streams are declared
/// with `CREATE STREAM` and only ever appended to. `exists` says whether
/// the target is a stream; the options say what to do either way.
fn check_ingest(command: &CommandStatementIngest, exists: bool) -> Result<()> {
    let table = &command.table;
    let refuse = |what: &str| {
        Err(Error::InvalidRequest(format!(
            "ingest into '{table}': {what}"
        )))
    };
    if command.transaction_id.is_some() {
        return refuse("transactions are not supported");
    }
    if command.temporary {
        return refuse("temporary tables are not supported; ingest appends to a stream");
    }
    if command.catalog.as_deref().is_some_and(|c| c != CATALOG)
        || command.schema.as_deref().is_some_and(|s| s != DB_SCHEMA)
    {
        return refuse(&format!(
            "streams live in catalog '{CATALOG}', schema '{DB_SCHEMA}'"
        ));
    }
    let Some(options) = &command.table_definition_options else {
        return Ok(());
    };
    if !exists {
        // Without CREATE, the engine's error says the stream is missing.
        if options.if_not_exist() == TableNotExistOption::Create {
            return refuse(
                "ingest does not create streams; declare it with CREATE STREAM, then append \
                 (ingest mode 'append')",
            );
        }
        return Ok(());
    }
    match options.if_exists() {
        TableExistsOption::Unspecified | TableExistsOption::Append => Ok(()),
        TableExistsOption::Fail => {
            refuse("the stream already exists; streams take appended rows (ingest mode 'append')")
        }
        TableExistsOption::Replace => {
            refuse("a stream's rows cannot be replaced, only appended (ingest mode 'append')")
        }
    }
}

fn not_implemented(what: &str) -> Status {
    Status::unimplemented(format!("{what}: not implemented by DataFibers yet"))
}

fn statement_ticket(ticket: &StatementTicket) -> Result<Ticket> {
    let command = TicketStatementQuery {
        statement_handle: ticket.encode()?.into(),
    };
    Ok(Ticket::new(command.as_any().encode_to_vec()))
}

#[tonic::async_trait]
impl FlightSqlService for FibersFlightSqlService {
    type FlightService = FibersFlightSqlService;

    /// Completes a Flight handshake. Credentials were already checked,
    /// and the token issued, by the authentication guard around the
    /// service (`crate::guard`); without authentication there is nothing
    /// to hand out and the handshake succeeds.
    async fn do_handshake(
        &self,
        request: Request<tonic::Streaming<arrow_flight::HandshakeRequest>>,
    ) -> Result<Response<crate::auth::HandshakeStream>, Status> {
        crate::auth::handshake_response(&request)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let statement = ticket::Statement::new(query.query);
        let info = self.statement_info(statement, request.into_inner()).await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let output = match StatementTicket::decode(&ticket.statement_handle)? {
            StatementTicket::Done(outcome) => StatementOutput::Done(outcome),
            StatementTicket::Query(statement) => {
                let parsed = parse_one(&statement.sql)?;
                if !returns_rows(&parsed.statement) {
                    // Such tickets are never issued: the statement ran at
                    // GetFlightInfo.
                    return Err(Error::InvalidRequest(
                        "the ticket was not issued by this server".into(),
                    )
                    .into());
                }
                self.run(&parsed, statement.parameters.as_ref()).await?
            }
        };
        Ok(Response::new(encode_output(output)?))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Ok(self.update(&ticket::Statement::new(command.query)).await?)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let parsed = parse_one(&query.query)?;
        // Planning checks the statement now, as a prepare should; a
        // statement that changes something is only parsed until it runs.
        let prepared = if returns_rows(&parsed.statement) {
            Some(self.engine.prepare(&parsed).await.map_err(Error::from)?)
        } else {
            None
        };
        let (dataset_schema, parameter_schema) = match prepared {
            Some(prepared) => (
                prepared.schema.unwrap_or_else(status_schema),
                prepared.parameters,
            ),
            None => (Arc::new(Schema::empty()), Arc::new(Schema::empty())),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: ticket::encode_prepared(&ticket::Statement::new(
                query.query,
            ))?
            .into(),
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: schema_bytes(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let mut statement = ticket::decode_prepared(&query.prepared_statement_handle)?;
        statement.parameters = read_parameters(request).await?;
        // The new handle carries the values: no state is kept here.
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(ticket::encode_prepared(&statement)?.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let statement = ticket::decode_prepared(&query.prepared_statement_handle)?;
        let info = self.statement_info(statement, request.into_inner()).await?;
        Ok(Response::new(info))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mut statement = ticket::decode_prepared(&query.prepared_statement_handle)?;
        // Values may come with the update itself, or were bound before.
        if let Some(parameters) = read_parameters(request).await? {
            statement.parameters = Some(parameters);
        }
        Ok(self.update(&statement).await?)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept per statement; only check the handle is ours.
        ticket::decode_prepared(&query.prepared_statement_handle)?;
        Ok(())
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let exists = self
            .engine
            .tables()
            .await
            .iter()
            .any(|t| t.kind == ObjectKind::Stream && t.name == command.table);
        check_ingest(&command, exists)?;
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(flight_data(request)).peekable();
        // The schema comes with the first message; without rows there is
        // nothing to append.
        let schema = match Pin::new(&mut batches).peek().await {
            Some(Ok(batch)) => batch.schema(),
            Some(Err(_)) => match batches.next().await {
                Some(Err(e)) => return Err(unreadable("ingested batches", e).into()),
                _ => return Ok(0),
            },
            None => return Ok(0),
        };
        let batches = batches.map_err(|e| {
            fibers_engine::Error::invalid(format!("cannot read the ingested batches: {e}"))
        });
        let published = self
            .engine
            .ingest(&command.table, &schema, batches)
            .await
            .map_err(Error::from)?;
        Ok(i64::try_from(published).unwrap_or(i64::MAX))
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

    // The commands below are not supported. They are refused here, not in
    // arrow-flight's defaults, so the message says in the user's words
    // what is missing. Other commands keep the defaults, which also answer
    // Unimplemented, naming the handler.

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
