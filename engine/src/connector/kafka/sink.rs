//! Writing rows into a Kafka topic: a sink's results, or the rows of an
//! `INSERT INTO` a Kafka stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use fibers_sql::Options;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{FORMATS, client_config, kafka_error, take_properties};
use crate::archive::{Staged, TableWriter};
use crate::checkpoint::{CheckpointStore, KeptRows};
use crate::format::{Format, RecordEncoder, Records};
use crate::{Error, Result};

/// Options of a Kafka sink (besides `connector` and `properties.*`).
pub(crate) const SINK_OPTIONS: &[&str] = &[
    "brokers",
    "topic",
    "format",
    "schema_registry",
    "subject",
    "key",
    "checkpoint_interval",
    "commit_interval",
    "commit_rows",
];

/// How long a commit waits for the brokers to acknowledge its rows.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a Kafka sink.
#[derive(Debug, Clone)]
pub(crate) struct KafkaSinkConfig {
    pub brokers: String,
    pub topic: String,
    pub format: Format,
    /// The column whose value is each message's key.
    pub key: Option<String>,
    /// The registry subject of the value schema (Avro).
    pub subject: String,
    /// Whether the key column is also part of the message value (true for
    /// sinks; an `INSERT`'s `_key` is the key only).
    pub key_in_value: bool,
    pub properties: Vec<(String, String)>,
}

impl KafkaSinkConfig {
    pub fn from_options(options: &mut Options, owner: &str) -> Result<Self> {
        let properties = take_properties(options)?;
        let brokers = options.take_required("brokers", owner)?;
        let topic = options.take_required("topic", owner)?;
        let format = Format::from_options(options, owner, FORMATS)?;
        let key = options.take("key");
        // The format took an Avro `subject`; this is its default.
        let subject = format!("{topic}-value");
        if let Err(e) = producer_config(&brokers, &properties)
            .create_with_context::<_, ThreadedProducer<Delivery>>(Delivery::default())
        {
            return Err(Error::invalid(format!(
                "invalid Kafka settings for {owner}: {e}"
            )));
        }
        Ok(KafkaSinkConfig {
            brokers,
            topic,
            format,
            key,
            subject,
            key_in_value: true,
            properties,
        })
    }

    /// Checks the rows a sink writes suit its format and key.
    pub fn check(&self, owner: &str, schema: &SchemaRef) -> Result<()> {
        if let Some(key) = &self.key
            && schema.field_with_name(key).is_err()
        {
            return Err(Error::invalid(format!(
                "key column '{key}' of sink '{owner}' is not among its columns ({})",
                column_names(schema)
            )));
        }
        Ok(())
    }
}

fn column_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn producer_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = client_config(brokers, &[]);
    // Batch messages briefly: a commit produces many at once.
    config.set("linger.ms", "5");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Collects delivery failures reported by librdkafka's background thread.
#[derive(Default)]
pub(crate) struct Delivery {
    failed: Mutex<(u64, Option<String>)>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.0 += 1;
            failed.1.get_or_insert_with(|| e.to_string());
        }
    }
}

impl Delivery {
    fn take_failures(&self) -> (u64, Option<String>) {
        self.failed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or((1, Some("delivery state poisoned".into())))
    }
}

/// Produces rows into a topic, one message per row, and waits for the
/// brokers to acknowledge them.
pub(crate) struct Publisher {
    producer: ThreadedProducer<Delivery>,
    encoder: Box<dyn RecordEncoder>,
    config: KafkaSinkConfig,
}

impl Publisher {
    pub fn new(config: &KafkaSinkConfig, schema: SchemaRef) -> Result<Self> {
        let producer = producer_config(&config.brokers, &config.properties)
            .create_with_context(Delivery::default())
            .map_err(|e| kafka_error(&config.brokers, "cannot create a producer", e))?;
        let value_schema = match (&config.key, config.key_in_value) {
            (Some(key), false) => schema_without(&schema, key),
            _ => schema,
        };
        let encoder = config.format.encoder(value_schema, &config.subject)?;
        Ok(Publisher {
            producer,
            encoder,
            config: config.clone(),
        })
    }

