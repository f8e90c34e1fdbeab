//! Jobs: a view's or sink's continuous query, running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::TimestampNanosecondArray;
use arrow::record_batch::RecordBatch;
use fibers_catalog::{Catalog, JobCounters, JobRecord, JobStatus};
use fibers_sql::ContinuousQuery;
use tokio::sync::{Notify, mpsc, watch};

use crate::archive::{Archive, ArchiveConfig, ArchiveFormat};
use crate::checkpoint::{
    CheckpointStore, Counters, Manifest, OperatorManifest, OperatorState, Replay, StageManifest,
    WatermarkState,
};
use crate::connector::{BadData, Poll, Source, StreamDef};
use crate::operator;
use crate::subscribe::Feed;
use crate::watermark::PartitionWatermarks;
use crate::{Error, Result};

/// Batches in flight between a job's source thread and its operator: enough
/// to overlap decoding with processing, small enough to bound memory.
const CHANNEL_BATCHES: usize = 4;

/// Counters of a running job, shown by `SHOW JOBS`.
#[derive(Debug, Default)]
pub(crate) struct JobMetrics {
    pub input_rows: AtomicU64,
    pub output_rows: AtomicU64,
    pub late_rows: AtomicU64,
    /// The late rows that were late only because the watermark had moved
    /// on while their partition was idle (a subset of `late_rows`).
    pub idle_late_rows: AtomicU64,
    pub bad_rows: AtomicU64,
    pub commits: AtomicU64,
    /// Nanoseconds since the epoch; `i64::MIN` before the first row.
    pub watermark: AtomicI64,
    /// The last checkpoint taken (or restored).
    pub checkpoint: std::sync::Mutex<Option<CheckpointInfo>>,
    /// The checkpoint this run of the job recovered from, if any.
    pub recovery: std::sync::Mutex<Option<RecoveryInfo>>,
    /// What the source reports about its connection while it retries
    /// (a broker outage, say); `None` when all is well.
    pub health: std::sync::Mutex<Option<String>>,
}

impl JobMetrics {
    fn set_health(&self, health: Option<String>) {
        if let Ok(mut current) = self.health.lock()
            && *current != health
        {
            *current = health;
        }
    }

    /// The counters as they stand.
    pub fn counters(&self) -> JobCounters {
        JobCounters {
            input_rows: self.input_rows.load(Ordering::Relaxed),
            output_rows: self.output_rows.load(Ordering::Relaxed),
            late_rows: self.late_rows.load(Ordering::Relaxed),
            idle_late_rows: self.idle_late_rows.load(Ordering::Relaxed),
            bad_rows: self.bad_rows.load(Ordering::Relaxed),
        }
    }

    /// The source's report on its connection, if it is retrying.
    pub fn health(&self) -> Option<String> {
        self.health.lock().ok().and_then(|h| h.clone())
    }
}

/// A checkpoint, as `SHOW JOBS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointInfo {
    pub epoch: u64,
    /// When its barrier was injected (milliseconds since the Unix epoch).
    pub at_ms: i64,
    pub duration_ms: u64,
    pub size_bytes: u64,
}

/// A recovery from a checkpoint, as `SHOW JOBS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryInfo {
    /// The checkpoint restored.
    pub epoch: u64,
    pub at_ms: i64,
    pub duration_ms: u64,
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    Running,
    Finished,
    Stopped,
    Failed(String),
}

impl JobState {
    pub fn status(&self) -> JobStatus {
        match self {
            JobState::Running => JobStatus::Running,
            JobState::Finished => JobStatus::Finished,
            JobState::Stopped => JobStatus::Stopped,
            JobState::Failed(_) => JobStatus::Failed,
        }
    }
}

/// Pauses between runs of a job after transient faults: 1 s, doubling up
/// to a minute; a run that lasted a few minutes starts the count afresh.
#[derive(Debug, Default)]
struct Retry {
    attempts: u32,
}

impl Retry {
    /// Faults in a row before the job is failed for good (about half an
    /// hour of pauses).
    const MAX_ATTEMPTS: u32 = 36;

    /// The pause before the next run, after a run that lasted `ran`;
    /// `None` once there have been too many faults in a row.
    fn next(&mut self, ran: Duration) -> Option<Duration> {
        if ran > Duration::from_secs(300) {
            self.attempts = 0;
        }
        if self.attempts >= Self::MAX_ATTEMPTS {
            return None;
        }
        self.attempts += 1;
        Some(Duration::from_secs(1 << (self.attempts - 1).min(6)).min(Duration::from_secs(60)))
    }
}

/// Everything a job needs to run.
#[derive(Clone)]
pub(crate) struct JobSpec {
    pub name: String,
    pub stream: Arc<StreamDef>,
    /// The queries of the views between the stream and the job's query,
    /// the first reading the stream: their operators run in the job, each
    /// feeding the next, and the last feeds the job's own.
    pub upstream: Vec<ContinuousQuery>,
    pub query: ContinuousQuery,
    pub archive: ArchiveConfig,
    pub batch_size: usize,
    pub catalog: Arc<Catalog>,
    /// Where subscribers get the rows the job emits.
    pub feed: Arc<Feed>,
    pub checkpoints: JobCheckpoints,
    /// A replay the job starts with (`ALTER ... RESTART`).
    pub replay: Option<Replay>,
}

