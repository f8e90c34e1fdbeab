//! Delta Lake archives through the `deltalake` crate.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};

use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};

use super::{ArchiveConfig, ReplaceRange, Staged, TableWriter};
use crate::checkpoint::CheckpointStore;
use crate::error::FENCED;
use crate::{Error, Result};

fn table_url(config: &ArchiveConfig) -> Result<Url> {
    std::fs::create_dir_all(&config.path).map_err(|e| Error::io(&config.path, e))?;
    let path = config
        .path
        .canonicalize()
        .map_err(|e| Error::io(&config.path, e))?;
    Url::from_directory_path(&path).map_err(|()| Error::Archive {
        owner: String::new(),
        location: config.location(),
        message: "not an absolute path".into(),
        transient: false,
    })
}

fn archive_error<E: std::fmt::Display + 'static>(
    config: &ArchiveConfig,
    owner: &str,
    e: E,
) -> Error {
    // The store failing (I/O, an object store that did not answer) may
    // pass; a damaged log, a schema mismatch or a conflict will not.
    let transient = (&e as &dyn std::any::Any)
        .downcast_ref::<DeltaTableError>()
        .is_some_and(|e| {
            matches!(
                e,
                DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. }
            )
        });
    // Delta's kernel errors print their backtrace after the message when
    // RUST_BACKTRACE is set: hundreds of lines no user needs.
    let message = e.to_string();
    let message = match message.find("\n   0: ") {
        Some(backtrace) => message[..backtrace].trim_end().to_string(),
        None => message,
    };
    Error::Archive {
        owner: owner.to_string(),
        location: config.location(),
        message,
        transient,
    }
}

pub(super) async fn create(config: &ArchiveConfig, owner: &str, schema: &SchemaRef) -> Result<()> {
    let url = table_url(config)?;
    // An existing table is kept; loading a missing one would log an error.
    if config.path.join("_delta_log").is_dir() {
        return Ok(());
    }
    let table = DeltaTableBuilder::from_url(url)
        .and_then(|b| b.build())
        .map_err(|e| archive_error(config, owner, e))?;
    let delta_schema: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| archive_error(config, owner, e))?;
    table
        .create()
        .with_columns(delta_schema.fields().cloned())
        .with_save_mode(SaveMode::Ignore)
        .await
        .map_err(|e| archive_error(config, owner, e))?;
    Ok(())
}

pub(super) async fn register(
    config: &ArchiveConfig,
    ctx: &SessionContext,
    name: &str,
) -> Result<()> {
    let table = deltalake::open_table(table_url(config)?)
        .await
        .map_err(|e| archive_error(config, name, e))?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| archive_error(config, name, e))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| archive_error(config, name, e))?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// The application id a job's Delta commits carry: their version is the
/// checkpoint epoch, so the table itself records which epochs it holds.
pub(super) fn app_id(owner: &str) -> String {
    format!("datafibers/{owner}")
}

/// Appends to a Delta table, one Delta commit per epoch: `stage` writes the
/// epoch's Parquet files into the table directory (no reader sees a file
/// the log does not name), `commit` adds them to the log in one commit
/// carrying the application transaction (app id, epoch).
pub(super) struct DeltaWriter {
    config: ArchiveConfig,
    owner: String,
    table: DeltaTable,
}

impl DeltaWriter {
    pub async fn open(config: &ArchiveConfig, owner: &str) -> Result<Self> {
        let table = deltalake::open_table(table_url(config)?)
            .await
            .map_err(|e: DeltaTableError| archive_error(config, owner, e))?;
        Ok(DeltaWriter {
            config: config.clone(),
            owner: owner.to_string(),
            table,
        })
    }

    fn error(&self, e: impl std::fmt::Display + 'static) -> Error {
        archive_error(&self.config, &self.owner, e)
    }

    /// The epoch the table records for this job, after catching up with
    /// the log.
    async fn recorded_epoch(&mut self) -> Result<Option<u64>> {
        self.table
            .update_incremental(None)
            .await
            .map_err(|e| self.error(e))?;
        let log_store = self.table.log_store();
        let snapshot = self.table.snapshot().map_err(|e| self.error(e))?;
        let version = snapshot
            .transaction_version(log_store.as_ref(), app_id(&self.owner))
            .await
            .map_err(|e| self.error(e))?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }
}

/// How many times a commit that lost a race with another instance of its
/// job is claimed and tried again.
const CONFLICT_RETRIES: u32 = 3;

/// Whether a commit failed because a concurrent commit carried a
/// transaction of the same application (another instance of the job).
fn is_concurrent_transaction(e: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
        }
    )
}