    /// Produces every row of `batches` and waits until all are
    /// acknowledged; an error if any was not.
    pub fn publish(&mut self, batches: &[RecordBatch]) -> Result<u64> {
        self.publish_tagged(batches, None)
    }

    /// Like [`Publisher::publish`]; with a tag, each message carries the
    /// job, epoch and its row number in the epoch as headers, and rows the
    /// tag lists as already in the topic are not produced again.
    fn publish_tagged(&mut self, batches: &[RecordBatch], tag: Option<&EpochTag>) -> Result<u64> {
        let mut produced = 0;
        let mut seq = 0u64;
        let mut values = Records::default();
        for batch in batches {
            values.clear();
            let value = match (&self.config.key, self.config.key_in_value) {
                (Some(key), false) => without_column(batch, key)?,
                _ => batch.clone(),
            };
            self.encoder.encode(&value, &mut values)?;
            let keys = match &self.config.key {
                Some(key) => Some(cast(
                    batch
                        .column_by_name(key)
                        .ok_or_else(|| Error::invalid(format!("key column '{key}' is missing")))?,
                    &DataType::Utf8,
                )?),
                None => None,
            };
            let keys = keys.as_ref().map(|k| k.as_string::<i32>());
            for (row, value) in values.iter().enumerate() {
                let key = keys.and_then(|k| (!k.is_null(row)).then(|| k.value(row)));
                let headers = match tag {
                    Some(tag) if tag.present.contains(&seq) => {
                        seq += 1;
                        continue;
                    }
                    Some(tag) => Some(tag.headers(seq)),
                    None => None,
                };
                self.send(value, key, headers)?;
                produced += 1;
                seq += 1;
            }
        }
        self.producer
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| self.error("rows were not acknowledged in time", e))?;
        match self.producer.context().take_failures() {
            (0, _) => Ok(produced),
            (n, e) => Err(self.error(
                &format!("{n} of {produced} rows were not delivered"),
                e.unwrap_or_default(),
            )),
        }
    }

    fn send(&self, value: &[u8], key: Option<&str>, headers: Option<OwnedHeaders>) -> Result<()> {
        let started = Instant::now();
        loop {
            let mut record = BaseRecord::to(&self.config.topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // The local queue is full: wait for deliveries to drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if started.elapsed() < DELIVERY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.error("cannot produce a row", e)),
            }
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        kafka_error(
            &self.config.brokers,
            &format!("topic '{}': {what}", self.config.topic),
            e,
        )
    }
}

fn without_column(batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| batch.schema().field(i).name() != name)
        .collect();
    Ok(batch.project(&keep)?)
}

fn schema_without(schema: &SchemaRef, name: &str) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != name)
        .cloned()
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Headers that tie a sink's message to the epoch that produced it.
const JOB_HEADER: &str = "datafibers.job";
const EPOCH_HEADER: &str = "datafibers.epoch";
const SEQ_HEADER: &str = "datafibers.seq";

/// Which job and epoch messages belong to, and which of its rows the topic
/// already holds.
struct EpochTag {
    job: String,
    epoch: u64,
    present: HashSet<u64>,
}

impl EpochTag {
    fn headers(&self, seq: u64) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: JOB_HEADER,
                value: Some(self.job.as_bytes()),
            })
            .insert(Header {
                key: EPOCH_HEADER,
                value: Some(&self.epoch.to_be_bytes()),
            })
            .insert(Header {
                key: SEQ_HEADER,
                value: Some(&seq.to_be_bytes()),
            })
    }
}

/// What a Kafka sink stages for an epoch: its rows, kept in the checkpoint
/// as Arrow IPC, and where each partition of the topic ended before it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StagedRows {
    file: String,
    rows: u64,
    /// (partition, end offset) before the epoch was produced: a recovery
    /// looks from there for the epoch's messages.
    ends: Vec<(i32, i64)>,
}

