//! `INSERT INTO` a Kafka stream: the rows of a query, fitted to the
//! stream's columns and published into its topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast;
use fibers_sql::arrow_type_to_sql;

use crate::connector::StreamDef;
use crate::connector::kafka::{self, KafkaSinkConfig};
use crate::engine::Output;
use crate::query::ad_hoc;
use crate::{Error, Result, StatementResult};

/// `INSERT INTO stream VALUES (...)` or `INSERT INTO stream SELECT ...`:
/// runs the rows' query, fits them to the stream's columns and publishes
/// them into the stream's topic. A `_key` column, if listed, becomes each
/// message's key.
pub(crate) async fn insert(
    statement: &ast::Statement,
    streams: &BTreeMap<String, Arc<StreamDef>>,
    outputs: &BTreeMap<String, Output>,
    batch_size: usize,
) -> Result<StatementResult> {
    let ast::Statement::Insert(insert) = statement else {
        return Err(Error::invalid("expected an INSERT statement"));
    };
    let ast::TableObject::TableName(table) = &insert.table else {
        return Err(Error::invalid("INSERT INTO needs a stream name"));
    };
    let target = object_name(table)?;
    let Some(stream) = streams.get(&target) else {
        if outputs.contains_key(&target) {
            return Err(Error::invalid(format!(
                "cannot INSERT INTO '{target}': only streams take rows; its rows come from its query"
            )));
        }
        return Err(Error::invalid(format!("stream '{target}' does not exist")));
    };
    let Some(config) = stream.kafka() else {
        return Err(Error::invalid(format!(
            "INSERT INTO publishes into a Kafka topic, but stream '{target}' reads connector '{}'",
            stream.connector_name()
        )));
    };
    let Some(source) = &insert.source else {
        return Err(Error::invalid("INSERT INTO needs VALUES or a SELECT"));
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
    let listed: Vec<String> = if insert.columns.is_empty() {
        writable.iter().map(|f| f.name().clone()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(object_name)
            .collect::<Result<_>>()?
    };
    for name in &listed {
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
    }
    let query = ast::Statement::Query(source.clone());
    let StatementResult::Rows { schema, batches } =
        ad_hoc(&query, streams, outputs, batch_size).await?
    else {
        return Err(Error::invalid(
            "the rows to insert did not come back as rows",
        ));
    };
    if schema.fields().len() != listed.len() {
        return Err(Error::invalid(format!(
            "INSERT INTO '{target}' gives {} values per row for {} columns ({})",
            schema.fields().len(),
            listed.len(),
            listed.join(", ")
        )));
    }
    let mut fields = writable.clone();
    let has_key = listed.iter().any(|c| c == "_key");
    if has_key {
        fields.push(Field::new("_key", DataType::Utf8, true));
    }
    let target_schema: SchemaRef = Arc::new(Schema::new(fields));
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut rows = Vec::with_capacity(batches.len());
    for batch in &batches {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(target_schema.fields().len());
        for field in target_schema.fields() {
            let column = match listed.iter().position(|c| c == field.name()) {
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
        rows.push(RecordBatch::try_new(Arc::clone(&target_schema), columns)?);
    }
    let sink = KafkaSinkConfig {
        brokers: config.brokers.clone(),
        topic: config.topic.clone(),
        format: config.format.clone(),
        key: has_key.then(|| "_key".to_string()),
        subject: format!("{}-value", config.topic),
        key_in_value: false,
        properties: config.properties.clone(),
    };
    let published = kafka::publish(sink, target_schema, rows).await?;
    Ok(StatementResult::Done(format!("INSERT 0 {published}")))
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
