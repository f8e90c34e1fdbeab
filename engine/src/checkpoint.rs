//! Checkpoints: what a job needs to resume exactly where it was.
//!
//! A checkpoint *n* of a job is a directory `<job>/<n>/` in the checkpoint
//! store holding the operator state (Arrow IPC), anything a sink staged
//! for epoch *n*, and last `manifest.json`. The manifest is the commit point:
//! it is written in one `put` (a rename on a local disk, an atomic put on
//! object stores) only after everything it names is written, so a
//! checkpoint without a manifest is incomplete and never restored.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How often checkpoints are taken when nothing says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Complete checkpoints kept per job by default; older ones are deleted.
pub const DEFAULT_RETAINED: usize = 3;

/// Engine-wide checkpoint settings.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Time between checkpoints; `None` turns checkpoints off (rows are
    /// then committed on that interval without a recovery point).
    pub interval: Option<Duration>,
    /// Where checkpoints are stored: a URL (`file:///...`, `s3://...`,
    /// `memory://`), or `None` for `<data dir>/checkpoints`.
    pub url: Option<String>,
    /// Complete checkpoints kept per job.
    pub retained: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Some(DEFAULT_INTERVAL),
            url: None,
            retained: DEFAULT_RETAINED,
        }
    }
}

/// Parses a checkpoint interval: a duration (`10s`, `500ms`), or `off`
/// (or `0`) for none.
pub fn parse_interval(value: &str) -> std::result::Result<Option<Duration>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") || value == "0" {
        return Ok(None);
    }
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(format!(
            "invalid checkpoint interval '{value}': {e}; expected a duration such as '10s', or 'off'"
        )),
    }
}

/// The record of a complete checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Format version of the manifest.
    pub format: u32,
    pub job: String,
    pub epoch: u64,
    /// Milliseconds since the Unix epoch when the barrier was injected.
    pub started_ms: i64,
    /// How long the checkpoint took, barrier to manifest.
    pub duration_ms: u64,
    /// Bytes written for the checkpoint (state and staged output).
    pub size_bytes: u64,
    /// Fingerprint of the job's plan: state is restored only into the same
    /// query.
    pub plan: String,
    /// Where each source partition resumes.
    pub source: serde_json::Value,
    /// The per-partition watermarks.
    pub watermarks: WatermarkState,
    /// The operator's state: the file holding it, and its scalars.
    pub operator: OperatorManifest,
    /// What the sink staged for this epoch, committed after the manifest.
    pub sink: serde_json::Value,
    /// A replay (`ALTER ... RESTART`) still rewriting the archive.
    #[serde(default)]
    pub replay: Option<Replay>,
    /// The job's counters as of the barrier, so `SHOW JOBS` counts each
    /// row once across recoveries.
    #[serde(default)]
    pub counters: Counters,
    /// The newest epoch before this one whose rows the archive holds (for
    /// archives that record epochs): a recovery that finds the archive
    /// missing or behind it knows committed rows were lost.
    #[serde(default)]
    pub archived: Option<u64>,
    /// The state of each view the job's query reads through, in the order
    /// the job runs them (the first reads the stream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<StageManifest>,
}

/// The state of one view a job runs ahead of its own query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StageManifest {
    pub operator: OperatorManifest,
    /// The watermark of its input as of the barrier.
    pub watermark: Option<i64>,
}

/// What [`CheckpointStore::latest_complete`] found.
#[derive(Debug)]
pub(crate) struct Latest {
    /// The newest complete checkpoint that reads.
    pub manifest: Option<Manifest>,
    /// Newer checkpoints whose manifests are damaged, newest first.
    pub damaged: Vec<u64>,
}

/// Rows read, written, late and malformed, as of a barrier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub input_rows: u64,
    pub output_rows: u64,
    pub late_rows: u64,
    /// Late rows dropped because their partition had been idle.
    #[serde(default)]
    pub idle_late_rows: u64,
    pub bad_rows: u64,
}

/// A replay asked for by `ALTER MATERIALIZED VIEW | SINK ... RESTART`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Replay {
    /// Where the stream is read from again.
    pub from: ReplayFrom,
    /// Windows starting before this are not emitted: the replay sees only
    /// part of their rows (nanoseconds).
    pub skip_before: Option<i64>,
    /// The part of the archive still to be rewritten, if any.
    pub rewrite: Option<Rewrite>,
}

