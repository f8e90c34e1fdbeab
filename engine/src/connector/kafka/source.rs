//! Reading a Kafka topic: every partition, decoded straight into Arrow
//! batches, one batch per partition so each keeps its own watermark.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::end_offsets::EndOffsetWatcher;
use super::scan::ScanBounds;
use super::{
    DeadLetterTable, KafkaConfig, MetadataColumn, MetadataKind, REQUEST_TIMEOUT, StartOffset,
    kafka_error, split_schema,
};
use crate::connector::{BadData, Poll, Source};
use crate::format::{Format, RecordDecoder, Records};
use crate::{Error, Result};

/// How long one poll gathers messages before decoding what it has, so a
/// slow topic still flows promptly.
const LINGER: Duration = Duration::from_millis(50);
/// How often partitions added to the topic are looked for.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// How often processed offsets are committed to the `group`, if any.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// How often an unbounded read looks up its partitions' end offsets at
/// most (and at least three times per `idle_timeout`).
const END_OFFSETS_INTERVAL: Duration = Duration::from_secs(5);
/// Bounds of the wait between attempts to reach unreachable brokers.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The messages of one partition gathered for the next batch.
#[derive(Default)]
struct PartitionBuffer {
    values: Records,
    offsets: Vec<i64>,
    /// Message timestamps in milliseconds.
    timestamps: Vec<Option<i64>>,
    /// Message keys, kept only when `_key` is declared.
    keys: Vec<Option<Vec<u8>>>,
}

impl PartitionBuffer {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Empties the buffer, keeping its memory for the next batch.
    fn clear(&mut self) {
        self.values.clear();
        self.offsets.clear();
        self.timestamps.clear();
        self.keys.clear();
    }
}

/// Reads a Kafka stream.
pub(crate) struct KafkaSource {
    stream: String,
    config: KafkaConfig,
    consumer: BaseConsumer,
    decoder: Box<dyn RecordDecoder>,
    schema: SchemaRef,
    metadata: Vec<MetadataColumn>,
    keep_keys: bool,
    /// How long one poll gathers messages at most ([`LINGER`]).
    linger: Duration,
    /// JSON or CSV: line ends around a value are not part of it.
    text_format: bool,
    batch_size: usize,
    /// Whether the partitions are assigned (the brokers were reached).
    connected: bool,
    /// What an ad-hoc scan's filters let it skip.
    bounds: ScanBounds,
    /// Partitions assigned, in order.
    partitions: Vec<u32>,
    /// The next offset to read, per partition.
    positions: BTreeMap<i32, i64>,
    /// Where a bounded read stops, per partition.
    end_offsets: Option<BTreeMap<i32, i64>>,
    buffers: BTreeMap<i32, PartitionBuffer>,
    buffered: usize,
    /// Decoded batches not yet returned, with the offset their partition
    /// resumes at once they are.
    ready: VecDeque<(u32, RecordBatch, i64)>,
    /// The offset after the last record returned (or skipped), per
    /// partition: the source's checkpoint position.
    delivered: BTreeMap<i32, i64>,
    /// Offsets a checkpoint resumes from, applied when partitions are
    /// assigned.
    resume: Option<BTreeMap<i32, i64>>,
    /// The end offsets of an unbounded read, looked up in the background:
    /// a partition below its own is behind, not idle.
    watcher: Option<EndOffsetWatcher>,
    /// How often they are looked up.
    end_offsets_interval: Duration,
    /// How old an end offset may be and still tell that a partition is
    /// caught up (its `idle_timeout`).
    freshness: Duration,
    /// When the consumer's positions were last taken in.
    last_positions: Instant,
    /// An error to report once the rows decoded before it are delivered.
    failure: Option<Error>,
    dead_letters: Option<DeadLetterTable>,
    bad_rows: u64,
    health: Option<String>,
    next_attempt: Instant,
    backoff: Duration,
    last_discovery: Instant,
    last_group_commit: Instant,
}

