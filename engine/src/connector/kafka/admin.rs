//! Topic exploration: `SHOW TOPICS` and `DESCRIBE TOPIC`, so a user can
//! see what a cluster holds and write a `CREATE STREAM` with confidence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fibers_sql::arrow_type_to_sql;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::source::{TopicError, topic_partitions};
use super::{REQUEST_TIMEOUT, client_config, kafka_error};
use crate::{Error, Result, StatementResult};

/// Messages `DESCRIBE TOPIC` samples, at most.
const SAMPLES: usize = 5;
/// How long `DESCRIBE TOPIC` waits for its samples.
const SAMPLE_WAIT: Duration = Duration::from_secs(5);

fn consumer(brokers: &str, properties: &[(String, String)]) -> Result<BaseConsumer> {
    let mut config = client_config(brokers, properties);
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("group.id", "datafibers-admin");
    config
        .create()
        .map_err(|e| kafka_error(brokers, "cannot create a client", e))
}

/// `SHOW TOPICS`: every topic (internal ones, named `__...`, left out)
/// with its partitions and the messages it holds.
pub(crate) async fn show_topics(
    brokers: String,
    properties: Vec<(String, String)>,
) -> Result<StatementResult> {
    blocking(move || {
        let consumer = consumer(&brokers, &properties)?;
        let metadata = consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&brokers, "cannot list topics", e))?;
        let mut topics = BTreeMap::new();
        for topic in metadata.topics() {
            if topic.name().starts_with("__") || topic.error().is_some() {
                continue;
            }
            let mut messages = 0;
            for p in topic.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic.name(), p.id(), REQUEST_TIMEOUT)
                    .map_err(|e| kafka_error(&brokers, "cannot read offsets", e))?;
                messages += (high - low).max(0);
            }
            topics.insert(
                topic.name().to_string(),
                (topic.partitions().len() as i32, messages),
            );
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("partitions", DataType::Int32, false),
            Field::new("messages", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(topics.keys())),
                Arc::new(Int32Array::from_iter_values(topics.values().map(|v| v.0))),
                Arc::new(Int64Array::from_iter_values(topics.values().map(|v| v.1))),
            ],
        )?;
        Ok(StatementResult::Rows {
            schema,
            batches: vec![batch],
        })
    })
    .await
}

/// `DESCRIBE TOPIC`: the partitions with their offsets, a few of the
/// latest messages, the columns inferred from them (when they are JSON)
/// and a `CREATE STREAM` to start from.
pub(crate) async fn describe_topic(
    brokers: String,
    properties: Vec<(String, String)>,
    topic: String,
) -> Result<StatementResult> {
    blocking(move || {
        let consumer = consumer(&brokers, &properties)?;
        let partitions = match topic_partitions(&consumer, &topic) {
            Ok(p) => p,
            Err(TopicError::Unreachable(e)) => {
                return Err(kafka_error(&brokers, "cannot describe topics", e));
            }
            Err(e @ (TopicError::Fatal(_) | TopicError::Missing)) => {
                return Err(Error::invalid(format!("topic '{topic}' at '{brokers}': {e}")));
            }
        };
        let mut rows: Vec<[String; 3]> = Vec::new();
        let mut assignment = TopicPartitionList::new();
        let mut remaining = 0;
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&brokers, "cannot read offsets", e))?;
            rows.push([
                "partition".into(),
                p.to_string(),
                format!("offsets {low}..{high} ({} messages)", high - low),
            ]);
            let take = (high - low).min(SAMPLES as i64);
            if take > 0 {
                remaining += take;
                assignment
                    .add_partition_offset(&topic, p, Offset::Offset(high - take))
                    .map_err(|e| Error::invalid(e.to_string()))?;
            }
        }
        let samples = sample(&consumer, &assignment, remaining as usize)
            .map_err(|e| kafka_error(&brokers, "cannot read samples", e))?;
        let inferred = infer_json(&samples);
        match &inferred {
            Some(schema) => {
                for field in schema.fields() {
                    rows.push([
                        "column".into(),
                        field.name().clone(),
                        arrow_type_to_sql(field.data_type()),
                    ]);
                }
            }
            None if !samples.is_empty() => rows.push([
                "column".into(),
                "value".into(),
                "TEXT (the messages are not JSON objects; use format = 'raw', or 'csv'/'avro' if they are)"
                    .into(),
            ]),
            None => {}
        }
        for (partition, offset, value) in &samples {
            rows.push([
                "sample".into(),
                format!("{partition}@{offset}"),
                String::from_utf8_lossy(value).chars().take(500).collect(),
            ]);
        }
        rows.push([
            "suggestion".into(),
            "CREATE STREAM".into(),
            suggest_stream(&brokers, &topic, inferred.as_ref()),
        ]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("section", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = (0..3)
            .map(|i| {
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str())))
                    as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(StatementResult::Rows {
            schema,
            batches: vec![batch],
        })
    })
    .await
}

