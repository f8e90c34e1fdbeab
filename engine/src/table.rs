//! Reference tables: `CREATE TABLE name WITH (connector = 'delta' |
//! 'parquet' | 'file', path = ...)`.
//!
//! A reference table is data streams are joined with: company names per
//! symbol, a currency's rate, a customer's segment. Its rows are held in
//! memory as Arrow batches (a [`Snapshot`]); every batch of a stream joined
//! with it is joined, through DataFusion's hash join, with the snapshot
//! current at that moment. A Delta table is polled for new versions
//! (`refresh_interval`, 10 s by default) and a new version replaces the
//! snapshot while the jobs run; Parquet files and `file` tables are read
//! when the table is declared and when the engine opens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig};
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;
use fibers_sql::CreateStream;
use url::Url;

use crate::plan::{LeafExec, LeafInput};
use crate::{Error, Result};

/// How often a Delta table is checked for a new version by default.
const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

/// The options of `CREATE TABLE`.
const OPTIONS: &[&str] = &["connector", "path", "format", "header", "refresh_interval"];

/// Where a reference table's rows come from.
#[derive(Debug, Clone)]
enum Source {
    /// A Delta table, polled for new versions.
    Delta { url: Url },
    /// A directory of Parquet files (or one file).
    Parquet { path: PathBuf },
    /// A CSV or newline-delimited JSON file.
    File {
        path: PathBuf,
        format: FileFormat,
        header: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Csv,
    Json,
}

impl Source {
    fn connector(&self) -> &'static str {
        match self {
            Source::Delta { .. } => "delta",
            Source::Parquet { .. } => "parquet",
            Source::File { .. } => "file",
        }
    }
}

/// The rows of a reference table at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The Delta version the rows are of; `None` for other connectors.
    pub version: Option<u64>,
    pub batches: Arc<Vec<RecordBatch>>,
    pub rows: usize,
    /// How many times the rows were replaced since the table was opened:
    /// plans that keep the table hashed rebuild it when this changes.
    pub generation: u64,
}