impl KafkaSource {
    /// A reader of `config`'s topic into rows of `schema` (the declared
    /// columns, metadata columns included). Nothing is fetched until the
    /// first poll, so a broker that is down delays the job, not fails it.
    pub fn new(
        stream: &str,
        config: &KafkaConfig,
        schema: SchemaRef,
        batch_size: usize,
        dead_letters: Option<DeadLetterTable>,
    ) -> Result<Self> {
        let (payload, metadata) = split_schema(&schema)?;
        let decoder = config.format.decoder(payload, config.limits)?;
        let consumer: BaseConsumer = config
            .consumer_config()
            .create()
            .map_err(|e| kafka_error(&config.brokers, "cannot create a consumer", e))?;
        let now = Instant::now();
        Ok(KafkaSource {
            stream: stream.to_string(),
            config: config.clone(),
            consumer,
            decoder,
            keep_keys: metadata.iter().any(|m| m.kind == MetadataKind::Key),
            linger: LINGER,
            text_format: matches!(config.format, Format::Json | Format::Csv { .. }),
            schema,
            metadata,
            batch_size: batch_size.max(1),
            connected: false,
            bounds: ScanBounds::default(),
            partitions: Vec::new(),
            positions: BTreeMap::new(),
            end_offsets: None,
            buffers: BTreeMap::new(),
            buffered: 0,
            ready: VecDeque::new(),
            delivered: BTreeMap::new(),
            resume: None,
            watcher: None,
            end_offsets_interval: (config.idle_timeout / 3)
                .clamp(Duration::from_millis(100), END_OFFSETS_INTERVAL),
            freshness: config.idle_timeout,
            last_positions: now,
            failure: None,
            dead_letters,
            bad_rows: 0,
            health: None,
            next_attempt: now,
            backoff: MIN_BACKOFF,
            last_discovery: now,
            last_group_commit: now,
        })
    }

    /// The source for a reader that needs only the columns in `read`
    /// (all when `None`): the payload's other fields are not decoded
    /// (NULL).
    pub fn reading(mut self, read: Option<&BTreeSet<String>>) -> Result<Self> {
        let (payload, _) = split_schema(&self.schema)?;
        self.decoder = self
            .config
            .format
            .decoder_reading(payload, self.config.limits, read)?;
        Ok(self)
    }

    /// Cuts batches after every 256 messages (tests of batch cutting).
    #[cfg(test)]
    pub fn without_linger(mut self) -> Self {
        self.linger = Duration::ZERO;
        self
    }

