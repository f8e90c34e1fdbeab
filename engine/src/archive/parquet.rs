//! Parquet archives: a directory of files, each published atomically by
//! rename once completely written.

use std::fs::File;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::SessionContext;
use parquet::arrow::ArrowWriter;

use super::{ArchiveConfig, ReplaceRange, Staged, TableWriter};
use crate::checkpoint::CheckpointStore;
use crate::{Error, Result};

pub(super) async fn register(
    config: &ArchiveConfig,
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
) -> Result<()> {
    std::fs::create_dir_all(&config.path).map_err(|e| Error::io(&config.path, e))?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let dir = format!("{}/", config.path.display());
    ctx.register_listing_table(name, &dir, options, Some(schema), None)
        .await?;
    Ok(())
}

/// Writes one Parquet file per commit.
pub(super) struct ParquetWriter {
    config: ArchiveConfig,
    owner: String,
}

impl ParquetWriter {
    pub fn new(config: &ArchiveConfig, owner: &str) -> Self {
        ParquetWriter {
            config: config.clone(),
            owner: owner.to_string(),
        }
    }
}

/// A staged Parquet file: hidden while staged (DataFusion and other
/// readers skip names starting with a dot), renamed to its final name at
/// commit.
fn staged_name(name: &str) -> String {
    format!(".{name}.staged")
}

#[async_trait]
impl TableWriter for ParquetWriter {
    /// Only a whole-table rewrite: Parquet files cannot drop some windows.
    /// The old files are hidden, then the replay's first rows published;
    /// windows not replayed yet are missing meanwhile, never doubled.
    async fn replace(
        &mut self,
        batches: Vec<RecordBatch>,
        range: &ReplaceRange,
        epoch: u64,
        _recovering: bool,
    ) -> Result<()> {
        if !range.full {
            return Err(
                self.error("a Parquet archive can only be rewritten whole (RESTART FROM EARLIEST)")
            );
        }
        self.hide_published()?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| self.error("nothing to write"))?;
        let staged = self.stage(&schema, batches, epoch, None).await?;
        self.commit(&staged.manifest, epoch, None, false).await
    }

    async fn stage(
        &mut self,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        epoch: u64,
        _store: Option<&CheckpointStore>,
    ) -> Result<Staged> {
        let schema = Arc::clone(schema);
        let dir = self.config.path.clone();
        // Time-ordered names keep the files in commit order when listed.
        let name = format!(
            "part-{:013}-{epoch:08}-{}.parquet",
            chrono::Utc::now().timestamp_millis(),
            uuid::Uuid::new_v4().simple()
        );
        let staged = staged_name(&name);
        let written = tokio::task::spawn_blocking(move || -> Result<u64> {
            let temp = dir.join(&staged);
            let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
            let mut writer = ArrowWriter::try_new(file, schema, None)
                .map_err(|e| Error::invalid(e.to_string()))?;
            for batch in &batches {
                writer
                    .write(batch)
                    .map_err(|e| Error::invalid(e.to_string()))?;
            }
            let file = writer
                .into_inner()
                .map_err(|e| Error::invalid(e.to_string()))?;
            // Durable before the checkpoint that names it.
            file.sync_all().map_err(|e| Error::io(&temp, e))?;
            file.metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io(&temp, e))
        })
        .await
        .map_err(|e| Error::invalid(format!("parquet writer task failed: {e}")))?;
        let bytes = written.map_err(|e| self.error(e))?;
        Ok(Staged {
            manifest: serde_json::json!({ "files": [name] }),
            bytes,
        })
    }

    async fn commit(
        &mut self,
        staged: &serde_json::Value,
        epoch: u64,
        _store: Option<&CheckpointStore>,
        _recovering: bool,
    ) -> Result<()> {
        let files = staged
            .get("files")
            .and_then(|f| f.as_array())
            .ok_or_else(|| self.error(format!("the staged files of epoch {epoch} are damaged")))?;
        for name in files {
            let name = name.as_str().ok_or_else(|| {
                self.error(format!("the staged files of epoch {epoch} are damaged"))
            })?;
            let (temp, target) = (
                self.config.path.join(staged_name(name)),
                self.config.path.join(name),
            );
            match std::fs::rename(&temp, &target) {
                Ok(()) => {}
                // Renamed by the commit a crash interrupted.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.exists() => {}
                Err(e) => return Err(self.error(Error::io(&temp, e))),
            }
        }
        Ok(())
    }
}

impl ParquetWriter {
    /// Hides every published file (before a replay's first commit).
    fn hide_published(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.config.path)
            .map_err(|e| self.error(Error::io(&self.config.path, e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.error(Error::io(&self.config.path, e)))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && name.ends_with(".parquet") {
                let hidden = self.config.path.join(format!(".{name}.replaced"));
                std::fs::rename(entry.path(), &hidden)
                    .map_err(|e| self.error(Error::io(&hidden, e)))?;
            }
        }
        Ok(())
    }

    fn error<E: std::fmt::Display + 'static>(&self, e: E) -> Error {
        let any = &e as &dyn std::any::Any;
        let transient = any.is::<std::io::Error>()
            || any.is::<object_store::Error>()
            || any.downcast_ref::<Error>().is_some_and(Error::is_transient);
        Error::Archive {
            owner: self.owner.clone(),
            location: self.config.path.display().to_string(),
            message: e.to_string(),
            transient,
        }
    }
}
