//! Avro in the Confluent wire format: a zero byte, the writer schema's
//! 4-byte registry id, then the Avro binary body.
//!
//! Reading: each writer schema id is looked up in the registry once, and
//! its records are decoded by arrow-avro's columnar decoder (one per
//! writer schema, projected to the declared columns), then matched to the
//! declared columns by name and cast to their types. Writing: see
//! [`writer`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, concat_batches};
use arrow::datatypes::SchemaRef;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use fibers_sql::Options;
use serde_json::Value;

use super::registry::SchemaRegistry;
use super::{Decoded, RecordDecoder, Records, decode_isolating};
use crate::{Error, Result};

mod writer;

pub(crate) use writer::AvroEncoder;

/// The Confluent wire format's header: magic byte 0x00, then a 4-byte
/// big-endian schema id.
const HEADER_LEN: usize = 5;

/// Rows one arrow-avro decoder may hold before a flush; a decode call
/// flushes after each run of records, so this is never reached.
const MAX_ROWS: usize = u32::MAX as usize;

/// Where Avro schemas come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AvroConfig {
    /// The schema registry's base URL.
    pub registry: String,
    /// The subject a writer registers its schema under (option
    /// `subject`); `None` means the caller's default, `<topic>-value`.
    pub subject: Option<String>,
}

impl AvroConfig {
    /// Takes `schema_registry` and `subject`; they are only valid when the
    /// format is Avro.
    pub fn from_options(options: &mut Options, avro: bool) -> Result<Option<Self>> {
        let registry = options.take("schema_registry");
        let subject = options.take("subject");
        if !avro {
            for (option, given) in [
                ("schema_registry", registry.is_some()),
                ("subject", subject.is_some()),
            ] {
                if given {
                    return Err(Error::invalid(format!(
                        "option '{option}' applies to format = 'avro' only"
                    )));
                }
            }
        }
        if subject.as_ref().is_some_and(|s| s.trim().is_empty()) {
            return Err(Error::invalid("option 'subject' must not be empty"));
        }
        let Some(registry) = registry else {
            if subject.is_some() {
                return Err(Error::invalid(
                    "option 'subject' needs option 'schema_registry' (the registry's URL)",
                ));
            }
            return Ok(None);
        };
        // Checked here so a bad URL fails the statement, not the job.
        SchemaRegistry::new(&registry)?;
        Ok(Some(AvroConfig { registry, subject }))
    }
}

/// Decodes Confluent-framed Avro records into rows of the declared schema.
pub(crate) struct AvroDecoder {
    /// Where unknown ids are looked up; `None` when every writer schema
    /// was given up front (the fuzz targets).
    registry: Option<SchemaRegistry>,
    schema: SchemaRef,
    /// Writer schemas seen so far, by registry id, or why one cannot be
    /// read. Ids are immutable in a registry, so both are kept.
    writers: HashMap<u32, std::result::Result<WriterSchema, String>>,
}

impl AvroDecoder {
    pub fn new(config: &AvroConfig, schema: SchemaRef) -> Result<Self> {
        if config.subject.is_some() {
            return Err(Error::invalid(
                "option 'subject' applies to writers only: \
                 a reader takes each record's schema from the id it carries",
            ));
        }
        Ok(AvroDecoder {
            registry: Some(SchemaRegistry::new(&config.registry)?),
            schema,
            writers: HashMap::new(),
        })
    }

