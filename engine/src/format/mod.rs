//! Record formats: one record's bytes (a Kafka message value, a line of a
//! file) to and from Arrow rows.
//!
//! Decoders take many records at a time and decode them with Arrow's
//! columnar decoders in one pass. A record that does not decode costs only
//! itself: the batch is bisected until every bad record is isolated, so its
//! neighbours still decode together, and the caller learns which records
//! were bad and why.

pub(crate) mod avro;
pub(crate) mod limits;
pub(crate) mod registry;

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use fibers_sql::Options;

use crate::{Error, Result};

pub(crate) use avro::AvroConfig;
pub(crate) use limits::RecordLimits;

/// A record format, as chosen by a `format` option.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    /// One JSON object per record.
    Json,
    /// One CSV line per record (a file may start with a header line).
    Csv {
        /// Whether a file's first line is a header (files only).
        header: bool,
    },
    /// The record's bytes as one `BYTEA` or `TEXT` column.
    Raw,
    /// Avro in the Confluent wire format, schemas from a registry.
    Avro(AvroConfig),
}

impl Format {
    /// Takes `format` (required, one of `allowed`) and the options that
    /// belong to it: `header` for CSV files, `schema_registry` (and
    /// `subject` for writers) for Avro.
    pub fn from_options(options: &mut Options, owner: &str, allowed: &[&str]) -> Result<Self> {
        let format = options.take_choice("format", allowed)?.ok_or_else(|| {
            Error::invalid(format!(
                "{owner} requires option 'format'; expected one of: {}",
                allowed.join(", ")
            ))
        })?;
        let header = options.take_bool("header")?;
        if header.is_some() && format != "csv" {
            return Err(Error::invalid(
                "option 'header' applies to format = 'csv' only",
            ));
        }
        let avro = AvroConfig::from_options(options, format == "avro")?;
        Ok(match format.as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv {
                header: header.unwrap_or(true),
            },
            "raw" => Format::Raw,
            _ => Format::Avro(avro.ok_or_else(|| {
                Error::invalid(format!(
                    "format 'avro' of {owner} requires option 'schema_registry' (the registry's URL)"
                ))
            })?),
        })
    }

    /// A decoder of records into rows of `schema`; a record past `limits`
    /// is a bad record and never reaches the format's decoder.
    pub fn decoder(
        &self,
        schema: SchemaRef,
        limits: RecordLimits,
    ) -> Result<Box<dyn RecordDecoder>> {
        self.decoder_reading(schema, limits, None)
    }

    /// A decoder like [`Format::decoder`] for a reader that needs only the
    /// columns named in `read` (all when `None`). JSON and CSV decode only
    /// those, and return NULL in the others (a column declared `NOT NULL`
    /// is always decoded): a field no reader needs is skipped, never
    /// materialised, and a malformed value in it does not make its record
    /// bad. Other formats decode every column.
    ///
    /// JSON and CSV batches are decoded by up to `limits.decode_threads`
    /// decoders at once, each taking a contiguous chunk of the records
    /// (see [`ParallelDecoder`]).
    pub fn decoder_reading(
        &self,
        schema: SchemaRef,
        limits: RecordLimits,
        read: Option<&BTreeSet<String>>,
    ) -> Result<Box<dyn RecordDecoder>> {
        let threads = match self {
            Format::Json | Format::Csv { .. } => limits.decode_threads.max(1),
            // An Avro decoder caches the registry's schemas: one is enough.
            Format::Raw | Format::Avro(_) => 1,
        };
        if threads == 1 {
            return self.one_decoder(schema, limits, read);
        }
        let decoders = (0..threads)
            .map(|_| self.one_decoder(Arc::clone(&schema), limits, read))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(ParallelDecoder { decoders }))
    }

    /// One decoder of the format, behind the limits.
    fn one_decoder(
        &self,
        schema: SchemaRef,
        limits: RecordLimits,
        read: Option<&BTreeSet<String>>,
    ) -> Result<Box<dyn RecordDecoder>> {
        let inner: Box<dyn RecordDecoder> = match self {
            Format::Json | Format::Csv { .. } => Box::new(TextDecoder::new(
                matches!(self, Format::Csv { .. }),
                schema,
                read,
            )?),
            Format::Raw => Box::new(RawDecoder::new(schema)?),
            Format::Avro(config) => Box::new(avro::AvroDecoder::new(config, schema)?),
        };
        Ok(Box::new(limits::LimitedDecoder {
            inner,
            limits,
            json: matches!(self, Format::Json),
        }))
    }

    /// An encoder of rows of `schema` into one record each; `subject`
    /// names the schema in a registry (Avro only).
    pub fn encoder(&self, schema: SchemaRef, subject: &str) -> Result<Box<dyn RecordEncoder>> {
        Ok(match self {
            Format::Json => Box::new(JsonEncoder),
            Format::Csv { .. } => Box::new(CsvEncoder),
            Format::Raw => {
                raw_column(&schema)?;
                Box::new(RawEncoder)
            }
            Format::Avro(config) => Box::new(avro::AvroEncoder::new(config, schema, subject)?),
        })
    }
}