/// Where a replay starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReplayFrom {
    Earliest,
    Latest,
    /// Nanoseconds since the Unix epoch.
    Timestamp(i64),
}

/// The archive range a replay rewrites: each commit replaces the windows
/// from just after the previous one's through its own last window, so no
/// window ever holds old and new rows at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rewrite {
    /// The whole archive is replaced at the first commit (an output
    /// without `window_start`).
    pub full: bool,
    /// Windows starting after this (nanoseconds) are replaced next; `None`
    /// from the first window on.
    pub after: Option<i64>,
    /// The last window start the job had committed before the restart: old
    /// rows exist up to here.
    pub through: i64,
}

/// The scalar part of an operator's state; its rows are in `state_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OperatorManifest {
    pub state_file: Option<String>,
    pub emitted_through: Option<i64>,
    /// See [`OperatorState::merged`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<bool>,
}

/// An operator's state as of a barrier.
#[derive(Debug, Clone, Default)]
pub(crate) struct OperatorState {
    pub emitted_through: Option<i64>,
    pub batches: Vec<RecordBatch>,
    /// For each batch, whether the operator had merged it already (a
    /// window aggregate's compacted runs), so a restored operator merges
    /// states in the same order as one never stopped, and sums the same
    /// floating-point values in the same order. Empty: none was.
    pub merged: Vec<bool>,
}

/// The watermark state of a source, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WatermarkState {
    /// Largest event time seen per partition (nanoseconds).
    pub partitions: Vec<(u32, Option<i64>)>,
    /// The watermark last emitted.
    pub emitted: Option<i64>,
}

const MANIFEST: &str = "manifest.json";
const REPLAY: &str = "replay.json";
const MANIFEST_FORMAT: u32 = 1;

/// A job's checkpoints in a store.
#[derive(Clone)]
pub(crate) struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// `<root>/<job>`.
    prefix: StorePath,
    job: String,
    /// Shown in errors.
    location: String,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("location", &self.location)
            .finish()
    }
}

/// Opens the store a configuration names.
pub(crate) fn open_store(
    config: &CheckpointConfig,
    data_dir: &std::path::Path,
) -> Result<(Arc<dyn ObjectStore>, StorePath, String)> {
    let url = match &config.url {
        Some(url) => url::Url::parse(url).map_err(|e| {
            Error::invalid(format!(
                "invalid checkpoint URL '{url}': {e}; expected file:///dir, s3://bucket/prefix or memory://"
            ))
        })?,
        None => {
            let dir = data_dir.join("checkpoints");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let dir = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
            url::Url::from_directory_path(&dir)
                .map_err(|()| Error::invalid(format!("{} is not absolute", dir.display())))?
        }
    };
    if url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
    {
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    let cannot = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("cannot open checkpoint store '{url}': {e}"))
    };
    if matches!(url.scheme(), "s3" | "s3a") {
        // Credentials, region and endpoint come from the usual AWS_*
        // environment variables.
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .build()
            .map_err(|e| cannot(&e))?;
        let prefix = StorePath::from_url_path(url.path()).map_err(|e| cannot(&e))?;
        return Ok((Arc::new(store), prefix, url.to_string()));
    }
    if url.scheme() == "file" {
        // Deleting an old checkpoint must remove its directory too, or every
        // epoch ever taken stays listed and each clean-up walks them all.
        let path = url
            .to_file_path()
            .map_err(|()| cannot(&"not a local path"))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| cannot(&e))?
            .with_automatic_cleanup(true);
        return Ok((Arc::new(store), StorePath::default(), url.to_string()));
    }
    let (store, prefix) = object_store::parse_url(&url).map_err(|e| cannot(&e))?;
    Ok((Arc::from(store), prefix, url.to_string()))
}

