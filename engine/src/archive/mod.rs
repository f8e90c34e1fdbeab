//! Archives: where a view's results (or a file sink's rows) are committed,
//! and from where ad-hoc queries read them.

mod delta;
mod parquet;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use fibers_sql::Options;

use crate::checkpoint::CheckpointStore;
use crate::connector::kafka::{KafkaSinkConfig, KafkaWriter, SINK_OPTIONS};
use crate::{Error, Result};

/// Archive formats.
pub(crate) const FORMATS: &[&str] = &["delta", "parquet"];

/// Sink connectors: the archive formats, and Kafka topics.
pub(crate) const SINK_CONNECTORS: &[&str] = &["delta", "parquet", "kafka"];

/// Where and how a view or sink archives its rows.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveConfig {
    pub format: ArchiveFormat,
    /// The path as written (shown by `SHOW VIEWS`).
    pub path_written: String,
    /// The path resolved against the data dir.
    pub path: PathBuf,
    pub commit: CommitPolicy,
    /// Where a Kafka sink produces (format `Kafka` only).
    pub kafka: Option<Arc<KafkaSinkConfig>>,
}

/// The table format of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveFormat {
    Delta,
    Parquet,
    /// Not an archive: a Kafka sink's topic.
    Kafka,
}

impl ArchiveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Delta => "delta",
            ArchiveFormat::Parquet => "parquet",
            ArchiveFormat::Kafka => "kafka",
        }
    }
}

/// When buffered rows are committed: at each checkpoint (or, with
/// checkpoints off, on the same interval), and early once `max_rows` are
/// buffered. A commit groups many windows; committing per row or per
/// window would flood the table with tiny files and log entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitPolicy {
    /// The job's `checkpoint_interval` (or its older name,
    /// `commit_interval`), when its `WITH` sets one; else the engine's.
    pub interval: Option<std::time::Duration>,
    /// `Some(false)` when the job's `WITH` turns checkpoints off.
    pub checkpoints: Option<bool>,
    pub max_rows: usize,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            interval: None,
            checkpoints: None,
            max_rows: 1_000_000,
        }
    }
}

/// Options of views and file sinks besides the format key.
pub(crate) const OPTIONS: &[&str] = &[
    "path",
    "checkpoint_interval",
    "commit_interval",
    "commit_rows",
];

impl ArchiveConfig {
    /// Reads `path`, `commit_interval` and `commit_rows`; `format_key` is
    /// `archive` for views and `connector` for sinks.
    pub fn from_options(
        options: &mut Options,
        format_key: &str,
        owner: &str,
        name: &str,
        data_dir: &Path,
    ) -> Result<Self> {
        let sink = format_key == "connector";
        let format = match options.take(format_key) {
            None => ArchiveFormat::Delta,
            Some(f) => match f.to_ascii_lowercase().as_str() {
                "delta" => ArchiveFormat::Delta,
                "parquet" => ArchiveFormat::Parquet,
                "kafka" if sink => ArchiveFormat::Kafka,
                _ => {
                    let valid = if sink { SINK_CONNECTORS } else { FORMATS };
                    return Err(Error::invalid(format!(
                        "unknown {format_key} '{f}' for {owner} '{name}'; expected one of: {}",
                        valid.join(", ")
                    )));
                }
            },
        };
        if format == ArchiveFormat::Kafka {
            let config = KafkaSinkConfig::from_options(options, &format!("{owner} '{name}'"))?;
            let mut commit = CommitPolicy::default();
            take_commit_policy(options, &mut commit)?;
            return Ok(ArchiveConfig {
                format,
                path_written: config.topic.clone(),
                path: PathBuf::new(),
                commit,
                kafka: Some(Arc::new(config)),
            });
        }
        let path_written = options.take("path").unwrap_or_else(|| name.to_string());
        let mut commit = CommitPolicy::default();
        take_commit_policy(options, &mut commit)?;
        Ok(ArchiveConfig {
            format,
            path: data_dir.join(&path_written),
            path_written,
            commit,
            kafka: None,
        })
    }

    /// The options valid beside the format key.
    pub fn valid_options(&self) -> &'static [&'static str] {
        match self.format {
            ArchiveFormat::Kafka => SINK_OPTIONS,
            _ => OPTIONS,
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// Creates the (empty) archive so it can be queried before the first
    /// commit. An existing archive is kept (re-created views append).
    pub async fn create(&self, owner: &str, schema: &SchemaRef) -> Result<()> {
        let schema = archive_schema(schema);
        match self.format {
            ArchiveFormat::Delta => delta::create(self, owner, &schema).await,
            ArchiveFormat::Parquet => {
                std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))
            }
            ArchiveFormat::Kafka => match &self.kafka {
                Some(config) => config.check(owner, &schema),
                None => Ok(()),
            },
        }
    }

    /// Opens a writer for a job.
    pub async fn open(&self, owner: &str, schema: &SchemaRef) -> Result<Archive> {
        let writer: Box<dyn TableWriter> = match self.format {
            ArchiveFormat::Delta => Box::new(delta::DeltaWriter::open(self, owner).await?),
            ArchiveFormat::Parquet => Box::new(parquet::ParquetWriter::new(self, owner)),
            ArchiveFormat::Kafka => {
                let config = self
                    .kafka
                    .as_ref()
                    .ok_or_else(|| Error::invalid("a Kafka sink without settings"))?;
                Box::new(KafkaWriter::new(config, archive_schema(schema), owner))
            }
        };
        Ok(Archive {
            pending: Pending::new(archive_schema(schema)),
            writer,
        })
    }

    /// Whether rows can be read back (a table, not a Kafka topic).
    pub fn readable(&self) -> bool {
        self.format != ArchiveFormat::Kafka
    }

    /// Makes the archive queryable as `name` in an ad-hoc query.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
        schema: &SchemaRef,
    ) -> Result<()> {
        let schema = archive_schema(schema);
        match self.format {
            ArchiveFormat::Delta => delta::register(self, ctx, name).await,
            ArchiveFormat::Parquet => parquet::register(self, ctx, name, schema).await,
            ArchiveFormat::Kafka => Err(Error::invalid(format!(
                "sink '{name}' writes to Kafka topic '{}' and keeps no table; \
                 query a stream over that topic instead",
                self.path_written
            ))),
        }
    }
}

