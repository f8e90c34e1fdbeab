//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Each reads untrusted bytes through the same code the engine runs on
//! them: records through a stream's decoder (record limits, bisection and
//! all), checkpoint files through [`CheckpointStore`]. None of this is a
//! stable API.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::Result;
use crate::checkpoint::CheckpointStore;
use crate::format::avro::AvroDecoder;
use crate::format::{Format, RecordDecoder, RecordLimits, Records};

/// The text formats a stream may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One JSON object per record.
    Json,
    /// One CSV line per record, no header.
    Csv,
}

/// What decoding some records gave.
#[derive(Debug)]
pub struct Decoded {
    /// One row per good record, in record order.
    pub batch: RecordBatch,
    /// The bad records (index, reason), in order.
    pub bad: Vec<(usize, String)>,
}

fn records(items: &[&[u8]]) -> Records {
    let mut records = Records::with_capacity(items.len(), items.iter().map(|r| r.len() + 1).sum());
    for record in items {
        records.push(record);
    }
    records
}

fn run(decoder: &mut dyn RecordDecoder, items: &[&[u8]]) -> Result<Decoded> {
    let decoded = decoder.decode(&records(items))?;
    Ok(Decoded {
        batch: decoded.batch,
        bad: decoded.bad,
    })
}

/// Decodes `items` as a stream of `schema` in `format` does, with the
/// default record limits.
pub fn decode_text(format: TextFormat, schema: SchemaRef, items: &[&[u8]]) -> Result<Decoded> {
    let format = match format {
        TextFormat::Json => Format::Json,
        TextFormat::Csv => Format::Csv { header: false },
    };
    let mut decoder = format.decoder(schema, RecordLimits::default())?;
    run(decoder.as_mut(), items)
}

/// Decodes `items` as Confluent-framed Avro records whose writer schemas
/// are `writers` (registry id, schema JSON), with the default limits.
pub fn decode_avro(
    schema: SchemaRef,
    writers: Vec<(u32, String)>,
    items: &[&[u8]],
) -> Result<Decoded> {
    let inner = AvroDecoder::with_writers(Arc::clone(&schema), writers);
    let mut decoder = crate::format::limits::LimitedDecoder {
        inner: Box::new(inner),
        limits: RecordLimits::default(),
        json: false,
    };
    run(&mut decoder, items)
}

/// Reads a job's checkpoint whose manifest is `manifest` and whose
/// operator state file is `state`, as a recovery does: the newest
/// complete checkpoint, its replay record, then its state rows.
pub async fn read_checkpoint(manifest: &[u8], state: &[u8]) -> Result<()> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = StorePath::from("checkpoints");
    let job = "v";
    let dir = root.clone().join(job).join(format!("{:020}", 1));
    let put = |path: StorePath, bytes: &[u8]| {
        let store = Arc::clone(&store);
        let payload = PutPayload::from(bytes.to_vec());
        async move { store.put(&path, payload).await }
    };
    put(dir.clone().join("manifest.json"), manifest)
        .await
        .map_err(|e| crate::Error::invalid(e.to_string()))?;
    put(dir.join("state.arrow"), state)
        .await
        .map_err(|e| crate::Error::invalid(e.to_string()))?;
    put(root.clone().join(job).join("replay.json"), manifest)
        .await
        .map_err(|e| crate::Error::invalid(e.to_string()))?;
    let checkpoints = CheckpointStore::new(store, &root, "memory", job);
    let _ = checkpoints.replay().await;
    let latest = checkpoints.latest_complete().await?;
    if let Some(manifest) = latest.manifest
        && let Some(file) = &manifest.operator.state_file
    {
        let _ = checkpoints.get_batches(manifest.epoch, file).await;
    }
    checkpoints.get_batches(1, "state.arrow").await.map(|_| ())
}

/// The values of a one-row parameter batch, as a prepared statement binds
/// them.
pub fn parameter_values(
    parameters: Option<&RecordBatch>,
) -> Result<Vec<datafusion::scalar::ScalarValue>> {
    crate::engine::parameter_values(parameters)
}

/// Inputs the fuzz targets found crashing, run again through the same
/// entry points (`fuzz/regressions/<target>/`).
#[cfg(test)]
mod regressions {
    use super::*;

    /// Splits a `checkpoint` target input as the target does: a
    /// little-endian u16 length, the manifest, then the state file.
    fn split(data: &[u8]) -> (&[u8], &[u8]) {
        match data.split_first_chunk::<2>() {
            Some((length, rest)) => {
                let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
                rest.split_at(length)
            }
            None => (data, &[][..]),
        }
    }

    /// State files that made arrow's IPC reader panic (a buffer past its
    /// body) or abort on an exabyte allocation (a block longer than the
    /// file): recovery must see a damaged checkpoint.
    #[tokio::test]
    async fn damaged_state_files_are_errors() {
        for data in [
            &include_bytes!("../../fuzz/regressions/checkpoint/ipc-buffer-past-its-body")[..],
            &include_bytes!("../../fuzz/regressions/checkpoint/block-longer-than-the-file")[..],
        ] {
            let (manifest, state) = split(data);
            let error = read_checkpoint(manifest, state)
                .await
                .expect_err("a damaged state file");
            assert!(
                error.to_string().contains("damaged Arrow IPC data"),
                "{error}"
            );
        }
    }

    /// Records the `json_records` target found decoding differently
    /// together and alone: an empty record beside one of two values, and a
    /// value running on from one record into the next.
    #[test]
    fn records_are_bad_together_as_alone() {
        for data in [
            &include_bytes!("../../fuzz/regressions/json_records/blank-beside-two-values")[..],
            &include_bytes!("../../fuzz/regressions/json_records/value-across-records")[..],
        ] {
            same_verdicts_together_and_alone(data);
        }
    }

    fn same_verdicts_together_and_alone(data: &[u8]) {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("sym", arrow::datatypes::DataType::Utf8, true),
        ]));
        let records: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let together = decode_text(TextFormat::Json, Arc::clone(&schema), &records).unwrap();
        let alone: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                !decode_text(TextFormat::Json, Arc::clone(&schema), &[r])
                    .unwrap()
                    .bad
                    .is_empty()
            })
            .map(|(i, _)| i)
            .collect();
        let bad: Vec<usize> = together.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, alone);
        assert_eq!(together.batch.num_rows() + bad.len(), records.len());
    }
}
