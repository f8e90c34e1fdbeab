//! Running one continuous query in-process over batches the caller hands
//! it, without a data dir, source thread or archive: for benchmarks,
//! embedding and tests.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use fibers_sql::{Statement, plan_continuous_query};

use crate::connector::StreamDef;
use crate::engine::Objects;
use crate::operator::{self, Operator};
use crate::watermark::WatermarkTracker;
use crate::{Error, Result};

/// A planned continuous query fed batch by batch.
///
/// It applies the same watermark and lateness rules and the same operators
/// as a job does.
pub struct QueryRunner {
    operator: Box<dyn Operator>,
    tracker: WatermarkTracker,
    late_rows: u64,
}

impl QueryRunner {
    /// Plans `query` (a `SELECT`) over the stream `create_stream` (a
    /// `CREATE STREAM` statement) defines. Batches pushed must have the
    /// stream's schema.
    pub async fn new(create_stream: &str, query: &str) -> Result<Self> {
        let statements = fibers_sql::parse_script(&format!("{create_stream};\n{query}"))?;
        let [stream, select] = statements.as_slice() else {
            return Err(Error::invalid("expected a CREATE STREAM and a SELECT"));
        };
        let (Statement::CreateStream(create), Statement::Query(select)) = (&stream.statement, &select.statement) else {
            return Err(Error::invalid("expected a CREATE STREAM and a SELECT"));
        };
        let datafusion::sql::sqlparser::ast::Statement::Query(select) = select.as_ref() else {
            return Err(Error::invalid("expected a SELECT"));
        };
        let def = StreamDef::resolve(create, std::path::Path::new("."))?;
        if def.arrival_time {
            return Err(Error::invalid("the stream needs a WATERMARK to be run by a QueryRunner"));
        }
        let time_index = def.schema.index_of(&def.time_column)?;
        let tracker = WatermarkTracker::new(time_index, def.delay_nanos);
        let mut objects = Objects::default();
        objects.streams.insert(create.name.clone(), Arc::new(def));
        let planned = plan_continuous_query("query", select, &objects).await?;
        let ctx = planned.state.task_ctx();
        let operator = operator::build(&planned, ctx, None).await?;
        Ok(QueryRunner {
            operator,
            tracker,
            late_rows: 0,
        })
    }

    /// Feeds rows; returns the rows that became final.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let observed = self.tracker.observe(batch)?;
        self.late_rows += observed.late as u64;
        let mut out = self.operator.process(observed.batch).await?;
        if let Some(watermark) = self.tracker.watermark() {
            out.extend(self.operator.advance(watermark).await?);
        }
        Ok(out)
    }

    /// Ends the input: every window closes.
    pub async fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.operator.advance(i64::MAX).await
    }

    /// Rows dropped as late so far.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }
}
