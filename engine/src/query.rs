//! Statements that read: `SHOW`, `DESCRIBE` and ad-hoc queries over
//! archives and bounded streams.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use fibers_catalog::{Catalog, ObjectKind};
use fibers_sql::{ShowTarget, arrow_type_to_sql, format_duration};

use crate::connector::kafka::{self, DEAD_LETTER_SUFFIX};
use crate::connector::{Poll, StreamDef};
use crate::engine::{Objects, Output};
use crate::{Error, Result, StatementResult};

fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> Result<StatementResult> {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
    Ok(StatementResult::Rows {
        schema,
        batches: vec![batch],
    })
}

/// `SHOW STREAMS | VIEWS | SINKS | JOBS`.
pub(crate) fn show(
    target: ShowTarget,
    objects: &Objects,
    catalog: &Catalog,
) -> Result<StatementResult> {
    match target {
        ShowTarget::Streams => text_rows(
            &["name", "connector", "watermark"],
            objects
                .streams
                .values()
                .map(|s| {
                    let watermark = if s.arrival_time {
                        String::new()
                    } else if s.delay_nanos == 0 {
                        s.time_column.clone()
                    } else {
                        format!("{} - {}", s.time_column, format_duration(s.delay_nanos))
                    };
                    vec![s.name.clone(), s.connector_name().into(), watermark]
                })
                .collect(),
        ),
        ShowTarget::Views | ShowTarget::Sinks => {
            let (kind, columns) = match target {
                ShowTarget::Views => (ObjectKind::View, ["name", "archive", "path"]),
                _ => (ObjectKind::Sink, ["name", "connector", "path"]),
            };
            text_rows(
                &columns,
                objects
                    .outputs
                    .iter()
                    .filter(|(_, o)| o.kind == kind)
                    .map(|(name, o)| {
                        vec![
                            name.clone(),
                            o.archive.format.as_str().into(),
                            o.archive.path_written.clone(),
                        ]
                    })
                    .collect(),
            )
        }
        ShowTarget::Jobs => show_jobs(objects, catalog),
    }
}

fn show_jobs(objects: &Objects, catalog: &Catalog) -> Result<StatementResult> {
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    let mut statuses = Vec::new();
    let mut counters: [Vec<u64>; 4] = Default::default();
    let mut errors = Vec::new();
    for (name, output) in &objects.outputs {
        names.push(name.clone());
        kinds.push(match output.kind {
            ObjectKind::View => "view",
            _ => "sink",
        });
        match objects.jobs.get(name) {
            Some(job) => {
                let state = job.state();
                let health = job.metrics.health();
                statuses.push(match (&state, &health) {
                    (crate::job::JobState::Running, Some(_)) => "retrying".to_string(),
                    _ => state.status().to_string(),
                });
                let m = &job.metrics;
                for (i, c) in [&m.input_rows, &m.output_rows, &m.late_rows, &m.bad_rows]
                    .into_iter()
                    .enumerate()
                {
                    counters[i].push(c.load(Ordering::Relaxed));
                }
                errors.push(match state {
                    crate::job::JobState::Failed(e) => e,
                    _ => health.unwrap_or_default(),
                });
            }
            // A job that did not run in this session: its recorded state.
            None => {
                let record = catalog.job(name)?;
                statuses.push(
                    record
                        .as_ref()
                        .map_or("stopped".into(), |r| r.status.to_string()),
                );
                let saved = record.as_ref().map(|r| r.counters).unwrap_or_default();
                for (c, value) in counters.iter_mut().zip([
                    saved.input_rows,
                    saved.output_rows,
                    saved.late_rows,
                    saved.bad_rows,
                ]) {
                    c.push(value);
                }
                errors.push(record.and_then(|r| r.error).unwrap_or_default());
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("input_rows", DataType::UInt64, false),
        Field::new("output_rows", DataType::UInt64, false),
        Field::new("late_rows", DataType::UInt64, false),
        Field::new("bad_rows", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, false),
    ]));
    let [input, output, late, bad] = counters;
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(statuses)),
            Arc::new(UInt64Array::from(input)),
            Arc::new(UInt64Array::from(output)),
            Arc::new(UInt64Array::from(late)),
            Arc::new(UInt64Array::from(bad)),
            Arc::new(StringArray::from(errors)),
        ],
    )?;
    Ok(StatementResult::Rows {
        schema,
        batches: vec![batch],
    })
}

/// `DESCRIBE name`: the columns of a stream, view or sink.
pub(crate) fn describe(name: &str, objects: &Objects) -> Result<StatementResult> {
    let schema = if let Some(s) = objects.streams.get(name) {
        Arc::clone(&s.schema)
    } else if let Some(o) = objects.outputs.get(name) {
        Arc::clone(&o.schema)
    } else {
        return Err(Error::invalid(format!("'{name}' does not exist")));
    };
    text_rows(
        &["column_name", "data_type", "is_nullable"],
        schema
            .fields()
            .iter()
            .map(|f| {
                vec![
                    f.name().clone(),
                    arrow_type_to_sql(f.data_type()),
                    if f.is_nullable() { "YES" } else { "NO" }.into(),
                ]
            })
            .collect(),
    )
}

/// An ad-hoc query: views and sinks resolve to their archives, bounded
/// streams to all of their rows.
pub(crate) async fn ad_hoc(
    statement: &ast::Statement,
    streams: &BTreeMap<String, Arc<StreamDef>>,
    outputs: &BTreeMap<String, Output>,
    batch_size: usize,
) -> Result<StatementResult> {
    let ctx = SessionContext::new();
    let statement = DFStatement::Statement(Box::new(statement.clone()));
    let references = ctx.state().resolve_table_references(&statement)?;
    for reference in references {
        let name = reference.table();
        if ctx.table_exist(name)? {
            continue;
        }
        let dead_letters = name
            .strip_suffix(DEAD_LETTER_SUFFIX)
            .and_then(|stream| streams.get(stream))
            .and_then(|stream| stream.dead_letters());
        if let Some(output) = outputs.get(name) {
            output.archive.register(&ctx, name, &output.schema).await?;
        } else if let Some(table) = dead_letters {
            table.register(&ctx, name).await?;
        } else if let Some(stream) = streams.get(name) {
            let table: Arc<dyn TableProvider> = match stream.kafka() {
                // Read as the query consumes it, filters narrowing the read.
                Some(config) if !stream.arrival_time => Arc::new(kafka::KafkaTable::new(
                    &stream.name,
                    config,
                    Arc::clone(&stream.schema),
                    batch_size,
                )),
                _ => Arc::new(read_bounded(stream, batch_size).await?),
            };
            ctx.register_table(name, table)?;
        }
    }
    let plan = ctx.state().statement_to_plan(statement).await?;
    let frame = ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(StatementResult::Rows { schema, batches })
}

/// All rows of a bounded stream, as a table.
async fn read_bounded(stream: &Arc<StreamDef>, batch_size: usize) -> Result<MemTable> {
    let schema = stream.source_schema();
    let stream = Arc::clone(stream);
    let batches = tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
        let mut source = stream.open_snapshot(batch_size)?;
        let mut batches = Vec::new();
        loop {
            match source.poll()? {
                Poll::Batch(_, b) => batches.push(b),
                Poll::Idle(wait) => std::thread::sleep(wait),
                Poll::End => return Ok(batches),
            }
        }
    })
    .await
    .map_err(|e| Error::invalid(format!("reading the stream failed: {e}")))??;
    Ok(MemTable::try_new(schema, vec![batches])?)
}
