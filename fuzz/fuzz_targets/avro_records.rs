//! Confluent-framed Avro records through a stream's decoder, with a writer
//! schema from the input (as a hostile registry would serve it) beside a
//! well-formed one.
//!
//! Input: a length-prefixed writer schema (id 1), then length-prefixed
//! records; id 2 is the fixed schema below.
#![no_main]

use fibers_engine::fuzzing::decode_avro;
use fibers_fuzz::{check_isolation, length_prefixed, stream_schema};
use libfuzzer_sys::fuzz_target;

const TRADE: &str = r#"{"type": "record", "name": "trade", "fields": [
    {"name": "id", "type": "long"},
    {"name": "sym", "type": ["null", "string"]},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "price", "type": "double"},
    {"name": "qty", "type": "int"},
    {"name": "ok", "type": "boolean"},
    {"name": "data", "type": "bytes"}
]}"#;

fuzz_target!(|data: &[u8]| {
    let mut parts = length_prefixed(data);
    if parts.is_empty() {
        return;
    }
    let writer = String::from_utf8_lossy(parts.remove(0)).into_owned();
    let records = parts;
    let schema = stream_schema();
    let writers = vec![(1, writer), (2, TRADE.to_string())];
    let decode = |items: &[&[u8]]| {
        decode_avro(schema.clone(), writers.clone(), items)
            .expect("with every writer schema known, decoding fails records, never the call")
    };
    let together = decode(&records);
    check_isolation(&records, &together, |record| decode(&[record]));
});