    /// Limits the read to what an ad-hoc scan's filters allow.
    pub fn with_bounds(mut self, bounds: ScanBounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn error(&self, message: String) -> Error {
        Error::Source {
            stream: self.stream.clone(),
            message,
        }
    }

    /// The error of a record that does not decode.
    fn bad_record(&self, message: String) -> Error {
        Error::BadRecord {
            stream: self.stream.clone(),
            message,
        }
    }

    /// Finds the topic's partitions, decides where each starts (and, for
    /// a bounded read, ends) and assigns them. `Ok(false)` when the
    /// brokers cannot be reached (to be retried); an error when they
    /// answer that the topic cannot be read.
    fn connect(&mut self) -> Result<bool> {
        let partitions = match topic_partitions(&self.consumer, &self.config.topic) {
            Ok(mut p) => {
                if let Some(only) = &self.bounds.partitions {
                    p.retain(|p| only.contains(p));
                }
                p
            }
            Err(TopicError::Unreachable(e)) => {
                self.retry_later(format!(
                    "cannot reach Kafka at '{}': {e}; retrying",
                    self.config.brokers
                ));
                return Ok(false);
            }
            // A job over a topic not created yet waits for it; a bounded
            // read (an ad-hoc query, a backfill) has nothing to wait for.
            Err(TopicError::Missing) if !self.config.end_at_latest => {
                self.retry_later(format!(
                    "topic '{}' does not exist at '{}' (yet); waiting for it to be created",
                    self.config.topic, self.config.brokers
                ));
                return Ok(false);
            }
            Err(e @ (TopicError::Fatal(_) | TopicError::Missing)) => {
                return Err(self.error(format!(
                    "topic '{}' at '{}': {e}",
                    self.config.topic, self.config.brokers
                )));
            }
        };
        let mut starts = BTreeMap::new();
        let mut ends = BTreeMap::new();
        for &p in &partitions {
            let (low, high) =
                match self
                    .consumer
                    .fetch_watermarks(&self.config.topic, p, REQUEST_TIMEOUT)
                {
                    Ok(w) => w,
                    Err(e) => {
                        self.retry_later(format!(
                            "cannot read the offsets of topic '{}' partition {p}: {e}; retrying",
                            self.config.topic
                        ));
                        return Ok(false);
                    }
                };
            let start = match (&self.resume, self.config.start) {
                // A checkpoint's offset, unless retention has removed it;
                // a partition added after the checkpoint starts at its
                // beginning.
                (Some(resume), _) => resume.get(&p).map_or(low, |&o| o.clamp(low, high)),
                (None, StartOffset::Earliest) => low,
                (None, StartOffset::Latest) => high,
                (None, StartOffset::Timestamp(_)) => low,
            };
            starts.insert(p, start);
            ends.insert(p, high);
        }
        let start = if self.resume.is_some() {
            StartOffset::Earliest
        } else {
            self.config.start
        };
        let from_time = match (start, self.bounds.min_timestamp_ms) {
            (StartOffset::Timestamp(a), Some(b)) => Some(a.max(b)),
            (StartOffset::Timestamp(a), None) => Some(a),
            (_, b) => b,
        };
        if let Some(ms) = from_time
            && !partitions.is_empty()
        {
            let mut query = TopicPartitionList::new();
            for &p in &partitions {
                query
                    .add_partition_offset(&self.config.topic, p, Offset::Offset(ms))
                    .map_err(|e| self.error(e.to_string()))?;
            }
            match self.consumer.offsets_for_times(query, REQUEST_TIMEOUT) {
                Ok(found) => {
                    for element in found.elements() {
                        let start = match element.offset() {
                            Offset::Offset(o) => o,
                            // No message at or after the time: start at the end.
                            _ => ends.get(&element.partition()).copied().unwrap_or(0),
                        };
                        let current = starts.entry(element.partition()).or_insert(start);
                        *current = (*current).max(start);
                    }
                }
                Err(e) => {
                    self.retry_later(format!("cannot look up offsets by time: {e}; retrying"));
                    return Ok(false);
                }
            }
        }
        if let Some(min) = self.bounds.min_offset {
            starts.values_mut().for_each(|s| *s = (*s).max(min));
        }
        if let Some(end) = self.bounds.end_offset {
            ends.values_mut().for_each(|e| *e = (*e).min(end));
        }
        let mut assignment = TopicPartitionList::new();
        for (&p, &start) in &starts {
            assignment
                .add_partition_offset(&self.config.topic, p, Offset::Offset(start))
                .map_err(|e| self.error(e.to_string()))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| self.error(format!("cannot assign partitions: {e}")))?;
        self.connected = true;
        self.partitions = partitions.iter().map(|&p| p as u32).collect();
        self.delivered = starts.clone();
        self.positions = starts;
        if self.config.end_at_latest {
            self.end_offsets = Some(ends);
        } else if self.watcher.is_none() {
            self.watcher = Some(EndOffsetWatcher::start(
                &self.stream,
                &self.config,
                partitions.clone(),
                self.end_offsets_interval,
            )?);
        }
        self.recovered();
        Ok(true)
    }

    fn retry_later(&mut self, health: String) {
        tracing::warn!("stream '{}': {health}", self.stream);
        self.health = Some(health);
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn recovered(&mut self) {
        if self.health.take().is_some() {
            tracing::info!("stream '{}': Kafka is reachable again", self.stream);
        }
        self.backoff = MIN_BACKOFF;
    }

    /// Picks up partitions added to the topic since the last look; they
    /// are read from their beginning.
    fn discover(&mut self) -> Result<()> {
        self.last_discovery = Instant::now();
        let Ok(partitions) = topic_partitions(&self.consumer, &self.config.topic) else {
            // Unreachable now; the next look will tell.
            return Ok(());
        };
        let mut added = TopicPartitionList::new();
        for p in partitions {
            if !self.positions.contains_key(&p) {
                added
                    .add_partition_offset(&self.config.topic, p, Offset::Beginning)
                    .map_err(|e| self.error(e.to_string()))?;
                self.positions.insert(p, 0);
                self.delivered.insert(p, 0);
                self.partitions.push(p as u32);
                if let Some(watcher) = &self.watcher {
                    watcher.watch(p);
                }
                tracing::info!(
                    "stream '{}': reading new partition {p} of topic '{}'",
                    self.stream,
                    self.config.topic
                );
            }
        }
        if added.count() > 0 {
            self.consumer
                .incremental_assign(&added)
                .map_err(|e| self.error(format!("cannot assign new partitions: {e}")))?;
        }
        Ok(())
    }

    /// Whether a bounded read has reached its end offsets everywhere.
    fn reached_end(&mut self) -> bool {
        let Some(ends) = &self.end_offsets else {
            return false;
        };
        let done = |positions: &BTreeMap<i32, i64>| {
            ends.iter()
                .all(|(p, end)| positions.get(p).is_some_and(|pos| pos >= end))
        };
        if done(&self.positions) {
            return true;
        }
        // Transaction markers take offsets no message has: ask the consumer
        // where it really is.
        if let Ok(positions) = self.consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(o) = element.offset() {
                    let pos = self.positions.entry(element.partition()).or_insert(o);
                    *pos = (*pos).max(o);
                }
            }
        }
        done(&self.positions)
    }

