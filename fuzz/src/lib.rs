//! What the fuzz targets share: the schema records are read into, how an
//! input splits into records, and the property every decoder must keep.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use fibers_engine::fuzzing::Decoded;

/// Lets a panic the code under test catches itself (a third-party decoder
/// that panics on damaged input, turned into an error) pass: libFuzzer's
/// hook would abort on it as on any other. A panic nothing catches still
/// reaches the harness, which aborts: that is still a find.
pub fn tolerate_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    });
}

/// The columns of the stream the records are read into: one of each kind
/// of column a stream can declare, `id` NOT NULL.
pub fn stream_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("sym", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("price", DataType::Float64, true),
        Field::new("qty", DataType::Int32, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("data", DataType::Binary, true),
    ]))
}

/// The records of a text input: split at NUL bytes if it has any (so a
/// record may hold a newline, as a Kafka message may), else at newlines
/// (as a file's lines are).
pub fn split_records(data: &[u8]) -> Vec<&[u8]> {
    let separator = if data.contains(&0) { 0 } else { b'\n' };
    data.split(|&b| b == separator).collect()
}

/// The records of a binary input: each a little-endian `u16` length and
/// that many bytes; a short tail is a record of its own.
pub fn length_prefixed(mut data: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    while let Some((length, rest)) = data.split_first_chunk::<2>() {
        let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        let (record, rest) = rest.split_at(length);
        records.push(record);
        data = rest;
    }
    if !data.is_empty() {
        records.push(data);
    }
    records
}

fn text(batches: &[RecordBatch]) -> String {
    let rows: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    pretty_format_batches(&rows)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| format!("cannot format: {e}"))
}

/// The property bisection must keep: decoding records together gives
/// exactly the rows and the verdicts of decoding each alone. A record
/// decoded together with its neighbours must not borrow their bytes (an
/// unterminated quote, two values in one record beside an empty one).
pub fn check_isolation(
    records: &[&[u8]],
    together: &Decoded,
    mut alone: impl FnMut(&[u8]) -> Decoded,
) {
    let bad_together: Vec<usize> = together.bad.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        together.batch.num_rows() + bad_together.len(),
        records.len(),
        "every record gives one row or is bad"
    );
    let mut bad_alone = Vec::new();
    let mut rows_alone = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let decoded = alone(record);
        assert_eq!(
            decoded.batch.num_rows() + decoded.bad.len(),
            1,
            "record {i} alone gives one row or is bad"
        );
        if decoded.bad.is_empty() {
            rows_alone.push(decoded.batch);
        } else {
            bad_alone.push(i);
        }
    }
    assert_eq!(
        bad_together, bad_alone,
        "the same records are bad together and alone"
    );
    assert_eq!(
        text(std::slice::from_ref(&together.batch)),
        text(&rows_alone),
        "records decode to the same rows together and alone"
    );
}