impl CheckpointStore {
    pub fn new(store: Arc<dyn ObjectStore>, root: &StorePath, location: &str, job: &str) -> Self {
        CheckpointStore {
            store,
            prefix: root.clone().join(job),
            job: job.to_string(),
            location: format!("{}/{job}", location.trim_end_matches('/')),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::invalid(format!(
            "checkpoints of job '{}' at {}: {what}: {e}",
            self.job, self.location
        ))
    }

    fn dir(&self, epoch: u64) -> StorePath {
        // Zero-padded so listings sort by epoch.
        self.prefix.clone().join(format!("{epoch:020}"))
    }

    /// Writes a file of checkpoint `epoch`; returns its name and size.
    pub async fn put(&self, epoch: u64, name: &str, bytes: Vec<u8>) -> Result<u64> {
        let size = bytes.len() as u64;
        self.store
            .put(&self.dir(epoch).join(name), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(&format!("cannot write {name} of checkpoint {epoch}"), e))?;
        Ok(size)
    }

    /// Reads a file of checkpoint `epoch`.
    pub async fn get(&self, epoch: u64, name: &str) -> Result<bytes::Bytes> {
        let result = self
            .store
            .get(&self.dir(epoch).join(name))
            .await
            .map_err(|e| self.error(&format!("cannot read {name} of checkpoint {epoch}"), e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.error(&format!("cannot read {name} of checkpoint {epoch}"), e))
    }

    /// Writes batches as an Arrow IPC file of checkpoint `epoch`.
    pub async fn put_batches(
        &self,
        epoch: u64,
        name: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<u64> {
        self.put(epoch, name, encode_ipc(schema, batches)?).await
    }

    /// Reads an Arrow IPC file of checkpoint `epoch`.
    pub async fn get_batches(&self, epoch: u64, name: &str) -> Result<Vec<RecordBatch>> {
        let bytes = self.get(epoch, name).await?;
        decode_ipc(bytes).map_err(|e| self.error(&format!("{name} of checkpoint {epoch}"), e))
    }

    /// Completes checkpoint `manifest.epoch` by writing its manifest.
    pub async fn commit(&self, manifest: &Manifest) -> Result<u64> {
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| self.error("cannot encode a manifest", e))?;
        self.put(manifest.epoch, MANIFEST, json).await
    }

    /// Epochs with a directory in the store, complete or not, ascending.
    async fn epochs(&self) -> Result<Vec<u64>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.error("cannot list checkpoints", e))?;
        let mut epochs: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|f| f.parse().ok()))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The newest complete checkpoint, if any.
    #[cfg(test)]
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        Ok(self.latest_complete().await?.manifest)
    }

    /// The newest complete checkpoint whose manifest reads, and the newer
    /// ones whose manifests are damaged (skipped, with a warning).
    pub async fn latest_complete(&self) -> Result<Latest> {
        let mut damaged = Vec::new();
        for epoch in self.epochs().await?.into_iter().rev() {
            match self.store.get(&self.dir(epoch).join(MANIFEST)).await {
                Ok(found) => {
                    let bytes = found
                        .bytes()
                        .await
                        .map_err(|e| self.error("cannot read a manifest", e))?;
                    let manifest: Manifest = match serde_json::from_slice(&bytes) {
                        Ok(manifest) => manifest,
                        Err(e) => {
                            tracing::warn!(
                                "{}; falling back to the checkpoint before it",
                                self.error(
                                    &format!("the manifest of checkpoint {epoch} is damaged"),
                                    e
                                )
                            );
                            damaged.push(epoch);
                            continue;
                        }
                    };
                    if manifest.format != MANIFEST_FORMAT {
                        return Err(self.error(
                            &format!("checkpoint {epoch}"),
                            format!(
                                "manifest format {} is not supported (expected {MANIFEST_FORMAT})",
                                manifest.format
                            ),
                        ));
                    }
                    return Ok(Latest {
                        manifest: Some(manifest),
                        damaged,
                    });
                }
                // Incomplete: the process stopped before the manifest.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.error("cannot read a manifest", e)),
            }
        }
        Ok(Latest {
            manifest: None,
            damaged,
        })
    }

    /// Deletes checkpoints older than the newest `retained` complete ones
    /// (and incomplete ones older than those).
    pub async fn clean(&self, newest: u64, retained: usize) -> Result<()> {
        let epochs = self.epochs().await?;
        let keep_from = epochs
            .iter()
            .rev()
            .filter(|&&e| e <= newest)
            .nth(retained.max(1) - 1)
            .copied()
            .unwrap_or(0);
        for epoch in epochs.into_iter().filter(|&e| e < keep_from) {
            self.delete_epoch(epoch).await?;
        }
        Ok(())
    }

    async fn delete_epoch(&self, epoch: u64) -> Result<()> {
        let files: Vec<_> = self
            .store
            .list(Some(&self.dir(epoch)))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error("cannot list a checkpoint", e))?;
        // The manifest first, so a half-deleted checkpoint is incomplete.
        let (manifest, rest): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|p| p.filename() == Some(MANIFEST));
        for path in manifest.into_iter().chain(rest) {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("cannot delete an old checkpoint", e)),
            }
        }
        Ok(())
    }

    /// Deletes every checkpoint of the job (when it is dropped or
    /// restarted from scratch), and any replay waiting to start.
    pub async fn delete_all(&self) -> Result<()> {
        for epoch in self.epochs().await? {
            self.delete_epoch(epoch).await?;
        }
        self.set_replay(None).await
    }

    fn replay_path(&self) -> StorePath {
        self.prefix.clone().join(REPLAY)
    }

    /// Records (or, with `None`, clears) a replay a restarted job starts
    /// with, until its first checkpoint carries it.
    pub async fn set_replay(&self, replay: Option<&Replay>) -> Result<()> {
        match replay {
            Some(replay) => {
                let json = serde_json::to_vec(replay)
                    .map_err(|e| self.error("cannot encode a replay", e))?;
                self.store
                    .put(&self.replay_path(), PutPayload::from(json))
                    .await
                    .map_err(|e| self.error("cannot record a replay", e))?;
            }
            None => match self.store.delete(&self.replay_path()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("cannot clear a replay", e)),
            },
        }
        Ok(())
    }

    /// The replay recorded by [`CheckpointStore::set_replay`], if any.
    pub async fn replay(&self) -> Result<Option<Replay>> {
        match self.store.get(&self.replay_path()).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| self.error("cannot read a replay", e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| self.error("the recorded replay is damaged", e))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("cannot read a replay", e)),
        }
    }
}

