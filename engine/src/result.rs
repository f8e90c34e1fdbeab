use std::fmt;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::{Error, Result};

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

/// What a statement returns, its rows streamed as they are computed.
pub enum StatementOutput {
    /// A statement that changes something; the text says what (`CREATE STREAM`).
    Done(String),
    /// Rows: a query's, as it runs, or a subscription's, as they are
    /// produced (a subscription's stream ends only when its object is
    /// dropped or the engine stops).
    Rows(RowStream),
}

impl fmt::Debug for StatementOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementOutput::Done(outcome) => f.debug_tuple("Done").field(outcome).finish(),
            StatementOutput::Rows(rows) => f.debug_tuple("Rows").field(&rows.schema).finish(),
        }
    }
}

/// A stream of result batches with their schema.
pub struct RowStream {
    schema: SchemaRef,
    batches: BoxStream<'static, Result<RecordBatch>>,
}

impl RowStream {
    /// A stream of `batches`, each with `schema`.
    pub(crate) fn new(
        schema: SchemaRef,
        batches: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    ) -> Self {
        RowStream {
            schema,
            batches: batches.boxed(),
        }
    }

    /// Rows already computed.
    pub(crate) fn ready(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        RowStream::new(schema, futures::stream::iter(batches.into_iter().map(Ok)))
    }

    /// The rows of a DataFusion plan as it executes.
    pub(crate) fn from_datafusion(stream: SendableRecordBatchStream) -> Self {
        RowStream::new(stream.schema(), stream.map_err(Error::from))
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The batches, in order.
    pub fn into_stream(self) -> BoxStream<'static, Result<RecordBatch>> {
        self.batches
    }

    /// Reads every batch.
    pub async fn collect(self) -> Result<StatementResult> {
        let schema = self.schema;
        let batches = self.batches.try_collect().await?;
        Ok(StatementResult::Rows { schema, batches })
    }
}

impl From<StatementResult> for StatementOutput {
    fn from(result: StatementResult) -> Self {
        match result {
            StatementResult::Done(outcome) => StatementOutput::Done(outcome),
            StatementResult::Rows { schema, batches } => {
                StatementOutput::Rows(RowStream::ready(schema, batches))
            }
        }
    }
}
