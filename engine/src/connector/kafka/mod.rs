//! The `kafka` connector: streams over Kafka topics, sinks into them, and
//! topic exploration, through librdkafka (the `rdkafka` crate, bundled).
//!
//! The engine owns the offsets it reads: partitions are assigned
//! explicitly (never through a consumer group's rebalancing), auto-commit
//! is off, and a `group`, when given, only receives commits of the offsets
//! processed, so tools that watch consumer groups can see progress.

mod admin;
mod dead_letter;
mod end_offsets;
pub(crate) mod properties;
mod scan;
mod sink;
mod source;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use fibers_sql::Options;
use rdkafka::ClientConfig;

use super::{BadData, take_bad_data};
use crate::format::{Format, RecordLimits};
use crate::{Error, Result};

pub(crate) use admin::{describe_topic, show_topics};
pub(crate) use dead_letter::{DEAD_LETTER_SUFFIX, DeadLetterTable};
pub(crate) use scan::KafkaTable;
pub(crate) use sink::{KafkaSinkConfig, KafkaWriter, SINK_OPTIONS};
pub(crate) use source::KafkaSource;

/// Options of a Kafka stream (besides `properties.*`).
pub(crate) const OPTIONS: &[&str] = &[
    "brokers",
    "topic",
    "format",
    "schema_registry",
    "start",
    "end",
    "group",
    "idle_timeout",
    "bad_data",
    "max_record_size",
    "max_nesting_depth",
    "decode_threads",
    "scan_timeout",
];

/// Formats a Kafka stream or sink can use.
pub(crate) const FORMATS: &[&str] = &["json", "csv", "avro", "raw"];

/// Prefix of options passed through to librdkafka.
pub(crate) const PROPERTIES_PREFIX: &str = "properties.";

/// How long metadata and offset requests may take before they fail.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The metadata columns a Kafka stream may declare.
pub(crate) const METADATA_COLUMNS: &[&str] = &["_key", "_partition", "_offset", "_timestamp"];

/// Where a Kafka stream starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartOffset {
    Earliest,
    Latest,
    /// The first message at or after this time (milliseconds since the
    /// epoch).
    Timestamp(i64),
}

/// Settings of a Kafka stream.
#[derive(Debug, Clone)]
pub(crate) struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub format: Format,
    pub start: StartOffset,
    /// Bounded: read up to the end offsets as they stand when reading
    /// starts, then end.
    pub end_at_latest: bool,
    pub group: Option<String>,
    pub idle_timeout: Duration,
    /// How long an ad-hoc query waits for the brokers to send anything
    /// before it fails.
    pub scan_timeout: Duration,
    pub bad_data: BadData,
    /// How large and deep one message may be before it is a bad record.
    pub limits: RecordLimits,
    /// `properties.*` options, passed to librdkafka as they are.
    pub properties: Vec<(String, String)>,
    /// Where records that do not decode are kept (`bad_data =
    /// 'dead_letter'`); set by the stream, which knows the data dir.
    pub dead_letters: Option<DeadLetterTable>,
}

impl KafkaConfig {
    /// Reads a stream's options; `properties` are the `properties.*` ones,
    /// already taken.
    pub fn from_options(options: &mut Options, properties: Vec<(String, String)>) -> Result<Self> {
        let owner = "connector 'kafka'";
        let brokers = options.take_required("brokers", owner)?;
        let topic = options.take_required("topic", owner)?;
        let format = Format::from_options(options, owner, FORMATS)?;
        let start = match options.take("start") {
            None => StartOffset::Earliest,
            Some(s) => parse_start(&s)?,
        };
        let end_at_latest =
            options.take_choice("end", &["latest", "none"])?.as_deref() == Some("latest");
        let group = options.take("group");
        let idle_timeout = options
            .take_duration("idle_timeout")?
            .unwrap_or(Duration::from_secs(30));
        let scan_timeout = options
            .take_duration("scan_timeout")?
            .unwrap_or(Duration::from_secs(30));
        let bad_data = take_bad_data(options, true)?;
        let limits = RecordLimits::from_options(options)?;
        let config = KafkaConfig {
            brokers,
            topic,
            format,
            start,
            end_at_latest,
            group,
            idle_timeout,
            scan_timeout,
            bad_data,
            limits,
            properties,
            dead_letters: None,
        };
        // librdkafka checks property names and values when a client is
        // configured: do it now, so a typo fails CREATE STREAM.
        config
            .consumer_config()
            .create::<rdkafka::consumer::BaseConsumer>()
            .map_err(|e| {
                Error::invalid(format!(
                    "invalid Kafka settings for topic '{}': {e}",
                    config.topic
                ))
            })?;
        Ok(config)
    }

