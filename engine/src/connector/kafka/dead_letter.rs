//! Dead letters: records of a `bad_data = 'dead_letter'` stream that did
//! not decode, kept with their raw bytes and where they came from, and
//! queryable as the table `<stream>_dead_letter`.
//!
//! Each job reading the stream writes the bad records it meets as Parquet
//! files (written under a temporary name, then renamed, so readers never
//! see half a file). Two jobs over one stream, or a job replaying after a
//! restart, meet the same records: the table shows each (topic, partition,
//! offset) once, as first seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::SessionContext;
use parquet::arrow::ArrowWriter;

use crate::{Error, Result};

/// Appended to a stream's name to name its dead-letter table.
pub(crate) const DEAD_LETTER_SUFFIX: &str = "_dead_letter";

/// The columns of a dead-letter table.
pub(crate) fn dead_letter_schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Nanosecond, None);
    Arc::new(Schema::new(vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_timestamp", time.clone(), true),
        Field::new("raw", DataType::Binary, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("failed_at", time, false),
    ]))
}

/// One record that did not decode.
pub(crate) struct DeadLetter<'a> {
    pub raw: &'a [u8],
    pub error: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

/// The dead-letter table of one stream.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterTable {
    dir: PathBuf,
}

impl DeadLetterTable {
    /// The table of `stream` under `data_dir`.
    pub fn new(data_dir: &Path, stream: &str) -> Self {
        DeadLetterTable {
            dir: data_dir.join("_dead_letter").join(stream),
        }
    }

    /// Keeps `records` (from `topic`) durably before returning.
    pub fn write(&mut self, topic: &str, records: &[DeadLetter<'_>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let batch = RecordBatch::try_new(
            dead_letter_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(records.iter().map(|_| topic))),
                Arc::new(Int32Array::from_iter_values(
                    records.iter().map(|r| r.partition),
                )),
                Arc::new(Int64Array::from_iter_values(
                    records.iter().map(|r| r.offset),
                )),
                Arc::new(TimestampNanosecondArray::from_iter(
                    records
                        .iter()
                        .map(|r| r.timestamp_ms.map(|ms| ms.saturating_mul(1_000_000))),
                )),
                Arc::new(BinaryArray::from_iter_values(records.iter().map(|r| r.raw))),
                Arc::new(StringArray::from_iter_values(
                    records.iter().map(|r| r.error),
                )),
                Arc::new(TimestampNanosecondArray::from_value(now, records.len())),
            ],
        )?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let name = format!("part-{}.parquet", uuid::Uuid::new_v4());
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let parquet_error =
            |e: parquet::errors::ParquetError| Error::invalid(format!("dead-letter table: {e}"));
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet_error)?;
        writer.write(&batch).map_err(parquet_error)?;
        let file = writer.into_inner().map_err(parquet_error)?;
        file.sync_all().map_err(|e| Error::io(&temporary, e))?;
        let target = self.dir.join(name);
        std::fs::rename(&temporary, &target).map_err(|e| Error::io(&target, e))?;
        Ok(())
    }

    /// Makes the table queryable as `name`: each record once.
    pub async fn register(&self, ctx: &SessionContext, name: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let files = format!("{name}__files");
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let dir = format!("{}/", self.dir.display());
        ctx.register_listing_table(&files, &dir, options, Some(dead_letter_schema()), None)
            .await?;
        let view = ctx
            .sql(&format!(
                "SELECT DISTINCT ON (_topic, _partition, _offset) \
                 _topic, _partition, _offset, _timestamp, raw, error, failed_at \
                 FROM \"{files}\" ORDER BY _topic, _partition, _offset, failed_at"
            ))
            .await?
            .into_view();
        ctx.register_table(name, view)?;
        Ok(())
    }
}
