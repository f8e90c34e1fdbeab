//! Statements that read: `SHOW`, `DESCRIBE` and ad-hoc queries over
//! archives and bounded streams.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use fibers_catalog::{Catalog, ObjectKind};
use fibers_sql::{ShowTarget, arrow_type_to_sql, format_duration};
use futures::StreamExt;

use crate::connector::kafka::{self, DEAD_LETTER_SUFFIX};
use crate::connector::{Patience, Poll, StreamDef};
use crate::engine::{Objects, Output};
use crate::table::ReferenceTable;
use crate::{Error, Result, RowStream, StatementResult};

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

/// `SHOW STREAMS | TABLES | VIEWS | SINKS | JOBS`.
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
        ShowTarget::Tables => text_rows(
            &["name", "connector", "path", "version", "rows"],
            objects
                .tables
                .values()
                .map(|t| {
                    let snapshot = t.snapshot();
                    vec![
                        t.name.clone(),
                        t.connector().into(),
                        t.path_written.clone(),
                        snapshot.version.map(|v| v.to_string()).unwrap_or_default(),
                        snapshot.rows.to_string(),
                    ]
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

/// What each object reads and what reads it, from the catalog's
/// definitions: names in order, joined for a text column.
struct Lineage {
    upstream: BTreeMap<String, Vec<String>>,
    downstream: BTreeMap<String, Vec<String>>,
}

impl Lineage {
    fn of(catalog: &Catalog) -> Result<Self> {
        let mut lineage = Lineage {
            upstream: BTreeMap::new(),
            downstream: BTreeMap::new(),
        };
        for definition in catalog.list(None)? {
            for dependency in &definition.depends_on {
                lineage
                    .downstream
                    .entry(dependency.clone())
                    .or_default()
                    .push(definition.name.clone());
            }
            lineage
                .upstream
                .insert(definition.name, definition.depends_on);
        }
        for readers in lineage.downstream.values_mut() {
            readers.sort();
        }
        Ok(lineage)
    }

    /// The objects `name` reads, as `a, b`.
    fn upstream(&self, name: &str) -> String {
        self.upstream
            .get(name)
            .map_or_else(String::new, |n| n.join(", "))
    }

    /// The objects that read `name`, as `a, b`.
    fn downstream(&self, name: &str) -> String {
        self.downstream
            .get(name)
            .map_or_else(String::new, |n| n.join(", "))
    }
}

fn show_jobs(objects: &Objects, catalog: &Catalog) -> Result<StatementResult> {
    let lineage = Lineage::of(catalog)?;
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    let mut statuses = Vec::new();
    let mut counters: [Vec<u64>; 5] = Default::default();
    let mut errors = Vec::new();
    let mut checkpoints = Vec::new();
    let mut recoveries = Vec::new();
    // Views and sinks, with those that could not be restored (whose
    // recorded state says why) among them.
    let mut listed: Vec<(&String, ObjectKind)> = objects
        .outputs
        .iter()
        .map(|(name, o)| (name, o.kind))
        .chain(
            objects
                .unavailable
                .iter()
                .filter(|(_, (kind, _))| matches!(kind, ObjectKind::View | ObjectKind::Sink))
                .map(|(name, (kind, _))| (name, *kind)),
        )
        .collect();
    listed.sort_by(|a, b| a.0.cmp(b.0));
    for (name, kind) in listed {
        names.push(name.clone());
        kinds.push(match kind {
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
                for (i, c) in [
                    &m.input_rows,
                    &m.output_rows,
                    &m.late_rows,
                    &m.idle_late_rows,
                    &m.bad_rows,
                ]
                .into_iter()
                .enumerate()
                {
                    counters[i].push(c.load(Ordering::Relaxed));
                }
                errors.push(match state {
                    crate::job::JobState::Failed(e) => e,
                    _ => health.unwrap_or_default(),
                });
                checkpoints.push(*m.checkpoint.lock().unwrap_or_else(|p| p.into_inner()));
                recoveries.push(*m.recovery.lock().unwrap_or_else(|p| p.into_inner()));
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
                    saved.idle_late_rows,
                    saved.bad_rows,
                ]) {
                    c.push(value);
                }
                errors.push(record.and_then(|r| r.error).unwrap_or_default());
                checkpoints.push(None);
                recoveries.push(None);
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
        // The last checkpoint this run took or restored.
        Field::new("checkpoint_epoch", DataType::UInt64, true),
        Field::new("checkpoint_time", DataType::Utf8, true),
        Field::new("checkpoint_ms", DataType::UInt64, true),
        Field::new("checkpoint_bytes", DataType::UInt64, true),
        // The checkpoint this run recovered from, and how long it took.
        Field::new("recovered_from", DataType::UInt64, true),
        Field::new("recovery_ms", DataType::UInt64, true),
        // Of the late rows, those dropped because the watermark had moved
        // on while their partition was idle.
        Field::new("idle_late_rows", DataType::UInt64, false),
        // The objects the job reads, and those that read its rows.
        Field::new("upstream", DataType::Utf8, false),
        Field::new("downstream", DataType::Utf8, false),
    ]));
    let [input, output, late, idle_late, bad] = counters;
    let upstream: Vec<String> = names.iter().map(|n| lineage.upstream(n)).collect();
    let downstream: Vec<String> = names.iter().map(|n| lineage.downstream(n)).collect();
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
            Arc::new(UInt64Array::from_iter(
                checkpoints.iter().map(|c| c.map(|c| c.epoch)),
            )),
            Arc::new(StringArray::from_iter(
                checkpoints
                    .iter()
                    .map(|c| c.map(|c| format_millis(c.at_ms))),
            )),
            Arc::new(UInt64Array::from_iter(
                checkpoints.iter().map(|c| c.map(|c| c.duration_ms)),
            )),
            Arc::new(UInt64Array::from_iter(
                checkpoints.iter().map(|c| c.map(|c| c.size_bytes)),
            )),
            Arc::new(UInt64Array::from_iter(
                recoveries.iter().map(|r| r.map(|r| r.epoch)),
            )),
            Arc::new(UInt64Array::from_iter(
                recoveries.iter().map(|r| r.map(|r| r.duration_ms)),
            )),
            Arc::new(UInt64Array::from(idle_late)),
            Arc::new(StringArray::from(upstream)),
            Arc::new(StringArray::from(downstream)),
        ],
    )?;
    Ok(StatementResult::Rows {
        schema,
        batches: vec![batch],
    })
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time.
fn format_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// `DESCRIBE name`: the columns of a stream, view, sink or table, then (as
/// RisingWave's `DESCRIBE` adds its keys) a row `upstream` naming what it
/// reads and a row `downstream` naming what reads it, each where there
/// is any.
pub(crate) fn describe(
    name: &str,
    objects: &Objects,
    catalog: &Catalog,
) -> Result<StatementResult> {
    let schema = if let Some(s) = objects.streams.get(name) {
        Arc::clone(&s.schema)
    } else if let Some(o) = objects.outputs.get(name) {
        Arc::clone(&o.schema)
    } else if let Some(t) = objects.tables.get(name) {
        Arc::clone(&t.schema)
    } else {
        return Err(Error::invalid(format!("'{name}' does not exist")));
    };
    let mut rows: Vec<Vec<String>> = schema
        .fields()
        .iter()
        .map(|f| {
            vec![
                f.name().clone(),
                arrow_type_to_sql(f.data_type()),
                if f.is_nullable() { "YES" } else { "NO" }.into(),
            ]
        })
        .collect();
    let lineage = Lineage::of(catalog)?;
    for (section, names) in [
        ("upstream", lineage.upstream(name)),
        ("downstream", lineage.downstream(name)),
    ] {
        if !names.is_empty() {
            rows.push(vec![section.into(), names, String::new()]);
        }
    }
    text_rows(&["column_name", "data_type", "is_nullable"], rows)
}