/// A Kafka sink's writer. Staging an epoch keeps its rows in the
/// checkpoint; committing produces them, each message tagged with the job,
/// the epoch and its row number. A commit that a crash interrupted is
/// finished on recovery by reading the topic (committed records only)
/// from where it ended before the epoch, and producing only the rows not
/// found there, so each row lands once.
///
/// Kafka transactions would also make an epoch's rows visible at once;
/// the broker the tests run against (tansu 0.6) does not implement
/// `EndTxn`, so they are not used.
pub(crate) struct KafkaWriter {
    config: KafkaSinkConfig,
    schema: SchemaRef,
    owner: String,
    publisher: Arc<Mutex<Option<Publisher>>>,
    /// The rows staged for an epoch, kept so its commit needs no read back.
    staged: KeptRows,
}

impl KafkaWriter {
    pub fn new(config: &KafkaSinkConfig, schema: SchemaRef, owner: &str) -> Self {
        KafkaWriter {
            config: config.clone(),
            schema,
            owner: owner.to_string(),
            publisher: Arc::new(Mutex::new(None)),
            staged: KeptRows::default(),
        }
    }

    /// Produces `rows` untagged (an `INSERT`) and waits until the brokers
    /// acknowledge them.
    pub async fn write(&mut self, rows: Vec<RecordBatch>) -> Result<()> {
        self.blocking(move |p| p.publish(&rows).map(|_| ())).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Publisher) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let publisher = Arc::clone(&self.publisher);
        let (config, schema) = (self.config.clone(), Arc::clone(&self.schema));
        tokio::task::spawn_blocking(move || {
            let mut publisher = publisher
                .lock()
                .map_err(|_| Error::invalid("the Kafka producer failed earlier"))?;
            if publisher.is_none() {
                *publisher = Some(Publisher::new(&config, schema)?);
            }
            match publisher.as_mut() {
                Some(p) => f(p),
                None => Err(Error::invalid("no Kafka producer")),
            }
        })
        .await
        .map_err(|e| Error::invalid(format!("producing to Kafka failed: {e}")))?
    }
}

#[async_trait]
impl TableWriter for KafkaWriter {
    async fn stage(
        &mut self,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        epoch: u64,
        store: Option<&CheckpointStore>,
    ) -> Result<Staged> {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let file = format!("sink-{epoch}.arrow");
        let mut ends = Vec::new();
        if store.is_some() {
            let (brokers, topic, properties) = (
                self.config.brokers.clone(),
                self.config.topic.clone(),
                self.config.properties.clone(),
            );
            ends = tokio::task::spawn_blocking(move || {
                with_retries(&format!("topic '{topic}': reading its end offsets"), || {
                    end_offsets(&brokers, &topic, &properties)
                })
            })
            .await
            .map_err(|e| Error::invalid(format!("reading Kafka offsets failed: {e}")))??;
        }
        let bytes = self
            .staged
            .keep(store, epoch, &file, schema, batches)
            .await?;
        let manifest = serde_json::to_value(StagedRows { file, rows, ends })
            .map_err(|e| Error::invalid(e.to_string()))?;
        Ok(Staged { manifest, bytes })
    }