    /// The client settings every connection of this stream uses.
    fn client_config(&self) -> ClientConfig {
        client_config(&self.brokers, &self.properties)
    }

    /// A consumer that reads assigned partitions and never commits on its
    /// own.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Should the position fall out of the topic's retention, go on
            // from the oldest message still there.
            .set("auto.offset.reset", "earliest");
        if !self
            .properties
            .iter()
            .any(|(key, _)| key == "fetch.queue.backoff.ms")
        {
            config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        }
        // librdkafka needs a group to assign partitions, even though no
        // group is joined; offsets are committed only to a user's `group`.
        let group = self
            .group
            .clone()
            .unwrap_or_else(|| format!("datafibers-{}", self.topic));
        config.set("group.id", group);
        config
    }
}

/// How long librdkafka waits before fetching more for a partition whose
/// local queue is full (`queued.min.messages`). Its default, 1 s, is far
/// longer than the queue lasts a source that reads at a fast broker's pace:
/// the source drains it in a fraction of that and then waits for the rest,
/// idle. (On nisshi, 1.84M bids: a job's wall time 10.4 s at 1 s, against
/// 1.5 s for a consumer that only counts.) A user's
/// `properties.fetch.queue.backoff.ms` wins.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// Settings shared by every client: the brokers, then `properties.*` (so a
/// user can override anything, security settings included).
pub(crate) fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "datafibers")
        // librdkafka logs through the log crate; keep the noise down.
        .set("log_level", "3");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Takes the `properties.*` options; a setting that is not a client
/// setting (one that loads code or runs commands, say) is refused by name.
pub(crate) fn take_properties(options: &mut Options) -> Result<Vec<(String, String)>> {
    let keys: Vec<String> = options
        .iter()
        .filter(|(k, _)| k.starts_with(PROPERTIES_PREFIX))
        .map(|(k, _)| k.to_string())
        .collect();
    let mut properties = Vec::with_capacity(keys.len());
    for key in keys {
        let name = &key[PROPERTIES_PREFIX.len()..];
        properties::check(name)?;
        if let Some(value) = options.take(&key) {
            properties.push((name.to_string(), value));
        }
    }
    Ok(properties)
}

fn parse_start(value: &str) -> Result<StartOffset> {
    match value.trim().to_ascii_lowercase().as_str() {
        "earliest" => return Ok(StartOffset::Earliest),
        "latest" => return Ok(StartOffset::Latest),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| StartOffset::Timestamp(t.timestamp_millis()))
        .map_err(|_| {
            Error::invalid(format!(
                "invalid value '{value}' for option 'start': expected 'earliest', 'latest' \
                 or an RFC 3339 timestamp such as '2024-05-01T09:30:00Z'"
            ))
        })
}

/// The declared columns split into those decoded from the message value
/// and the metadata columns.
pub(crate) fn split_schema(schema: &SchemaRef) -> Result<(SchemaRef, Vec<MetadataColumn>)> {
    let mut payload = Vec::new();
    let mut metadata = Vec::new();
    for (index, field) in schema.fields().iter().enumerate() {
        let column = match field.name().as_str() {
            "_key" => MetadataKind::Key,
            "_partition" => MetadataKind::Partition,
            "_offset" => MetadataKind::Offset,
            "_timestamp" => MetadataKind::Timestamp,
            _ => {
                payload.push(field.as_ref().clone());
                continue;
            }
        };
        let ok = match column {
            MetadataKind::Key => matches!(field.data_type(), DataType::Utf8 | DataType::Binary),
            MetadataKind::Partition => field.data_type() == &DataType::Int32,
            MetadataKind::Offset => field.data_type() == &DataType::Int64,
            MetadataKind::Timestamp => matches!(field.data_type(), DataType::Timestamp(_, None)),
        };
        if !ok {
            return Err(Error::invalid(format!(
                "metadata column '{}' must be declared as {}",
                field.name(),
                column.sql_type()
            )));
        }
        metadata.push(MetadataColumn {
            index,
            kind: column,
            data_type: field.data_type().clone(),
        });
    }
    Ok((Arc::new(Schema::new(payload)), metadata))
}