    /// A decoder that knows only the writer schemas `writers` (id, Avro
    /// schema JSON) and asks no registry.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn with_writers(schema: SchemaRef, writers: Vec<(u32, String)>) -> Self {
        let writers = writers
            .into_iter()
            .map(|(id, json)| (id, WriterSchema::new(id, json, &schema)))
            .collect();
        AvroDecoder {
            registry: None,
            schema,
            writers,
        }
    }

    /// The registry's URL, for messages.
    fn registry_url(&self) -> &str {
        self.registry.as_ref().map_or("(none)", SchemaRegistry::url)
    }

    /// Fetches writer schema `id` if it is new; `Ok(false)` when the
    /// registry does not know it.
    fn fetch(&mut self, id: u32) -> Result<bool> {
        if self.writers.contains_key(&id) {
            return Ok(true);
        }
        let Some(registry) = &self.registry else {
            return Ok(false);
        };
        let Some(found) = registry.schema_by_id(id)? else {
            return Ok(false);
        };
        let url = registry.url();
        let writer = if found.schema_type != "AVRO" {
            Err(format!(
                "schema id {id} in the registry at {url} is a {} schema, not Avro",
                found.schema_type
            ))
        } else if found.has_references {
            Err(format!(
                "schema id {id} in the registry at {url} refers to other subjects' schemas, \
                 which format 'avro' does not resolve yet"
            ))
        } else {
            WriterSchema::new(id, found.schema, &self.schema)
                .map_err(|e| format!("schema id {id} from the registry at {url}: {e}"))
        };
        self.writers.insert(id, writer);
        Ok(true)
    }
}

impl RecordDecoder for AvroDecoder {
    fn decode(&mut self, records: &Records) -> Result<Decoded> {
        // Each record's writer schema id, or why it has none we can use.
        // Ids the registry does not know are asked again next call: a
        // schema may be registered after a record that uses it is read.
        let mut unknown: HashMap<u32, String> = HashMap::new();
        let mut frames = Vec::with_capacity(records.len());
        for record in records.iter() {
            let frame = match schema_id(record) {
                Err(message) => Err(message),
                Ok(id) => {
                    if let Some(message) = unknown.get(&id) {
                        Err(message.clone())
                    // A registry that cannot be reached fails the call (`?`),
                    // not the record.
                    } else if !self.fetch(id)? {
                        let message = format!(
                            "schema id {id} is not in the registry at {}",
                            self.registry_url()
                        );
                        unknown.insert(id, message.clone());
                        Err(message)
                    } else if let Some(Err(message)) = self.writers.get(&id) {
                        Err(message.clone())
                    } else {
                        Ok(id)
                    }
                }
            };
            frames.push(frame);
        }
        let schema = Arc::clone(&self.schema);
        let writers = &mut self.writers;
        // A datum is decoded per frame: none is blank.
        decode_isolating(
            &schema,
            records,
            |_| false,
            |range| decode_span(writers, &schema, records, &frames, range),
        )
    }
}

/// The writer schema id of a Confluent-framed record.
fn schema_id(record: &[u8]) -> std::result::Result<u32, String> {
    match record {
        [] => Err("not in the Confluent wire format: the record is empty".to_string()),
        [first, ..] if *first != 0 => Err(format!(
            "not in the Confluent wire format: first byte is 0x{first:02x}, expected 0x00"
        )),
        [_, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        short => Err(format!(
            "not in the Confluent wire format: {} bytes, fewer than its {HEADER_LEN}-byte \
             header (0x00 and a 4-byte schema id)",
            short.len()
        )),
    }
}

/// Decodes records `range`, whose writer schemas `frames` gives, into
/// rows of `schema`: run by run of records sharing a writer schema.
fn decode_span(
    writers: &mut HashMap<u32, std::result::Result<WriterSchema, String>>,
    schema: &SchemaRef,
    records: &Records,
    frames: &[std::result::Result<u32, String>],
    range: Range<usize>,
) -> std::result::Result<RecordBatch, String> {
    // A record known to be bad fails the span before any decoding.
    if let Some(Err(message)) = frames[range.clone()].iter().find(|f| f.is_err()) {
        return Err(message.clone());
    }
    let mut batches = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let id = match &frames[start] {
            Ok(id) => *id,
            Err(message) => return Err(message.clone()),
        };
        let end = (start + 1..range.end)
            .find(|&i| frames[i].as_ref().ok() != Some(&id))
            .unwrap_or(range.end);
        let writer = match writers.get_mut(&id) {
            Some(Ok(writer)) => writer,
            Some(Err(message)) => return Err(message.clone()),
            None => return Err(format!("schema id {id} was not fetched")),
        };
        batches.push(writer.decode(records, start..end, schema)?);
        start = end;
    }
    match batches.len() {
        1 => Ok(batches.swap_remove(0)),
        _ => concat_batches(schema, &batches).map_err(|e| e.to_string()),
    }
}

