//! Bounds on one record, checked before a decoder sees it.
//!
//! Decoders allocate in proportion to a record and some recurse in
//! proportion to its nesting (arrow-json formats a nested value it cannot
//! take into its error message recursively). A stack overflow aborts the
//! process and cannot be caught, so a record past these bounds never
//! reaches a decoder: it is a bad record like any other, handled by the
//! stream's `bad_data` with its provenance.

use fibers_sql::Options;

use super::{Decoded, RecordDecoder, Records};
use crate::{Error, Result};

/// The largest record accepted by default. Kafka's own default for a
/// message is 1 MiB; a line of a file has no bound of its own.
pub(crate) const DEFAULT_MAX_RECORD_BYTES: usize = 8 << 20;
/// The deepest nesting of arrays and objects accepted by default in a JSON
/// record (serde_json's own default limit is 128 as well).
pub(crate) const DEFAULT_MAX_NESTING_DEPTH: usize = 128;
/// Above this, a nesting limit would no longer protect the stack.
const MAX_NESTING_DEPTH_ALLOWED: usize = 1024;

/// The most threads that decode one batch of records: past a few, a
/// source thread hands out chunks faster than it gains.
const MAX_DECODE_THREADS: usize = 4;

/// How large and how deep one record may be, and how many threads may
/// decode a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordLimits {
    pub max_record_bytes: usize,
    pub max_nesting_depth: usize,
    /// Threads decoding a batch of JSON or CSV records at once, each a
    /// contiguous chunk of it (the source's own thread among them).
    pub decode_threads: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
            // One: on the two-core machine of BENCHMARKS.md a second
            // decoding thread cuts a job's wall time by a quarter but adds
            // a fifth or more to its CPU time; a stream opts in.
            decode_threads: 1,
        }
    }
}

impl RecordLimits {
    /// Takes `max_record_size` (`'512KiB'`, `'8MiB'`, or bytes),
    /// `max_nesting_depth` and `decode_threads`.
    pub fn from_options(options: &mut Options) -> Result<Self> {
        let mut limits = RecordLimits::default();
        if let Some(size) = options.take("max_record_size") {
            limits.max_record_bytes = parse_size(&size).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid value '{size}' for option 'max_record_size': expected a size \
                     such as '512KiB', '8MiB' or a number of bytes"
                ))
            })?;
        }
        if let Some(depth) = take_count(options, "max_nesting_depth", MAX_NESTING_DEPTH_ALLOWED)? {
            limits.max_nesting_depth = depth;
        }
        if let Some(threads) = take_count(options, "decode_threads", MAX_DECODE_THREADS)? {
            limits.decode_threads = threads;
        }
        Ok(limits)
    }

    /// Why `record` is past the limits, if it is; `json` checks nesting.
    pub fn violation(&self, record: &[u8], json: bool) -> Option<String> {
        if record.len() > self.max_record_bytes {
            return Some(format!(
                "the record is larger than max_record_size ({} bytes)",
                self.max_record_bytes
            ));
        }
        if json && json_nesting_exceeds(record, self.max_nesting_depth) {
            return Some(format!(
                "the record nests arrays or objects more than max_nesting_depth ({}) deep",
                self.max_nesting_depth
            ));
        }
        None
    }
}

/// A size: bytes, or a number with a `KiB`, `MiB` or `GiB` suffix (`KB`,
/// `MB` and `GB` mean the same; sizes here are never decimal).
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    let bytes = number.checked_mul(1usize << shift)?;
    (bytes > 0).then_some(bytes)
}

/// Takes option `key` as a whole number from 1 to `max`.
fn take_count(options: &mut Options, key: &str, max: usize) -> Result<Option<usize>> {
    match options.take_parsed::<usize>(key, "a number")? {
        Some(n) if n == 0 || n > max => Err(Error::invalid(format!(
            "invalid value '{n}' for option '{key}': expected 1 to {max}"
        ))),
        n => Ok(n),
    }
}

/// Whether `json` opens more than `limit` arrays or objects inside one
/// another. One pass, no allocation; brackets inside strings do not count.
/// Malformed JSON is left to the decoder to report.
fn json_nesting_exceeds(json: &[u8], limit: usize) -> bool {
    // Nesting past `limit` takes more than `limit` opening brackets; most
    // records hold a few, which memchr counts far faster than the walk.
    if memchr::memchr2_iter(b'[', b'{', json).nth(limit).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A decoder behind the limits: records past them are bad records, and the
/// inner decoder sees only the others.
pub(crate) struct LimitedDecoder {
    pub inner: Box<dyn RecordDecoder>,
    pub limits: RecordLimits,
    pub json: bool,
}

impl RecordDecoder for LimitedDecoder {
    fn decode(&mut self, records: &Records) -> Result<Decoded> {
        let refused: Vec<(usize, String)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.limits.violation(r, self.json).map(|e| (i, e)))
            .collect();
        if refused.is_empty() {
            return self.inner.decode(records);
        }
        // The rest, renumbered; `accepted[j]` is the index of the j-th.
        let mut rest = Records::with_capacity(records.len() - refused.len(), 0);
        let mut accepted = Vec::with_capacity(records.len() - refused.len());
        let mut next_refused = refused.iter().map(|(i, _)| *i).peekable();
        for (i, record) in records.iter().enumerate() {
            if next_refused.peek() == Some(&i) {
                next_refused.next();
            } else {
                rest.push(record);
                accepted.push(i);
            }
        }
        let decoded = self.inner.decode(&rest)?;
        let mut bad: Vec<(usize, String)> = decoded
            .bad
            .into_iter()
            .map(|(j, e)| (accepted[j], e))
            .chain(refused)
            .collect();
        bad.sort_by_key(|(i, _)| *i);
        Ok(Decoded {
            batch: decoded.batch,
            bad,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::format::Format;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!json_nesting_exceeds(br#"{"a":[[1]]}"#, 3));
        assert!(json_nesting_exceeds(br#"{"a":[[[1]]]}"#, 3));
        assert!(!json_nesting_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(json_nesting_exceeds(deep.as_bytes(), 128));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("1 parsec"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }

    #[test]
    fn records_past_the_limits_are_bad_and_their_neighbours_decode() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("sym", DataType::Utf8, true),
        ]));
        let deep = format!(
            r#"{{"id": 2, "sym": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let big = format!(r#"{{"id": 4, "sym": "{}"}}"#, "x".repeat(2000));
        let mut records = Records::default();
        for r in [
            r#"{"id": 1, "sym": "a"}"#,
            deep.as_str(),
            r#"{"id": 3, "sym": oops}"#,
            big.as_str(),
            r#"{"id": 5, "sym": "e"}"#,
        ] {
            records.push(r.as_bytes());
        }
        let limits = RecordLimits {
            max_record_bytes: 1000,
            ..RecordLimits::default()
        };
        let mut decoder = Format::Json.decoder(schema, limits).unwrap();
        let decoded = decoder.decode(&records).unwrap();
        let ids: Vec<i64> = decoded
            .batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [1, 5]);
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 2, 3]);
        assert!(
            decoded.bad[0].1.contains("max_nesting_depth"),
            "{:?}",
            decoded.bad
        );
        assert!(
            decoded.bad[2].1.contains("max_record_size"),
            "{:?}",
            decoded.bad
        );
    }
}