/// A handle on a running job.
pub(crate) struct JobHandle {
    pub bounded: bool,
    pub metrics: Arc<JobMetrics>,
    state: watch::Receiver<JobState>,
    stop: Arc<StopSignal>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct StopSignal {
    /// Tells the current run (its source thread) to stop.
    requested: AtomicBool,
    /// Set when the job itself is to stop (not just one run of it).
    by_user: AtomicBool,
    notify: Notify,
}

impl JobHandle {
    /// Starts a job. Errors are recorded in the job's state, not returned.
    pub fn start(spec: JobSpec) -> Self {
        let metrics = Arc::new(JobMetrics {
            watermark: AtomicI64::new(i64::MIN),
            ..JobMetrics::default()
        });
        let (state_tx, state) = watch::channel(JobState::Running);
        let stop = Arc::new(StopSignal::default());
        let bounded = spec.stream.bounded();
        let task = tokio::spawn(run(spec, Arc::clone(&metrics), Arc::clone(&stop), state_tx));
        JobHandle {
            bounded,
            metrics,
            state,
            stop,
            task: Some(task),
        }
    }

    pub fn state(&self) -> JobState {
        self.state.borrow().clone()
    }

    /// A future that completes when the job is no longer running.
    pub fn waiter(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            // An error means the job task is gone, so it is not running either.
            let _finished = state.wait_for(|s| *s != JobState::Running).await;
        }
    }

    /// Asks the job to stop after committing what it has emitted, and waits.
    pub async fn stop(&mut self) {
        self.stop.by_user.store(true, Ordering::SeqCst);
        self.stop.requested.store(true, Ordering::SeqCst);
        self.stop.notify.notify_one();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!("job task ended abnormally: {e}");
        }
    }
}

/// Messages from a source thread to its job.
enum SourceMessage {
    Batch(RecordBatch),
    Watermark(i64),
    /// Everything before this message is all the source has returned up to
    /// `position`: a checkpoint (or, with checkpoints off, a commit) can
    /// be taken here. Sent when the job asks, and last before the source
    /// thread ends (at the end of input, on a stop, or before an error).
    Barrier(Barrier),
    End,
}

struct Barrier {
    position: Option<serde_json::Value>,
    watermarks: WatermarkState,
    /// The source side's counters at the barrier (output rows are the
    /// job's).
    counters: Counters,
    /// Milliseconds since the Unix epoch when it was taken.
    at_ms: i64,
}

/// A job's checkpoint settings, resolved.
#[derive(Debug, Clone)]
pub(crate) struct JobCheckpoints {
    /// `None` when checkpoints are off for this job.
    pub store: Option<CheckpointStore>,
    /// Time between checkpoints (or commits, when they are off).
    pub interval: Duration,
    pub retained: usize,
}

/// Where a job's epochs stand.
struct Epochs {
    /// The epoch being filled (its rows are those emitted since the last
    /// barrier).
    next: u64,
    store: Option<CheckpointStore>,
    retained: usize,
    plan: String,
    /// The replay under way, if any; checkpoints carry it.
    replay: Option<Replay>,
    /// Whether the store still holds the replay's start record, which the
    /// first checkpoint supersedes.
    replay_recorded: bool,
    /// The newest epoch whose rows the archive holds, as far as this job
    /// knows.
    archived: Option<u64>,
}

async fn run(
    spec: JobSpec,
    metrics: Arc<JobMetrics>,
    stop: Arc<StopSignal>,
    state: watch::Sender<JobState>,
) {
    let name = spec.name.clone();
    let catalog = Arc::clone(&spec.catalog);
    let previous = catalog.job(&name).ok().flatten();
    let mut committed = previous.as_ref().and_then(|j| j.committed_watermark);
    let mut retry = Retry::default();
    let (final_state, committed) = loop {
        let began = Instant::now();
        let outcome = run_job(spec.clone(), &metrics, &stop, committed).await;
        match outcome {
            Ok((s, w)) => break (s, w),
            // A transient fault (an archive briefly unwritable, a store
            // that did not answer): run again from the last checkpoint,
            // after a pause that grows while the fault lasts.
            Err((e, w)) if e.is_transient() && !stop.by_user.load(Ordering::SeqCst) => {
                committed = w;
                let Some(pause) = retry.next(began.elapsed()) else {
                    break (
                        JobState::Failed(format!(
                            "{e} (gave up after {} attempts)",
                            retry.attempts
                        )),
                        w,
                    );
                };
                tracing::warn!(
                    "job '{name}': {e}; running again from its last checkpoint in {}",
                    humantime::format_duration(pause)
                );
                metrics.set_health(Some(format!(
                    "{e}; running again from the last checkpoint (attempt {})",
                    retry.attempts + 1
                )));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.notify.notified() => {}
                }
                if stop.by_user.load(Ordering::SeqCst) {
                    break (JobState::Stopped, w);
                }
                // The next run's source thread starts unstopped.
                stop.requested.store(false, Ordering::SeqCst);
                metrics.set_health(None);
            }
            Err((e, w)) => break (JobState::Failed(e.with_kind()), w),
        }
    };
    if let JobState::Failed(e) = &final_state {
        tracing::error!("job '{name}' failed: {e}");
    }
    let record = JobRecord {
        name: name.clone(),
        status: final_state.status(),
        error: match &final_state {
            JobState::Failed(e) => Some(e.clone()),
            _ => None,
        },
        committed_watermark: committed,
        counters: metrics.counters(),
    };
    if let Err(e) = catalog.put_job(&record) {
        tracing::error!("job '{name}': cannot record its state: {e}");
    }
    state.send_replace(final_state);
}

type JobOutcome = std::result::Result<(JobState, Option<i64>), (Error, Option<i64>)>;

/// What a job starts from: a fresh operator and source, or those of its
/// newest checkpoint.
struct Start {
    upstream: Vec<Stage>,
    operator: Box<dyn operator::Operator>,
    archive: Archive,
    source: Box<dyn Source>,
    watermarks: Option<WatermarkState>,
    epochs: Epochs,
}