/// A writer schema from the registry, and how its records become rows.
struct WriterSchema {
    id: u32,
    json: String,
    /// The writer fields read (indices into its record's fields).
    projection: Vec<usize>,
    /// For each declared column, the decoded column it is read from, if
    /// the writer has that field.
    sources: Vec<Option<usize>>,
    /// The decoder; dropped after a failure, which may leave it mid-row.
    decoder: Option<Decoder>,
}

impl WriterSchema {
    /// Plans reading records of Avro schema `json` into `declared`.
    fn new(id: u32, json: String, declared: &SchemaRef) -> std::result::Result<Self, String> {
        let names = record_field_names(&json)?;
        if names.is_empty() {
            return Err("the Avro record has no fields, so no column can be read".to_string());
        }
        // By name; a different case matches when it is the only one.
        let matched: Vec<Option<usize>> = declared
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                names.iter().position(|n| n == name).or_else(|| {
                    let mut similar = names
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| n.eq_ignore_ascii_case(name));
                    match (similar.next(), similar.next()) {
                        (Some((i, _)), None) => Some(i),
                        _ => None,
                    }
                })
            })
            .collect();
        for (field, found) in declared.fields().iter().zip(&matched) {
            if found.is_none() && !field.is_nullable() {
                return Err(format!(
                    "the Avro record has no field '{}', and that column is NOT NULL",
                    field.name()
                ));
            }
        }
        let mut projection: Vec<usize> = matched.iter().flatten().copied().collect();
        projection.sort_unstable();
        projection.dedup();
        if projection.is_empty() {
            // arrow-avro needs a field to read; its values are not used.
            projection.push(0);
        }
        let mut writer = WriterSchema {
            id,
            json,
            projection,
            sources: Vec::new(),
            decoder: None,
        };
        let decoder = writer
            .build_decoder()
            .map_err(|e| format!("arrow-avro cannot read it: {e}"))?;
        let decoded = decoder.schema();
        for (field, found) in declared.fields().iter().zip(matched) {
            let source = match found {
                None => None,
                Some(i) => Some(decoded.index_of(&names[i]).map_err(|e| e.to_string())?),
            };
            if let Some(source) = source {
                let from = decoded.field(source).data_type();
                if !can_cast_types(from, field.data_type()) {
                    return Err(format!(
                        "its field '{}' reads as {from}, which column '{}' ({}) cannot hold",
                        decoded.field(source).name(),
                        field.name(),
                        field.data_type()
                    ));
                }
            }
            writer.sources.push(source);
        }
        writer.decoder = Some(decoder);
        Ok(writer)
    }

    fn build_decoder(&self) -> std::result::Result<Decoder, arrow::error::ArrowError> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store.set(Fingerprint::Id(self.id), AvroSchema::new(self.json.clone()))?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_projection(self.projection.clone())
            .with_batch_size(MAX_ROWS)
            .build_decoder()
    }

    /// Decodes records `run`, all written with this schema, into rows of
    /// `declared`; any failure fails the whole run.
    fn decode(
        &mut self,
        records: &Records,
        run: Range<usize>,
        declared: &SchemaRef,
    ) -> std::result::Result<RecordBatch, String> {
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => self.decoder.insert(
                self.build_decoder()
                    .map_err(|e| format!("schema id {}: {e}", self.id))?,
            ),
        };
        let id = self.id;
        let decoded = decode_run(decoder, id, records, run);
        if decoded.is_err() {
            // It may hold part of a row: start afresh next time.
            self.decoder = None;
        }
        let batch = decoded?;
        let rows = batch.num_rows();
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(declared.fields().len());
        for (field, source) in declared.fields().iter().zip(&self.sources) {
            let column = match source {
                Some(i) => cast_with_options(batch.column(*i), field.data_type(), &options)
                    .map_err(|e| format!("column '{}': {e}", field.name()))?,
                None => new_null_array(field.data_type(), rows),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(format!(
                    "column '{}' is NOT NULL, but the record holds null for it",
                    field.name()
                ));
            }
            columns.push(column);
        }
        RecordBatch::try_new(Arc::clone(declared), columns).map_err(|e| e.to_string())
    }
}

