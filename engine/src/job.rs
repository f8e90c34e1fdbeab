//! Jobs: a view's or sink's continuous query, running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::TimestampNanosecondArray;
use arrow::record_batch::RecordBatch;
use fibers_catalog::{Catalog, JobCounters, JobRecord, JobStatus};
use fibers_sql::ContinuousQuery;
use tokio::sync::{Notify, mpsc, watch};

use crate::archive::{Archive, ArchiveConfig};
use crate::connector::{Poll, Source, StreamDef};
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
    pub bad_rows: AtomicU64,
    pub commits: AtomicU64,
    /// Nanoseconds since the epoch; `i64::MIN` before the first row.
    pub watermark: AtomicI64,
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
            bad_rows: self.bad_rows.load(Ordering::Relaxed),
        }
    }

    /// The source's report on its connection, if it is retrying.
    pub fn health(&self) -> Option<String> {
        self.health.lock().ok().and_then(|h| h.clone())
    }
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

/// Everything a job needs to run.
pub(crate) struct JobSpec {
    pub name: String,
    pub stream: Arc<StreamDef>,
    pub query: ContinuousQuery,
    pub archive: ArchiveConfig,
    pub batch_size: usize,
    pub catalog: Arc<Catalog>,
    /// Where subscribers get the rows the job emits.
    pub feed: Arc<Feed>,
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
    requested: AtomicBool,
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
    End,
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
    let committed = previous.as_ref().and_then(|j| j.committed_watermark);
    let outcome = run_job(spec, &metrics, &stop, committed).await;
    let (final_state, committed) = match outcome {
        Ok((s, w)) => (s, w),
        Err((e, w)) => (JobState::Failed(e.to_string()), w),
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

async fn run_job(
    spec: JobSpec,
    metrics: &Arc<JobMetrics>,
    stop: &Arc<StopSignal>,
    committed: Option<i64>,
) -> JobOutcome {
    let name = spec.name.clone();
    let setup = async {
        let ctx = spec.query.state.task_ctx();
        let operator = operator::build(&spec.query, ctx, committed).await?;
        let archive = spec
            .archive
            .open(&name, &spec.query.output_schema())
            .await?;
        let source = spec.stream.open(spec.batch_size)?;
        Ok::<_, Error>((operator, archive, source))
    };
    let (mut operator, mut archive, source) = setup.await.map_err(|e| (e, committed))?;
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
    let tracker = PartitionWatermarks::new(
        time_index,
        spec.stream.delay_nanos,
        spec.stream.idle_timeout(),
    );
    let reader = SourceReader {
        source,
        tracker,
        arrival_time: spec.stream.arrival_time,
        schema: Arc::clone(&spec.stream.schema),
        metrics: Arc::clone(metrics),
        stop: Arc::clone(stop),
        tx,
    };
    let source_thread = tokio::task::spawn_blocking(move || reader.run());

    let policy = spec.archive.commit;
    let mut committed = committed;
    let mut emitted_watermark = committed;
    let mut last_commit = Instant::now();
    let mut ticker = tokio::time::interval(policy.interval.min(Duration::from_secs(1)));
    let outcome: std::result::Result<JobState, Error> = async {
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let out = match message {
                        Some(Ok(SourceMessage::Batch(batch))) => operator.process(batch).await?,
                        Some(Ok(SourceMessage::Watermark(w))) => {
                            metrics.watermark.store(w, Ordering::Relaxed);
                            let out = operator.advance(w).await?;
                            emitted_watermark = Some(w);
                            out
                        }
                        Some(Ok(SourceMessage::End)) => return Ok(JobState::Finished),
                        Some(Err(e)) => return Err(e),
                        // The source thread ends without a message only when
                        // asked to stop, or when it panicked.
                        None if stop.requested.load(Ordering::SeqCst) => return Ok(JobState::Stopped),
                        None => return Err(Error::invalid("the source stopped unexpectedly")),
                    };
                    for batch in out {
                        metrics.output_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        archive.buffer(&batch)?;
                        spec.feed.publish(&batch)?;
                    }
                    if archive.buffered_rows() >= policy.max_rows {
                        commit(&mut archive, &spec, metrics, emitted_watermark, &mut committed).await?;
                        last_commit = Instant::now();
                    }
                }
                _ = ticker.tick() => {
                    if last_commit.elapsed() >= policy.interval {
                        commit(&mut archive, &spec, metrics, emitted_watermark, &mut committed).await?;
                        last_commit = Instant::now();
                    }
                }
                _ = stop.notify.notified() => return Ok(JobState::Stopped),
            }
        }
    }
    .await;
    stop.requested.store(true, Ordering::SeqCst);
    drop(rx);
    let outcome = match source_thread.await {
        Err(e) if e.is_panic() => Err(Error::invalid(format!(
            "the source failed: {}",
            panic_message(e.into_panic())
        ))),
        _ => outcome,
    };
    // Whatever happened, rows already emitted are final: commit them, so
    // nothing accepted is lost because a later record was bad.
    let final_commit = commit(
        &mut archive,
        &spec,
        metrics,
        emitted_watermark,
        &mut committed,
    )
    .await;
    match (outcome, final_commit) {
        (Ok(state), Ok(())) => Ok((state, committed)),
        (Err(e), _) | (Ok(_), Err(e)) => Err((e, committed)),
    }
}

async fn commit(
    archive: &mut Archive,
    spec: &JobSpec,
    metrics: &JobMetrics,
    emitted_watermark: Option<i64>,
    committed: &mut Option<i64>,
) -> Result<()> {
    if archive.buffered_rows() > 0 {
        spec.feed.commit(archive.commit()).await?;
        metrics.commits.fetch_add(1, Ordering::Relaxed);
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
    Ok(())
}

/// The blocking side of a job: polls the source, stamps arrival time,
/// drops late rows and sends batches and watermarks to the job.
struct SourceReader {
    source: Box<dyn Source>,
    tracker: PartitionWatermarks,
    arrival_time: bool,
    schema: arrow::datatypes::SchemaRef,
    metrics: Arc<JobMetrics>,
    stop: Arc<StopSignal>,
    tx: mpsc::Sender<Result<SourceMessage>>,
}

impl SourceReader {
    fn run(mut self) {
        if let Err(e) = self.read() {
            // The job may be gone already; then nobody needs the error.
            let _ignored = self.tx.blocking_send(Err(e));
        }
    }

    fn send(&self, message: SourceMessage) -> bool {
        self.tx.blocking_send(Ok(message)).is_ok()
    }

    fn read(&mut self) -> Result<()> {
        let mut last_watermark = None;
        let mut last_arrival = i64::MIN;
        while !self.stop.requested.load(Ordering::SeqCst) {
            let polled = self.source.poll();
            self.metrics
                .bad_rows
                .store(self.source.bad_rows(), Ordering::Relaxed);
            self.metrics.set_health(self.source.health());
            let now = Instant::now();
            let partitions = self.source.partitions();
            if partitions.len() != self.tracker.len() {
                for &p in partitions {
                    self.tracker.add_partition(p, now);
                }
            }
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
                    if self.send(SourceMessage::Watermark(i64::MAX)) {
                        self.send(SourceMessage::End);
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
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