type Sample = (i32, i64, Vec<u8>);

/// Reads up to `want` messages from `assignment`, waiting at most
/// [`SAMPLE_WAIT`].
fn sample(
    consumer: &BaseConsumer,
    assignment: &TopicPartitionList,
    want: usize,
) -> rdkafka::error::KafkaResult<Vec<Sample>> {
    let mut samples = Vec::new();
    if want == 0 {
        return Ok(samples);
    }
    consumer.assign(assignment)?;
    let deadline = Instant::now() + SAMPLE_WAIT;
    while samples.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => samples.push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(e)) => tracing::debug!("DESCRIBE TOPIC: {e}"),
            None => {}
        }
    }
    samples.sort_by_key(|s| (s.0, s.1));
    samples.truncate(SAMPLES);
    Ok(samples)
}

/// The columns of JSON-object samples, with text that always reads as a
/// timestamp typed as one.
fn infer_json(samples: &[Sample]) -> Option<SchemaRef> {
    if samples.is_empty() {
        return None;
    }
    let values: Vec<serde_json::Value> = samples
        .iter()
        .map(|(_, _, v)| {
            serde_json::from_slice(v)
                .ok()
                .filter(serde_json::Value::is_object)
        })
        .collect::<Option<_>>()?;
    let schema =
        arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))
            .ok()?;
    // Columns in the order the producer writes them, not by name.
    let mut order: Vec<String> = Vec::new();
    for (_, _, value) in samples {
        if let Ok(KeyOrder(keys)) = serde_json::from_slice::<KeyOrder>(value) {
            for key in keys {
                if !order.contains(&key) {
                    order.push(key);
                }
            }
        }
    }
    let mut fields: Vec<_> = schema.fields().iter().collect();
    fields.sort_by_key(|f| {
        order
            .iter()
            .position(|k| k == f.name())
            .unwrap_or(usize::MAX)
    });
    let fields = fields
        .into_iter()
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Utf8 if all_timestamps(&values, field.name()) => {
                    DataType::Timestamp(TimeUnit::Nanosecond, None)
                }
                other => other.clone(),
            };
            Field::new(field.name(), data_type, true)
        })
        .collect::<Vec<_>>();
    Some(Arc::new(Schema::new(fields)))
}

/// The keys of a JSON object, in the order written.
struct KeyOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeyOrder;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(KeyOrder(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

fn all_timestamps(values: &[serde_json::Value], name: &str) -> bool {
    let texts: Vec<Option<&str>> = values
        .iter()
        .map(|v| v.get(name).and_then(|v| v.as_str()))
        .collect();
    if texts.iter().all(Option::is_none) {
        return false;
    }
    let array = StringArray::from(texts);
    cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .is_ok_and(|t| t.null_count() == array.null_count())
}

fn suggest_stream(brokers: &str, topic: &str, schema: Option<&SchemaRef>) -> String {
    let name: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let (columns, format) = match schema {
        Some(schema) => {
            let mut columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        quote_ident(f.name()),
                        arrow_type_to_sql(f.data_type())
                    )
                })
                .collect();
            if let Some(ts) = schema
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
            {
                columns.push(format!(
                    "WATERMARK FOR {0} AS {0} - INTERVAL '5' SECOND",
                    quote_ident(ts.name())
                ));
            }
            (columns.join(", "), "json")
        }
        None => ("value TEXT".to_string(), "raw"),
    };
    format!(
        "CREATE STREAM {name} ({columns}) WITH (connector = 'kafka', brokers = '{brokers}', \
         topic = '{topic}', format = '{format}')"
    )
}

fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::invalid(format!("the Kafka request failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_inferred_in_the_order_written_with_timestamps_typed() {
        let samples: Vec<Sample> = [
            r#"{"symbol": "A", "price": 1.5, "ts": "2024-01-01T00:00:01.250"}"#,
            r#"{"symbol": "B", "price": 2, "ts": "2024-01-01 00:00:02", "venue": "X"}"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| (0, i as i64, v.as_bytes().to_vec()))
        .collect();
        let schema = infer_json(&samples).expect("JSON objects");
        let columns: Vec<(String, String)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), arrow_type_to_sql(f.data_type())))
            .collect();
        assert_eq!(
            columns,
            [
                ("symbol".to_string(), "TEXT".to_string()),
                ("price".to_string(), "DOUBLE".to_string()),
                ("ts".to_string(), "TIMESTAMP".to_string()),
                ("venue".to_string(), "TEXT".to_string()),
            ]
        );
        let ddl = suggest_stream("k:9092", "trades.v1", Some(&schema));
        assert!(
            ddl.starts_with("CREATE STREAM trades_v1 (symbol TEXT, price DOUBLE, ts TIMESTAMP, venue TEXT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)"),
            "{ddl}"
        );
        let not_json: Vec<Sample> = vec![(0, 0, b"plain text".to_vec())];
        assert!(infer_json(&not_json).is_none());
    }
}