    async fn commit(
        &mut self,
        staged: &serde_json::Value,
        epoch: u64,
        store: Option<&CheckpointStore>,
        recovering: bool,
    ) -> Result<()> {
        let staged: StagedRows = serde_json::from_value(staged.clone()).map_err(|e| {
            Error::invalid(format!(
                "sink '{}': the staged rows of epoch {epoch} are damaged: {e}",
                self.owner
            ))
        })?;
        let batches = self.staged.take(store, epoch, &staged.file).await?;
        let mut recovering = recovering;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let present = if recovering {
                let (config, job) = (self.config.clone(), self.owner.clone());
                let ends = staged.ends.clone();
                tokio::task::spawn_blocking(move || {
                    with_retries(&format!("topic '{}': reading back", config.topic), || {
                        produced_rows(&config, &job, epoch, &ends)
                    })
                })
                .await
                .map_err(|e| Error::invalid(format!("reading Kafka failed: {e}")))??
            } else {
                HashSet::new()
            };
            if present.len() as u64 >= staged.rows {
                return Ok(());
            }
            let tag = EpochTag {
                job: self.owner.clone(),
                epoch,
                present,
            };
            let rows = batches.clone();
            match self
                .blocking(move |p| p.publish_tagged(&rows, Some(&tag)).map(|_| ()))
                .await
            {
                Ok(()) => return Ok(()),
                // Some rows may have landed: try again as a recovery does,
                // producing only those the topic does not hold.
                Err(e)
                    if started.elapsed() + backoff < DELIVERY_TIMEOUT
                        && !staged.ends.is_empty() =>
                {
                    tracing::warn!("sink '{}': epoch {epoch}: {e}; retrying", self.owner);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    recovering = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `attempt` until it succeeds or [`DELIVERY_TIMEOUT`] has passed,
/// backing off between attempts: brokers briefly unreachable or slow delay
/// a checkpoint rather than fail the job.
fn with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() + backoff < DELIVERY_TIMEOUT => {
                tracing::warn!("{what}: {e}; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The end offset of every partition of `topic`.
fn end_offsets(
    brokers: &str,
    topic: &str,
    properties: &[(String, String)],
) -> Result<Vec<(i32, i64)>> {
    let consumer = reader(brokers, properties)?;
    let partitions = super::source::topic_partitions(&consumer, topic)
        .map_err(|e| kafka_error(brokers, &format!("topic '{topic}'"), e))?;
    partitions
        .into_iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, super::REQUEST_TIMEOUT)
                .map(|(_, high)| (p, high))
                .map_err(|e| kafka_error(brokers, &format!("topic '{topic}' partition {p}"), e))
        })
        .collect()
}

fn reader(brokers: &str, properties: &[(String, String)]) -> Result<BaseConsumer> {
    let mut config = client_config(brokers, properties);
    config
        .set("group.id", "datafibers-sink-recovery")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    config
        .create()
        .map_err(|e| kafka_error(brokers, "cannot create a consumer", e))
}

/// The row numbers of epoch `epoch` of `job` already in the topic, looking
/// from the offsets it had before the epoch.
fn produced_rows(
    config: &KafkaSinkConfig,
    job: &str,
    epoch: u64,
    ends: &[(i32, i64)],
) -> Result<HashSet<u64>> {
    let consumer = reader(&config.brokers, &config.properties)?;
    let topic = &config.topic;
    let error = |what: &str, e: &dyn std::fmt::Display| {
        kafka_error(&config.brokers, &format!("topic '{topic}': {what}"), e)
    };
    let partitions = super::source::topic_partitions(&consumer, topic)
        .map_err(|e| error("cannot list partitions", &e))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashSet::new();
    for p in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, super::REQUEST_TIMEOUT)
            .map_err(|e| error("cannot read offsets", &e))?;
        let from = ends.iter().find(|(q, _)| *q == p).map_or(0, |(_, o)| *o);
        if from < high {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(from))
                .map_err(|e| error("cannot assign", &e))?;
            remaining.insert(p);
        }
    }
    let mut present = HashSet::new();
    if remaining.is_empty() {
        return Ok(present);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| error("cannot assign", &e))?;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(error(
                "reading back the last epoch's rows timed out",
                &format!("{} partitions unread", remaining.len()),
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => return Err(error("cannot read back the last epoch's rows", &e)),
            Some(Ok(message)) => {
                if let Some(seq) = tagged_seq(&message, job, epoch) {
                    present.insert(seq);
                }
            }
        }
    }
    Ok(present)
}

/// The row number of a message of `job`'s epoch `epoch`.
fn tagged_seq(message: &BorrowedMessage<'_>, job: &str, epoch: u64) -> Option<u64> {
    let headers = message.headers()?;
    let mut found = (false, false, None);
    for header in headers.iter() {
        match (header.key, header.value) {
            (JOB_HEADER, Some(v)) => found.0 = v == job.as_bytes(),
            (EPOCH_HEADER, Some(v)) => {
                found.1 = <[u8; 8]>::try_from(v).is_ok_and(|b| u64::from_be_bytes(b) == epoch)
            }
            (SEQ_HEADER, Some(v)) => found.2 = <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes),
            _ => {}
        }
    }
    match found {
        (true, true, seq) => seq,
        _ => None,
    }
}
