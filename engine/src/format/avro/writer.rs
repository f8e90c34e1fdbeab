//! Writing rows as Avro in the Confluent wire format: the declared
//! columns become an Avro record schema, registered once under the
//! subject, and arrow-avro's encoder frames each row.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::{Encoder, WriterBuilder};
use serde_json::{Value, json};

use super::AvroConfig;
use crate::format::registry::SchemaRegistry;
use crate::format::{RecordEncoder, Records};
use crate::{Error, Result};

/// Encodes rows as Confluent-framed Avro records.
pub(crate) struct AvroEncoder {
    /// The columns' types as encoded (after casting to match the schema).
    schema: SchemaRef,
    encoder: Encoder,
    subject: String,
}

impl AvroEncoder {
    /// Derives an Avro schema from `schema` and registers it under the
    /// configured subject, or `subject` (`<topic>-value`) by default. This
    /// calls the registry, so it blocks.
    pub fn new(config: &AvroConfig, schema: SchemaRef, subject: &str) -> Result<Self> {
        let subject = config.subject.as_deref().unwrap_or(subject).to_string();
        let (avro, fields) = avro_schema(&schema, &record_name(&subject))?;
        let registry = SchemaRegistry::new(&config.registry)?;
        let id = registry.register(&subject, &avro)?;
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), avro)]);
        let encoder = WriterBuilder::new(Schema::new_with_metadata(fields, metadata))
            .with_fingerprint_strategy(FingerprintStrategy::Id(id))
            .build_encoder::<AvroSoeFormat>()
            .map_err(|e| {
                Error::invalid(format!(
                    "format 'avro' cannot write the schema registered as id {id} under \
                     subject '{subject}': {e}"
                ))
            })?;
        Ok(AvroEncoder {
            schema: encoder.schema(),
            encoder,
            subject,
        })
    }
}

