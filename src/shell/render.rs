//! Printing result rows as they arrive: psql-like aligned tables, expanded
//! records (`\x`), CSV and JSON lines.
//!
//! Rows are printed batch by batch, never collected whole. An aligned
//! table needs its column widths before its first line, so it holds back
//! up to [`TABLE_SIZING_ROWS`] rows to size the columns, prints them, and
//! prints every later row at once with those widths: a later value wider
//! than its column widens only its own line. A live result (`SUBSCRIBE`)
//! is sized by its first batch instead, so rows appear as they come. NULL
//! is printed as an empty cell; in tables and expanded records, line
//! breaks and tabs inside a value are shown as `\n`, `\r` and `\t`, so
//! every row stays on one line. Lines carry no trailing blanks.

use std::io::Write;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use unicode_width::UnicodeWidthStr;

use super::error::Result;
use crate::output::Format;

/// Rows an aligned table holds back to size its columns before printing.
pub const TABLE_SIZING_ROWS: usize = 1000;

/// How results are shown: the shell's `\format` and `\x` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayOptions {
    /// Table, CSV or JSON lines.
    pub format: Format,
    /// With the table format, one block per row with a line per column.
    pub expanded: bool,
}

/// Prints the rows of one result, batch by batch, then its footer.
pub struct RowPrinter {
    layout: Layout,
    rows: usize,
    /// Rows arrive over time (`SUBSCRIBE`): print each batch at once.
    live: bool,
}

enum Layout {
    Table(Table),
    Expanded {
        names: Vec<String>,
    },
    Csv {
        schema: SchemaRef,
        header_written: bool,
    },
    Json,
}

impl RowPrinter {
    /// A printer for rows of `schema`; `live` when rows trickle in and
    /// each batch must show at once.
    pub fn new(display: DisplayOptions, schema: SchemaRef, live: bool) -> Self {
        let layout = match (display.format, display.expanded) {
            (Format::Table, false) => {
                let headers = schema.fields().iter().map(|f| f.name().clone()).collect();
                let right_align = schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().is_numeric())
                    .collect();
                Layout::Table(Table::new(headers, right_align))
            }
            (Format::Table, true) => Layout::Expanded {
                names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            },
            (Format::Csv, _) => Layout::Csv {
                schema,
                header_written: false,
            },
            (Format::Json, _) => Layout::Json,
        };
        RowPrinter {
            layout,
            rows: 0,
            live,
        }
    }

    /// Prints (or, for a table still being sized, holds) `batch`'s rows.
    pub fn print(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<()> {
        match &mut self.layout {
            Layout::Table(table) => {
                for row in format_rows(batch)? {
                    table.push_row(out, row)?;
                }
                if self.live {
                    table.flush(out)?;
                }
            }
            Layout::Expanded { names } => {
                for (i, row) in format_rows(batch)?.into_iter().enumerate() {
                    write_record(out, self.rows + i + 1, names, &row)?;
                }
            }
            Layout::Csv { header_written, .. } => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(&mut *out);
                writer.write(batch)?;
                *header_written = true;
            }
            Layout::Json => {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut *out);
                writer.write(batch)?;
                writer.finish()?;
            }
        }
        self.rows += batch.num_rows();
        out.flush()?;
        Ok(())
    }

    /// Prints what is still held back and the footer: `(N rows)` after a
    /// table; nothing after CSV (whose header is printed even for no rows)
    /// or JSON lines.
    pub fn finish(self, out: &mut dyn Write) -> Result<()> {
        match self.layout {
            Layout::Table(mut table) => {
                table.finish(out)?;
                write_row_count(out, self.rows)?;
            }
            Layout::Expanded { .. } => {
                if self.rows == 0 {
                    write_row_count(out, 0)?;
                } else {
                    writeln!(out)?;
                }
            }
            Layout::Csv {
                schema,
                header_written,
            } => {
                if !header_written {
                    arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut *out)
                        .write(&RecordBatch::new_empty(schema))?;
                }
            }
            Layout::Json => {}
        }
        out.flush()?;
        Ok(())
    }
}

/// psql's footer: `(1 row)`, `(3 rows)`, then a blank line.
pub fn write_row_count(out: &mut dyn Write, rows: usize) -> Result<()> {
    let plural = if rows == 1 { "" } else { "s" };
    writeln!(out, "({rows} row{plural})")?;
    writeln!(out)?;
    Ok(())
}

/// Every value of `batch` as display text, row by row.
fn format_rows(batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::new().with_null("");
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref() as &dyn Array, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let values = formatters
            .iter()
            .map(|formatter| Ok(escape_controls(&formatter.value(row).try_to_string()?)))
            .collect::<Result<Vec<_>>>()?;
        rows.push(values);
    }
    Ok(rows)
}