/// Writes a job's output to a table format or topic in two phases, so a
/// checkpoint can sit between them: [`TableWriter::stage`] writes an
/// epoch's rows where no reader sees them yet and says what it wrote;
/// after the checkpoint that records this is complete,
/// [`TableWriter::commit`] makes them visible.
#[async_trait]
pub(crate) trait TableWriter: Send {
    /// Writes `batches` (of `schema`) invisibly; returns what `commit`
    /// needs, which the checkpoint manifest keeps. `store` is the
    /// checkpoint being taken, for a writer that keeps staged rows there.
    async fn stage(
        &mut self,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        epoch: u64,
        store: Option<&CheckpointStore>,
    ) -> Result<Staged>;

    /// Makes what `stage` wrote visible, atomically where the format
    /// allows. Committing an epoch the target already records is a no-op
    /// when `recovering` (a restart finishing the commit a crash
    /// interrupted) and an error otherwise: another instance of the job
    /// has moved on, and this one is a zombie.
    async fn commit(
        &mut self,
        staged: &serde_json::Value,
        epoch: u64,
        store: Option<&CheckpointStore>,
        recovering: bool,
    ) -> Result<()>;

    /// The newest epoch the target records as committed by this job, so a
    /// job starting without a checkpoint numbers its epochs after it.
    async fn last_epoch(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// What a writer staged for an epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Staged {
    /// Kept in the checkpoint manifest; `commit` reads it back.
    pub manifest: serde_json::Value,
    /// Bytes written.
    pub bytes: u64,
}

/// A job's writer of its archive: rows are buffered and committed together.
pub(crate) struct Archive {
    pending: Pending,
    writer: Box<dyn TableWriter>,
}

impl Archive {
    /// Buffers rows for the next commit.
    pub fn buffer(&mut self, batch: &RecordBatch) -> Result<()> {
        self.pending.push(batch)
    }

    /// Rows buffered since the last commit.
    pub fn buffered_rows(&self) -> usize {
        self.pending.rows
    }

    /// Stages the buffered rows as epoch `epoch` (nothing when none are
    /// buffered: `Staged::manifest` is null).
    pub async fn stage(&mut self, epoch: u64, store: Option<&CheckpointStore>) -> Result<Staged> {
        if self.pending.rows == 0 {
            return Ok(Staged::default());
        }
        let batches = self.pending.take();
        self.writer
            .stage(&self.pending.schema, batches, epoch, store)
            .await
    }

    /// Commits what [`Archive::stage`] staged for `epoch`.
    pub async fn commit(
        &mut self,
        staged: &serde_json::Value,
        epoch: u64,
        store: Option<&CheckpointStore>,
        recovering: bool,
    ) -> Result<()> {
        if staged.is_null() {
            return Ok(());
        }
        self.writer.commit(staged, epoch, store, recovering).await
    }

    /// The newest epoch the archive records as committed by this job.
    pub async fn last_epoch(&mut self) -> Result<Option<u64>> {
        self.writer.last_epoch().await
    }
}

fn take_commit_policy(options: &mut Options, commit: &mut CommitPolicy) -> Result<()> {
    if let Some(value) = options.take("checkpoint_interval") {
        match crate::checkpoint::parse_interval(&value).map_err(Error::invalid)? {
            Some(interval) => {
                commit.interval = Some(interval);
                commit.checkpoints = Some(true);
            }
            None => commit.checkpoints = Some(false),
        }
    }
    if let Some(interval) = options.take_duration("commit_interval")? {
        commit.interval.get_or_insert(interval);
    }
    if let Some(rows) = options.take_parsed::<usize>("commit_rows", "a number of rows")? {
        commit.max_rows = rows.max(1);
    }
    Ok(())
}

/// The schema rows are archived with: timestamps in microseconds (Delta's
/// unit), strings and binaries in their plain Arrow types, every column
/// nullable so a plan's nullability inference can never reject a write.
pub(crate) fn archive_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), archive_type(f.data_type()), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn archive_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// Rows waiting for the next commit, already in the archive schema.
#[derive(Debug)]
struct Pending {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Pending {
    fn new(schema: SchemaRef) -> Self {
        Pending {
            schema,
            batches: Vec::new(),
            rows: 0,
        }
    }

    fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.batches.push(to_archive(batch, &self.schema)?);
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The buffered batches; the buffer is empty afterwards.
    fn take(&mut self) -> Vec<RecordBatch> {
        self.rows = 0;
        std::mem::take(&mut self.batches)
    }
}

/// Converts a batch to the archive schema.
pub(crate) fn to_archive(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