    /// Polls messages into the partition buffers until a batch is full,
    /// the linger time is up, or nothing more is waiting. Returns how many
    /// messages arrived (rows or not).
    fn gather(&mut self) -> Result<usize> {
        let started = Instant::now();
        let mut seen = 0;
        while self.buffered < self.batch_size {
            // Bound the latency of a batch on a busy topic; checked before
            // polling, so no polled message is ever left behind.
            if seen > 0 && seen % 256 == 0 && started.elapsed() >= self.linger {
                break;
            }
            let timeout = if seen == 0 {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            let message = match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.on_consume_error(e)?;
                    break;
                }
            };
            seen += 1;
            let partition = message.partition();
            let offset = message.offset();
            self.positions.insert(partition, offset + 1);
            // A bounded read fetches past its end: leave those be.
            if let Some(ends) = &self.end_offsets
                && ends.get(&partition).is_none_or(|&end| offset >= end)
            {
                continue;
            }
            // A tombstone (no value at all) deletes a key in a compacted
            // topic; it carries no row.
            let Some(value) = message.payload() else {
                continue;
            };
            let buffer = self.buffers.entry(partition).or_default();
            buffer.values.push(if self.text_format {
                // A producer's line end is not part of a JSON or CSV record.
                trim_line_end(value)
            } else {
                value
            });
            buffer.offsets.push(offset);
            buffer.timestamps.push(message.timestamp().to_millis());
            if self.keep_keys {
                buffer.keys.push(message.key().map(<[u8]>::to_vec));
            }
            self.buffered += 1;
        }
        if seen > 0 {
            self.recovered();
        }
        Ok(seen)
    }

    fn on_consume_error(&mut self, e: KafkaError) -> Result<()> {
        let fatal = match &e {
            KafkaError::MessageConsumptionFatal(_) => true,
            KafkaError::MessageConsumption(code) => matches!(
                code,
                RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
            ),
            _ => false,
        };
        if fatal {
            return Err(self.error(format!(
                "topic '{}' at '{}': {e}",
                self.config.topic, self.config.brokers
            )));
        }
        // librdkafka reconnects by itself; say what is wrong meanwhile.
        let health = format!("Kafka at '{}': {e}; retrying", self.config.brokers);
        if self.health.as_ref() != Some(&health) {
            tracing::warn!("stream '{}': {health}", self.stream);
            self.health = Some(health);
        }
        Ok(())
    }

    /// Decodes every partition's buffer into a batch of its own. The
    /// buffers are emptied and kept: growing new ones for every batch
    /// costs more than filling them (reallocation, fresh pages).
    fn decode_buffers(&mut self) -> Result<()> {
        let mut buffers = std::mem::take(&mut self.buffers);
        self.buffered = 0;
        let mut decoded = Ok(());
        for (&partition, buffer) in &mut buffers {
            if buffer.len() > 0 && self.failure.is_none() && decoded.is_ok() {
                decoded = self.decode_partition(partition, buffer);
            }
            buffer.clear();
        }
        self.buffers = buffers;
        decoded
    }

    fn decode_partition(&mut self, partition: i32, buffer: &PartitionBuffer) -> Result<()> {
        let decoded = self.decoder.decode(&buffer.values)?;
        let kept = decoded.kept(buffer.len());
        let mut batch = self.assemble(partition, buffer, decoded.batch, kept.as_deref())?;
        if let Some((first, e)) = decoded.bad.first() {
            match self.config.bad_data {
                BadData::Fail => {
                    // The rows before the bad record are delivered; the
                    // job then stops at it.
                    let before = kept.as_deref().map_or(0, |k| {
                        k.iter().take_while(|&&i| (i as usize) < *first).count()
                    });
                    batch = batch.slice(0, before);
                    self.failure = Some(self.bad_record(format!(
                        "topic '{}' partition {partition} offset {}: {e} (set bad_data = 'drop' \
                         or 'dead_letter' to skip malformed records)",
                        self.config.topic, buffer.offsets[*first]
                    )));
                }
                BadData::Drop => self.bad_rows += decoded.bad.len() as u64,
                BadData::DeadLetter => {
                    self.bad_rows += decoded.bad.len() as u64;
                    if let Some(table) = &mut self.dead_letters {
                        let records: Vec<_> = decoded
                            .bad
                            .iter()
                            .map(|(i, e)| super::dead_letter::DeadLetter {
                                raw: buffer.values.get(*i),
                                error: e,
                                partition,
                                offset: buffer.offsets[*i],
                                timestamp_ms: buffer.timestamps[*i],
                            })
                            .collect();
                        table.write(&self.config.topic, &records)?;
                    }
                }
            }
        }
        // Past the decoded records (and dropped ones); a failure resumes at
        // the bad record.
        let next = match (&self.failure, decoded.bad.first()) {
            (Some(_), Some((first, _))) => buffer.offsets[*first],
            _ => buffer.offsets.last().map_or(0, |o| o + 1),
        };
        if batch.num_rows() > 0 {
            self.ready.push_back((partition as u32, batch, next));
        } else {
            let at = self.delivered.entry(partition).or_insert(next);
            *at = (*at).max(next);
        }
        Ok(())
    }

    /// The stream's rows: decoded columns and metadata columns in the
    /// declared order, for the records `kept` (all when `None`).
    fn assemble(
        &self,
        partition: i32,
        buffer: &PartitionBuffer,
        decoded: RecordBatch,
        kept: Option<&[u32]>,
    ) -> Result<RecordBatch> {
        let rows = decoded.num_rows();
        let indices: Vec<usize> = match kept {
            _ if self.metadata.is_empty() => Vec::new(),
            None => (0..rows).collect(),
            Some(k) => k.iter().map(|&i| i as usize).collect(),
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let mut payload = decoded.columns().iter();
        let mut metadata = self.metadata.iter().peekable();
        for index in 0..self.schema.fields().len() {
            let Some(column) = metadata.next_if(|m| m.index == index) else {
                match payload.next() {
                    Some(c) => columns.push(Arc::clone(c)),
                    None => return Err(Error::invalid("decoded rows lack a column")),
                }
                continue;
            };
            let array: ArrayRef = match column.kind {
                MetadataKind::Partition => Arc::new(Int32Array::from_value(partition, rows)),
                MetadataKind::Offset => Arc::new(Int64Array::from_iter_values(
                    indices.iter().map(|&i| buffer.offsets[i]),
                )),
                MetadataKind::Timestamp => {
                    Arc::new(TimestampNanosecondArray::from_iter(indices.iter().map(
                        |&i| buffer.timestamps[i].map(|ms| ms.saturating_mul(1_000_000)),
                    )))
                }
                MetadataKind::Key => {
                    let keys =
                        BinaryArray::from_iter(indices.iter().map(|&i| buffer.keys[i].as_deref()));
                    if column.data_type == DataType::Utf8 {
                        // Keys that are not UTF-8 become NULL rather than
                        // failing the record.
                        Arc::new(
                            keys.iter()
                                .map(|k| k.and_then(|k| std::str::from_utf8(k).ok()))
                                .collect::<StringArray>(),
                        )
                    } else {
                        Arc::new(keys)
                    }
                }
            };
            let array = if array.data_type() == &column.data_type {
                array
            } else {
                cast(&array, &column.data_type)?
            };
            columns.push(array);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Takes in the consumer's positions: transaction markers take
    /// offsets no record has, and the consumer knows it is past them.
    fn take_consumer_positions(&mut self) {
        self.last_positions = Instant::now();
        if let Ok(positions) = self.consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(o) = element.offset() {
                    let at = self.positions.entry(element.partition()).or_insert(o);
                    *at = (*at).max(o);
                }
            }
        }
    }

    /// Commits the positions read to the consumer group, for visibility.
    fn commit_group(&mut self) {
        self.last_group_commit = Instant::now();
        if self.config.group.is_none() || self.positions.is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (&p, &o) in &self.positions {
            if offsets
                .add_partition_offset(&self.config.topic, p, Offset::Offset(o))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!("stream '{}': group commit failed: {e}", self.stream);
        }
    }
}

