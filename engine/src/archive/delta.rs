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

use super::{ArchiveConfig, TableWriter};
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
    })
}

fn archive_error(config: &ArchiveConfig, owner: &str, e: impl std::fmt::Display) -> Error {
    Error::Archive {
        owner: owner.to_string(),
        location: config.location(),
        message: e.to_string(),
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

/// Appends to a Delta table, one Delta commit per archive commit.
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
}

#[async_trait]
impl TableWriter for DeltaWriter {
    async fn write(&mut self, _schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<()> {
        self.table = self
            .table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(|e| archive_error(&self.config, &self.owner, e))?;
        Ok(())
    }
}