/// Rows a sink stages for an epoch by keeping them: in the checkpoint (as
/// Arrow IPC, so a recovery can commit them) and in memory (so the commit
/// that follows needs no read back).
#[derive(Debug, Default)]
pub(crate) struct KeptRows {
    kept: Option<(u64, Vec<RecordBatch>)>,
}

impl KeptRows {
    /// Keeps `batches` as file `name` of checkpoint `epoch` (if there is a
    /// checkpoint); returns the bytes written.
    pub async fn keep(
        &mut self,
        store: Option<&CheckpointStore>,
        epoch: u64,
        name: &str,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let bytes = match store {
            Some(store) => store.put_batches(epoch, name, schema, &batches).await?,
            None => 0,
        };
        self.kept = Some((epoch, batches));
        Ok(bytes)
    }

    /// The rows kept for `epoch`: from memory, else (a recovery) from the
    /// checkpoint.
    pub async fn take(
        &mut self,
        store: Option<&CheckpointStore>,
        epoch: u64,
        name: &str,
    ) -> Result<Vec<RecordBatch>> {
        match (self.kept.take(), store) {
            (Some((kept, batches)), _) if kept == epoch => Ok(batches),
            (_, Some(store)) => store.get_batches(epoch, name).await,
            (_, None) => Err(Error::invalid(format!(
                "the staged rows of epoch {epoch} are gone (no checkpoint keeps them)"
            ))),
        }
    }
}

/// Batches as an Arrow IPC file.
pub(crate) fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = FileWriter::try_new(Vec::new(), schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// The batches of an Arrow IPC file.
pub(crate) fn decode_ipc(bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    crate::error::check_ipc_bounds(&bytes, true)
        .map_err(|e| Error::invalid(format!("damaged Arrow IPC data: {e}")))?;
    let decoded = crate::error::catch_decoder_panic(|| {
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)?;
        reader.collect::<std::result::Result<Vec<_>, _>>()
    });
    match decoded {
        Ok(batches) => Ok(batches?),
        Err(panic) => Err(Error::invalid(format!("damaged Arrow IPC data: {panic}"))),
    }
}

