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

use arrow::array::AsArray;

use crate::checkpoint::{CheckpointStore, KeptRows, Rewrite};
use crate::connector::kafka::{KafkaSinkConfig, KafkaWriter, SINK_OPTIONS};
use crate::{Error, Result};

/// Archive formats.
/// Archive formats of a view; `none` keeps nothing (an intermediate view
/// that other views read).
pub(crate) const FORMATS: &[&str] = &["delta", "parquet", "none"];

/// Sink connectors: the archive formats, Kafka topics, and `discard`.
pub(crate) const SINK_CONNECTORS: &[&str] = &["delta", "parquet", "kafka", "discard"];

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
    /// Not an archive: a sink that counts its rows and drops them, for
    /// benchmarks and for trying a query's cost without storing anything.
    Discard,
}

impl ArchiveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Delta => "delta",
            ArchiveFormat::Parquet => "parquet",
            ArchiveFormat::Kafka => "kafka",
            ArchiveFormat::Discard => "discard",
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

/// Options of a discard sink besides `connector`.
const DISCARD_OPTIONS: &[&str] = &["checkpoint_interval", "commit_interval", "commit_rows"];

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
                "discard" if sink => ArchiveFormat::Discard,
                // A view that keeps nothing: its rows only reach the views
                // and sinks that read it, and its subscribers.
                "none" if !sink => ArchiveFormat::Discard,
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
        if format == ArchiveFormat::Discard {
            // Nothing is kept, so there is nothing to commit early.
            let mut commit = CommitPolicy::default();
            take_commit_policy(options, &mut commit)?;
            return Ok(ArchiveConfig {
                format,
                path_written: String::new(),
                path: PathBuf::new(),
                commit,
                kafka: None,
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
            ArchiveFormat::Discard => DISCARD_OPTIONS,
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
            ArchiveFormat::Discard => Ok(()),
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
            ArchiveFormat::Discard => Box::new(DiscardWriter),
        };
        Ok(Archive {
            pending: Pending::new(archive_schema(schema)),
            discard: self.format == ArchiveFormat::Discard,
            writer,
            rewrite: None,
            replacing: KeptRows::default(),
        })
    }

    /// Whether rows can be read back (a table, not a Kafka topic or a
    /// discard sink).
    pub fn readable(&self) -> bool {
        !matches!(self.format, ArchiveFormat::Kafka | ArchiveFormat::Discard)
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
            ArchiveFormat::Discard => Err(Error::invalid(format!(
                "'{name}' keeps no table (a view with archive = 'none', or a discard sink), so \
                 there is nothing to query; SUBSCRIBE to its rows, or give it an archive \
                 (archive = 'delta') to query its results"
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

    /// Whether [`TableWriter::last_epoch`] reads what the target records,
    /// so a recovery can tell an archive that lost commits.
    fn records_epochs(&self) -> bool {
        false
    }

    /// Replaces the rows in `range` with `batches` in one commit (a replay
    /// rewriting its archive), as epoch `epoch`; like `commit`, a no-op
    /// for an epoch the target records when `recovering`.
    async fn replace(
        &mut self,
        _batches: Vec<RecordBatch>,
        _range: &ReplaceRange,
        _epoch: u64,
        _recovering: bool,
    ) -> Result<()> {
        Err(Error::invalid("this sink cannot rewrite what it wrote"))
    }
}

/// The writer of a `discard` sink: rows never reach it.
struct DiscardWriter;

#[async_trait]
impl TableWriter for DiscardWriter {
    async fn stage(
        &mut self,
        _schema: &SchemaRef,
        _batches: Vec<RecordBatch>,
        _epoch: u64,
        _store: Option<&CheckpointStore>,
    ) -> Result<Staged> {
        Ok(Staged::default())
    }

    async fn commit(
        &mut self,
        _staged: &serde_json::Value,
        _epoch: u64,
        _store: Option<&CheckpointStore>,
        _recovering: bool,
    ) -> Result<()> {
        Ok(())
    }
}

/// The rows a replay's commit replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ReplaceRange {
    /// Every row of the table.
    pub full: bool,
    /// The window-start column.
    pub column: String,
    /// Rows with a window start after this (nanoseconds; `None`: all)...
    pub after: Option<i64>,
    /// ...through this one.
    pub through: i64,
}

/// What [`Archive::stage`] keeps for a replacing commit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StagedReplace {
    range: ReplaceRange,
    /// The rows, in the checkpoint (Arrow IPC).
    file: String,
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
    /// A discard sink: rows are dropped as they arrive, never buffered.
    discard: bool,
    writer: Box<dyn TableWriter>,
    /// The rewrite of a replay, while it lasts.
    rewrite: Option<Rewrite>,
    /// Rows staged for a replacing commit.
    replacing: KeptRows,
}

impl Archive {
    /// Buffers rows for the next commit.
    pub fn buffer(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.discard {
            return Ok(());
        }
        self.pending.push(batch)
    }

    /// Rewrites the archive as a replay commits, starting with `rewrite`.
    pub fn set_rewrite(&mut self, rewrite: Option<Rewrite>) {
        self.rewrite = rewrite;
    }

    /// The rewrite still to be done, for the checkpoint.
    pub fn rewrite(&self) -> Option<Rewrite> {
        self.rewrite
    }

    /// Stages the buffered rows as epoch `epoch` (nothing when none are
    /// buffered: `Staged::manifest` is null).
    pub async fn stage(&mut self, epoch: u64, store: Option<&CheckpointStore>) -> Result<Staged> {
        if self.pending.rows == 0 {
            return Ok(Staged::default());
        }
        let batches = self.pending.take();
        if let Some(rewrite) = self.rewrite {
            return self.stage_replace(rewrite, batches, epoch, store).await;
        }
        self.writer
            .stage(&self.pending.schema, batches, epoch, store)
            .await
    }

    /// Stages rows that replace the windows from the last rewritten one
    /// through the newest among them.
    async fn stage_replace(
        &mut self,
        rewrite: Rewrite,
        batches: Vec<RecordBatch>,
        epoch: u64,
        store: Option<&CheckpointStore>,
    ) -> Result<Staged> {
        let schema = Arc::clone(&self.pending.schema);
        let newest = if rewrite.full {
            None
        } else {
            let index = schema.index_of(fibers_sql::WINDOW_START)?;
            batches
                .iter()
                .filter_map(|b| {
                    let starts = cast(
                        b.column(index),
                        &DataType::Timestamp(TimeUnit::Nanosecond, None),
                    )
                    .ok()?;
                    arrow::compute::max(
                        starts.as_primitive::<arrow::datatypes::TimestampNanosecondType>(),
                    )
                })
                .max()
        };
        let range = ReplaceRange {
            full: rewrite.full,
            column: fibers_sql::WINDOW_START.to_string(),
            after: rewrite.after,
            through: newest
                .unwrap_or(rewrite.through)
                .max(rewrite.after.unwrap_or(i64::MIN)),
        };
        // The next commit replaces from here; past the old rows there is
        // nothing left to replace.
        self.rewrite = if rewrite.full || range.through >= rewrite.through {
            None
        } else {
            Some(Rewrite {
                after: Some(range.through),
                ..rewrite
            })
        };
        let file = format!("replace-{epoch}.arrow");
        let bytes = self
            .replacing
            .keep(store, epoch, &file, &schema, batches)
            .await?;
        let manifest = serde_json::json!({
            "replace": serde_json::to_value(StagedReplace { range, file })
                .map_err(|e| Error::invalid(e.to_string()))?
        });
        Ok(Staged { manifest, bytes })
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
        if let Some(replace) = staged.get("replace") {
            let replace: StagedReplace = serde_json::from_value(replace.clone()).map_err(|e| {
                Error::invalid(format!("the staged rows of epoch {epoch} are damaged: {e}"))
            })?;
            let batches = self.replacing.take(store, epoch, &replace.file).await?;
            return self
                .writer
                .replace(batches, &replace.range, epoch, recovering)
                .await;
        }
        self.writer.commit(staged, epoch, store, recovering).await
    }

    /// The newest epoch the archive records as committed by this job.
    pub async fn last_epoch(&mut self) -> Result<Option<u64>> {
        self.writer.last_epoch().await
    }

    /// Whether the archive records the epochs committed to it.
    pub fn records_epochs(&self) -> bool {
        self.writer.records_epochs()
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
/// unit), strings and binaries in their plain Arrow types, unsigned integers
/// as signed ones, every column
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
        // Delta has no unsigned integers (ROW_NUMBER() is a UInt64): widen
        // to the next signed type; a UInt64 above i64::MAX fails the write.
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
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
                // Not the default (safe) cast, which would turn a value out
                // of range into a NULL.
                let options = arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                arrow::compute::cast_with_options(c, f.data_type(), &options)
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    use super::*;

    fn config(dir: &Path, format: ArchiveFormat) -> ArchiveConfig {
        ArchiveConfig {
            format,
            path_written: "t".into(),
            path: dir.join("t"),
            commit: CommitPolicy::default(),
            kafka: None,
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]))
    }

    fn rows(values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    /// Every `x` in the table, sorted, read through DataFusion.
    async fn read(config: &ArchiveConfig) -> Vec<i64> {
        let ctx = SessionContext::new();
        config.register(&ctx, "t", &schema()).await.unwrap();
        let batches = ctx
            .sql("SELECT x FROM t ORDER BY x")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    /// Buffers `batch`, stages it as epoch `n` and commits it.
    async fn epoch(archive: &mut Archive, n: u64, batch: RecordBatch) -> Result<()> {
        archive.buffer(&batch)?;
        let staged = archive.stage(n, None).await?;
        archive.commit(&staged.manifest, n, None, false).await
    }

    #[tokio::test]
    async fn a_delta_table_takes_each_epoch_once_and_refuses_a_zombie() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), ArchiveFormat::Delta);
        config.create("v", &schema()).await.unwrap();
        let mut live = config.open("v", &schema()).await.unwrap();
        assert_eq!(live.last_epoch().await.unwrap(), None);
        // A second instance of the job opens the table while it is at epoch 1.
        let mut zombie = config.open("v", &schema()).await.unwrap();
        epoch(&mut live, 1, rows(&[1, 2])).await.unwrap();
        epoch(&mut live, 2, rows(&[3])).await.unwrap();
        assert_eq!(live.last_epoch().await.unwrap(), Some(2));

        // The zombie's epoch 2 is refused, and nothing of it is visible.
        let e = epoch(&mut zombie, 2, rows(&[100]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("another instance of the job has moved on"),
            "{e}"
        );
        assert_eq!(read(&config).await, [1, 2, 3]);

        // A recovery finishing epoch 3 twice writes it once.
        live.buffer(&rows(&[4, 5])).unwrap();
        let staged = live.stage(3, None).await.unwrap();
        live.commit(&staged.manifest, 3, None, true).await.unwrap();
        live.commit(&staged.manifest, 3, None, true).await.unwrap();
        assert_eq!(read(&config).await, [1, 2, 3, 4, 5]);

        // Staged but uncommitted files are invisible.
        live.buffer(&rows(&[6])).unwrap();
        live.stage(4, None).await.unwrap();
        assert_eq!(read(&config).await, [1, 2, 3, 4, 5]);
        // Another job's epochs are its own.
        let mut other = config.open("w", &schema()).await.unwrap();
        assert_eq!(other.last_epoch().await.unwrap(), None);
        epoch(&mut other, 1, rows(&[7])).await.unwrap();
        assert_eq!(read(&config).await, [1, 2, 3, 4, 5, 7]);
    }

    fn window_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                fibers_sql::WINDOW_START,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("x", DataType::Int64, true),
        ]))
    }

    /// Rows (window start in seconds, x).
    fn windows(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            window_schema(),
            vec![
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.0 * 1_000_000))
                        .collect::<arrow::array::TimestampMicrosecondArray>(),
                ),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    async fn read_windows(config: &ArchiveConfig) -> Vec<(i64, i64)> {
        let ctx = SessionContext::new();
        config.register(&ctx, "t", &window_schema()).await.unwrap();
        let batches = ctx
            .sql("SELECT CAST(window_start AS BIGINT) / 1000000, x FROM t ORDER BY 1, 2")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let (w, x) = (
                    b.column(0).as_primitive::<Int64Type>(),
                    b.column(1).as_primitive::<Int64Type>(),
                );
                (0..b.num_rows())
                    .map(|i| (w.value(i), x.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_replay_replaces_the_windows_it_covers_in_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), ArchiveFormat::Delta);
        config.create("v", &window_schema()).await.unwrap();
        let mut old = config.open("v", &window_schema()).await.unwrap();
        epoch(
            &mut old,
            1,
            windows(&[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)]),
        )
        .await
        .unwrap();

        // A replay from just after window 2, the old job having committed
        // through window 5.
        let mut replay = config.open("v", &window_schema()).await.unwrap();
        let second = 1_000_000_000;
        replay.set_rewrite(Some(Rewrite {
            full: false,
            after: Some(2 * second),
            through: 5 * second,
        }));
        // The first commit covers windows 3 and 4 (window 4 no longer has
        // rows for x = 40, and gains one).
        epoch(&mut replay, 2, windows(&[(3, 31), (4, 41), (4, 42)]))
            .await
            .unwrap();
        assert_eq!(
            read_windows(&config).await,
            [
                (1, 10),
                (2, 20),
                (3, 31),
                (4, 41),
                (4, 42),
                (5, 50),
                (6, 60)
            ]
        );
        // The next covers window 5; window 6's old rows are past the range.
        epoch(&mut replay, 3, windows(&[(5, 51)])).await.unwrap();
        assert_eq!(replay.rewrite(), None, "the rewrite is over");
        // From then on rows are appended.
        epoch(&mut replay, 4, windows(&[(7, 70)])).await.unwrap();
        assert_eq!(
            read_windows(&config).await,
            [
                (1, 10),
                (2, 20),
                (3, 31),
                (4, 41),
                (4, 42),
                (5, 51),
                (6, 60),
                (7, 70)
            ]
        );
        assert_eq!(replay.last_epoch().await.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn parquet_files_appear_at_commit_and_a_repeated_commit_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), ArchiveFormat::Parquet);
        config.create("v", &schema()).await.unwrap();
        let mut archive = config.open("v", &schema()).await.unwrap();
        archive.buffer(&rows(&[1, 2])).unwrap();
        let staged = archive.stage(1, None).await.unwrap();
        assert!(read(&config).await.is_empty(), "staged rows are visible");
        archive
            .commit(&staged.manifest, 1, None, false)
            .await
            .unwrap();
        assert_eq!(read(&config).await, [1, 2]);
        archive
            .commit(&staged.manifest, 1, None, true)
            .await
            .unwrap();
        assert_eq!(read(&config).await, [1, 2]);
    }
}