/// Feeds records `run` to `decoder` one by one, checking each is exactly
/// one value, and takes the rows.
fn decode_run(
    decoder: &mut Decoder,
    id: u32,
    records: &Records,
    run: Range<usize>,
) -> std::result::Result<RecordBatch, String> {
    for i in run {
        let record = records.get(i);
        let room = decoder.capacity();
        let decoded = decoder.decode(record);
        let rows = room.saturating_sub(decoder.capacity());
        match decoded {
            Ok(n) if n == record.len() && rows == 1 => {}
            _ if rows >= 1 => {
                return Err(format!(
                    "the record holds more bytes than one value of schema id {id}"
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "the record ends before its value of schema id {id} does (truncated?)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "the record does not decode with schema id {id}: {e}"
                ));
            }
        }
    }
    match decoder.flush() {
        Ok(Some(batch)) => Ok(batch),
        Ok(None) => Err(format!("no rows decoded with schema id {id}")),
        Err(e) => Err(format!(
            "the record does not decode with schema id {id}: {e}"
        )),
    }
}

/// The field names of an Avro record schema.
fn record_field_names(json: &str) -> std::result::Result<Vec<String>, String> {
    let schema: Value =
        serde_json::from_str(json).map_err(|e| format!("the schema is not JSON: {e}"))?;
    let kind = match &schema {
        Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or("?"),
        Value::String(s) => s.as_str(),
        _ => "union",
    };
    if kind != "record" {
        return Err(format!(
            "the schema is an Avro {kind}, not a record; format 'avro' reads records into columns"
        ));
    }
    let fields = schema
        .get("fields")
        .and_then(Value::as_array)
        .ok_or("the Avro record has no 'fields' list")?;
    fields
        .iter()
        .map(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| "an Avro record field has no name".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::super::Format;
    use super::super::registry::test_registry::TestRegistry;
    use super::*;

    /// Avro's zigzag varint encoding of a `long` (or `int`).
    pub(super) fn long(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            if n < 0x80 {
                out.push(n as u8);
                return out;
            }
            out.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
    }

    pub(super) fn string(s: &[u8]) -> Vec<u8> {
        let mut out = long(s.len() as i64);
        out.extend_from_slice(s);
        out
    }

    /// A Confluent-framed record: 0x00, the id, the body.
    pub(super) fn frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    pub(super) fn records(items: &[Vec<u8>]) -> Records {
        let mut r = Records::default();
        for item in items {
            r.push(item);
        }
        r
    }

    pub(super) fn config(url: &str) -> AvroConfig {
        AvroConfig {
            registry: url.to_string(),
            subject: None,
        }
    }

    pub(super) fn decoder(url: &str, schema: &SchemaRef) -> AvroDecoder {
        AvroDecoder::new(&config(url), Arc::clone(schema)).unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        let column = batch.column_by_name("id").unwrap();
        column
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    const USER_V1: &str = r#"{"type":"record","name":"user","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    const USER_V2: &str = r#"{"type":"record","name":"user","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"},
        {"name":"email","type":["null","string"],"default":null}]}"#;

    fn user_v1(id: i64, name: &str) -> Vec<u8> {
        [long(id), string(name.as_bytes())].concat()
    }

    fn user_v2(id: i64, name: &str, email: Option<&str>) -> Vec<u8> {
        let email = match email {
            None => long(0),
            Some(e) => [long(1), string(e.as_bytes())].concat(),
        };
        [user_v1(id, name), email].concat()
    }

    #[test]
    fn zigzag_helper_matches_the_avro_spec() {
        // The table in the Avro specification, "Binary Encoding".
        for (v, bytes) in [
            (0, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            assert_eq!(long(v), bytes, "{v}");
        }
    }

    /// Bytes written by hand, not by our encoder: matched by name
    /// (case-insensitively when unambiguous), widened, logical types
    /// converted, unknown fields skipped, missing columns NULL.
    #[test]
    fn decodes_hand_encoded_records() {
        let registry = TestRegistry::start();
        registry.insert(
            3,
            r#"{"type":"record","name":"trade","namespace":"x","fields":[
                {"name":"id","type":"long"},
                {"name":"Symbol","type":"string"},
                {"name":"qty","type":"int"},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"price","type":["null","double"]},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"day","type":{"type":"int","logicalType":"date"}},
                {"name":"ok","type":"boolean"}]}"#,
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("ok", DataType::Boolean, true),
            Field::new("id", DataType::Int64, false),
            Field::new("symbol", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("day", DataType::Date32, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let first = [
            vec![0x02],                                     // id 1
            vec![0x08, b'A', b'A', b'P', b'L'],             // "AAPL"
            vec![0x05],                                     // qty -3
            vec![0x04, 0x02, b'a', 0x04, b'b', b'c', 0x00], // tags ["a", "bc"]
            vec![0x02],                                     // price: branch 1 (double)
            1.5f64.to_le_bytes().to_vec(),                  // 1.5
            long(1_700_000_000_123),                        // ts (ms)
            long(19_000),                                   // day
            vec![0x01],                                     // ok true
        ]
        .concat();
        let second = [
            vec![0x7f],       // id -64
            vec![0x00],       // ""
            vec![0x80, 0x01], // qty 64
            vec![0x00],       // tags []
            vec![0x00],       // price null
            vec![0x00],       // ts 0
            vec![0x00],       // day 0
            vec![0x00],       // ok false
        ]
        .concat();
        let r = records(&[frame(3, &first), frame(3, &second)]);
        let mut avro = decoder(&registry.url, &schema);
        let decoded = avro.decode(&r).unwrap();
        assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
        let expected = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(Int64Array::from(vec![1, -64])),
                Arc::new(StringArray::from(vec!["AAPL", ""])),
                Arc::new(Int64Array::from(vec![-3, 64])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    1_700_000_000_123_000_000,
                    0,
                ])),
                Arc::new(Date32Array::from(vec![19_000, 0])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
            ],
        )
        .unwrap();
        assert_eq!(decoded.batch, expected);

        // The writer schema is fetched once for the decoder's life.
        let again = avro.decode(&r).unwrap();
        assert_eq!(again.batch, expected);
        assert_eq!(registry.count("GET /schemas/ids/3"), 1);
    }

    #[test]
    fn decodes_two_writer_schemas_in_one_batch() {
        let registry = TestRegistry::start();
        registry.insert(1, USER_V1);
        registry.insert(2, USER_V2);
        let r = records(&[
            frame(1, &user_v1(1, "a")),
            frame(2, &user_v2(2, "b", Some("b@x"))),
            frame(2, &user_v2(3, "c", None)),
            frame(1, &user_v1(4, "d")),
            frame(2, &user_v2(5, "e", Some("e@x"))),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let decoded = decoder(&registry.url, &schema).decode(&r).unwrap();
        assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
        assert_eq!(ids(&decoded.batch), [1, 2, 3, 4, 5]);
        let emails = decoded
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let emails: Vec<Option<&str>> = emails.iter().collect();
        assert_eq!(emails, [None, Some("b@x"), None, None, Some("e@x")]);

        // A NOT NULL column: v1 records cannot fill it, nor a v2 null.
        let strict = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let decoded = decoder(&registry.url, &strict).decode(&r).unwrap();
        assert_eq!(ids(&decoded.batch), [2, 5]);
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [0, 2, 3]);
        assert!(
            decoded.bad[0].1.contains("schema id 1"),
            "{:?}",
            decoded.bad
        );
        assert!(
            decoded.bad[0].1.contains("no field 'email'"),
            "{:?}",
            decoded.bad
        );
        assert!(decoded.bad[1].1.contains("NOT NULL"), "{:?}", decoded.bad);
    }

    #[test]
    fn bad_records_cost_only_themselves() {
        let registry = TestRegistry::start();
        registry.insert(1, USER_V1);
        registry.insert(5, r#""string""#);
        registry.insert(
            6,
            r#"{"type":"record","name":"u","fields":[{"name":"id","type":
                {"type":"record","name":"inner","fields":[{"name":"x","type":"int"}]}}]}"#,
        );
        let good = |id, name| frame(1, &user_v1(id, name));
        let r = records(&[
            good(1, "a"),
            br#"{"id": 1}"#.to_vec(),
            vec![0, 0, 0],
            frame(999, &user_v1(9, "x")),
            frame(1, &[long(9), long(10), b"ab".to_vec()].concat()),
            good(2, "b"),
            frame(1, &[long(9), string(&[0xff, 0xfe])].concat()),
            frame(1, &[user_v1(9, "x"), vec![7, 7]].concat()),
            vec![],
            good(3, "c\n"),
            frame(1, &[0xff; 11]),
            frame(999, &user_v1(9, "y")),
            frame(5, b"\x02x"),
            frame(6, b"\x02"),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut avro = decoder(&registry.url, &schema);
        let decoded = avro.decode(&r).unwrap();
        assert_eq!(ids(&decoded.batch), [1, 2, 3]);
        let names = decoded
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(2), "c\n");
        let bad: HashMap<usize, &str> = decoded.bad.iter().map(|(i, m)| (*i, m.as_str())).collect();
        let expect = [
            (
                1,
                "not in the Confluent wire format: first byte is 0x7b, expected 0x00",
            ),
            (2, "3 bytes, fewer than its 5-byte header"),
            (
                3,
                &format!("schema id 999 is not in the registry at {}", registry.url),
            ),
            (4, "ends before its value of schema id 1"),
            (6, "does not decode with schema id 1"),
            (7, "more bytes than one value of schema id 1"),
            (8, "the record is empty"),
            (10, "does not decode with schema id 1"),
            (11, "schema id 999 is not in the registry"),
            (12, "not a record"),
            (13, "cannot hold"),
        ];
        assert_eq!(bad.len(), expect.len(), "{bad:?}");
        for (i, message) in expect {
            assert!(
                bad.get(&i).is_some_and(|m| m.contains(message)),
                "{i}: {bad:?}"
            );
        }
        // One look-up per unknown id per call.
        assert_eq!(registry.count("GET /schemas/ids/999"), 1);

        // The decoder recovers: good records decode on the next call.
        let decoded = avro
            .decode(&records(&[good(4, "d"), good(5, "e")]))
            .unwrap();
        assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
        assert_eq!(ids(&decoded.batch), [4, 5]);
    }

    #[test]
    fn an_unreachable_registry_fails_the_call() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let url = super::super::registry::test_registry::unreachable_url();
        let r = records(&[frame(1, &long(1))]);
        let err = decoder(&url, &schema).decode(&r).unwrap_err().to_string();
        assert!(
            err.contains(&url) && err.contains("cannot connect"),
            "{err}"
        );
        let err = AvroEncoder::new(&config(&url), Arc::clone(&schema), "t-value")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&url), "{err}");

        // A failing registry (HTTP 500) is not the records' fault either.
        let registry = TestRegistry::start();
        registry.state.lock().unwrap().failing = true;
        let err = decoder(&registry.url, &schema)
            .decode(&r)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&registry.url) && err.contains("HTTP 500"),
            "{err}"
        );
    }

    #[test]
    fn options_are_checked_where_parsed() {
        let parse = |pairs: &[(&str, &str)]| {
            let mut options =
                Options::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                    .unwrap();
            Format::from_options(&mut options, "stream 's'", &["json", "avro"])
        };
        let format = parse(&[
            ("format", "avro"),
            ("schema_registry", "http://localhost:8081"),
            ("subject", "s-value"),
        ])
        .unwrap();
        let Format::Avro(config) = format else {
            panic!("not avro: {format:?}");
        };
        assert_eq!(config.subject.as_deref(), Some("s-value"));
        // A reader takes schemas by id; a subject would be ignored.
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let err = AvroDecoder::new(&config, schema).err().unwrap().to_string();
        assert!(err.contains("'subject' applies to writers only"), "{err}");

        for (pairs, expected) in [
            (
                &[("format", "avro")][..],
                "requires option 'schema_registry'",
            ),
            (
                &[("format", "json"), ("subject", "x")],
                "'subject' applies to format = 'avro' only",
            ),
            (
                &[("format", "avro"), ("schema_registry", "https://r:8081")],
                "https is not supported",
            ),
        ] {
            let err = parse(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }
}
