use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;

use super::{Operator, WindowAssigner};
use crate::plan::{BatchSlot, Reusable, input_slot, run};
use crate::{Error, Result};

/// Projections, filters and scalar functions (optionally over a tumbling
/// window's columns): the plan runs over each batch as it arrives.
pub(crate) struct Stateless {
    plan: Reusable,
    input: BatchSlot,
    assigner: Option<WindowAssigner>,
    ctx: Arc<TaskContext>,
}

impl Stateless {
    pub fn new(
        plan: Arc<dyn ExecutionPlan>,
        assigner: Option<WindowAssigner>,
        ctx: Arc<TaskContext>,
    ) -> Result<Self> {
        let input = input_slot(&plan)
            .ok_or_else(|| Error::invalid("the query does not read its stream"))?;
        Ok(Stateless {
            plan: Reusable::new(plan),
            input,
            assigner,
            ctx,
        })
    }
}

#[async_trait]
impl Operator for Stateless {
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let batch = match &self.assigner {
            Some(a) => a.assign(batch)?,
            None => batch,
        };
        run(&mut self.plan, &self.input, vec![batch], &self.ctx).await
    }

    fn isolates_rows(&self) -> bool {
        true
    }

    async fn advance(&mut self, _watermark: i64) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }
}