impl RecordEncoder for AvroEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Records) -> Result<()> {
        if batch.num_columns() != self.schema.fields().len() {
            return Err(Error::invalid(format!(
                "format 'avro' (subject '{}') writes {} columns, but a batch has {}",
                self.subject,
                self.schema.fields().len(),
                batch.num_columns()
            )));
        }
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                cast_with_options(column, field.data_type(), &options).map_err(|e| {
                    Error::invalid(format!(
                        "format 'avro' cannot write column '{}': {e}",
                        field.name()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.encoder.encode(&batch).map_err(|e| {
            Error::invalid(format!(
                "format 'avro' (subject '{}') cannot encode rows: {e}",
                self.subject
            ))
        })?;
        for row in self.encoder.flush().iter() {
            out.push_bytes(&row);
        }
        Ok(())
    }
}

/// An Avro name from `subject`: other characters become `_`.
fn record_name(subject: &str) -> String {
    let mut name: String = subject
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

fn is_avro_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Avro record schema (JSON) for rows of `schema`, and the Arrow
/// fields the encoder takes, typed to match it.
fn avro_schema(schema: &SchemaRef, name: &str) -> Result<(String, Vec<Field>)> {
    let mut avro_fields = Vec::with_capacity(schema.fields().len());
    let mut fields = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = field.name();
        if !is_avro_name(column) {
            return Err(Error::invalid(format!(
                "format 'avro' cannot name a field '{column}': Avro names are letters, digits \
                 and '_', not starting with a digit; rename the column with AS"
            )));
        }
        let (avro_type, arrow_type) = avro_type(field.data_type()).ok_or_else(|| {
            Error::invalid(format!(
                "format 'avro' cannot write column '{column}' of type {}; supported: BOOLEAN, \
                 integers, REAL, DOUBLE, DECIMAL, TEXT, BYTEA, DATE, TIMESTAMP",
                field.data_type()
            ))
        })?;
        avro_fields.push(if field.is_nullable() {
            json!({"name": column, "type": ["null", avro_type], "default": null})
        } else {
            json!({"name": column, "type": avro_type})
        });
        fields.push(Field::new(column, arrow_type, field.is_nullable()));
    }
    let avro = json!({"type": "record", "name": name, "fields": avro_fields});
    Ok((avro.to_string(), fields))
}

/// The Avro type written for an Arrow type, and the Arrow type arrow-avro
/// encodes it from.
fn avro_type(data_type: &DataType) -> Option<(Value, DataType)> {
    use DataType::*;
    Some(match data_type {
        Boolean => (json!("boolean"), Boolean),
        Int8 | Int16 | Int32 | UInt8 | UInt16 => (json!("int"), Int32),
        Int64 | UInt32 | UInt64 => (json!("long"), Int64),
        Float16 | Float32 => (json!("float"), Float32),
        Float64 => (json!("double"), Float64),
        Utf8 | LargeUtf8 | Utf8View => (json!("string"), Utf8),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => (json!("bytes"), Binary),
        Date32 | Date64 => (json!({"type": "int", "logicalType": "date"}), Date32),
        // Microseconds: the finest unit Avro readers commonly understand.
        Timestamp(_, tz) => (
            json!({"type": "long", "logicalType": "timestamp-micros"}),
            Timestamp(TimeUnit::Microsecond, tz.clone()),
        ),
        Decimal128(p, s) | Decimal256(p, s) if *s >= 0 => (
            json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}),
            data_type.clone(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        Int8Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampNanosecondArray,
    };

    use super::super::tests::{config, decoder, frame};
    use super::*;
    use crate::format::RecordDecoder;
    use crate::format::registry::test_registry::TestRegistry;

    #[test]
    fn round_trips_every_type_with_nulls() {
        let registry = TestRegistry::start();
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let tsz = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("b", DataType::Boolean, true),
            Field::new("i8", DataType::Int8, true),
            Field::new("i16", DataType::Int16, true),
            Field::new("i32", DataType::Int32, true),
            Field::new("id", DataType::Int64, false),
            Field::new("f32", DataType::Float32, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("dec", DataType::Decimal128(10, 2), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("bin", DataType::Binary, true),
            Field::new("d", DataType::Date32, true),
            Field::new("ts", ts, true),
            Field::new("tsz", tsz, false),
        ]));
        // Timestamps are written in microseconds, so these are whole ones.
        let micros = |us: i64| us * 1000;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
                Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
                Arc::new(Int16Array::from(vec![Some(-300), None, Some(i16::MAX)])),
                Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(10)])),
                Arc::new(Int64Array::from(vec![i64::MIN, 0, i64::MAX])),
                Arc::new(Float32Array::from(vec![Some(1.25), None, Some(-0.5)])),
                Arc::new(Float64Array::from(vec![
                    Some(f64::MAX),
                    None,
                    Some(-2.5e-300),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12_345), None, Some(-99_999_999)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(vec![Some("é\nline"), None, Some("")])),
                // The last byte of a record may be 0x0A.
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x00\n"[..]),
                    None,
                    Some(b""),
                ])),
                Arc::new(Date32Array::from(vec![Some(-1), None, Some(20_000)])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(micros(1_700_000_000_123_456)),
                    None,
                    Some(micros(-1)),
                ])),
                Arc::new(
                    TimestampNanosecondArray::from(vec![micros(5), micros(2), micros(3)])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();

        let mut encoder =
            AvroEncoder::new(&config(&registry.url), Arc::clone(&schema), "orders-value").unwrap();
        let mut out = Records::default();
        encoder.encode(&batch, &mut out).unwrap();
        encoder.encode(&batch.slice(0, 1), &mut out).unwrap();
        assert_eq!(out.len(), 4);
        // 5 µs is zigzag 0x0A, the last byte of the first record.
        assert_eq!(out.get(0).last(), Some(&b'\n'));

        // Registered once, under the default subject, with the derived schema.
        assert_eq!(registry.count("POST /subjects/orders-value/versions"), 1);
        let state = registry.state.lock().unwrap();
        let id = state.subjects["orders-value"][0];
        let registered: Value = serde_json::from_str(&state.schemas[&id]).unwrap();
        drop(state);
        assert_eq!(registered["name"], "orders_value");
        assert_eq!(registered["fields"][0]["type"], json!(["null", "boolean"]));
        assert_eq!(registered["fields"][4]["type"], json!("long"));
        assert_eq!(
            registered["fields"][12]["type"],
            json!({"type": "long", "logicalType": "timestamp-micros"})
        );
        assert_eq!(
            registered["fields"][7]["type"][1],
            json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})
        );
        for record in out.iter() {
            assert_eq!(record[..5], frame(id, &[])[..], "Confluent header");
        }

        let decoded = decoder(&registry.url, &schema).decode(&out).unwrap();
        assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
        assert_eq!(decoded.batch.slice(0, 3), batch);
        assert_eq!(decoded.batch.slice(3, 1), batch.slice(0, 1));

        // Option 'subject' overrides the default.
        let custom = AvroConfig {
            subject: Some("custom.subject".into()),
            ..config(&registry.url)
        };
        AvroEncoder::new(&custom, Arc::clone(&schema), "orders-value").unwrap();
        assert_eq!(registry.count("POST /subjects/custom.subject/versions"), 1);
    }

    /// Records written with two versions of a schema, interleaved, decode
    /// into the declared columns; a column v1 lacks is NULL for its rows.
    #[test]
    fn column_names_and_types_are_checked_before_registering() {
        let registry = TestRegistry::start();
        for (field, expected) in [
            (
                Field::new("count(*)", DataType::Int64, true),
                "cannot name a field",
            ),
            (
                Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
                "cannot write column 't'",
            ),
        ] {
            let schema = Arc::new(Schema::new(vec![field]));
            let err = AvroEncoder::new(&config(&registry.url), schema, "s-value")
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(registry.state.lock().unwrap().requests.len(), 0);
        assert_eq!(record_name("9 orders-value"), "_9_orders_value");
    }
}
