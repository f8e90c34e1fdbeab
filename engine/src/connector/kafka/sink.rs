//! Writing rows into a Kafka topic: a sink's results, or the rows of an
//! `INSERT INTO` a Kafka stream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use fibers_sql::Options;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::{FORMATS, client_config, kafka_error, take_properties};
use crate::archive::TableWriter;
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
        let properties = take_properties(options);
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
        let mut produced = 0;
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
                self.send(value, key)?;
                produced += 1;
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

    fn send(&self, value: &[u8], key: Option<&str>) -> Result<()> {
        let started = Instant::now();
        loop {
            let mut record = BaseRecord::to(&self.config.topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
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

/// A Kafka sink's writer: each commit produces its rows and waits for
/// them to be acknowledged. The producer is made on the first commit, on a
/// blocking thread (an Avro sink registers its schema then).
pub(crate) struct KafkaWriter {
    config: KafkaSinkConfig,
    schema: SchemaRef,
    publisher: Arc<Mutex<Option<Publisher>>>,
}

impl KafkaWriter {
    pub fn new(config: &KafkaSinkConfig, schema: SchemaRef) -> Self {
        KafkaWriter {
            config: config.clone(),
            schema,
            publisher: Arc::new(Mutex::new(None)),
        }
    }
}

#[async_trait]
impl TableWriter for KafkaWriter {
    async fn write(&mut self, _schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<()> {
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
                Some(p) => p.publish(&batches).map(|_| ()),
                None => Err(Error::invalid("no Kafka producer")),
            }
        })
        .await
        .map_err(|e| Error::invalid(format!("producing to Kafka failed: {e}")))?
    }
}
