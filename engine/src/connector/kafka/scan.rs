//! Ad-hoc queries over a Kafka stream: the topic read from the stream's
//! `start` up to the end offsets at query time, as a bounded DataFusion
//! scan. Batches stream out as they are decoded (a large topic is never
//! held in memory), and filters on the metadata columns narrow what is
//! fetched at all: `_partition` picks partitions, `_offset` and
//! `_timestamp` bounds move where each partition starts and stops.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;

use super::{KafkaConfig, KafkaSource};
use crate::connector::{Patience, Poll, Source};

/// What the filters of a scan allow it to skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScanBounds {
    /// Only these partitions (all when `None`).
    pub partitions: Option<BTreeSet<i32>>,
    /// The first offset to read in every partition.
    pub min_offset: Option<i64>,
    /// Reading stops before this offset in every partition.
    pub end_offset: Option<i64>,
    /// Start at the first message at or after this time (milliseconds).
    pub min_timestamp_ms: Option<i64>,
}

impl ScanBounds {
    /// Narrows the bounds by `filter`, if it is one the scan can use;
    /// returns whether it was.
    fn absorb(&mut self, filter: &Expr) -> bool {
        let Expr::BinaryExpr(binary) = filter else {
            if let Expr::InList(list) = filter
                && !list.negated
                && column_name(&list.expr) == Some("_partition")
            {
                let values: Option<BTreeSet<i32>> = list
                    .list
                    .iter()
                    .map(|v| literal_i64(v).map(|v| v as i32))
                    .collect();
                if let Some(values) = values {
                    self.restrict_partitions(values);
                    return true;
                }
            }
            return false;
        };
        // column op literal, or literal op column (flipped).
        let (column, op, value) = match (column_name(&binary.left), column_name(&binary.right)) {
            (Some(c), None) => (c, binary.op, &*binary.right),
            (None, Some(c)) => match binary.op.swap() {
                Some(op) => (c, op, &*binary.left),
                None => return false,
            },
            _ => return false,
        };
        match column {
            "_partition" => {
                let Some(v) = literal_i64(value) else {
                    return false;
                };
                if op != Operator::Eq {
                    return false;
                }
                self.restrict_partitions(BTreeSet::from([v as i32]));
                true
            }
            "_offset" => {
                let Some(v) = literal_i64(value) else {
                    return false;
                };
                let (min, end) = match op {
                    Operator::Eq => (Some(v), Some(v.saturating_add(1))),
                    Operator::Gt => (Some(v.saturating_add(1)), None),
                    Operator::GtEq => (Some(v), None),
                    Operator::Lt => (None, Some(v)),
                    Operator::LtEq => (None, Some(v.saturating_add(1))),
                    _ => return false,
                };
                if let Some(min) = min {
                    self.min_offset = Some(self.min_offset.map_or(min, |m| m.max(min)));
                }
                if let Some(end) = end {
                    self.end_offset = Some(self.end_offset.map_or(end, |e| e.min(end)));
                }
                true
            }
            "_timestamp" => {
                let Some(ms) = literal_timestamp_ms(value) else {
                    return false;
                };
                let ms = match op {
                    Operator::Gt | Operator::GtEq | Operator::Eq => ms,
                    _ => return false,
                };
                self.min_timestamp_ms = Some(self.min_timestamp_ms.map_or(ms, |m| m.max(ms)));
                true
            }
            _ => false,
        }
    }

    fn restrict_partitions(&mut self, values: BTreeSet<i32>) {
        self.partitions = Some(match self.partitions.take() {
            Some(current) => current.intersection(&values).copied().collect(),
            None => values,
        });
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(cast) => column_name(&cast.expr),
        _ => None,
    }
}

fn literal_i64(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::Int8(v) => v.map(i64::from),
            ScalarValue::Int16(v) => v.map(i64::from),
            ScalarValue::Int32(v) => v.map(i64::from),
            ScalarValue::Int64(v) => *v,
            ScalarValue::UInt8(v) => v.map(i64::from),
            ScalarValue::UInt16(v) => v.map(i64::from),
            ScalarValue::UInt32(v) => v.map(i64::from),
            ScalarValue::UInt64(v) => v.and_then(|v| i64::try_from(v).ok()),
            _ => None,
        },
        Expr::Cast(cast) => literal_i64(&cast.expr),
        _ => None,
    }
}