/// Records laid end to end in one buffer, each followed by a newline so a
/// text decoder can take them all in one call.
#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    data: Vec<u8>,
    /// Where each record's bytes end (its newline excluded).
    ends: Vec<usize>,
}

impl Records {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Records {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Appends one record exactly as given (a last byte 0x0A of a binary
    /// record is data, not a line end).
    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
        self.data.push(b'\n');
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`, without its newline.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.start(i)..self.ends[i]]
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] + 1 }
    }

    /// Records `range` with their newlines, as one buffer.
    fn span(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        &self.data[self.start(range.start)..self.ends[range.end - 1] + 1]
    }

    /// A copy of records `range`.
    fn slice(&self, range: Range<usize>) -> Records {
        let offset = if range.is_empty() {
            0
        } else {
            self.start(range.start)
        };
        Records {
            data: self.span(range.clone()).to_vec(),
            ends: self.ends[range].iter().map(|end| end - offset).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Removes every record, keeping the buffers' memory.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// What a decoder made of some records.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The rows of the records that decoded, in record order.
    pub batch: RecordBatch,
    /// The records that did not decode (index, error), in order.
    pub bad: Vec<(usize, String)>,
}

impl Decoded {
    /// Indices of the records that decoded, when some did not.
    pub fn kept(&self, records: usize) -> Option<Vec<u32>> {
        if self.bad.is_empty() {
            return None;
        }
        let mut bad = self.bad.iter().map(|(i, _)| *i).peekable();
        let mut kept = Vec::with_capacity(records - self.bad.len());
        for i in 0..records {
            if bad.peek() == Some(&i) {
                bad.next();
            } else {
                kept.push(i as u32);
            }
        }
        Some(kept)
    }
}

/// Decodes records into Arrow rows.
pub(crate) trait RecordDecoder: Send {
    /// Decodes every record; each good record gives exactly one row.
    fn decode(&mut self, records: &Records) -> Result<Decoded>;
}

/// Batches smaller than this many records per decoder are decoded on the
/// calling thread alone: a chunk must outweigh starting a thread for it.
const MIN_RECORDS_PER_DECODER: usize = 512;

/// Decoders of one format, each decoding a contiguous chunk of a batch on
/// a thread of its own (the caller's for the first). A text record decodes
/// to its row, or fails, by itself, so the rows, the bad records and their
/// errors are exactly those one decoder gives for the whole batch, in the
/// same order: the source's positions and its watermark cannot tell.
struct ParallelDecoder {
    decoders: Vec<Box<dyn RecordDecoder>>,
}

impl RecordDecoder for ParallelDecoder {
    fn decode(&mut self, records: &Records) -> Result<Decoded> {
        let chunks = (records.len() / MIN_RECORDS_PER_DECODER).clamp(1, self.decoders.len());
        let (first, others) = self
            .decoders
            .split_first_mut()
            .ok_or_else(|| Error::invalid("a parallel decoder without decoders"))?;
        if chunks == 1 {
            return first.decode(records);
        }
        let per_chunk = records.len().div_ceil(chunks);
        let starts: Vec<usize> = (0..chunks).map(|c| c * per_chunk).collect();
        let parts: Vec<Records> = starts
            .iter()
            .map(|&start| records.slice(start..(start + per_chunk).min(records.len())))
            .collect();
        let results: Vec<Result<Decoded>> = std::thread::scope(|scope| {
            let spawned: Vec<_> = parts[1..]
                .iter()
                .zip(others.iter_mut())
                .map(|(part, decoder)| {
                    std::thread::Builder::new()
                        .name("fibers-decode".into())
                        .spawn_scoped(scope, move || decoder.decode(part))
                        .map_err(|e| (e, part))
                })
                .collect();
            let mut results = vec![first.decode(&parts[0])];
            for handle in spawned {
                results.push(match handle {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(Error::invalid("a decoding thread panicked"))),
                    // No thread to be had: decode the chunk here.
                    Err((_, part)) => first.decode(part),
                });
            }
            results
        });
        let mut batches = Vec::with_capacity(chunks);
        let mut bad = Vec::new();
        for (result, start) in results.into_iter().zip(starts) {
            let decoded = result?;
            bad.extend(decoded.bad.into_iter().map(|(i, e)| (start + i, e)));
            batches.push(decoded.batch);
        }
        let schema = batches[0].schema();
        Ok(Decoded {
            batch: concat_batches(&schema, &batches)?,
            bad,
        })
    }
}

/// Encodes Arrow rows into records.
pub(crate) trait RecordEncoder: Send {
    /// Appends one record per row of `batch` to `out`.
    fn encode(&mut self, batch: &RecordBatch, out: &mut Records) -> Result<()>;
}

/// Decodes `records` with `decode_span`, which must decode a span of
/// records to one row each or fail. A failing span is bisected until each
/// bad record stands alone, so good records always decode.
///
/// `blank` tells the records that decode to no row without failing (an
/// empty line): they are bad before any span is decoded, since in a span
/// beside a record holding two values the counts would match and rows
/// would land on the wrong records.
pub(crate) fn decode_isolating(
    schema: &SchemaRef,
    records: &Records,
    blank: impl Fn(&[u8]) -> bool,
    mut decode_span: impl FnMut(Range<usize>) -> std::result::Result<RecordBatch, String>,
) -> Result<Decoded> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut spans = Vec::new();
    let mut start = 0;
    for i in 0..records.len() {
        if blank(records.get(i)) {
            bad.push((i, "the record is empty".to_string()));
            spans.push(start..i);
            start = i + 1;
        }
    }
    spans.push(start..records.len());
    // Popped last-in first-out: the first span first, keeping rows in
    // record order.
    let mut pending: Vec<Range<usize>> = spans.into_iter().rev().collect();
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let outcome = decode_span(range.clone()).and_then(|batch| {
            if batch.num_rows() == range.len() {
                Ok(batch)
            } else if range.len() == 1 {
                Err(match batch.num_rows() {
                    0 => "the record is empty".to_string(),
                    n => format!("the record holds {n} values, expected one"),
                })
            } else {
                Err(String::new())
            }
        });
        match outcome {
            Ok(batch) => good.push(batch),
            Err(e) if range.len() == 1 => bad.push((range.start, e)),
            Err(_) => {
                let mid = range.start + range.len() / 2;
                // Popped last-in first-out: the left half first, keeping
                // rows in record order.
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
        }
    }
    bad.sort_by_key(|(i, _)| *i);
    let batch = match good.len() {
        0 => RecordBatch::new_empty(Arc::clone(schema)),
        1 => good
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))),
        _ => concat_batches(schema, &good)?,
    };
    Ok(Decoded { batch, bad })
}

/// JSON and CSV, through arrow-json's and arrow-csv's push decoders.
struct TextDecoder {
    csv: bool,
    /// The rows it returns.
    schema: SchemaRef,
    /// The columns it decodes, when not all of `schema`'s.
    projection: Option<Projection>,
    /// arrow-json's decoder, kept from one batch to the next.
    json: Option<KeptJsonDecoder>,
}

/// A JSON decoder that took its last records without an error, so it holds
/// nothing of them: reusing it keeps its tape's buffers, which a decoder
/// built per batch grows afresh every time (reallocating, and faulting in
/// new pages).
struct KeptJsonDecoder {
    decoder: arrow_json::reader::Decoder,
    /// The rows it takes before it stops taking input.
    rows: usize,
}

/// The columns of a schema a decoder decodes, the others left NULL.
struct Projection {
    /// The decoded columns' indices in the full schema, in order.
    indices: Vec<usize>,
    /// The decoded columns as a schema of their own.
    schema: SchemaRef,
}

impl TextDecoder {
    fn new(csv: bool, schema: SchemaRef, read: Option<&BTreeSet<String>>) -> Result<Self> {
        let projection = match read {
            None => None,
            Some(read) => {
                let indices: Vec<usize> = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !f.is_nullable() || read.contains(f.name()))
                    .map(|(i, _)| i)
                    .collect();
                if indices.len() == schema.fields().len() {
                    None
                } else {
                    Some(Projection {
                        schema: Arc::new(schema.project(&indices)?),
                        indices,
                    })
                }
            }
        };
        Ok(TextDecoder {
            csv,
            schema,
            projection,
            json: None,
        })
    }

    /// `decoded` (rows of the projected columns) as rows of the full
    /// schema, NULL in the columns not decoded.
    fn widen(&self, decoded: RecordBatch) -> Result<RecordBatch> {
        let Some(projection) = &self.projection else {
            return Ok(decoded);
        };
        let rows = decoded.num_rows();
        let mut decoded_columns = projection.indices.iter().zip(decoded.columns()).peekable();
        let columns = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(
                |(i, field)| match decoded_columns.next_if(|(at, _)| **at == i) {
                    Some((_, column)) => Arc::clone(column),
                    None => new_null_array(field.data_type(), rows),
                },
            )
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }
}

impl RecordDecoder for TextDecoder {
    fn decode(&mut self, records: &Records) -> Result<Decoded> {
        let csv = self.csv;
        let kept = &mut self.json;
        let (decoded_schema, csv_projection) = match &self.projection {
            Some(p) => (Arc::clone(&p.schema), Some(p.indices.as_slice())),
            None => (Arc::clone(&self.schema), None),
        };
        // JSON whitespace, or a CSV line with nothing but line ends.
        let blank = |record: &[u8]| {
            record.iter().all(|&b| match b {
                b'\r' | b'\n' => true,
                b' ' | b'\t' => !csv,
                _ => false,
            })
        };
        let mut decoded = decode_isolating(&decoded_schema, records, blank, |range| {
            if csv {
                decode_csv(&self.schema, csv_projection, records, range)
            } else {
                decode_json(kept, &decoded_schema, records, range)
            }
        })?;
        decoded.batch = self.widen(decoded.batch)?;
        Ok(decoded)
    }
}

/// Decodes the CSV lines of records `range` in one batch (one flush
/// returns them all): the columns `projection` picks of `schema`, or all.
fn decode_csv(
    schema: &SchemaRef,
    projection: Option<&[usize]>,
    records: &Records,
    range: Range<usize>,
) -> std::result::Result<RecordBatch, String> {
    // One more than expected, so a record holding two values shows.
    let mut builder = arrow_csv::ReaderBuilder::new(Arc::clone(schema))
        .with_header(false)
        .with_batch_size(range.len() + 1);
    if let Some(projection) = projection {
        builder = builder.with_projection(projection.to_vec());
    }
    let mut decoder = builder.build_decoder();
    let decoded = feed(records.span(range), |b| decoder.decode(b))
        .and_then(|()| decoder.decode(&[]))
        .and_then(|_| decoder.flush());
    match decoded {
        Ok(Some(batch)) => Ok(batch),
        Ok(None) => Ok(RecordBatch::new_empty(match projection {
            Some(p) => Arc::new(schema.project(p).map_err(|e| e.to_string())?),
            None => Arc::clone(schema),
        })),
        Err(e) => Err(e.to_string()),
    }
}

/// Decodes the JSON values of records `range` into rows of `schema` in
/// one batch; fields of a value that `schema` lacks are skipped. Uses the
/// decoder `kept` when it takes enough rows, and keeps the decoder for the
/// next call unless it failed (a failure may leave part of a value in it).
fn decode_json(
    kept: &mut Option<KeptJsonDecoder>,
    schema: &SchemaRef,
    records: &Records,
    range: Range<usize>,
) -> std::result::Result<RecordBatch, String> {
    // One more than expected, so a record holding two values shows.
    let rows = range.len() + 1;
    let mut json = match kept.take() {
        Some(json) if json.rows >= rows => json,
        _ => {
            let rows = rows.max(MIN_JSON_DECODER_ROWS);
            KeptJsonDecoder {
                decoder: arrow_json::ReaderBuilder::new(Arc::clone(schema))
                    .with_batch_size(rows)
                    .build_decoder()
                    .map_err(|e| e.to_string())?,
                rows,
            }
        }
    };
    let decoder = &mut json.decoder;
    // Record by record: JSON allows a newline inside a value, so a value
    // may run on into the next record, and the counts of a span alone
    // could hide it. (A lone record is checked by its count of rows.)
    let several = range.len() > 1;
    let decoded = range
        .enumerate()
        .try_for_each(|(n, i)| {
            feed(records.get(i), |b| decoder.decode(b))?;
            if several && (decoder.has_partial_record() || decoder.len() != n + 1) {
                return Err(arrow::error::ArrowError::JsonError(format!(
                    "record {} does not hold exactly one value",
                    n + 1
                )));
            }
            Ok(())
        })
        .and_then(|()| decoder.flush());
    match decoded {
        Ok(batch) => {
            *kept = Some(json);
            Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The rows a JSON decoder is built for at least, so that the smaller
/// spans of isolating a bad record, and batches that vary in size, reuse it.
const MIN_JSON_DECODER_ROWS: usize = 1024;

/// Hands `bytes` to a push decoder until it has taken all of them (or
/// stops taking any because its batch is full).
fn feed(
    mut bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> std::result::Result<usize, arrow::error::ArrowError>,
) -> std::result::Result<(), arrow::error::ArrowError> {
    while !bytes.is_empty() {
        let consumed = decode(bytes)?;
        if consumed == 0 {
            break;
        }
        bytes = &bytes[consumed..];
    }
    Ok(())
}

/// The one column of a raw stream or sink: its type decides whether
/// values are text (checked to be UTF-8) or bytes.
fn raw_column(schema: &SchemaRef) -> Result<bool> {
    match schema.fields().as_ref() {
        [field] => match field.data_type() {
            DataType::Utf8 => Ok(true),
            DataType::Binary => Ok(false),
            other => Err(Error::invalid(format!(
                "format 'raw' needs its column '{}' to be TEXT or BYTEA, not {other}",
                field.name()
            ))),
        },
        fields => Err(Error::invalid(format!(
            "format 'raw' carries one value column (TEXT or BYTEA), but {} are declared",
            fields.len()
        ))),
    }
}

/// The `raw` format: each record is one value.
struct RawDecoder {
    schema: SchemaRef,
    text: bool,
}

impl RawDecoder {
    fn new(schema: SchemaRef) -> Result<Self> {
        let text = raw_column(&schema)?;
        Ok(RawDecoder { schema, text })
    }
}

impl RecordDecoder for RawDecoder {
    fn decode(&mut self, records: &Records) -> Result<Decoded> {
        let mut bad = Vec::new();
        let column: ArrayRef = if self.text {
            let mut values = Vec::with_capacity(records.len());
            for (i, record) in records.iter().enumerate() {
                match std::str::from_utf8(record) {
                    Ok(s) => values.push(s),
                    Err(e) => bad.push((i, format!("the record is not UTF-8 text: {e}"))),
                }
            }
            Arc::new(StringArray::from(values))
        } else {
            Arc::new(BinaryArray::from_iter_values(records.iter()))
        };
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![column])?;
        Ok(Decoded { batch, bad })
    }
}

struct RawEncoder;

impl RecordEncoder for RawEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Records) -> Result<()> {
        let column = batch.column(0);
        if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
            for value in text {
                out.push(value.unwrap_or_default().as_bytes());
            }
        } else if let Some(bytes) = column.as_any().downcast_ref::<BinaryArray>() {
            for value in bytes {
                out.push(value.unwrap_or_default());
            }
        } else {
            return Err(Error::invalid(format!(
                "format 'raw' cannot write a column of type {}",
                column.data_type()
            )));
        }
        Ok(())
    }
}

/// One JSON object per row, NULLs written out.
struct JsonEncoder;

impl RecordEncoder for JsonEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Records) -> Result<()> {
        let mut lines = Vec::with_capacity(batch.num_rows() * 64);
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::LineDelimited>(&mut lines);
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        // A JSON line holds no raw newline: strings escape theirs.
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.push(line);
        }
        Ok(())
    }
}

/// One CSV line per row, without a header.
struct CsvEncoder;

impl RecordEncoder for CsvEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Records) -> Result<()> {
        let mut text = Vec::with_capacity(batch.num_rows() * 48);
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut text);
        writer.write(batch)?;
        drop(writer);
        // Quoted fields may hold newlines: a record ends at a newline
        // outside quotes.
        let mut quoted = false;
        let mut start = 0;
        for (i, &b) in text.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    let line = &text[start..i];
                    out.push(line.strip_suffix(b"\r").unwrap_or(line));
                    start = i + 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn records(items: &[&str]) -> Records {
        let mut r = Records::default();
        for item in items {
            r.push(item.as_bytes());
        }
        r
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn decode_json(records: &Records) -> Decoded {
        Format::Json
            .decoder(schema(), RecordLimits::default())
            .unwrap()
            .decode(records)
            .unwrap()
    }

    /// Decodes `records` with one decoder and with `threads` at once.
    fn one_and_parallel(format: &Format, records: &Records, threads: usize) -> (Decoded, Decoded) {
        let limits = |decode_threads| RecordLimits {
            decode_threads,
            ..RecordLimits::default()
        };
        let decode = |threads| {
            format
                .decoder(schema(), limits(threads))
                .unwrap()
                .decode(records)
                .unwrap()
        };
        (decode(1), decode(threads))
    }

    /// Bad records everywhere a chunk may start or end, and one that runs
    /// on into the next record across a chunk's end.
    #[test]
    fn chunks_decoded_at_once_give_the_rows_and_bad_records_of_one_decoder() {
        let n = 5000;
        // Three decoders cut 5,000 records at 1,667 and 3,334.
        let bad_json = |i: usize| match i {
            0 | 1667 | 3334 => Some("".to_string()),
            1666 => Some("{".to_string()),
            1668 | 4999 => Some(r#"{"id": "x"}"#.to_string()),
            3333 => Some(r#"{"id": 1} {"id": 2}"#.to_string()),
            _ => None,
        };
        let json: Vec<String> = (0..n)
            .map(|i| bad_json(i).unwrap_or_else(|| format!(r#"{{"id": {i}, "name": "n{i}"}}"#)))
            .collect();
        let bad_csv = |i: usize| match i {
            0 | 1667 => Some("".to_string()),
            1666 | 3334 => Some("x,y".to_string()),
            3333 | 4999 => Some("1,a,too many".to_string()),
            _ => None,
        };
        let csv: Vec<String> = (0..n)
            .map(|i| bad_csv(i).unwrap_or_else(|| format!("{i},n{i}")))
            .collect();
        let json_bad = (0..n).filter(|&i| bad_json(i).is_some()).count();
        let csv_bad = (0..n).filter(|&i| bad_csv(i).is_some()).count();
        for (format, lines, bad) in [
            (Format::Json, &json, json_bad),
            (Format::Csv { header: false }, &csv, csv_bad),
        ] {
            let strs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let r = records(&strs);
            let (one, parallel) = one_and_parallel(&format, &r, 3);
            assert_eq!(one.batch.num_rows(), n - bad, "{format:?}: {:?}", one.bad);
            assert_eq!(parallel.batch, one.batch, "{format:?}");
            assert_eq!(parallel.bad, one.bad, "{format:?}");
        }
    }

    #[test]
    fn a_small_batch_is_decoded_by_one_decoder() {
        let r = records(&[r#"{"id": 1}"#, r#"{"id": 2}"#]);
        let (one, parallel) = one_and_parallel(&Format::Json, &r, 4);
        assert_eq!(ids(&parallel.batch), [1, 2]);
        assert_eq!(parallel.batch, one.batch);
    }

    #[test]
    fn a_slice_of_records_keeps_their_bytes() {
        let r = records(&["a", "", "bc", "d"]);
        let s = r.slice(1..3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(0), b"");
        assert_eq!(s.get(1), b"bc");
        assert_eq!(s.span(0..2), b"\nbc\n");
        assert!(r.slice(2..2).is_empty());
    }

    #[test]
    fn records_keep_their_bytes() {
        let r = records(&["a", "", "bc\n"]);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(0), b"a");
        assert_eq!(r.get(1), b"");
        assert_eq!(r.get(2), b"bc\n");
        assert_eq!(r.span(0..2), b"a\n\n");
    }

    #[test]
    fn json_bad_records_are_isolated() {
        let r = records(&[
            r#"{"id": 1, "name": "a"}"#,
            r#"{"id": "x"}"#,
            r#"{"id": 3}"#,
            r#"{"id": 4} {"id": 5}"#,
            r#"{"id": 6, "name": "unterminated"#,
            r#"{"id": 7}"#,
            "",
        ]);
        let decoded = decode_json(&r);
        assert_eq!(ids(&decoded.batch), [1, 3, 7]);
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 3, 4, 6]);
        assert!(decoded.bad[1].1.contains("2 values"), "{:?}", decoded.bad);
        assert_eq!(decoded.kept(r.len()), Some(vec![0, 2, 5]));
    }

    /// Found by the `json_records` fuzz target: an empty record and one
    /// holding two values, decoded together, gave as many rows as records,
    /// so neither was bad and the second value counted as the empty
    /// record's row.
    #[test]
    fn an_empty_record_cannot_hide_a_record_of_two_values() {
        let r = records(&[
            r#"{"id": 7}"#,
            " ",
            r#"{"id": 8} {"id": 9}"#,
            r#"{"id": 10}"#,
        ]);
        let decoded = decode_json(&r);
        assert_eq!(ids(&decoded.batch), [7, 10]);
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 2]);
        assert!(decoded.bad[0].1.contains("empty"), "{:?}", decoded.bad);
        assert!(decoded.bad[1].1.contains("2 values"), "{:?}", decoded.bad);
    }

    /// Found by the `json_records` fuzz target: JSON allows a newline
    /// inside an object, so `{` and `"id": 8} {"id": 9}` decoded together
    /// gave one row each, though neither is a record alone.
    #[test]
    fn a_value_cannot_run_on_into_the_next_record() {
        let r = records(&[
            r#"{"id": 1}"#,
            "{",
            r#""id": 8} {"id": 9}"#,
            r#"{"id": 10}"#,
        ]);
        let decoded = decode_json(&r);
        assert_eq!(ids(&decoded.batch), [1, 10]);
        let bad: Vec<usize> = decoded.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, [1, 2]);
    }

    /// One JSON decoder over successive batches decodes each as a fresh
    /// decoder would: after a batch whose bad records leave part of a value
    /// in it, and across a batch larger than it was built for.
    #[test]
    fn a_json_decoder_reused_across_batches_decodes_each_afresh() {
        let mut decoder = Format::Json
            .decoder(schema(), RecordLimits::default())
            .unwrap();
        let many: Vec<String> = (0..3000).map(|i| format!(r#"{{"id": {i}}}"#)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let batches = [
            records(&[
                r#"{"id": 1}"#,
                "{",
                r#""id": 8} {"id": 9}"#,
                r#"{"id": 10}"#,
            ]),
            records(&["{"]),
            records(&[r#"{"id": 5}"#, r#"{"id": 6, "name": "x"}"#]),
            records(&many),
            records(&[r#""id": 7}"#, r#"{"id": 11}"#]),
        ];
        let mut all = Vec::new();
        for r in &batches {
            let reused = decoder.decode(r).unwrap();
            let fresh = decode_json(r);
            let bad = |d: &Decoded| d.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>();
            assert_eq!(ids(&reused.batch), ids(&fresh.batch));
            assert_eq!(bad(&reused), bad(&fresh));
            all.push((ids(&reused.batch), bad(&reused)));
        }
        assert_eq!(all[0], (vec![1, 10], vec![1, 2]));
        assert_eq!(all[1], (vec![], vec![0]));
        assert_eq!(all[2], (vec![5, 6], vec![]));
        assert_eq!(all[3].0, (0..3000).collect::<Vec<i64>>());
        assert_eq!(all[4], (vec![11], vec![0]));
    }

    #[test]
    fn csv_decodes_lines() {
        let r = records(&["1,a", "2,", "x,b", "4,\"d\ne\""]);
        let format = Format::Csv { header: false };
        let decoded = format
            .decoder(schema(), RecordLimits::default())
            .unwrap()
            .decode(&r)
            .unwrap();
        assert_eq!(ids(&decoded.batch), [1, 2, 4]);
        assert_eq!(decoded.bad.len(), 1);
        assert_eq!(decoded.batch.column(1).as_string::<i32>().value(2), "d\ne");
    }

    #[test]
    fn raw_text_rejects_invalid_utf8() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        let mut r = records(&["hello"]);
        r.push(&[0xff, 0xfe]);
        let decoded = Format::Raw
            .decoder(schema, RecordLimits::default())
            .unwrap()
            .decode(&r)
            .unwrap();
        assert_eq!(decoded.batch.num_rows(), 1);
        assert_eq!(decoded.bad[0].0, 1);
        let err = Format::Raw
            .decoder(self::schema(), RecordLimits::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("one value column"), "{err}");
    }

    #[test]
    fn json_and_csv_round_trip() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("line\nbreak, \"q\""), None])),
            ],
        )
        .unwrap();
        for format in [Format::Json, Format::Csv { header: false }] {
            let mut out = Records::default();
            format
                .encoder(schema(), "t")
                .unwrap()
                .encode(&batch, &mut out)
                .unwrap();
            assert_eq!(out.len(), 2, "{format:?}");
            let decoded = format
                .decoder(schema(), RecordLimits::default())
                .unwrap()
                .decode(&out)
                .unwrap();
            assert!(decoded.bad.is_empty(), "{:?}", decoded.bad);
            assert_eq!(decoded.batch, batch, "{format:?}");
        }
    }

    /// A bid-like schema: `id` NOT NULL, the rest nullable.
    fn wide_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Int64, true),
            Field::new("url", DataType::Utf8, true),
            Field::new("extra", DataType::Utf8, true),
        ]))
    }

    fn decode_reading(format: Format, records: &Records, read: &[&str]) -> Decoded {
        let read: BTreeSet<String> = read.iter().map(|c| c.to_string()).collect();
        format
            .decoder_reading(wide_schema(), RecordLimits::default(), Some(&read))
            .unwrap()
            .decode(records)
            .unwrap()
    }

    #[test]
    fn a_reader_of_some_columns_gets_nulls_in_the_others() {
        let json = records(&[
            r#"{"id": 1, "price": 10, "url": "http://a", "extra": "x"}"#,
            r#"{"id": 2, "price": 20, "url": "http://b", "extra": "y"}"#,
        ]);
        let csv = records(&["1,10,http://a,x", "2,20,http://b,y"]);
        for (format, records) in [(Format::Json, json), (Format::Csv { header: false }, csv)] {
            // `id` is NOT NULL, so it is decoded though not asked for.
            let decoded = decode_reading(format.clone(), &records, &["price"]);
            assert!(decoded.bad.is_empty(), "{format:?}: {:?}", decoded.bad);
            let batch = decoded.batch;
            assert_eq!(batch.schema(), wide_schema(), "{format:?}");
            assert_eq!(ids(&batch), vec![1, 2], "{format:?}");
            let prices = batch.column(1).as_primitive::<Int64Type>();
            assert_eq!(prices.values().to_vec(), vec![10, 20], "{format:?}");
            assert_eq!(batch.column(2).null_count(), 2, "{format:?}");
            assert_eq!(batch.column(3).null_count(), 2, "{format:?}");
        }
    }

    #[test]
    fn a_bad_value_in_a_column_not_read_does_not_make_the_record_bad() {
        let json = records(&[
            r#"{"id": 1, "price": 10, "url": {"not": "text"}, "extra": "x"}"#,
            r#"{"id": 2, "price": "twenty"}"#,
            r#"{"id": 3, "price": 30, "url": [1, 2]}"#,
        ]);
        let decoded = decode_reading(Format::Json, &json, &["price"]);
        // Only record 2's bad value is in a column read.
        assert_eq!(
            decoded.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(ids(&decoded.batch), vec![1, 3]);
        // Every column read, nothing skipped: the same as no projection.
        let all = decode_reading(Format::Json, &json, &["id", "price", "url", "extra"]);
        assert_eq!(all.bad.len(), 3, "{:?}", all.bad);
        // A record that is not JSON at all stays bad whatever is read.
        let broken = records(&[r#"{"id": 1, "url": "#, r#"{"id": 2}"#]);
        let decoded = decode_reading(Format::Json, &broken, &["price"]);
        assert_eq!(decoded.bad.len(), 1, "{:?}", decoded.bad);
        assert_eq!(ids(&decoded.batch), vec![2]);
    }
}
