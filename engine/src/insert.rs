//! `INSERT INTO` a Kafka stream, and Flight SQL ingest into one: rows
//! fitted to the stream's columns and published into its topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast;
use fibers_sql::arrow_type_to_sql;
use futures::StreamExt;

use crate::connector::StreamDef;
use crate::connector::kafka::{self, KafkaSinkConfig, KafkaWriter};
use crate::engine::Output;
use crate::query::{Readable, ad_hoc};
use crate::{Error, Result, StatementResult};

/// `INSERT INTO stream VALUES (...)` or `INSERT INTO stream SELECT ...`:
/// runs the rows' query, fits them to the stream's columns and publishes
/// them into the stream's topic. A `_key` column, if listed, becomes each
/// message's key.
pub(crate) async fn insert(
    statement: &ast::Statement,
    objects: &Readable,
    batch_size: usize,
) -> Result<StatementResult> {
    let (streams, outputs) = (&objects.streams, &objects.outputs);
    let ast::Statement::Insert(insert) = statement else {
        return Err(Error::invalid("expected an INSERT statement"));
    };
    let ast::TableObject::TableName(table) = &insert.table else {
        return Err(Error::invalid("INSERT INTO needs a stream name"));
    };
    let target = object_name(table)?;
    let stream = target_stream(&target, streams, outputs, "INSERT INTO")?;
    let Some(source) = &insert.source else {
        return Err(Error::invalid("INSERT INTO needs VALUES or a SELECT"));
    };
    let listed: Vec<String> = insert
        .columns
        .iter()
        .map(object_name)
        .collect::<Result<_>>()?;
    let mut writer = TopicWriter::new(stream, (!listed.is_empty()).then_some(listed))?;
    let query = ast::Statement::Query(source.clone());
    let StatementResult::Rows { schema, batches } = ad_hoc(&query, objects, batch_size).await?
    else {
        return Err(Error::invalid(
            "the rows to insert did not come back as rows",
        ));
    };
    if schema.fields().len() != writer.listed.len() {
        return Err(Error::invalid(format!(
            "INSERT INTO '{target}' gives {} values per row for {} columns ({})",
            schema.fields().len(),
            writer.listed.len(),
            writer.listed.join(", ")
        )));
    }
    let rows = batches
        .iter()
        .map(|batch| writer.fit(batch))
        .collect::<Result<Vec<_>>>()?;
    let published = writer.write(rows).await?;
    Ok(StatementResult::Done(format!("INSERT 0 {published}")))
}

/// Flight SQL ingest: appends batches whose columns are named like the
/// stream's (any subset, in any order, plus `_key`) to a Kafka stream's
/// topic, each batch acknowledged before the next is read. Returns how many
/// rows were published.
pub(crate) async fn ingest(
    target: &str,
    streams: &BTreeMap<String, Arc<StreamDef>>,
    outputs: &BTreeMap<String, Output>,
    schema: &SchemaRef,
    mut batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
) -> Result<u64> {
    let stream = target_stream(target, streams, outputs, "ingest")?;
    let listed: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut writer = TopicWriter::new(stream, Some(listed))?;
    writer.check_types(schema)?;
    let mut published = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        published += writer.write(vec![writer.fit(&batch)?]).await?;
    }
    Ok(published)
}

/// The stream `target` names, which must be a Kafka stream.
fn target_stream<'a>(
    target: &str,
    streams: &'a BTreeMap<String, Arc<StreamDef>>,
    outputs: &BTreeMap<String, Output>,
    what: &str,
) -> Result<&'a StreamDef> {
    let Some(stream) = streams.get(target) else {
        if outputs.contains_key(target) {
            return Err(Error::invalid(format!(
                "cannot {what} '{target}': only streams take rows; its rows come from its query"
            )));
        }
        return Err(Error::invalid(format!("stream '{target}' does not exist")));
    };
    if stream.kafka().is_none() {
        return Err(Error::invalid(format!(
            "{what} publishes into a Kafka topic, but stream '{target}' reads connector '{}'",
            stream.connector_name()
        )));
    }
    Ok(stream)
}

