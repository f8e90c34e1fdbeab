use datafusion::execution::session_state::SessionState;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};

use crate::checked::{CheckedArithmetic, CheckedSum};

/// Optimizer rules that would hide the aggregation's two phases from the
/// streaming layer: it must see one aggregate (not `count(DISTINCT)` rewritten
/// into two) and keep the partial and final stages apart.
const LOGICAL_RULES_OFF: &[&str] = &["single_distinct_aggregation_to_group_by"];
const PHYSICAL_RULES_OFF: &[&str] = &["CombinePartialFinalAggregate"];

/// A DataFusion session for planning continuous queries: one partition per
/// plan (the engine parallelises across jobs and partitions itself), the
/// aggregation phases kept apart, and integer arithmetic that fails on
/// overflow instead of wrapping.
pub fn streaming_session_state() -> SessionState {
    streaming_session_state_with_config(SessionConfig::new())
}

/// [`streaming_session_state`] with the caller's settings (batch size, ...).
pub fn streaming_session_state_with_config(config: SessionConfig) -> SessionState {
    let mut config = config.with_target_partitions(1);
    // A hash join's dynamic filter would be state of each run; plans are
    // run many times, and a lookup join keeps its build side (the table)
    // from one run to the next. Stream leaves take no pushed filters anyway.
    config
        .options_mut()
        .optimizer
        .enable_join_dynamic_filter_pushdown = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let logical = state
        .optimizers()
        .iter()
        .filter(|r| !LOGICAL_RULES_OFF.contains(&r.name()))
        .cloned()
        .collect();
    let physical = state
        .physical_optimizers()
        .iter()
        .filter(|r| !PHYSICAL_RULES_OFF.contains(&r.name()))
        .cloned()
        .collect();
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(logical)
        .with_physical_optimizer_rules(physical)
        .with_analyzer_rule(Arc::new(CheckedArithmetic))
        .build();
    // Replaces DataFusion's `sum` (the registry keeps one per name).
    let _ = state.register_udaf(CheckedSum::udaf());
    state
}

/// Makes `ctx` check integer arithmetic for overflow, as the streaming
/// sessions do (see [`crate::checked`]).
pub fn check_arithmetic(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(CheckedArithmetic));
    ctx.register_udaf(Arc::unwrap_or_clone(CheckedSum::udaf()));
}
