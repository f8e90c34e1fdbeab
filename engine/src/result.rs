use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// What a statement returns.
#[derive(Debug, Clone)]
pub enum StatementResult {
    /// A statement that changes something; the text says what (`CREATE STREAM`).
    Done(String),
    /// Rows, from a query, `SHOW` or `DESCRIBE`.
    Rows {
        /// The rows' schema (also when there are no rows).
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
}
