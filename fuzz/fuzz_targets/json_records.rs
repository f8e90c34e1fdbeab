//! JSON records through a stream's decoder: limits, arrow-json and the
//! bisection that isolates bad records.
#![no_main]

use fibers_engine::fuzzing::{TextFormat, decode_text};
use fibers_fuzz::{check_isolation, split_records, stream_schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records = split_records(data);
    let schema = stream_schema();
    let decode = |items: &[&[u8]]| {
        decode_text(TextFormat::Json, schema.clone(), items)
            .expect("text decoding fails records, never the call")
    };
    let together = decode(&records);
    check_isolation(&records, &together, |record| decode(&[record]));
});