/// `value` with line breaks and tabs spelled out, so it fits on one line.
fn escape_controls(value: &str) -> String {
    if !value.contains(['\n', '\r', '\t']) {
        return value.to_string();
    }
    value
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// One expanded record: a `-[ RECORD n ]` line, then `column | value`
/// lines, the names padded to the widest (psql's `\x` layout, with the
/// rule as wide as this record's widest value).
fn write_record(
    out: &mut dyn Write,
    number: usize,
    names: &[String],
    values: &[String],
) -> Result<()> {
    let name_width = names.iter().map(|n| width(n)).max().unwrap_or(0);
    let value_width = values.iter().map(|v| width(v)).max().unwrap_or(0);
    let mut rule = format!("-[ RECORD {number} ]");
    let label = rule.chars().count();
    let total = name_width + 3 + value_width;
    for position in label..total {
        rule.push(if position == name_width + 1 { '+' } else { '-' });
    }
    writeln!(out, "{rule}")?;
    for (name, value) in names.iter().zip(values) {
        let line = format!("{name}{} | {value}", pad(name_width, name));
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn pad(target: usize, text: &str) -> String {
    " ".repeat(target.saturating_sub(width(text)))
}

/// A psql-style aligned table, printed as rows arrive: see the module
/// documentation for how its columns are sized.
pub struct Table {
    title: Option<String>,
    headers: Vec<String>,
    right_align: Vec<bool>,
    sizing_rows: usize,
    widths: Option<Vec<usize>>,
    pending: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers; `right_align` marks numeric
    /// columns.
    pub fn new(headers: Vec<String>, right_align: Vec<bool>) -> Self {
        Table {
            title: None,
            headers,
            right_align,
            sizing_rows: TABLE_SIZING_ROWS,
            widths: None,
            pending: Vec::new(),
        }
    }

    /// Prints `title` centered above the header (psql's `\d` listings).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sizes the columns by the first `rows` rows instead of
    /// [`TABLE_SIZING_ROWS`].
    #[cfg(test)]
    pub fn with_sizing_rows(mut self, rows: usize) -> Self {
        self.sizing_rows = rows.max(1);
        self
    }

    /// Adds a row: held back while the columns are being sized, printed
    /// at once after that.
    pub fn push_row(&mut self, out: &mut dyn Write, row: Vec<String>) -> Result<()> {
        match &self.widths {
            Some(widths) => write_line(out, &row, widths, &self.right_align, false),
            None => {
                self.pending.push(row);
                if self.pending.len() >= self.sizing_rows {
                    self.flush(out)?;
                }
                Ok(())
            }
        }
    }

    /// Sizes the columns now if they are not yet, and prints the title,
    /// the header and every row held back.
    pub fn flush(&mut self, out: &mut dyn Write) -> Result<()> {
        let widths = match &self.widths {
            Some(widths) => widths.clone(),
            None => {
                let widths = self.size_columns();
                self.write_header(out, &widths)?;
                self.widths = Some(widths.clone());
                widths
            }
        };
        for row in self.pending.drain(..) {
            write_line(out, &row, &widths, &self.right_align, false)?;
        }
        Ok(())
    }

    /// Prints everything still held back (and the header, even for a
    /// table without rows).
    pub fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        self.flush(out)
    }

    fn size_columns(&self) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, header)| {
                self.pending
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|value| width(value))
                    .chain([width(header)])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn write_header(&self, out: &mut dyn Write, widths: &[usize]) -> Result<()> {
        if let Some(title) = &self.title {
            let table_width: usize =
                widths.iter().map(|w| w + 2).sum::<usize>() + widths.len().saturating_sub(1);
            let indent = " ".repeat(table_width.saturating_sub(width(title)) / 2);
            writeln!(out, "{indent}{title}")?;
        }
        write_line(out, &self.headers, widths, &self.right_align, true)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        writeln!(out, "{}", rule.join("+"))?;
        Ok(())
    }
}

/// One table line: cells padded to their column's width (headers
/// centered, numbers right-aligned), separated by ` | `.
fn write_line(
    out: &mut dyn Write,
    cells: &[String],
    widths: &[usize],
    right_align: &[bool],
    header: bool,
) -> Result<()> {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(if i == 0 { " " } else { " | " });
        let slack = widths
            .get(i)
            .copied()
            .unwrap_or(0)
            .saturating_sub(width(cell));
        let left = if header {
            slack / 2
        } else if right_align.get(i).copied().unwrap_or(false) {
            slack
        } else {
            0
        };
        line.push_str(&" ".repeat(left));
        line.push_str(cell);
        line.push_str(&" ".repeat(slack - left));
    }
    writeln!(out, "{}", line.trim_end())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("price", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn batch(symbols: &[&str], prices: &[Option<f64>], counts: &[Option<i64>]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(symbols.to_vec())),
                Arc::new(Float64Array::from(prices.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap()
    }

    fn render(display: DisplayOptions, live: bool, batches: &[RecordBatch]) -> String {
        let mut out = Vec::new();
        let mut printer = RowPrinter::new(display, schema(), live);
        for b in batches {
            printer.print(&mut out, b).unwrap();
        }
        printer.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const TABLE: DisplayOptions = DisplayOptions {
        format: Format::Table,
        expanded: false,
    };

    #[test]
    fn aligned_table_over_batches() {
        let batches = [
            batch(
                &["AAPL", "MSFT"],
                &[Some(10.5), None],
                &[Some(3), Some(1250)],
            ),
            batch(&["GOOG"], &[Some(100.0)], &[None]),
        ];
        assert_eq!(
            render(TABLE, false, &batches),
            " symbol | price |  n\n\
             --------+-------+------\n \
             AAPL   |  10.5 |    3\n \
             MSFT   |       | 1250\n \
             GOOG   | 100.0 |\n\
             (3 rows)\n\n"
        );
    }

    #[test]
    fn a_table_without_rows_has_a_header_and_a_count() {
        assert_eq!(
            render(TABLE, false, &[]),
            " symbol | price | n\n--------+-------+---\n(0 rows)\n\n"
        );
    }

    #[test]
    fn rows_after_the_sizing_rows_keep_the_widths() {
        let mut out = Vec::new();
        let mut table =
            Table::new(vec!["a".into(), "b".into()], vec![false, true]).with_sizing_rows(1);
        table
            .push_row(&mut out, vec!["x".into(), "1".into()])
            .unwrap();
        // Printed at once with the widths of the first row.
        table
            .push_row(&mut out, vec!["wider".into(), "22".into()])
            .unwrap();
        table.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " a | b\n---+---\n x | 1\n wider | 22\n"
        );
    }

    #[test]
    fn a_live_table_prints_each_batch_at_once() {
        let mut out = Vec::new();
        let mut printer = RowPrinter::new(TABLE, schema(), true);
        printer
            .print(&mut out, &batch(&["AAPL"], &[Some(1.0)], &[Some(7)]))
            .unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            " symbol | price | n\n--------+-------+---\n AAPL   |   1.0 | 7\n"
        );
        printer
            .print(&mut out, &batch(&["MSFT"], &[Some(2.0)], &[Some(8)]))
            .unwrap();
        printer.finish(&mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with(" AAPL   |   1.0 | 7\n MSFT   |   2.0 | 8\n(2 rows)\n\n")
        );
    }

    #[test]
    fn a_title_is_centered_over_the_table() {
        let mut out = Vec::new();
        let mut table = Table::new(vec!["Name".into(), "Type".into()], vec![false, false])
            .with_title("List of objects");
        table
            .push_row(&mut out, vec!["trades".into(), "stream".into()])
            .unwrap();
        table.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " List of objects\n  Name  |  Type\n--------+--------\n trades | stream\n"
        );
    }

    #[test]
    fn values_with_line_breaks_stay_on_one_line() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a\nb\tc"]))],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut printer = RowPrinter::new(TABLE, schema, false);
        printer.print(&mut out, &batch).unwrap();
        printer.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "    t\n---------\n a\\nb\\tc\n(1 row)\n\n"
        );
    }

    #[test]
    fn expanded_records() {
        let display = DisplayOptions {
            format: Format::Table,
            expanded: true,
        };
        let batches = [
            batch(&["AAPL"], &[Some(10.5)], &[None]),
            batch(&["MSFT"], &[Some(2.0)], &[Some(1250)]),
        ];
        assert_eq!(
            render(display, false, &batches),
            "-[ RECORD 1 ]\n\
             symbol | AAPL\n\
             price  | 10.5\n\
             n      |\n\
             -[ RECORD 2 ]\n\
             symbol | MSFT\n\
             price  | 2.0\n\
             n      | 1250\n\n"
        );
        assert_eq!(render(display, false, &[]), "(0 rows)\n\n");
    }

    #[test]
    fn the_record_rule_marks_the_column_separator_when_it_fits() {
        let mut out = Vec::new();
        let names = ["a_long_column_name".to_string()];
        write_record(&mut out, 12, &names, &["value".to_string()]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-[ RECORD 12 ]-----+------\na_long_column_name | value\n"
        );
    }

    #[test]
    fn csv_with_one_header() {
        let display = DisplayOptions {
            format: Format::Csv,
            expanded: false,
        };
        let batches = [
            batch(&["AAPL"], &[Some(10.5)], &[None]),
            batch(&["MS,FT"], &[None], &[Some(2)]),
        ];
        assert_eq!(
            render(display, false, &batches),
            "symbol,price,n\nAAPL,10.5,\n\"MS,FT\",,2\n"
        );
        assert_eq!(render(display, false, &[]), "symbol,price,n\n");
    }

    #[test]
    fn json_lines_with_explicit_nulls() {
        // \x changes nothing here: JSON has one layout.
        let display = DisplayOptions {
            format: Format::Json,
            expanded: true,
        };
        let batches = [batch(
            &["AAPL", "MSFT"],
            &[Some(10.5), None],
            &[None, Some(2)],
        )];
        assert_eq!(
            render(display, false, &batches),
            "{\"symbol\":\"AAPL\",\"price\":10.5,\"n\":null}\n\
             {\"symbol\":\"MSFT\",\"price\":null,\"n\":2}\n"
        );
        assert_eq!(render(display, false, &[]), "");
    }

    #[test]
    fn counts_rows_like_psql() {
        let mut out = Vec::new();
        write_row_count(&mut out, 1).unwrap();
        write_row_count(&mut out, 2).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "(1 row)\n\n(2 rows)\n\n");
    }
}