/// Fits rows to a Kafka stream's columns and publishes them into its topic.
struct TopicWriter {
    target: String,
    /// The columns the incoming rows give, in their order.
    listed: Vec<String>,
    /// The stream's writable columns (and `_key` when listed): what is
    /// published.
    schema: SchemaRef,
    writer: KafkaWriter,
}

impl TopicWriter {
    /// A writer of rows giving the `listed` columns (by default, every
    /// writable column in the stream's order).
    fn new(stream: &StreamDef, listed: Option<Vec<String>>) -> Result<Self> {
        let target = stream.name.clone();
        let Some(config) = stream.kafka() else {
            return Err(Error::invalid(format!(
                "stream '{target}' is not a Kafka stream"
            )));
        };
        // The columns a row can give: the declared ones but the metadata
        // columns Kafka assigns, plus `_key`.
        let writable: Vec<Field> = stream
            .source_schema()
            .fields()
            .iter()
            .filter(|f| !kafka::METADATA_COLUMNS.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone())
            .collect();
        let listed = listed.unwrap_or_else(|| writable.iter().map(|f| f.name().clone()).collect());
        for (i, name) in listed.iter().enumerate() {
            if name != "_key" && !writable.iter().any(|f| f.name() == name) {
                return Err(Error::invalid(format!(
                    "stream '{target}' has no column '{name}' to insert into (columns: {})",
                    writable
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if listed[..i].contains(name) {
                return Err(Error::invalid(format!(
                    "column '{name}' of stream '{target}' is given twice"
                )));
            }
        }
        let mut fields = writable;
        let has_key = listed.iter().any(|c| c == "_key");
        if has_key {
            fields.push(Field::new("_key", DataType::Utf8, true));
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let sink = KafkaSinkConfig {
            brokers: config.brokers.clone(),
            topic: config.topic.clone(),
            format: config.format.clone(),
            key: has_key.then(|| "_key".to_string()),
            subject: format!("{}-value", config.topic),
            key_in_value: false,
            properties: config.properties.clone(),
        };
        let writer = KafkaWriter::new(&sink, Arc::clone(&schema), &target);
        Ok(TopicWriter {
            target,
            listed,
            schema,
            writer,
        })
    }

    /// Checks that every column of `incoming` can be cast to the stream's
    /// type, before any row is read.
    fn check_types(&self, incoming: &SchemaRef) -> Result<()> {
        for field in incoming.fields() {
            let Ok(target) = self.schema.field_with_name(field.name()) else {
                continue;
            };
            if !arrow::compute::can_cast_types(field.data_type(), target.data_type()) {
                return Err(Error::invalid(format!(
                    "column '{}' is {} in the ingested rows, which cannot become the {} \
                     column '{}' of stream '{}'",
                    field.name(),
                    arrow_type_to_sql(field.data_type()),
                    arrow_type_to_sql(target.data_type()),
                    target.name(),
                    self.target
                )));
            }
        }
        Ok(())
    }

    /// `batch` (with the listed columns, in order) as the stream's columns:
    /// values cast to their types, unlisted columns NULL.
    fn fit(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let options = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let target = &self.target;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column = match self.listed.iter().position(|c| c == field.name()) {
                Some(i) => {
                    arrow::compute::cast_with_options(batch.column(i), field.data_type(), &options)
                        .map_err(|e| {
                            Error::invalid(format!(
                                "value for column '{}' of stream '{target}' is not a {}: {e}",
                                field.name(),
                                arrow_type_to_sql(field.data_type())
                            ))
                        })?
                }
                None => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::invalid(format!(
                    "column '{}' of stream '{target}' is NOT NULL but would get NULL",
                    field.name()
                )));
            }
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Publishes `rows` and waits for the brokers' acknowledgement.
    async fn write(&mut self, rows: Vec<RecordBatch>) -> Result<u64> {
        let count = rows.iter().map(|b| b.num_rows() as u64).sum();
        self.writer.write(rows).await?;
        Ok(count)
    }
}

/// A one-part object name, normalized as the rest of the SQL surface does
/// (unquoted names are case-insensitive).
fn object_name(name: &ast::ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|ident| match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_ascii_lowercase(),
            })
            .ok_or_else(|| Error::invalid(format!("expected a name, found {name}"))),
        _ => Err(Error::invalid(format!(
            "qualified names such as '{name}' are not supported"
        ))),
    }
}