impl Source for KafkaSource {
    fn poll(&mut self) -> Result<Poll> {
        loop {
            if let Some((partition, batch, next)) = self.ready.pop_front() {
                let at = self.delivered.entry(partition as i32).or_insert(next);
                *at = (*at).max(next);
                return Ok(Poll::Batch(partition, batch));
            }
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            if !self.connected {
                let now = Instant::now();
                if now < self.next_attempt {
                    return Ok(Poll::Idle(self.next_attempt - now));
                }
                if !self.connect()? {
                    return Ok(Poll::Idle(self.backoff));
                }
            }
            if self.reached_end() && self.buffered == 0 {
                return Ok(Poll::End);
            }
            if self.end_offsets.is_none() && self.last_discovery.elapsed() >= DISCOVERY_INTERVAL {
                self.discover()?;
            }
            if self.last_group_commit.elapsed() >= GROUP_COMMIT_INTERVAL {
                self.commit_group();
            }
            let seen = self.gather()?;
            if self.buffered == 0 {
                if self.reached_end() {
                    return Ok(Poll::End);
                }
                // Nothing to decode: give the reader a turn (it checks for
                // a stop), right away if messages are flowing.
                let wait = if seen == 0 {
                    Duration::from_millis(10)
                } else {
                    Duration::ZERO
                };
                return Ok(Poll::Idle(wait));
            }
            self.decode_buffers()?;
        }
    }

    fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn health(&self) -> Option<String> {
        self.health.clone()
    }

    fn caught_up(&mut self) -> Vec<u32> {
        if !self.connected {
            return Vec::new();
        }
        if self.end_offsets.is_none() && self.last_positions.elapsed() >= self.end_offsets_interval
        {
            self.take_consumer_positions();
        }
        // A bounded read knows its ends; an unbounded one learns them from
        // its watcher, and trusts only answers asked for within the last
        // `idle_timeout`: a broker too slow to answer leaves the partition
        // behind, not idle.
        let fresh;
        let ends = match (&self.end_offsets, &self.watcher) {
            (Some(ends), _) => ends,
            (None, Some(watcher)) => {
                fresh = watcher.fresh_ends(self.freshness);
                &fresh
            }
            (None, None) => return Vec::new(),
        };
        // Read positions, not delivered ones: records read and skipped
        // (tombstones) leave nothing behind.
        self.partitions
            .iter()
            .copied()
            .filter(|&p| {
                let partition = p as i32;
                let next = self.positions.get(&partition).copied().unwrap_or(0);
                ends.get(&partition).is_some_and(|&end| next >= end)
            })
            .collect()
    }

    fn position(&self) -> Option<serde_json::Value> {
        // Nothing gathered is pending: every record read was returned or
        // skipped (a tombstone, say), so the read positions hold.
        let offsets = if self.ready.is_empty() && self.buffered == 0 && self.failure.is_none() {
            &self.positions
        } else {
            &self.delivered
        };
        if !self.connected {
            // Not assigned yet: resume where this run would have started.
            return self
                .resume
                .as_ref()
                .map(|r| position_json(&self.config.topic, r));
        }
        Some(position_json(&self.config.topic, offsets))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let bad = |e: &str| crate::connector::bad_position(&self.stream, position, e);
        let topic = position.get("topic").and_then(|t| t.as_str());
        if topic != Some(self.config.topic.as_str()) {
            return Err(bad(&format!(
                "it is of topic {}, the stream reads '{}'",
                topic.map_or("(none)".into(), |t| format!("'{t}'")),
                self.config.topic
            )));
        }
        let offsets = position
            .get("offsets")
            .and_then(|o| o.as_array())
            .ok_or_else(|| bad("no offsets"))?;
        let mut resume = BTreeMap::new();
        for pair in offsets {
            let (Some(p), Some(o)) = (
                pair.get(0).and_then(|p| p.as_i64()),
                pair.get(1).and_then(|o| o.as_i64()),
            ) else {
                return Err(bad("an offset is not a [partition, offset] pair"));
            };
            resume.insert(p as i32, o);
        }
        self.resume = Some(resume);
        Ok(())
    }
}

