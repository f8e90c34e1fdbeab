//! The `file` connector: JSON lines or CSV from a file or a directory of
//! files (read in name order). Bounded; the way recorded data is replayed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use fibers_sql::Options;

use super::{BadData, Poll, Source, take_bad_data};
use crate::format::{Format, RecordDecoder, RecordLimits, Records};
use crate::{Error, Result};

pub(crate) const OPTIONS: &[&str] = &[
    "path",
    "format",
    "header",
    "bad_data",
    "max_record_size",
    "max_nesting_depth",
    "decode_threads",
];

/// Settings of a `file` stream.
#[derive(Debug, Clone)]
pub(crate) struct FileConfig {
    /// The path as the user wrote it (used in messages).
    pub path_written: String,
    /// The path resolved against the data dir.
    pub path: PathBuf,
    pub format: Format,
    pub bad_data: BadData,
    pub limits: RecordLimits,
}

impl FileConfig {
    pub fn from_options(options: &mut Options, data_dir: &Path) -> Result<Self> {
        let path_written = options.take_required("path", "connector 'file'")?;
        let format = Format::from_options(options, "connector 'file'", &["json", "csv"])?;
        let bad_data = take_bad_data(options, false)?;
        let limits = RecordLimits::from_options(options)?;
        Ok(FileConfig {
            path: data_dir.join(&path_written),
            path_written,
            format,
            bad_data,
            limits,
        })
    }

    pub fn open(&self, stream: &str, schema: SchemaRef, batch_size: usize) -> Result<FileSource> {
        let files = list_files(&self.path).map_err(|e| Error::Source {
            stream: stream.to_string(),
            message: format!("cannot read '{}': {e}", self.path_written),
        })?;
        Ok(FileSource {
            stream: stream.to_string(),
            config: self.clone(),
            decoder: self.format.decoder(Arc::clone(&schema), self.limits)?,
            schema,
            read: None,
            file_decoder: None,
            batch_size: batch_size.max(1),
            files: files.into_iter(),
            current: None,
            bad_rows: 0,
            files_done: 0,
            line: 0,
            skip_lines: 0,
            failure: None,
            buffers: ReadBuffers::default(),
        })
    }
}