/// A reference table declared with `CREATE TABLE`.
pub(crate) struct ReferenceTable {
    pub name: String,
    /// `path` as written.
    pub path_written: String,
    pub schema: SchemaRef,
    source: Source,
    snapshot: Arc<RwLock<Snapshot>>,
    /// Polls a Delta table for new versions; stopped when the table is
    /// dropped.
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for ReferenceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferenceTable")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Drop for ReferenceTable {
    fn drop(&mut self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

impl ReferenceTable {
    /// Checks the declaration, reads the table's rows and (for Delta)
    /// starts polling it for new versions.
    pub async fn open(create: &CreateStream, data_dir: &Path) -> Result<Self> {
        let name = create.name.clone();
        let owner = format!("table '{name}'");
        let mut options = create.options.clone();
        options.check_known(&owner, OPTIONS)?;
        let connector = options.take_required("connector", &owner)?;
        let path_written = options.take_required("path", &owner)?;
        let path = data_dir.join(&path_written);
        let source = match connector.to_ascii_lowercase().as_str() {
            "delta" => Source::Delta {
                url: directory_url(&path, &name)?,
            },
            "parquet" => Source::Parquet { path },
            "file" => {
                let format = match options.take_choice("format", &["csv", "json"])?.as_deref() {
                    Some("json") => FileFormat::Json,
                    Some("csv") => FileFormat::Csv,
                    _ => match path.extension().and_then(|e| e.to_str()) {
                        Some("json" | "jsonl" | "ndjson") => FileFormat::Json,
                        Some("csv") => FileFormat::Csv,
                        _ => {
                            return Err(Error::invalid(format!(
                                "{owner}: option 'format' is required ('csv' or 'json'): \
                                 the file name '{path_written}' does not tell"
                            )));
                        }
                    },
                };
                let header = options.take_bool("header")?.unwrap_or(true);
                Source::File {
                    path,
                    format,
                    header,
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown connector '{other}' for {owner}; expected one of: delta, parquet, file"
                )));
            }
        };
        let refresh = match options.take("refresh_interval") {
            None => Some(DEFAULT_REFRESH),
            Some(_) if !matches!(source, Source::Delta { .. }) => {
                return Err(Error::invalid(format!(
                    "{owner}: option 'refresh_interval' applies to connector 'delta' (a {} \
                     table is read when it is created and when the engine starts)",
                    source.connector()
                )));
            }
            Some(value) => parse_refresh(&value).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid value '{value}' for option 'refresh_interval' of {owner}: \
                     expected a duration such as '10s' or '1m', or 'off'"
                ))
            })?,
        };
        if matches!(source, Source::File { .. }) {
            options.finish(&owner, OPTIONS)?;
        } else {
            options.finish(&owner, &["connector", "path", "refresh_interval"])?;
        }

        let declared = (!create.columns.is_empty()).then(|| {
            Arc::new(Schema::new(
                create
                    .columns
                    .iter()
                    .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                    .collect::<Vec<_>>(),
            ))
        });
        if declared.is_some() && !matches!(source, Source::File { .. }) {
            return Err(Error::invalid(format!(
                "{owner}: a {} table brings its own columns; declare columns only for \
                 connector 'file'",
                source.connector()
            )));
        }

        let (snapshot, schema, delta) = match &source {
            Source::Delta { url } => {
                let mut table = open_delta(url, &name).await?;
                let (snapshot, schema) = read_delta(&mut table, &name).await?;
                (snapshot, schema, Some(table))
            }
            Source::Parquet { path } => {
                let ctx = session();
                let options = ParquetReadOptions::default();
                let frame = ctx
                    .read_parquet(path.display().to_string(), options)
                    .await
                    .map_err(|e| read_error(&name, path, e))?;
                let (snapshot, schema) = collect(frame, None, &name, path).await?;
                (snapshot, schema, None)
            }
            Source::File {
                path,
                format,
                header,
            } => {
                let ctx = session();
                let location = path.display().to_string();
                // Read the file whatever its name ends with.
                let extension = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map_or(String::new(), |e| format!(".{e}"));
                let frame = match format {
                    FileFormat::Csv => {
                        let mut options = CsvReadOptions::new()
                            .has_header(*header)
                            .file_extension(&extension);
                        if let Some(schema) = &declared {
                            options = options.schema(schema);
                        }
                        ctx.read_csv(location, options).await
                    }
                    FileFormat::Json => {
                        let mut options = JsonReadOptions::default().file_extension(&extension);
                        if let Some(schema) = &declared {
                            options = options.schema(schema);
                        }
                        ctx.read_json(location, options).await
                    }
                }
                .map_err(|e| read_error(&name, path, e))?;
                let (snapshot, schema) = collect(frame, declared.clone(), &name, path).await?;
                (snapshot, schema, None)
            }
        };

        let snapshot = Arc::new(RwLock::new(snapshot));
        let refresher = match (delta, refresh) {
            (Some(table), Some(every)) => Some(tokio::spawn(poll_delta(
                table,
                name.clone(),
                Arc::clone(&schema),
                every,
                Arc::downgrade(&snapshot),
            ))),
            _ => None,
        };
        Ok(ReferenceTable {
            name,
            path_written,
            schema,
            source,
            snapshot,
            refresher,
        })
    }

    /// `delta`, `parquet` or `file`.
    pub fn connector(&self) -> &'static str {
        self.source.connector()
    }

    /// The rows a join sees now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The table as plans scan it: every scan yields the snapshot current
    /// when the plan runs, so a long-running job sees new Delta versions.
    pub fn provider(&self) -> Arc<dyn TableProvider> {
        Arc::new(SnapshotTable {
            schema: Arc::clone(&self.schema),
            snapshot: Arc::clone(&self.snapshot),
        })
    }
}

/// `off` (or 0) disables polling.
fn parse_refresh(value: &str) -> Option<Option<Duration>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let duration = humantime::parse_duration(value).ok()?;
    Some((!duration.is_zero()).then_some(duration))
}

/// A session reading reference data: strings as `Utf8`, the type the
/// archives and stream declarations use.
fn session() -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(1).set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    SessionContext::new_with_config(config)
}