/// A metadata column of a Kafka stream.
#[derive(Debug, Clone)]
pub(crate) struct MetadataColumn {
    /// Its position in the stream's schema.
    pub index: usize,
    pub kind: MetadataKind,
    pub data_type: DataType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataKind {
    Key,
    Partition,
    Offset,
    Timestamp,
}

impl MetadataKind {
    fn sql_type(self) -> &'static str {
        match self {
            MetadataKind::Key => "TEXT or BYTEA",
            MetadataKind::Partition => "INT",
            MetadataKind::Offset => "BIGINT",
            MetadataKind::Timestamp => "TIMESTAMP",
        }
    }
}

/// Says what went wrong talking to Kafka, naming the brokers.
pub(crate) fn kafka_error(brokers: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Kafka at '{brokers}': {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;

    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn options_are_checked() {
        let mut o = options(&[
            ("brokers", "localhost:1"),
            ("topic", "t"),
            ("format", "json"),
            ("start", "2024-05-01T09:30:00Z"),
            ("properties.fetch.wait.max.ms", "50"),
        ]);
        let properties = take_properties(&mut o).unwrap();
        assert_eq!(
            properties,
            [("fetch.wait.max.ms".to_string(), "50".to_string())]
        );
        let config = KafkaConfig::from_options(&mut o, properties).unwrap();
        assert!(o.is_empty());
        assert_eq!(config.start, StartOffset::Timestamp(1_714_555_800_000));
        assert_eq!(config.idle_timeout, Duration::from_secs(30));

        let mut o = options(&[("brokers", "b"), ("topic", "t"), ("format", "json")]);
        let err = KafkaConfig::from_options(&mut o, vec![("no.such.property".into(), "1".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no.such.property"), "{err}");

        let mut o = options(&[
            ("brokers", "b"),
            ("topic", "t"),
            ("format", "json"),
            ("start", "yesterday"),
        ]);
        let err = KafkaConfig::from_options(&mut o, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    /// A stream's consumer fetches again soon after its queue was full,
    /// unless the stream sets the property itself.
    #[test]
    fn the_fetch_queue_backoff_is_short_unless_set() {
        let config = |properties: Vec<(String, String)>| {
            let mut o = options(&[("brokers", "b"), ("topic", "t"), ("format", "json")]);
            KafkaConfig::from_options(&mut o, properties)
                .unwrap()
                .consumer_config()
        };
        let backoff = "fetch.queue.backoff.ms";
        assert_eq!(config(vec![]).get(backoff), Some(FETCH_QUEUE_BACKOFF_MS));
        let own = config(vec![(backoff.to_string(), "500".to_string())]);
        assert_eq!(own.get(backoff), Some("500"));
    }

    #[test]
    fn metadata_columns_are_split_and_typed() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("_offset", DataType::Int64, false),
            Field::new("_key", DataType::Utf8, true),
        ]));
        let (payload, metadata) = split_schema(&schema).unwrap();
        assert_eq!(payload.fields().len(), 1);
        assert_eq!(metadata.len(), 2);
        assert_eq!(
            (metadata[0].index, metadata[0].kind),
            (1, MetadataKind::Offset)
        );
        let bad = Arc::new(Schema::new(vec![Field::new(
            "_partition",
            DataType::Utf8,
            true,
        )]));
        let err = split_schema(&bad).unwrap_err().to_string();
        assert!(
            err.contains("'_partition' must be declared as INT"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod mock_tests;