/// A file, or a directory's regular files in name order (hidden files, such
/// as editors' temporary files, are skipped).
fn list_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        File::open(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

struct OpenFile {
    /// The name shown in errors: the written path, plus the file name when
    /// the path is a directory.
    label: String,
    reader: BufReader<File>,
    /// 1-based number of the last line read.
    line: u64,
}

/// A decoder in a CSV file's column order, and the declared order's
/// indices into its rows.
type Reordered = (Box<dyn RecordDecoder>, Vec<usize>);

/// Reads a stream's file(s), decoding straight into Arrow batches.
pub(crate) struct FileSource {
    stream: String,
    config: FileConfig,
    schema: SchemaRef,
    /// The columns its reader needs decoded, when not all.
    read: Option<Arc<BTreeSet<String>>>,
    decoder: Box<dyn RecordDecoder>,
    /// For a CSV file whose header orders the columns otherwise than the
    /// stream declares them: a decoder in the file's order, and the
    /// declared order's indices into it.
    file_decoder: Option<Reordered>,
    batch_size: usize,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<OpenFile>,
    bad_rows: u64,
    /// Files read to their end, and lines of the next one whose rows were
    /// returned: the source's position.
    files_done: u64,
    line: u64,
    /// Lines of the next file opened that a resumed source skips.
    skip_lines: u64,
    /// The error of a bad record under `bad_data = 'fail'`, returned once
    /// the rows before it are.
    failure: Option<Error>,
    buffers: ReadBuffers,
}

/// What a poll reads lines into: reused, so that a poll does not allocate
/// (and the allocator return) a batch's worth of bytes each time.
#[derive(Default)]
struct ReadBuffers {
    line: Vec<u8>,
    records: Records,
    /// The line number of each record.
    lines: Vec<u64>,
}

impl FileSource {
    /// The source for a reader that needs only the columns in `read`
    /// (all when `None`): the others are not decoded (NULL).
    pub fn reading(mut self, read: Option<Arc<BTreeSet<String>>>) -> Result<Self> {
        self.decoder = self.config.format.decoder_reading(
            Arc::clone(&self.schema),
            self.config.limits,
            read.as_deref(),
        )?;
        self.read = read;
        Ok(self)
    }

    fn error(&self, message: String) -> Error {
        Error::Source {
            stream: self.stream.clone(),
            message,
        }
    }

    /// The error of a record (or header) that does not decode.
    fn bad_record(&self, message: String) -> Error {
        Error::BadRecord {
            stream: self.stream.clone(),
            message,
        }
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(path) = self.files.next() else {
            return Ok(false);
        };
        let label = if self.config.path.is_dir() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{}/{name}", self.config.path_written.trim_end_matches('/'))
        } else {
            self.config.path_written.clone()
        };
        let file =
            File::open(&path).map_err(|e| self.error(format!("cannot read '{label}': {e}")))?;
        let mut open = OpenFile {
            label,
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
        };
        self.file_decoder = None;
        if matches!(self.config.format, Format::Csv { header: true }) {
            let mut header = Vec::new();
            read_line(&mut open, &mut header, self.config.limits.max_record_bytes)
                .map_err(|e| self.error(e))?;
            self.file_decoder = self
                .header_order(&open.label, &header)
                .map_err(|e| self.bad_record(e))?;
        }
        let skip = std::mem::take(&mut self.skip_lines);
        let mut skipped = Vec::new();
        while open.line < skip {
            skipped.clear();
            if !read_line(&mut open, &mut skipped, self.config.limits.max_record_bytes)
                .map_err(|e| self.error(e))?
            {
                break;
            }
        }
        self.current = Some(open);
        Ok(true)
    }

    /// Matches a CSV header to the declared columns by name. Returns a
    /// decoder in the file's column order when it differs from the
    /// declared one; fails naming a column the header lacks or one the
    /// stream does not declare.
    fn header_order(
        &self,
        label: &str,
        header: &[u8],
    ) -> std::result::Result<Option<Reordered>, String> {
        let text = String::from_utf8_lossy(header);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return Ok(None);
        }
        let (named, _) = arrow_csv::reader::Format::default()
            .with_header(true)
            .infer_schema(std::io::Cursor::new(line.as_bytes()), Some(0))
            .map_err(|e| format!("{label} line 1: cannot read the CSV header: {e}"))?;
        let declared = self.schema.fields();
        let names: Vec<&str> = named.fields().iter().map(|f| f.name().as_str()).collect();
        let position = |column: &str| {
            names
                .iter()
                .position(|n| *n == column)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(column)))
        };
        let mut order = Vec::with_capacity(declared.len());
        for field in declared.iter() {
            match position(field.name()) {
                Some(i) => order.push(i),
                None => {
                    return Err(format!(
                        "{label} line 1: the CSV header ({}) has no column '{}'; with header = \
                         'true', columns are matched by name",
                        names.join(", "),
                        field.name()
                    ));
                }
            }
        }
        if let Some(extra) = names
            .iter()
            .enumerate()
            .find(|(i, _)| !order.contains(i))
            .map(|(_, n)| n)
        {
            return Err(format!(
                "{label} line 1: the CSV header names column '{extra}', which the stream does \
                 not declare (declared: {})",
                declared
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if order.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(None);
        }
        // The file's order: the declared field at each header position.
        let mut in_file = vec![0; order.len()];
        for (declared_index, &file_index) in order.iter().enumerate() {
            in_file[file_index] = declared_index;
        }
        let file_schema = Arc::new(arrow::datatypes::Schema::new(
            in_file
                .iter()
                .map(|&d| declared[d].as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        let decoder = self
            .config
            .format
            .decoder_reading(file_schema, self.config.limits, self.read.as_deref())
            .map_err(|e| e.to_string())?;
        Ok(Some((decoder, order)))
    }

    /// Decodes `records` (read from `lines` of `label`); a bad record
    /// fails the job or is counted, as `bad_data` says.
    ///
    /// Under `'fail'`, the rows before the first bad record are returned
    /// and the error waits for the next poll, so they are checkpointed and
    /// a restart resumes at the bad line. Returns the rows and, then, the
    /// number of the last line they cover.
    fn decode(
        &mut self,
        label: &str,
        records: &Records,
        lines: &[u64],
    ) -> Result<(Option<RecordBatch>, Option<u64>)> {
        let decoded = match &mut self.file_decoder {
            Some((decoder, order)) => {
                let mut decoded = decoder.decode(records)?;
                decoded.batch = decoded.batch.project(order)?;
                decoded
            }
            None => self.decoder.decode(records)?,
        };
        let mut batch = decoded.batch;
        let mut through = None;
        if let Some((i, e)) = decoded.bad.first() {
            match self.config.bad_data {
                BadData::Drop | BadData::DeadLetter => self.bad_rows += decoded.bad.len() as u64,
                BadData::Fail => {
                    // Every record before the first bad one decoded.
                    batch = batch.slice(0, *i);
                    through = Some(lines[*i] - 1);
                    self.failure = Some(self.bad_record(format!(
                        "{label} line {}: {e} (set bad_data = 'drop' to skip malformed records)",
                        lines[*i]
                    )));
                }
            }
        }
        Ok(((batch.num_rows() > 0).then_some(batch), through))
    }
}

impl Source for FileSource {
    fn poll(&mut self) -> Result<Poll> {
        loop {
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            if self.current.is_none() && !self.open_next()? {
                return Ok(Poll::End);
            }
            let Some(mut open) = self.current.take() else {
                return Ok(Poll::End);
            };
            // The buffers of the previous poll, kept for their capacity.
            let ReadBuffers {
                mut line,
                mut records,
                mut lines,
            } = std::mem::take(&mut self.buffers);
            records.clear();
            lines.clear();
            let mut eof = false;
            while records.len() < self.batch_size {
                line.clear();
                match read_line(&mut open, &mut line, self.config.limits.max_record_bytes) {
                    Err(e) => return Err(self.error(e)),
                    Ok(false) => {
                        eof = true;
                        break;
                    }
                    Ok(true) if line.iter().all(u8::is_ascii_whitespace) => {}
                    Ok(true) => {
                        records.push(line.strip_suffix(b"\n").unwrap_or(&line));
                        lines.push(open.line);
                    }
                }
            }
            let label = open.label.clone();
            let line_buffer = line;
            let line = open.line;
            if !eof {
                self.current = Some(open);
            }
            let (decoded, through) = if records.is_empty() {
                (None, None)
            } else {
                self.decode(&label, &records, &lines)?
            };
            self.buffers = ReadBuffers {
                line: line_buffer,
                records,
                lines,
            };
            // Only now are the lines read past: a failed decode leaves
            // the position before them, a bad record under 'fail' just
            // before it.
            if let Some(through) = through {
                self.line = through;
            } else if eof {
                self.files_done += 1;
                self.line = 0;
            } else {
                self.line = line;
            }
            if let Some(batch) = decoded {
                return Ok(Poll::Batch(0, batch));
            }
        }
    }

    fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "files_done": self.files_done, "line": self.line }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let field = |name: &str| {
            position
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| super::bad_position(&self.stream, position, format!("no '{name}'")))
        };
        let (files_done, line) = (field("files_done")?, field("line")?);
        for _ in 0..files_done {
            if self.files.next().is_none() {
                return Err(super::bad_position(
                    &self.stream,
                    position,
                    "fewer files than the checkpoint had read",
                ));
            }
        }
        self.files_done = files_done;
        self.line = line;
        self.skip_lines = line;
        Ok(())
    }
}