impl DeltaWriter {
    /// Whether epoch `epoch` is still to be committed: `false` when the
    /// table records it and this is a recovery finishing it; an error
    /// when the table records it (or a later one) otherwise, since another
    /// instance of the job has then moved on.
    async fn claim(&mut self, epoch: u64, recovering: bool) -> Result<bool> {
        match self.recorded_epoch().await? {
            Some(recorded) if recorded >= epoch && recovering => Ok(false),
            Some(recorded) if recorded >= epoch => Err(self.error(format!(
                "the table already holds epoch {recorded} of job '{}', and this instance would \
                 commit epoch {epoch}: {FENCED}; this one stops",
                self.owner
            ))),
            _ => Ok(true),
        }
    }

    /// The error for a commit of `epoch` that failed with `e`. Two instances
    /// can both pass [`DeltaWriter::claim`] and race to commit; Delta's
    /// conflict check then refuses the loser with a concurrent-transaction
    /// error. When the table now records this epoch (or a later one), the
    /// loser is a zombie and says so, as if it had lost before claiming.
    async fn commit_failed(&mut self, e: DeltaTableError, epoch: u64) -> Error {
        match self.recorded_epoch().await {
            Ok(Some(recorded)) if recorded >= epoch => self.error(format!(
                "the table already holds epoch {recorded} of job '{}', committed while this \
                 instance committed epoch {epoch}: {FENCED}; this one stops",
                self.owner
            )),
            _ => self.error(e),
        }
    }
}

#[async_trait]
impl TableWriter for DeltaWriter {
    async fn stage(
        &mut self,
        _schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        _epoch: u64,
        _store: Option<&CheckpointStore>,
    ) -> Result<Staged> {
        let mut writer = RecordBatchWriter::for_table(&self.table).map_err(|e| self.error(e))?;
        for batch in batches {
            writer.write(batch).await.map_err(|e| self.error(e))?;
        }
        let adds = writer.flush().await.map_err(|e| self.error(e))?;
        let bytes = adds.iter().map(|a| a.size.max(0) as u64).sum();
        let manifest = serde_json::to_value(&adds).map_err(|e| self.error(e))?;
        Ok(Staged { manifest, bytes })
    }

    async fn commit(
        &mut self,
        staged: &serde_json::Value,
        epoch: u64,
        _store: Option<&CheckpointStore>,
        recovering: bool,
    ) -> Result<()> {
        let adds: Vec<Add> = serde_json::from_value(staged.clone()).map_err(|e| {
            self.error(format!(
                "the staged files of epoch {epoch} are damaged: {e}"
            ))
        })?;
        let version = i64::try_from(epoch).map_err(|e| self.error(e))?;
        let actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        let mut conflicts = 0;
        loop {
            if !self.claim(epoch, recovering).await? {
                return Ok(());
            }
            let properties = CommitProperties::default()
                .with_application_transaction(Transaction::new(app_id(&self.owner), version));
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            let log_store = self.table.log_store();
            let snapshot = self.table.snapshot().map_err(|e| self.error(e))?;
            let committed = CommitBuilder::from(properties)
                .with_actions(actions.clone())
                .build(Some(snapshot), log_store, operation)
                .await;
            match committed {
                Ok(_) => return Ok(()),
                // Another instance of this job committed first. If it
                // recorded an older epoch, it is the zombie and this
                // instance commits over it (the zombie's next claim then
                // fails); if a newer one, the next claim fails here.
                Err(e) if conflicts < CONFLICT_RETRIES && is_concurrent_transaction(&e) => {
                    conflicts += 1;
                }
                Err(e) => return Err(self.commit_failed(e, epoch).await),
            }
        }
    }

    async fn last_epoch(&mut self) -> Result<Option<u64>> {
        self.recorded_epoch().await
    }

    fn records_epochs(&self) -> bool {
        true
    }

    async fn replace(
        &mut self,
        batches: Vec<RecordBatch>,
        range: &ReplaceRange,
        epoch: u64,
        recovering: bool,
    ) -> Result<()> {
        if !self.claim(epoch, recovering).await? {
            return Ok(());
        }
        let version = i64::try_from(epoch).map_err(|e| self.error(e))?;
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(app_id(&self.owner), version));
        let mut write = self
            .table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(properties);
        if !range.full {
            let tz = self
                .table
                .snapshot()
                .ok()
                .and_then(|s| {
                    let schema = s.snapshot().arrow_schema();
                    match schema.field_with_name(&range.column).ok()?.data_type() {
                        arrow::datatypes::DataType::Timestamp(_, tz) => Some(tz.clone()),
                        _ => None,
                    }
                })
                .flatten();
            let at = |ns: i64| {
                lit(ScalarValue::TimestampMicrosecond(
                    Some(ns.div_euclid(1000)),
                    tz.clone(),
                ))
            };
            let mut predicate = col(range.column.as_str()).lt_eq(at(range.through));
            if let Some(after) = range.after {
                predicate = col(range.column.as_str()).gt(at(after)).and(predicate);
            }
            write = write.with_replace_where(predicate);
        }
        match write.await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.commit_failed(e, epoch).await),
        }
    }
}