fn directory_url(path: &Path, table: &str) -> Result<Url> {
    let absolute = path.canonicalize().map_err(|e| {
        Error::invalid(format!(
            "table '{table}': cannot open the Delta table at {}: {e}",
            path.display()
        ))
    })?;
    Url::from_directory_path(&absolute).map_err(|()| {
        Error::invalid(format!(
            "table '{table}': {} is not a directory path",
            absolute.display()
        ))
    })
}

fn read_error(table: &str, path: &Path, e: impl fmt::Display) -> Error {
    Error::invalid(format!(
        "table '{table}': cannot read {}: {e}",
        path.display()
    ))
}

async fn open_delta(url: &Url, table: &str) -> Result<DeltaTable> {
    deltalake::open_table(url.clone()).await.map_err(|e| {
        Error::invalid(format!(
            "table '{table}': cannot open the Delta table at {url}: {e}"
        ))
    })
}

/// Reads every row of the Delta table's loaded version.
async fn read_delta(table: &mut DeltaTable, name: &str) -> Result<(Snapshot, SchemaRef)> {
    let location = table.table_url().to_string();
    let error = |e: &dyn fmt::Display| {
        Error::invalid(format!(
            "table '{name}': cannot read the Delta table at {location}: {e}"
        ))
    };
    let ctx = session();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| error(&e))?;
    let provider = table.table_provider().await.map_err(|e| error(&e))?;
    let frame = ctx.read_table(provider).map_err(|e| error(&e))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(|e| error(&e))?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    Ok((
        Snapshot {
            version: table.version(),
            batches: Arc::new(batches),
            rows,
            generation: 0,
        },
        schema,
    ))
}

async fn collect(
    frame: DataFrame,
    declared: Option<SchemaRef>,
    table: &str,
    path: &Path,
) -> Result<(Snapshot, SchemaRef)> {
    let schema = declared.unwrap_or_else(|| Arc::new(frame.schema().as_arrow().clone()));
    let batches = frame
        .collect()
        .await
        .map_err(|e| read_error(table, path, e))?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    Ok((
        Snapshot {
            version: None,
            batches: Arc::new(batches),
            rows,
            generation: 0,
        },
        schema,
    ))
}

/// Replaces the snapshot whenever the Delta table has a new version, until
/// the table is dropped. A version whose columns differ from the table's
/// is not taken (joins planned against the old columns would break); the
/// table keeps its rows and says why in the log.
async fn poll_delta(
    mut table: DeltaTable,
    name: String,
    schema: SchemaRef,
    every: Duration,
    snapshot: std::sync::Weak<RwLock<Snapshot>>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(snapshot) = snapshot.upgrade() else {
            return;
        };
        let before = table.version();
        if let Err(e) = table.update_state().await {
            tracing::warn!("table '{name}': cannot check the Delta table for a new version: {e}");
            continue;
        }
        if table.version() == before {
            continue;
        }
        match read_delta(&mut table, &name).await {
            Ok((next, next_schema)) if next_schema.fields() == schema.fields() => {
                tracing::info!(
                    "table '{name}': now at Delta version {} ({} rows)",
                    next.version.unwrap_or_default(),
                    next.rows
                );
                let mut current = snapshot.write().unwrap_or_else(|p| p.into_inner());
                let generation = current.generation + 1;
                *current = Snapshot { generation, ..next };
            }
            Ok((next, next_schema)) => tracing::warn!(
                "table '{name}': Delta version {} changed the columns to {next_schema}; \
                 joins keep the rows of version {} (re-create the table to take the new columns)",
                next.version.unwrap_or_default(),
                before.unwrap_or_default()
            ),
            Err(e) => tracing::warn!("table '{name}': {e}"),
        }
    }
}

/// A reference table as a plan scans it.
#[derive(Debug)]
struct SnapshotTable {
    schema: SchemaRef,
    snapshot: Arc<RwLock<Snapshot>>,
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(LeafExec::new(
            Arc::clone(&self.schema),
            projection.cloned(),
            LeafInput::Table(Arc::clone(&self.snapshot)),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_interval_parses_off_and_durations() {
        assert_eq!(parse_refresh("off"), Some(None));
        assert_eq!(parse_refresh("0s"), Some(None));
        assert_eq!(
            parse_refresh("250ms"),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(parse_refresh("soon"), None);
    }
}