async fn start(spec: &JobSpec, metrics: &JobMetrics, committed: Option<i64>) -> Result<Start> {
    let name = &spec.name;
    let began = Instant::now();
    // Every query the job runs is part of its plan.
    let plan = crate::checkpoint::fingerprint(
        &spec
            .upstream
            .iter()
            .chain([&spec.query])
            .map(|q| q.plan.display_indent().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (latest, damaged) = match &spec.checkpoints.store {
        Some(store) => {
            let found = store.latest_complete().await?;
            (found.manifest, found.damaged)
        }
        None => (None, Vec::new()),
    };
    // A replay starts from the stream's new start point until the first
    // checkpoint, which then carries what is left of it.
    let (replay, replay_recorded) = match (&latest, &spec.checkpoints.store) {
        (Some(m), _) => (m.replay.clone(), false),
        (None, _) if spec.replay.is_some() => {
            (spec.replay.clone(), spec.checkpoints.store.is_some())
        }
        (None, Some(store)) => {
            let replay = store.replay().await?;
            let recorded = replay.is_some();
            (replay, recorded)
        }
        (None, None) => (None, false),
    };
    if let Some(m) = &latest
        && m.plan != plan
    {
        return Err(Error::invalid(format!(
            "job '{name}': its query no longer matches checkpoint {} (the engine or the \
             definition changed); ALTER MATERIALIZED VIEW {name} RESTART FROM EARLIEST to \
             reprocess, or DROP and re-create it",
            m.epoch
        )));
    }
    let mut archive = spec.archive.open(name, &spec.query.output_schema()).await?;
    // Past a damaged checkpoint, the job resumes from the one before it.
    // Epochs the archive holds after that one would be emitted again: a
    // windowed job skips the windows its catalog records as committed and
    // numbers its epochs after the archive's; any other job cannot resume
    // exactly and stops.
    let mut fallback_next = None;
    if let Some(&newest_damaged) = damaged.first()
        && archive.records_epochs()
    {
        let resumed = latest.as_ref().map_or(0, |m| m.epoch);
        if let Some(recorded) = archive.last_epoch().await?
            && recorded > resumed
        {
            let windowed = spec.query.aggregates
                || matches!(spec.query.join, Some(fibers_sql::StreamJoin::Windowed));
            if !windowed || committed.is_none() {
                return Err(Error::invalid(format!(
                    "job '{name}': checkpoint {newest_damaged} is damaged, and its archive \
                     already holds epoch {recorded}, past the checkpoint before it ({resumed}); \
                     the job cannot resume exactly. ALTER MATERIALIZED VIEW {name} RESTART FROM \
                     EARLIEST (or ALTER SINK) rebuilds it from the stream"
                )));
            }
            tracing::warn!(
                "job '{name}': checkpoint {newest_damaged} is damaged; resuming from checkpoint \
                 {resumed}, skipping the windows already committed"
            );
            fallback_next = Some(recorded + 1);
        }
    }
    // Windows already archived by a run without checkpoints are skipped; a
    // checkpoint knows exactly what was emitted.
    let skip_through = if fallback_next.is_none() && (latest.is_some() || replay.is_some()) {
        None
    } else {
        committed
    };
    let mut upstream = Vec::with_capacity(spec.upstream.len());
    for (i, query) in spec.upstream.iter().enumerate() {
        let input = if i == 0 {
            Some(spec.stream.as_ref())
        } else {
            None
        };
        let ctx = query.state.task_ctx();
        upstream.push(Stage {
            operator: operator::build(query, input, ctx, None).await?,
            input_time: i
                .checked_sub(1)
                .and_then(|previous| event_time_column(&spec.upstream[previous])),
            watermark: None,
            query: query.clone(),
        });
    }
    let ctx = spec.query.state.task_ctx();
    let input = spec.upstream.is_empty().then_some(spec.stream.as_ref());
    let mut operator = operator::build(&spec.query, input, ctx, skip_through).await?;
    archive.set_rewrite(replay.as_ref().and_then(|r| r.rewrite));
    // The source decodes only what the query reading the stream needs.
    let first = spec.upstream.first().unwrap_or(&spec.query);
    let stream = match first.columns_read(&spec.stream.name) {
        Some(columns) => spec.stream.reading_only(columns),
        None => spec.stream.as_ref().clone(),
    };
    let store = spec.checkpoints.store.clone();
    let Some(manifest) = latest else {
        let source = match &replay {
            Some(replay) => stream.replaying(replay.from)?.open(spec.batch_size)?,
            None => stream.open(spec.batch_size)?,
        };
        let archived = archive.last_epoch().await?;
        let next = archived.map_or(1, |e| e + 1);
        return Ok(Start {
            upstream,
            operator,
            archive,
            source,
            watermarks: None,
            epochs: Epochs {
                next,
                store,
                retained: spec.checkpoints.retained,
                plan,
                replay,
                replay_recorded,
                archived,
            },
        });
    };
    let mut source = stream.open(spec.batch_size)?;
    let Some(checkpoints) = &store else {
        return Err(Error::invalid("a checkpoint without a store"));
    };
    let state = match &manifest.operator.state_file {
        Some(file) => checkpoints.get_batches(manifest.epoch, file).await?,
        None => Vec::new(),
    };
    operator
        .restore(OperatorState {
            emitted_through: manifest.operator.emitted_through,
            batches: state,
            merged: manifest.operator.merged.clone(),
        })
        .await?;
    if manifest.upstream.len() != upstream.len() {
        return Err(Error::invalid(format!(
            "job '{name}': checkpoint {} holds the state of {} upstream view(s), the job runs {}",
            manifest.epoch,
            manifest.upstream.len(),
            upstream.len()
        )));
    }
    for (stage, kept) in upstream.iter_mut().zip(&manifest.upstream) {
        let state = match &kept.operator.state_file {
            Some(file) => checkpoints.get_batches(manifest.epoch, file).await?,
            None => Vec::new(),
        };
        stage
            .operator
            .restore(OperatorState {
                emitted_through: kept.operator.emitted_through,
                batches: state,
                merged: kept.operator.merged.clone(),
            })
            .await?;
        stage.watermark = kept.watermark;
    }
    source.seek(&manifest.source)?;
    let counters = manifest.counters;
    metrics
        .input_rows
        .store(counters.input_rows, Ordering::Relaxed);
    metrics
        .output_rows
        .store(counters.output_rows, Ordering::Relaxed);
    metrics
        .late_rows
        .store(counters.late_rows, Ordering::Relaxed);
    metrics
        .idle_late_rows
        .store(counters.idle_late_rows, Ordering::Relaxed);
    metrics.bad_rows.store(counters.bad_rows, Ordering::Relaxed);
    // Rows the checkpoint says were committed must still be there: an
    // archive deleted or rolled back would otherwise be refilled from here
    // on, silently without its earlier rows.
    if let Some(archived) = manifest.archived
        && archive.records_epochs()
    {
        let recorded = archive.last_epoch().await?;
        if recorded.is_none_or(|r| r < archived) {
            let found = match recorded {
                None => "holds no commit of this job (it was deleted or replaced)".to_string(),
                Some(r) => format!("ends at epoch {r} (commits were removed)"),
            };
            return Err(Error::invalid(format!(
                "job '{name}': checkpoint {} says its archive at '{}' holds epoch {archived}, but \
                 the archive {found}; ALTER MATERIALIZED VIEW {name} RESTART FROM EARLIEST (or \
                 ALTER SINK) rebuilds it from the stream",
                manifest.epoch, spec.archive.path_written
            )));
        }
    }
    // The checkpoint is complete, so its epoch's rows are to be committed;
    // a crash may have come first.
    spec.feed
        .commit(archive.commit(&manifest.sink, manifest.epoch, Some(checkpoints), true))
        .await?;
    *metrics.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(CheckpointInfo {
        epoch: manifest.epoch,
        at_ms: manifest.started_ms,
        duration_ms: manifest.duration_ms,
        size_bytes: manifest.size_bytes,
    });
    *metrics.recovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(RecoveryInfo {
        epoch: manifest.epoch,
        at_ms: chrono::Utc::now().timestamp_millis(),
        duration_ms: began.elapsed().as_millis() as u64,
    });
    tracing::info!(
        "job '{name}': restored checkpoint {} in {} ms",
        manifest.epoch,
        began.elapsed().as_millis()
    );
    let archived = match fallback_next {
        Some(next) => Some(next - 1),
        None if manifest.sink.is_null() => manifest.archived,
        None => Some(manifest.epoch),
    };
    Ok(Start {
        upstream,
        operator,
        archive,
        source,
        watermarks: Some(manifest.watermarks),
        epochs: Epochs {
            next: fallback_next.unwrap_or(manifest.epoch + 1),
            store,
            retained: spec.checkpoints.retained,
            plan,
            replay,
            replay_recorded,
            archived,
        },
    })
}

/// Processes `batch`. Under `bad_data = 'drop'` or `'dead_letter'`, a row
/// whose arithmetic fails (an integer overflow, a division by zero) is
/// dropped and counted as bad instead of failing the job: the batch is
/// processed again in halves until each such row stands alone, so every
/// other row still counts. The rows go to no dead-letter table, which
/// keeps records that did not decode.
async fn process(
    operator: &mut dyn operator::Operator,
    batch: RecordBatch,
    spec: &JobSpec,
    metrics: &JobMetrics,
) -> Result<Vec<RecordBatch>> {
    let error = match operator.process(batch.clone()).await {
        Err(e)
            if e.is_row_arithmetic()
                && spec.stream.bad_data() != BadData::Fail
                && operator.isolates_rows() =>
        {
            e
        }
        done => return done,
    };
    let mut out = Vec::new();
    let mut dropped = 0u64;
    let mut first_error = None;
    let mut pending = vec![(0, batch.num_rows(), Some(error))];
    while let Some((offset, len, failed)) = pending.pop() {
        let failed = match failed {
            Some(e) => e,
            None => match operator.process(batch.slice(offset, len)).await {
                Ok(rows) => {
                    out.extend(rows);
                    continue;
                }
                Err(e) if e.is_row_arithmetic() => e,
                Err(e) => return Err(e),
            },
        };
        if len <= 1 {
            dropped += len as u64;
            first_error.get_or_insert(failed);
            continue;
        }
        // Last in, first out: the left half first, keeping row order.
        let half = len / 2;
        pending.push((offset + half, len - half, None));
        pending.push((offset, half, None));
    }
    metrics.bad_rows.fetch_add(dropped, Ordering::Relaxed);
    if let Some(e) = first_error {
        tracing::warn!(
            "{}: dropped {dropped} row(s) of stream '{}' whose arithmetic failed (bad_data), \
             the first with: {e}",
            spec.name,
            spec.stream.name
        );
    }
    Ok(out)
}

async fn run_job(
    spec: JobSpec,
    metrics: &Arc<JobMetrics>,
    stop: &Arc<StopSignal>,
    committed: Option<i64>,
) -> JobOutcome {
    let name = spec.name.clone();
    let Start {
        mut upstream,
        mut operator,
        archive,
        source,
        watermarks,
        epochs,
    } = start(&spec, metrics, committed)
        .await
        .map_err(|e| (e, committed))?;
    let spec = Arc::new(spec);
    let record = JobRecord {
        name: name.clone(),
        status: JobStatus::Running,
        error: None,
        committed_watermark: committed,
        counters: metrics.counters(),
    };
    spec.catalog
        .put_job(&record)
        .map_err(|e| (e.into(), committed))?;

    let (tx, mut rx) = mpsc::channel(CHANNEL_BATCHES);
    let time_index = spec
        .stream
        .schema
        .index_of(&spec.stream.time_column)
        .map_err(|e| (e.into(), committed))?;
    let mut tracker = PartitionWatermarks::new(
        time_index,
        spec.stream.delay_nanos,
        spec.stream.idle_timeout(),
    );
    let mut emitted_watermark = committed;
    // The watermark the job's own operator last advanced to in this run
    // (or in the run its checkpoint comes from).
    let mut own_watermark = None;
    if let Some(state) = &watermarks {
        tracker.restore(state, Instant::now());
        let own = match upstream.last() {
            None => state.emitted,
            Some(last) => last.output_watermark(),
        };
        if let Some(w) = own {
            metrics.watermark.store(w, Ordering::Relaxed);
            emitted_watermark = Some(w);
            own_watermark = Some(w);
        }
    }
    // Where the job's own query finds event time in the rows of the view
    // it reads; rows from a stream were checked by the source already.
    let own_time = spec.upstream.last().and_then(event_time_column);
    let barrier_wanted = Arc::new(AtomicBool::new(false));
    let reader = SourceReader {
        stream: spec.stream.name.clone(),
        source,
        tracker,
        arrival_time: spec.stream.arrival_time,
        schema: Arc::clone(&spec.stream.schema),
        metrics: Arc::clone(metrics),
        stop: Arc::clone(stop),
        barrier_wanted: Arc::clone(&barrier_wanted),
        bad_rows_seen: 0,
        tx,
    };
    let source_thread = tokio::task::spawn_blocking(move || reader.run());

    let interval = spec.checkpoints.interval;
    let max_rows = spec.archive.commit.max_rows;
    let checkpointing = epochs.store.is_some();
    let skip_before = epochs.replay.as_ref().and_then(|r| r.skip_before);
    let discard = spec.archive.format == ArchiveFormat::Discard;
    // The rows emitted since the last barrier, for the archive.
    let mut epoch_rows: Vec<RecordBatch> = Vec::new();
    let mut epoch_row_count = 0;
    // Each epoch is staged and committed by the committer while the job
    // goes on with the next one.
    let (epoch_tx, epoch_rx) = mpsc::channel(EPOCHS_IN_FLIGHT);
    let committer = tokio::spawn(commit_epochs(
        Arc::clone(&spec),
        Arc::clone(metrics),
        epochs,
        archive,
        committed,
        epoch_rx,
    ));
    let mut committer_gone = false;
    // Barriers are due an interval after the previous one was asked for
    // (not after it completed), checked a few times per interval.
    let mut last_barrier = Instant::now();
    let mut ticker = tokio::time::interval(
        (interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    let outcome: std::result::Result<JobState, Error> = async {
        let mut stopping = false;
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let out = match message {
                        Some(Ok(SourceMessage::Batch(batch))) => {
                            let (batches, _) =
                                through_upstream(&mut upstream, vec![batch], None, &spec, metrics)
                                    .await?;
                            let mut out = Vec::new();
                            for batch in batches {
                                let batch = drop_late(batch, own_time, own_watermark, metrics)?;
                                out.extend(process(operator.as_mut(), batch, &spec, metrics).await?);
                            }
                            out
                        }
                        Some(Ok(SourceMessage::Watermark(w))) => {
                            let (batches, w) =
                                through_upstream(&mut upstream, Vec::new(), Some(w), &spec, metrics)
                                    .await?;
                            let mut out = Vec::new();
                            for batch in batches {
                                let batch = drop_late(batch, own_time, own_watermark, metrics)?;
                                out.extend(process(operator.as_mut(), batch, &spec, metrics).await?);
                            }
                            if let Some(w) = w {
                                metrics.watermark.store(w, Ordering::Relaxed);
                                out.extend(operator.advance(w).await?);
                                emitted_watermark = Some(w);
                                own_watermark = Some(w);
                            }
                            out
                        }
                        Some(Ok(SourceMessage::Barrier(barrier))) => {
                            // With checkpoints off a barrier only commits.
                            let states = if checkpointing {
                                let mut states = Vec::with_capacity(upstream.len() + 1);
                                for stage in &upstream {
                                    states.push((
                                        stage.operator.snapshot()?,
                                        stage.operator.state_schema(),
                                        stage.watermark,
                                    ));
                                }
                                states.push((operator.snapshot()?, operator.state_schema(), None));
                                states
                            } else {
                                Vec::new()
                            };
                            let sealed = SealedEpoch {
                                barrier,
                                states,
                                rows: std::mem::take(&mut epoch_rows),
                                emitted_watermark,
                                output_rows: metrics.output_rows.load(Ordering::Relaxed),
                                feed_epoch: spec.feed.seal(),
                            };
                            epoch_row_count = 0;
                            if epoch_tx.send(sealed).await.is_err() {
                                committer_gone = true;
                                return Err(Error::invalid("the committer stopped"));
                            }
                            continue;
                        }
                        Some(Ok(SourceMessage::End)) => return Ok(JobState::Finished),
                        Some(Err(e)) => return Err(e),
                        // The source thread ends without a message only when
                        // asked to stop (after its last barrier), or when it
                        // panicked.
                        None if stopping || stop.requested.load(Ordering::SeqCst) => {
                            return Ok(JobState::Stopped);
                        }
                        None => return Err(Error::invalid("the source stopped unexpectedly")),
                    };
                    for batch in out {
                        let batch = match skip_before {
                            Some(before) => windows_from(batch, before)?,
                            None => batch,
                        };
                        if batch.num_rows() == 0 {
                            continue;
                        }
                        metrics.output_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        spec.feed.publish(&batch)?;
                        if !discard {
                            epoch_row_count += batch.num_rows();
                            epoch_rows.push(batch);
                        }
                    }
                    if epoch_row_count >= max_rows
                        && !barrier_wanted.swap(true, Ordering::SeqCst)
                    {
                        last_barrier = Instant::now();
                    }
                }
                _ = ticker.tick() => {
                    if last_barrier.elapsed() >= interval {
                        barrier_wanted.store(true, Ordering::SeqCst);
                        last_barrier = Instant::now();
                    }
                }
                // The source thread sends its last barrier and ends; the
                // rows before it are checkpointed and committed above.
                _ = stop.notify.notified(), if !stopping => stopping = true,
                // A commit failed: the committer says why below.
                _ = epoch_tx.closed() => {
                    committer_gone = true;
                    return Err(Error::invalid("the committer stopped"));
                }
            }
        }
    }
    .await;
    stop.requested.store(true, Ordering::SeqCst);
    drop(rx);
    let outcome = match source_thread.await {
        Err(e) if e.is_panic() => Err(Error::invalid(format!(
            "the source failed: {}",
            crate::error::panic_message(e.into_panic())
        ))),
        _ => outcome,
    };
    // The epochs sealed so far are committed before the job reports its
    // end: a finished job's rows are all in its archive.
    drop(epoch_tx);
    let (commits, committed) = match committer.await {
        Ok(done) => done,
        Err(e) => (
            Err(Error::invalid(format!(
                "the committer failed: {}",
                if e.is_panic() {
                    crate::error::panic_message(e.into_panic())
                } else {
                    e.to_string()
                }
            ))),
            committed,
        ),
    };
    match (outcome, commits) {
        (Ok(state), Ok(())) => Ok((state, committed)),
        (Err(_), Err(e)) if committer_gone => Err((e, committed)),
        (Ok(_), Err(e)) | (Err(e), _) => Err((e, committed)),
    }
}

/// An epoch the job has sealed at a barrier: the rows it emitted since the
/// barrier before, and its operators' states at this one.
struct SealedEpoch {
    barrier: Barrier,
    states: Vec<StageState>,
    /// The rows for the archive (none for a discard sink).
    rows: Vec<RecordBatch>,
    emitted_watermark: Option<i64>,
    /// The job's output rows at the barrier.
    output_rows: u64,
    /// The feed's epoch the rows were published in.
    feed_epoch: u64,
}

/// Sealed epochs the job may run ahead of its committer by: it processes
/// the next epoch while one is committed, and waits behind a slow archive
/// rather than buffering without bound.
const EPOCHS_IN_FLIGHT: usize = 1;

/// A job's committer: takes the checkpoint of each epoch the job seals, in
/// order, off the job's task, so writing files and committing them does
/// not hold up processing. Ends when the job has sealed its last epoch,
/// or at the first failure; returns the watermark committed through.
async fn commit_epochs(
    spec: Arc<JobSpec>,
    metrics: Arc<JobMetrics>,
    mut epochs: Epochs,
    mut archive: Archive,
    mut committed: Option<i64>,
    mut sealed: mpsc::Receiver<SealedEpoch>,
) -> (Result<()>, Option<i64>) {
    while let Some(epoch) = sealed.recv().await {
        let taken = checkpoint(
            &spec,
            &metrics,
            &mut epochs,
            &mut archive,
            epoch,
            &mut committed,
        )
        .await;
        if let Err(e) = taken {
            return (Err(e), committed);
        }
    }
    (Ok(()), committed)
}

/// Takes checkpoint `epochs.next` at a barrier: stages the epoch's rows,
/// writes the operator state and then the manifest, and commits the rows.
/// With checkpoints off it stages and commits only.
async fn checkpoint(
    spec: &JobSpec,
    metrics: &JobMetrics,
    epochs: &mut Epochs,
    archive: &mut Archive,
    sealed: SealedEpoch,
    committed: &mut Option<i64>,
) -> Result<()> {
    let SealedEpoch {
        barrier,
        mut states,
        rows,
        emitted_watermark,
        output_rows,
        feed_epoch,
    } = sealed;
    let began = Instant::now();
    for batch in &rows {
        archive.buffer(batch)?;
    }
    let epoch = epochs.next;
    let store = epochs.store.as_ref();
    let position = match (store, barrier.position) {
        (Some(_), Some(position)) => Some(position),
        // The source has no position yet (a Kafka stream before the
        // brokers answered): it has returned nothing since the last
        // checkpoint, so there is nothing to checkpoint either.
        (Some(_), None) => {
            tracing::debug!(
                "job '{}': no source position yet; checkpoint skipped",
                spec.name
            );
            return Ok(());
        }
        (None, _) => None,
    };
    let staged = archive.stage(epoch, store).await?;
    if let (Some(store), Some(position)) = (store, position) {
        let mut size = staged.bytes;
        // The job's own operator's state comes last; the views it reads
        // through come first, in order.
        let (state, state_schema, _) = states.pop().unwrap_or_default();
        let mut upstream = Vec::with_capacity(states.len());
        for (i, (stage, schema, watermark)) in states.into_iter().enumerate() {
            let state_file = match schema {
                Some(schema) if !stage.batches.is_empty() => {
                    let file = format!("upstream-{i}.arrow");
                    size += store
                        .put_batches(epoch, &file, &schema, &stage.batches)
                        .await?;
                    Some(file)
                }
                _ => None,
            };
            upstream.push(StageManifest {
                operator: OperatorManifest {
                    state_file,
                    emitted_through: stage.emitted_through,
                    merged: stage.merged,
                },
                watermark,
            });
        }
        let state_file = match state_schema {
            Some(schema) if !state.batches.is_empty() => {
                size += store
                    .put_batches(epoch, "operator.arrow", &schema, &state.batches)
                    .await?;
                Some("operator.arrow".to_string())
            }
            _ => None,
        };
        let mut manifest = Manifest {
            format: 1,
            job: spec.name.clone(),
            epoch,
            started_ms: barrier.at_ms,
            duration_ms: 0,
            size_bytes: size,
            plan: epochs.plan.clone(),
            source: position,
            watermarks: barrier.watermarks,
            operator: OperatorManifest {
                state_file,
                emitted_through: state.emitted_through,
                merged: state.merged.clone(),
            },
            sink: staged.manifest.clone(),
            replay: epochs.replay.as_ref().map(|r| Replay {
                rewrite: archive.rewrite(),
                ..r.clone()
            }),
            counters: Counters {
                output_rows,
                ..barrier.counters
            },
            archived: epochs.archived,
            upstream,
        };
        manifest.duration_ms = began.elapsed().as_millis() as u64;
        store.commit(&manifest).await?;
        *metrics.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(CheckpointInfo {
            epoch,
            at_ms: barrier.at_ms,
            duration_ms: manifest.duration_ms,
            size_bytes: manifest.size_bytes,
        });
    }
    epochs.next += 1;
    if !staged.manifest.is_null() {
        spec.feed
            .commit_sealed(
                feed_epoch,
                archive.commit(&staged.manifest, epoch, store, false),
            )
            .await?;
        metrics.commits.fetch_add(1, Ordering::Relaxed);
        epochs.archived = Some(epoch);
    }
    if emitted_watermark != *committed {
        *committed = emitted_watermark;
        spec.catalog.put_job(&JobRecord {
            name: spec.name.clone(),
            status: JobStatus::Running,
            error: None,
            committed_watermark: *committed,
            counters: metrics.counters(),
        })?;
    }
    if let Some(store) = store
        && epochs.replay_recorded
    {
        store.set_replay(None).await?;
        epochs.replay_recorded = false;
    }
    if let Some(store) = store
        && let Err(e) = store.clean(epoch, epochs.retained).await
    {
        // Old checkpoints take space, but the job is sound: go on.
        tracing::warn!("job '{}': {e}", spec.name);
    }
    Ok(())
}

/// An operator's state at a barrier, the schema of its state batches, and
/// (for a view the job runs ahead of its own query) its input's watermark.
type StageState = (
    OperatorState,
    Option<arrow::datatypes::SchemaRef>,
    Option<i64>,
);

/// A view the job's query reads, running in the job ahead of the job's
/// own operator: its rows go to the next stage only (the view's own job
/// archives them).
struct Stage {
    query: ContinuousQuery,
    operator: Box<dyn operator::Operator>,
    /// Where its input rows carry event time: `None` for the first stage,
    /// whose rows the source has checked, or an input without event time.
    input_time: Option<usize>,
    /// The watermark it last advanced to.
    watermark: Option<i64>,
}

impl Stage {
    /// The watermark of the rows it emits from here on.
    fn output_watermark(&self) -> Option<i64> {
        self.query.output_watermark(self.watermark?)
    }
}

/// Where the rows `query` emits carry event time.
fn event_time_column(query: &ContinuousQuery) -> Option<usize> {
    let time = query.time_attribute.as_ref()?;
    query.output_schema().index_of(&time.column).ok()
}

/// Runs `batches` and, if given, the source's `watermark` through the
/// views the job reads, each stage's rows and derived watermark feeding
/// the next: returns the rows and watermark for the job's own operator.
/// Without stages they pass through unchanged.
async fn through_upstream(
    stages: &mut [Stage],
    mut batches: Vec<RecordBatch>,
    mut watermark: Option<i64>,
    spec: &JobSpec,
    metrics: &JobMetrics,
) -> Result<(Vec<RecordBatch>, Option<i64>)> {
    for stage in stages {
        let mut out = Vec::new();
        for batch in batches {
            let batch = drop_late(batch, stage.input_time, stage.watermark, metrics)?;
            out.extend(process(stage.operator.as_mut(), batch, spec, metrics).await?);
        }
        watermark = match watermark {
            Some(w) => {
                out.extend(stage.operator.advance(w).await?);
                stage.watermark = Some(w);
                stage.output_watermark()
            }
            None => None,
        };
        batches = out;
    }
    Ok((batches, watermark))
}

/// `batch` without the rows whose event time (column `time`) is below
/// `watermark`, counted as late. The watermark a view derives for its rows
/// keeps them all on time, so this drops nothing unless the derivation is
/// wrong; dropping keeps a closed window from being emitted twice.
fn drop_late(
    batch: RecordBatch,
    time: Option<usize>,
    watermark: Option<i64>,
    metrics: &JobMetrics,
) -> Result<RecordBatch> {
    let (Some(index), Some(watermark)) = (time, watermark) else {
        return Ok(batch);
    };
    let times = arrow::compute::cast(
        batch.column(index),
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
    )?;
    let threshold = TimestampNanosecondArray::new_scalar(watermark);
    let keep = arrow::compute::kernels::cmp::gt_eq(&times, &threshold)?;
    if keep.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
    let late = (batch.num_rows() - kept.num_rows()) as u64;
    metrics.late_rows.fetch_add(late, Ordering::Relaxed);
    tracing::warn!("{late} row(s) of a view arrived below its watermark and were dropped");
    Ok(kept)
}

/// The blocking side of a job: polls the source, stamps arrival time,
/// drops late rows and sends batches and watermarks to the job.
struct SourceReader {
    /// The stream read, for messages.
    stream: String,
    source: Box<dyn Source>,
    tracker: PartitionWatermarks,
    arrival_time: bool,
    schema: arrow::datatypes::SchemaRef,
    metrics: Arc<JobMetrics>,
    stop: Arc<StopSignal>,
    /// Set by the job when it wants a barrier.
    barrier_wanted: Arc<AtomicBool>,
    /// Malformed records the source has counted so far, and added to the
    /// job's count.
    bad_rows_seen: u64,
    tx: mpsc::Sender<Result<SourceMessage>>,
}

impl SourceReader {
    fn run(mut self) {
        match self.read() {
            // Stopped or at the end: the rows returned so far get a last
            // barrier, so a clean stop never replays them.
            Ok(()) => {}
            Err(e) => {
                // The rows before the error are final too: checkpoint them,
                // so a restart resumes at the failing record. The job may
                // be gone already; then nobody needs the error.
                if self.barrier() {
                    let _ignored = self.tx.blocking_send(Err(e));
                }
            }
        }
    }

    /// Sends a barrier at the source's current position.
    fn barrier(&mut self) -> bool {
        self.barrier_wanted.store(false, Ordering::SeqCst);
        let m = &self.metrics;
        self.send(SourceMessage::Barrier(Barrier {
            position: self.source.position(),
            watermarks: self.tracker.snapshot(),
            counters: Counters {
                input_rows: m.input_rows.load(Ordering::Relaxed),
                output_rows: 0,
                late_rows: m.late_rows.load(Ordering::Relaxed),
                idle_late_rows: m.idle_late_rows.load(Ordering::Relaxed),
                bad_rows: m.bad_rows.load(Ordering::Relaxed),
            },
            at_ms: chrono::Utc::now().timestamp_millis(),
        }))
    }

    fn send(&self, message: SourceMessage) -> bool {
        self.tx.blocking_send(Ok(message)).is_ok()
    }

    fn read(&mut self) -> Result<()> {
        let mut last_watermark = None;
        let mut last_arrival = i64::MIN;
        loop {
            if self.stop.requested.load(Ordering::SeqCst) {
                self.barrier();
                return Ok(());
            }
            if self.barrier_wanted.load(Ordering::SeqCst) && !self.barrier() {
                return Ok(());
            }
            let polled = self.source.poll();
            // Added, not stored: the job counts rows its operator drops too.
            let bad = self.source.bad_rows();
            self.metrics
                .bad_rows
                .fetch_add(bad.saturating_sub(self.bad_rows_seen), Ordering::Relaxed);
            self.bad_rows_seen = bad;
            self.metrics.set_health(self.source.health());
            let now = Instant::now();
            self.tracker.track(self.source.partitions(), now);
            // Only a partition the source has read to its end can be idle:
            // one it is behind on, or a broker too slow to say, may still
            // hold rows the watermark must not pass.
            let caught_up = self.source.caught_up();
            self.tracker.set_caught_up(&caught_up);
            match polled? {
                Poll::Batch(partition, batch) => {
                    self.metrics
                        .input_rows
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    let batch = if self.arrival_time {
                        last_arrival = now_nanos().max(last_arrival);
                        with_arrival_time(&self.schema, batch, last_arrival)?
                    } else {
                        batch
                    };
                    let observed = self.tracker.observe(partition, batch, now)?;
                    self.metrics
                        .late_rows
                        .fetch_add(observed.late as u64, Ordering::Relaxed);
                    if observed.passed > 0 {
                        self.metrics
                            .idle_late_rows
                            .fetch_add(observed.passed as u64, Ordering::Relaxed);
                        tracing::warn!(
                            "stream '{}' partition {partition}: {} rows dropped as late: the \
                             watermark moved on while the partition was idle (it had delivered \
                             nothing for idle_timeout and was read to its end) or before it \
                             delivered anything; raise the stream's idle_timeout if its \
                             producers pause longer",
                            self.stream,
                            observed.passed
                        );
                    }
                    if observed.batch.num_rows() > 0
                        && !self.send(SourceMessage::Batch(observed.batch))
                    {
                        return Ok(());
                    }
                    if let Some(w) = self.tracker.advance(now) {
                        last_watermark = Some(w);
                        if !self.send(SourceMessage::Watermark(w)) {
                            return Ok(());
                        }
                    }
                }
                Poll::Idle(wait) => {
                    // Partitions going idle may let the watermark move on.
                    if !self.arrival_time
                        && let Some(w) = self.tracker.advance(now)
                    {
                        last_watermark = Some(w);
                        if !self.send(SourceMessage::Watermark(w)) {
                            return Ok(());
                        }
                    }
                    // Arrival time moves on while nothing arrives, so windows
                    // over it close on time.
                    if self.arrival_time {
                        last_arrival = now_nanos().max(last_arrival);
                        if last_watermark.is_none_or(|w| w < last_arrival) {
                            last_watermark = Some(last_arrival);
                            if !self.send(SourceMessage::Watermark(last_arrival)) {
                                return Ok(());
                            }
                        }
                    }
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
                Poll::End => {
                    // At the end of bounded input every window closes.
                    if self.send(SourceMessage::Watermark(i64::MAX)) && self.barrier() {
                        self.send(SourceMessage::End);
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// The rows of windows starting at or after `start` (nanoseconds): a replay
/// from a time saw only part of the windows before it.
fn windows_from(batch: RecordBatch, start: i64) -> Result<RecordBatch> {
    let Ok(index) = batch.schema().index_of(fibers_sql::WINDOW_START) else {
        return Ok(batch);
    };
    let starts = arrow::compute::cast(
        batch.column(index),
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
    )?;
    let threshold = TimestampNanosecondArray::new_scalar(start);
    let keep = arrow::compute::kernels::cmp::gt_eq(&starts, &threshold)?;
    Ok(arrow::compute::filter_record_batch(&batch, &keep)?)
}

pub(crate) fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub(crate) fn with_arrival_time(
    schema: &arrow::datatypes::SchemaRef,
    batch: RecordBatch,
    now: i64,
) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(TimestampNanosecondArray::from_value(
        now,
        batch.num_rows(),
    )));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