/// A fingerprint of a plan's text, stable across runs of one build.
pub(crate) fn fingerprint(text: &str) -> String {
    // FNV-1a: tiny and stable (unlike std's randomly seeded hasher).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;

    use super::*;

    fn manifest(epoch: u64) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            job: "v".into(),
            epoch,
            started_ms: 0,
            duration_ms: 1,
            size_bytes: 2,
            plan: "p".into(),
            source: serde_json::json!({"offsets": [[0, 42]]}),
            watermarks: WatermarkState::default(),
            operator: OperatorManifest::default(),
            sink: serde_json::Value::Null,
            replay: None,
            counters: Counters::default(),
            archived: None,
            upstream: Vec::new(),
        }
    }

    #[tokio::test]
    async fn latest_skips_incomplete_checkpoints_and_clean_keeps_the_newest() {
        let store = CheckpointStore::new(
            Arc::new(InMemory::new()),
            &StorePath::from("cp"),
            "memory://",
            "v",
        );
        assert!(store.latest().await.unwrap().is_none());
        for epoch in 1..=4 {
            store
                .put(epoch, "state.arrow", vec![1, 2, 3])
                .await
                .unwrap();
            store.commit(&manifest(epoch)).await.unwrap();
        }
        // Epoch 5 staged state but never got its manifest.
        store.put(5, "state.arrow", vec![1]).await.unwrap();
        let latest = store.latest().await.unwrap().unwrap();
        assert_eq!(latest.epoch, 4);
        assert_eq!(latest.source["offsets"][0][1], 42);

        store.clean(4, 2).await.unwrap();
        assert_eq!(store.epochs().await.unwrap(), vec![3, 4, 5]);
        assert_eq!(store.latest().await.unwrap().unwrap().epoch, 4);

        store.delete_all().await.unwrap();
        assert!(store.epochs().await.unwrap().is_empty());
        assert!(store.latest().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn batches_round_trip_through_ipc() {
        let store = CheckpointStore::new(
            Arc::new(InMemory::new()),
            &StorePath::from("cp"),
            "memory://",
            "v",
        );
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
        )
        .unwrap();
        store
            .put_batches(7, "s.arrow", &schema, &[batch.clone(), batch.clone()])
            .await
            .unwrap();
        let back = store.get_batches(7, "s.arrow").await.unwrap();
        assert_eq!(back, vec![batch.clone(), batch]);
    }

    #[tokio::test]
    async fn a_damaged_manifest_falls_back_to_the_checkpoint_before_it() {
        let store = CheckpointStore::new(
            Arc::new(InMemory::new()),
            &StorePath::from("cp"),
            "memory://",
            "v",
        );
        store.commit(&manifest(2)).await.unwrap();
        store.put(3, MANIFEST, b"{not json".to_vec()).await.unwrap();
        let latest = store.latest_complete().await.unwrap();
        assert_eq!(latest.manifest.map(|m| m.epoch), Some(2));
        assert_eq!(latest.damaged, [3]);
    }

    #[tokio::test]
    async fn stores_open_from_urls_and_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (store, root, url) = open_store(&CheckpointConfig::default(), dir.path()).unwrap();
        assert!(
            url.starts_with("file://") && url.ends_with("/checkpoints/"),
            "{url}"
        );
        let checkpoints = CheckpointStore::new(store, &root, &url, "v");
        checkpoints.put(1, "state.arrow", vec![1]).await.unwrap();
        checkpoints.commit(&manifest(1)).await.unwrap();
        assert!(
            dir.path()
                .join("checkpoints/v/00000000000000000001/manifest.json")
                .is_file()
        );

        // Deleted checkpoints take their directories with them.
        for epoch in 2..=5 {
            checkpoints.commit(&manifest(epoch)).await.unwrap();
        }
        checkpoints.clean(5, 2).await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints/v"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(left, ["00000000000000000004", "00000000000000000005"]);

        let elsewhere = dir.path().join("elsewhere");
        let config = CheckpointConfig {
            url: Some(format!("file://{}", elsewhere.display())),
            ..CheckpointConfig::default()
        };
        let (store, root, url) = open_store(&config, dir.path()).unwrap();
        CheckpointStore::new(store, &root, &url, "v")
            .commit(&manifest(2))
            .await
            .unwrap();
        assert!(
            elsewhere
                .join("v/00000000000000000002/manifest.json")
                .is_file()
        );

        let config = CheckpointConfig {
            url: Some("s3://bucket/checkpoints".into()),
            ..CheckpointConfig::default()
        };
        let (_, root, _) = open_store(&config, dir.path()).unwrap();
        assert_eq!(root.as_ref(), "checkpoints");

        for bad in ["not a url", "nosuch://x/y"] {
            let config = CheckpointConfig {
                url: Some(bad.into()),
                ..CheckpointConfig::default()
            };
            let e = open_store(&config, dir.path()).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn intervals_parse_and_off_turns_checkpoints_off() {
        assert_eq!(parse_interval("10s"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(parse_interval("off"), Ok(None));
        assert_eq!(parse_interval("0"), Ok(None));
        assert!(parse_interval("ten").unwrap_err().contains("'ten'"));
    }
}