fn position_json(topic: &str, offsets: &BTreeMap<i32, i64>) -> serde_json::Value {
    let offsets: Vec<[i64; 2]> = offsets.iter().map(|(&p, &o)| [i64::from(p), o]).collect();
    serde_json::json!({ "topic": topic, "offsets": offsets })
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.commit_group();
    }
}

fn trim_line_end(value: &[u8]) -> &[u8] {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

/// Why a topic's partitions could not be listed.
pub(crate) enum TopicError {
    /// The brokers did not answer.
    Unreachable(KafkaError),
    /// They answered: the topic does not exist (it may be created later).
    Missing,
    /// They answered: the topic cannot be read.
    Fatal(String),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::Unreachable(e) => write!(f, "cannot reach the brokers: {e}"),
            TopicError::Missing => f.write_str("the topic does not exist"),
            TopicError::Fatal(message) => f.write_str(message),
        }
    }
}

/// The partitions of `topic`, in order.
pub(crate) fn topic_partitions(
    consumer: &BaseConsumer,
    topic: &str,
) -> std::result::Result<Vec<i32>, TopicError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(TopicError::Unreachable)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(TopicError::Missing);
    };
    if let Some(e) = found.error() {
        return Err(match RDKafkaErrorCode::from(e) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                TopicError::Missing
            }
            other => TopicError::Fatal(other.to_string()),
        });
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(TopicError::Fatal("the topic has no partitions".into()));
    }
    partitions.sort_unstable();
    Ok(partitions)
}