/// Appends the next line (with its newline) to `buf`; false at end of file.
/// A line longer than `max` bytes is cut to its first `max + 1`, and the
/// rest skipped, so an endless line never fills memory: the decoder's
/// limits then take it for the oversized record it is.
fn read_line(
    open: &mut OpenFile,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::result::Result<bool, String> {
    let error = |e: std::io::Error| format!("cannot read '{}': {e}", open.label);
    let start = buf.len();
    let mut read_any = false;
    loop {
        let available = match open.reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error(e)),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (taken, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = (max + 1).saturating_sub(buf.len() - start);
        buf.extend_from_slice(&available[..taken.min(room)]);
        open.reader.consume(taken);
        if done {
            break;
        }
    }
    if !read_any {
        return Ok(false);
    }
    open.line += 1;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn source(
        contents: &str,
        format: Format,
        bad_data: BadData,
        batch_size: usize,
    ) -> (tempfile::TempDir, FileSource) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), contents).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let config = FileConfig {
            path_written: "in.txt".into(),
            path: dir.path().join("in.txt"),
            format,
            bad_data,
            limits: RecordLimits::default(),
        };
        let source = config.open("s", schema, batch_size).unwrap();
        (dir, source)
    }

    fn ids(source: &mut FileSource) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        loop {
            match source.poll()? {
                Poll::Batch(_, b) => out.extend(
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                ),
                Poll::End => return Ok(out),
                Poll::Idle(_) => unreachable!("files never idle"),
            }
        }
    }

    #[test]
    fn a_source_resumed_from_its_position_reads_on_exactly() {
        let text: String = (1..=10).map(|i| format!("{{\"id\": {i}}}\n")).collect();
        let (_d, mut first) = source(&text, Format::Json, BadData::Fail, 3);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let Poll::Batch(_, b) = first.poll().unwrap() else {
                panic!("expected rows")
            };
            seen.extend(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        let position = first.position().unwrap();
        let (_d2, mut resumed) = source(&text, Format::Json, BadData::Fail, 3);
        resumed.seek(&position).unwrap();
        seen.extend(ids(&mut resumed).unwrap());
        assert_eq!(seen, (1..=10).collect::<Vec<i64>>());
        let end = resumed.position().unwrap();
        assert_eq!(end["files_done"], 1);
    }

    #[test]
    fn json_lines_in_batches() {
        let text = "{\"id\": 1, \"name\": \"a\"}\n\n{\"id\": 2}\n{\"id\": 3, \"name\": \"c\"}";
        let (_d, mut s) = source(text, Format::Json, BadData::Fail, 2);
        assert_eq!(ids(&mut s).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn malformed_json_fails_naming_the_line() {
        let text = "{\"id\": 1}\n{\"id\": 2}\n{\"id\": oops}\n{\"id\": 4}\n";
        let (_d, mut s) = source(text, Format::Json, BadData::Fail, 100);
        let err = ids(&mut s).unwrap_err().to_string();
        assert!(err.starts_with("stream 's': in.txt line 3: "), "{err}");
    }

    #[test]
    fn dropped_records_do_not_take_neighbours_with_them() {
        let text =
            "{\"id\": 1}\n{\"id\": \"x\"}\n{\"id\": 3}\n{\"name\": \"no id\"}\n{\"id\": 5}\n";
        let (_d, mut s) = source(text, Format::Json, BadData::Drop, 100);
        assert_eq!(ids(&mut s).unwrap(), [1, 3, 5]);
        assert_eq!(s.bad_rows(), 2);
    }

    #[test]
    fn csv_with_header_and_bad_row() {
        let text = "id,name\n1,a\nnope,b\n3,\n";
        let (_d, mut s) = source(text, Format::Csv { header: true }, BadData::Fail, 100);
        let err = ids(&mut s).unwrap_err().to_string();
        assert!(err.contains("in.txt line 3"), "{err}");
        let (_d, mut s) = source(text, Format::Csv { header: true }, BadData::Drop, 100);
        assert_eq!(ids(&mut s).unwrap(), [1, 3]);
    }

    #[test]
    fn under_fail_the_rows_before_a_bad_record_are_kept() {
        let text = "{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": oops}\n{\"id\": 5}\n";
        let (_d, mut s) = source(text, Format::Json, BadData::Fail, 100);
        let Poll::Batch(_, rows) = s.poll().unwrap() else {
            panic!("expected the rows before the bad line")
        };
        assert_eq!(rows.num_rows(), 2);
        // The position is just before the bad line, so a restart stops there
        // again instead of skipping it.
        let position = s.position().unwrap();
        assert_eq!(position["line"], 3, "{position}");
        let Err(err) = s.poll() else {
            panic!("expected the bad line's error")
        };
        assert!(err.to_string().contains("in.txt line 4"), "{err}");
        let (_d2, mut resumed) = source(text, Format::Json, BadData::Fail, 100);
        resumed.seek(&position).unwrap();
        let err = ids(&mut resumed).unwrap_err().to_string();
        assert!(err.contains("in.txt line 4"), "{err}");
    }

    #[test]
    fn a_record_nested_too_deep_is_a_bad_record() {
        let deep = format!(
            "{{\"id\": 2, \"name\": {}{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let text = format!("{{\"id\": 1}}\n{deep}\n{{\"id\": 3}}\n");
        let (_d, mut s) = source(&text, Format::Json, BadData::Drop, 100);
        assert_eq!(ids(&mut s).unwrap(), [1, 3]);
        assert_eq!(s.bad_rows(), 1);
        let (_d, mut s) = source(&text, Format::Json, BadData::Fail, 100);
        let err = ids(&mut s).unwrap_err().to_string();
        assert!(
            err.contains("in.txt line 2") && err.contains("max_nesting_depth"),
            "{err}"
        );
    }

    #[test]
    fn a_csv_header_matches_columns_by_name() {
        let text = "name,id\na,1\nb,2\n";
        let (_d, mut s) = source(text, Format::Csv { header: true }, BadData::Fail, 100);
        let Poll::Batch(_, rows) = s.poll().unwrap() else {
            panic!("expected rows")
        };
        assert_eq!(rows.schema().field(0).name(), "id");
        assert_eq!(rows.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
        assert_eq!(rows.column(1).as_string::<i32>().value(1), "b");

        let (_d, mut s) = source(
            "id,name,extra\n1,a,x\n",
            Format::Csv { header: true },
            BadData::Fail,
            100,
        );
        let Err(e) = s.poll() else {
            panic!("an unknown column")
        };
        assert!(e.to_string().contains("names column 'extra'"), "{e}");
        let (_d, mut s) = source("id\n1\n", Format::Csv { header: true }, BadData::Fail, 100);
        let Err(e) = s.poll() else {
            panic!("a missing column")
        };
        assert!(e.to_string().contains("has no column 'name'"), "{e}");
    }
}