/// What ad-hoc queries can read: the engine's objects at the time.
#[derive(Clone, Default)]
pub(crate) struct Readable {
    pub streams: BTreeMap<String, Arc<StreamDef>>,
    pub outputs: BTreeMap<String, Output>,
    pub tables: BTreeMap<String, Arc<ReferenceTable>>,
}

/// An ad-hoc query, planned: views and sinks resolve to their archives,
/// bounded streams to all of their rows (read as the query consumes them),
/// reference tables to their current rows.
pub(crate) struct AdHocPlan {
    ctx: SessionContext,
    plan: LogicalPlan,
}

impl AdHocPlan {
    /// Plans `statement` over the objects.
    pub async fn new(
        statement: &ast::Statement,
        objects: &Readable,
        batch_size: usize,
    ) -> Result<Self> {
        let Readable {
            streams,
            outputs,
            tables,
        } = objects;
        // Strings as `Utf8`, as the archives and the metadata of views
        // declare them, rather than the `Utf8View` DataFusion would read
        // from Parquet: clients see one type whichever way they ask.
        let config = SessionConfig::new().set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
        let ctx = SessionContext::new_with_config(config);
        fibers_sql::check_arithmetic(&ctx);
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
            } else if let Some(table) = tables.get(name) {
                ctx.register_table(name, table.provider())?;
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
                    _ => bounded_table(stream, batch_size)?,
                };
                ctx.register_table(name, table)?;
            }
        }
        let plan = without_view_types(ctx.state().statement_to_plan(statement).await?)?;
        refuse_writes(&plan)?;
        Ok(AdHocPlan { ctx, plan })
    }

    /// The schema of the rows the query returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The types of the query's parameters (`$1`, `$2`, ...), in order.
    pub fn parameters(&self) -> Result<SchemaRef> {
        let types = self.plan.get_parameter_types()?;
        let mut fields = Vec::with_capacity(types.len());
        for (name, data_type) in types {
            let data_type = data_type.ok_or_else(|| {
                Error::invalid(format!(
                    "cannot tell the type of parameter {name}; cast it, as in CAST({name} AS BIGINT)"
                ))
            })?;
            fields.push(Field::new(name, data_type, true));
        }
        // `$10` sorts after `$9`, not after `$1`.
        fields.sort_by_key(|f| parameter_position(f.name()));
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Runs the query with `parameters` bound (one value per parameter, in
    /// order), streaming its rows.
    pub async fn execute(self, parameters: Vec<ScalarValue>) -> Result<RowStream> {
        // Rows keep the unbound plan's schema: a column computed from a
        // parameter is nullable there, and non-nullable once a value is
        // bound, but clients were told the former.
        let schema = self.schema();
        let bound = !parameters.is_empty();
        let plan = if !bound {
            self.plan
        } else {
            self.plan.with_param_values(ParamValues::List(
                parameters.into_iter().map(Into::into).collect(),
            ))?
        };
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let stream = frame.execute_stream().await?;
        let rows = RowStream::from_datafusion(stream);
        if !bound {
            return Ok(rows);
        }
        let relabelled = Arc::clone(&schema);
        Ok(RowStream::new(
            schema,
            rows.into_stream().map(move |batch| {
                Ok(RecordBatch::try_new(
                    Arc::clone(&relabelled),
                    batch?.columns().to_vec(),
                )?)
            }),
        ))
    }
}

/// Fails when `plan` (or a plan it explains) would write or define
/// anything: ad-hoc statements only read. Views and sinks are written by
/// their jobs alone, and a table provider that accepts inserts (a Delta
/// archive does) must never take rows from a client.
fn refuse_writes(plan: &LogicalPlan) -> Result<()> {
    let mut writes = None;
    plan.apply(|node| {
        Ok(match node {
            LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Ddl(_) => {
                writes = Some(node.display().to_string());
                TreeNodeRecursion::Stop
            }
            _ => TreeNodeRecursion::Continue,
        })
    })?;
    match writes {
        Some(what) => Err(Error::invalid(format!(
            "ad-hoc statements only read; this one would write ({what}). Views and sinks are \
             written by their jobs, streams by INSERT INTO a stream or Flight ingest"
        ))),
        None => Ok(()),
    }
}

/// `plan` with `Utf8View` and `BinaryView` result columns cast to `Utf8`
/// and `Binary`: the types the archives and the metadata of views declare,
/// and that every client reads (some table providers, Delta's among them,
/// scan strings as views).
fn without_view_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !plan
        .schema()
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            match plain(field.data_type()) {
                Some(to) => cast(column, to).alias(field.name()),
                None => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
}

/// The position of a `$n` parameter (others sort last, by name).
fn parameter_position(name: &str) -> (usize, String) {
    let position = name
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    (position, name.to_string())
}

/// An ad-hoc query, run to completion.
pub(crate) async fn ad_hoc(
    statement: &ast::Statement,
    objects: &Readable,
    batch_size: usize,
) -> Result<StatementResult> {
    let plan = AdHocPlan::new(statement, objects, batch_size).await?;
    plan.execute(Vec::new()).await?.collect().await
}

/// A bounded stream as a table whose scan reads the stream's rows as the
/// query consumes them, on a blocking thread, a few batches ahead.
fn bounded_table(stream: &Arc<StreamDef>, batch_size: usize) -> Result<Arc<dyn TableProvider>> {
    // Fails now, at planning, if the stream is unbounded.
    stream.check_snapshot()?;
    let partition = BoundedStreamPartition {
        schema: stream.source_schema(),
        stream: Arc::clone(stream),
        batch_size,
    };
    Ok(Arc::new(StreamingTable::try_new(
        partition.schema.clone(),
        vec![Arc::new(partition)],
    )?))
}

#[derive(Debug)]
struct BoundedStreamPartition {
    schema: SchemaRef,
    stream: Arc<StreamDef>,
    batch_size: usize,
}

impl PartitionStream for BoundedStreamPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(Arc::clone(&self.schema), 4);
        let tx = builder.tx();
        let stream = Arc::clone(&self.stream);
        let batch_size = self.batch_size;
        builder.spawn_blocking(move || {
            let external = |e: Error| DataFusionError::External(Box::new(e));
            let mut source = stream.open_snapshot(batch_size).map_err(external)?;
            let mut patience = Patience::for_stream(&stream);
            loop {
                match source.poll().map_err(external)? {
                    Poll::Batch(_, batch) => {
                        patience.progressed();
                        // The query stopped reading (a LIMIT, or cancelled).
                        if tx.blocking_send(Ok(batch)).is_err() {
                            return Ok(());
                        }
                    }
                    // The query was cancelled, or its client went away.
                    Poll::Idle(_) if tx.is_closed() => return Ok(()),
                    Poll::Idle(wait) => {
                        patience.check(source.as_ref()).map_err(external)?;
                        std::thread::sleep(wait.min(std::time::Duration::from_millis(100)));
                    }
                    Poll::End => return Ok(()),
                }
            }
        });
        builder.build()
    }
}
