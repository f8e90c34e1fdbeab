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

use super::{ArchiveConfig, TableWriter};
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

#[async_trait]
impl TableWriter for ParquetWriter {
    async fn write(&mut self, schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<()> {
        let schema = Arc::clone(schema);
        let dir = self.config.path.clone();
        // Time-ordered names keep the files in commit order when listed.
        let name = format!(
            "part-{:013}-{}.parquet",
            chrono::Utc::now().timestamp_millis(),
            uuid::Uuid::new_v4().simple()
        );
        let written = tokio::task::spawn_blocking(move || -> Result<()> {
            let temp = dir.join(format!(".{name}.inprogress"));
            let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
            let mut writer = ArrowWriter::try_new(file, schema, None)
                .map_err(|e| Error::invalid(e.to_string()))?;
            for batch in &batches {
                writer
                    .write(batch)
                    .map_err(|e| Error::invalid(e.to_string()))?;
            }
            writer.close().map_err(|e| Error::invalid(e.to_string()))?;
            let target = dir.join(&name);
            std::fs::rename(&temp, &target).map_err(|e| Error::io(&target, e))
        })
        .await
        .map_err(|e| Error::invalid(format!("parquet writer task failed: {e}")))?;
        written.map_err(|e| Error::Archive {
            owner: self.owner.clone(),
            location: self.config.path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(())
    }
}
