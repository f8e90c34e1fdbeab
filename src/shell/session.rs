//! Running statements and metadata commands over a connection, printing
//! their results as they arrive.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use futures::StreamExt;

use super::client::Client;
use super::commands::ObjectKind;
use super::error::{Error, Result};
use super::input::leading_keyword;
use super::render::{DisplayOptions, RowPrinter, Table, write_row_count};

/// The statements that change something; the server answers them with
/// one `status` row (`CREATE STREAM`), which the shell prints as psql
/// prints a command tag.
const CHANGING_STATEMENTS: [&str; 6] = ["CREATE", "DROP", "INSERT", "ALTER", "DELETE", "UPDATE"];

/// How a running statement can be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// It runs to its end (scripts: SIGINT and SIGTERM keep their default
    /// effect, ending the process).
    Never,
    /// Ctrl-C (SIGINT) stops it and the shell goes on.
    OnCtrlC,
}

impl Cancel {
    /// A future that completes when the statement is to be stopped.
    fn requested(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self {
            Cancel::Never => Box::pin(std::future::pending()),
            Cancel::OnCtrlC => Box::pin(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    // Without a handler, Ctrl-C cannot be caught anyway.
                    std::future::pending::<()>().await;
                }
            }),
        }
    }
}

/// A connection and the display settings of one shell.
pub struct Session {
    client: Client,
    /// How rows are printed.
    pub display: DisplayOptions,
}

/// Prints one statement's result: a command tag, or rows.
enum Output {
    Tag,
    Rows(RowPrinter),
}

impl Output {
    fn print(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<()> {
        match self {
            Output::Tag => {
                if let Some(tags) = batch.column(0).as_any().downcast_ref::<StringArray>() {
                    for tag in tags.iter().flatten() {
                        writeln!(out, "{tag}")?;
                    }
                }
                Ok(())
            }
            Output::Rows(printer) => printer.print(out, batch),
        }
    }

    fn finish(self, out: &mut dyn Write) -> Result<()> {
        match self {
            Output::Tag => Ok(out.flush()?),
            Output::Rows(printer) => printer.finish(out),
        }
    }
}

impl Session {
    /// A session over `client`, printing rows as `display` says.
    pub fn new(client: Client, display: DisplayOptions) -> Self {
        Session { client, display }
    }