fn literal_timestamp_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::TimestampNanosecond(Some(v), None) => Some(v.div_euclid(1_000_000)),
            ScalarValue::TimestampMicrosecond(Some(v), None) => Some(v.div_euclid(1_000)),
            ScalarValue::TimestampMillisecond(Some(v), None) => Some(*v),
            ScalarValue::TimestampSecond(Some(v), None) => v.checked_mul(1_000),
            _ => None,
        },
        _ => None,
    }
}

/// A Kafka stream as a table of the messages there are now.
#[derive(Debug)]
pub(crate) struct KafkaTable {
    stream: String,
    config: KafkaConfig,
    schema: SchemaRef,
    batch_size: usize,
}

impl KafkaTable {
    pub fn new(stream: &str, config: &KafkaConfig, schema: SchemaRef, batch_size: usize) -> Self {
        let mut config = config.clone();
        config.end_at_latest = true;
        KafkaTable {
            stream: stream.to_string(),
            config,
            schema,
            batch_size,
        }
    }
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // The bounds only narrow the read; DataFusion still applies every
        // filter to the rows, so the pushdown is inexact.
        Ok(filters
            .iter()
            .map(|f| {
                if ScanBounds::default().absorb(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let mut bounds = ScanBounds::default();
        for filter in filters {
            bounds.absorb(filter);
        }
        let partition: Arc<dyn PartitionStream> = Arc::new(KafkaScan {
            stream: self.stream.clone(),
            config: self.config.clone(),
            schema: Arc::clone(&self.schema),
            batch_size: self.batch_size,
            bounds,
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![partition],
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// One scan of a topic.
#[derive(Debug)]
struct KafkaScan {
    stream: String,
    config: KafkaConfig,
    schema: SchemaRef,
    batch_size: usize,
    bounds: ScanBounds,
}

impl PartitionStream for KafkaScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let source = KafkaSource::new(
            &self.stream,
            &self.config,
            Arc::clone(&self.schema),
            self.batch_size,
            self.config.dead_letters.clone(),
        )
        .map(|s| s.with_bounds(self.bounds.clone()));
        let mut patience = Patience::new(&self.stream, self.config.scan_timeout);
        tokio::task::spawn_blocking(move || {
            let mut source = match source {
                Ok(s) => s,
                Err(e) => {
                    let _gone = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                    return;
                }
            };
            loop {
                let item = match source.poll() {
                    Ok(Poll::Batch(_, batch)) => {
                        patience.progressed();
                        Ok(batch)
                    }
                    // The query was cancelled or its client went away.
                    Ok(Poll::Idle(_)) if tx.is_closed() => return,
                    Ok(Poll::Idle(wait)) => match patience.check(&source) {
                        Ok(()) => {
                            std::thread::sleep(wait.min(std::time::Duration::from_millis(50)));
                            continue;
                        }
                        Err(e) => Err(DataFusionError::External(Box::new(e))),
                    },
                    Ok(Poll::End) => return,
                    Err(e) => Err(DataFusionError::External(Box::new(e))),
                };
                let failed = item.is_err();
                // The query stopped reading (a LIMIT was met): stop too.
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        let batches = tokio_stream_from(rx);
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn metadata_filters_narrow_the_read() {
        let mut b = ScanBounds::default();
        assert!(b.absorb(&col("_partition").eq(lit(2))));
        assert!(b.absorb(&col("_offset").gt_eq(lit(10_i64))));
        assert!(b.absorb(&lit(20_i64).gt(col("_offset"))));
        assert!(!b.absorb(&col("price").gt(lit(1.0))));
        assert!(!b.absorb(&col("_partition").gt(lit(1))));
        assert_eq!(
            b,
            ScanBounds {
                partitions: Some(BTreeSet::from([2])),
                min_offset: Some(10),
                end_offset: Some(20),
                min_timestamp_ms: None,
            }
        );
        assert!(b.absorb(&col("_partition").in_list(vec![lit(1), lit(2)], false)));
        assert_eq!(b.partitions, Some(BTreeSet::from([2])));
    }
}