    /// Runs one SQL statement and prints its result to `out` as it
    /// arrives. On an error or a cancel, what arrived is printed (with its
    /// row count) before the error is returned.
    pub async fn run_sql(&mut self, sql: &str, out: &mut dyn Write, cancel: Cancel) -> Result<()> {
        let keyword = leading_keyword(sql);
        // A subscription's rows trickle in: print each batch at once.
        let live = keyword == "SUBSCRIBE";
        let changing = CHANGING_STATEMENTS.contains(&keyword.as_str());
        let mut cancelled = cancel.requested();

        let info = tokio::select! {
            info = self.client.execute(sql) => info?,
            () = &mut cancelled => return Err(Error::Cancelled),
        };
        let declared_schema = if info.schema.is_empty() {
            None
        } else {
            Some(Arc::new(info.clone().try_decode_schema()?))
        };
        let display = self.display;
        let output_for = |schema: &SchemaRef| {
            if changing && is_status_schema(schema) {
                Output::Tag
            } else {
                Output::Rows(RowPrinter::new(display, Arc::clone(schema), live))
            }
        };

        let mut output: Option<Output> = None;
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| {
                Error::Server("the server returned an endpoint without a ticket".into())
            })?;
            let fetched = tokio::select! {
                stream = self.client.fetch(ticket) => stream,
                () = &mut cancelled => Err(Error::Cancelled),
            };
            let mut stream = match fetched {
                Ok(stream) => stream,
                Err(e) => return finish_with(output, out, e),
            };
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    // Dropping the stream cancels the call on the server.
                    () = &mut cancelled => {
                        // The terminal echoed ^C where the next row would go.
                        writeln!(out)?;
                        return finish_with(output, out, Error::Cancelled);
                    }
                };
                match next {
                    None => break,
                    Some(Err(e)) => return finish_with(output, out, e.into()),
                    Some(Ok(batch)) => {
                        let output = output.get_or_insert_with(|| output_for(&batch.schema()));
                        output.print(out, &batch)?;
                    }
                }
            }
            if output.is_none() {
                output = stream.schema().map(output_for);
            }
        }
        match output.or_else(|| declared_schema.as_ref().map(output_for)) {
            Some(output) => output.finish(out),
            // No endpoint and no schema: a result without columns.
            None => write_row_count(out, 0),
        }
    }

    /// `\d`, `\dt`, `\dv`, `\ds`: the objects of `kind` (all kinds when
    /// `None`), from GetTables.
    pub async fn list(&mut self, kind: Option<ObjectKind>, out: &mut dyn Write) -> Result<()> {
        let kinds: Vec<ObjectKind> = kind.into_iter().collect();
        let batches = self.client.tables(&kinds, None, false).await?;
        let mut objects = Vec::new();
        for batch in &batches {
            let names = string_column(batch, "table_name")?;
            let types = string_column(batch, "table_type")?;
            for row in 0..batch.num_rows() {
                let table_type = types.value(row);
                let kind = ObjectKind::from_table_type(table_type)
                    .map_or_else(|| table_type.to_lowercase(), |k| k.noun().to_string());
                objects.push(vec![names.value(row).to_string(), kind]);
            }
        }
        let (title, none) = match kind {
            None => ("List of objects", "Did not find any objects."),
            Some(ObjectKind::Stream) => ("List of streams", "Did not find any streams."),
            Some(ObjectKind::View) => (
                "List of materialized views",
                "Did not find any materialized views.",
            ),
            Some(ObjectKind::Sink) => ("List of sinks", "Did not find any sinks."),
            Some(ObjectKind::Table) => ("List of tables", "Did not find any tables."),
        };
        if objects.is_empty() {
            writeln!(out, "{none}")?;
            return Ok(out.flush()?);
        }
        let count = objects.len();
        let mut table =
            Table::new(vec!["Name".into(), "Type".into()], vec![false, false]).with_title(title);
        for object in objects {
            table.push_row(out, object)?;
        }
        table.finish(out)?;
        write_row_count(out, count)?;
        Ok(out.flush()?)
    }

    /// `\d NAME`: the columns of one object, from GetTables with its
    /// schema.
    pub async fn describe(&mut self, name: &str, out: &mut dyn Write) -> Result<()> {
        // The pattern narrows the listing; `_` and `%` in a name are
        // wildcards there, so the exact name is picked out below.
        let batches = self.client.tables(&[], Some(name), true).await?;
        let mut found = None;
        for batch in &batches {
            let names = string_column(batch, "table_name")?;
            let types = string_column(batch, "table_type")?;
            let schemas = batch
                .column_by_name("table_schema")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or_else(|| Error::Server("GetTables returned no table_schema column".into()))?;
            if let Some(row) = (0..batch.num_rows()).find(|&row| names.value(row) == name) {
                let schema = try_schema_from_ipc_buffer(schemas.value(row)).map_err(|e| {
                    Error::Server(format!(
                        "the server sent an unreadable schema for '{name}': {e}"
                    ))
                })?;
                found = Some((types.value(row).to_string(), schema));
                break;
            }
        }
        let Some((table_type, schema)) = found else {
            return Err(Error::Command(format!(
                "Did not find any object named \"{name}\"."
            )));
        };
        let noun = ObjectKind::from_table_type(&table_type)
            .map_or_else(|| table_type.to_lowercase(), |k| k.noun().to_string());
        let mut title = format!("{noun} \"{name}\"");
        if let Some(first) = title.get(..1) {
            title.replace_range(..1, &first.to_uppercase());
        }
        write_columns(out, &title, &schema)?;
        Ok(out.flush()?)
    }
}

/// Prints a columns table (`Column | Type | Nullable`) for `schema`, with
/// the SQL type names `DESCRIBE` uses.
fn write_columns(out: &mut dyn Write, title: &str, schema: &Schema) -> Result<()> {
    let mut table = Table::new(
        vec!["Column".into(), "Type".into(), "Nullable".into()],
        vec![false, false, false],
    )
    .with_title(title);
    for field in schema.fields() {
        table.push_row(
            out,
            vec![
                field.name().clone(),
                fibers_sql::arrow_type_to_sql(field.data_type()),
                if field.is_nullable() { "" } else { "not null" }.into(),
            ],
        )?;
    }
    table.finish(out)?;
    writeln!(out)?;
    Ok(())
}

/// Prints what `output` holds and returns `error`.
fn finish_with(output: Option<Output>, out: &mut dyn Write, error: Error) -> Result<()> {
    if let Some(output) = output {
        output.finish(out)?;
    }
    Err(error)
}

/// Whether `schema` is the one `status` column of a statement's outcome.
fn is_status_schema(schema: &Schema) -> bool {
    matches!(schema.fields().as_ref(), [field]
        if field.name() == "status" && field.data_type() == &DataType::Utf8)
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Server(format!("GetTables returned no text column '{name}'")))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn recognizes_the_outcome_of_a_statement() {
        let status = Schema::new(vec![Field::new("status", DataType::Utf8, false)]);
        assert!(is_status_schema(&status));
        let other = Schema::new(vec![Field::new("name", DataType::Utf8, false)]);
        assert!(!is_status_schema(&other));
    }

    #[test]
    fn columns_with_sql_type_names() {
        let schema = Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("volume", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        let mut out = Vec::new();
        write_columns(&mut out, "Stream \"trades\"", &schema).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "        Stream \"trades\"\n \
             Column |   Type    | Nullable\n\
             --------+-----------+----------\n \
             symbol | TEXT      | not null\n \
             volume | BIGINT    |\n \
             ts     | TIMESTAMP |\n\n"
        );
    }
}
