//! Integer arithmetic that fails on overflow instead of wrapping.
//!
//! DataFusion wraps: `9223372036854775807 + 1` is `-9223372036854775808`,
//! and an integer `sum` that passes `i64::MAX` turns negative, silently.
//! In a streaming job that is a wrong result committed for good, so every
//! session the engine plans in (continuous and ad-hoc queries alike)
//! checks instead:
//!
//! * [`CheckedArithmetic`], an analyzer rule, replaces `+`, `-` and `*`
//!   between integers (after type coercion) with [`CheckedOp`], which runs
//!   Arrow's checked kernels. The call keeps the operator's column name
//!   (`a + b`), its type and its nullability, so plans, schemas and
//!   archives are the same as before.
//! * [`CheckedSum`] stands in for `sum`: integer sums add with a check,
//!   other sums (floats, decimals, intervals) are DataFusion's own.
//!
//! An overflow is an execution error naming the operation, e.g.
//! `Arithmetic overflow: Overflow happened on: 9223372036854775807 + 1`.
//! Division by zero was already an error.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, AsArray, BooleanArray, Datum, PrimitiveArray, Scalar,
};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::compute::{not, nullif, prep_null_mask_filter};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, FieldRef, Int64Type, UInt64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, BinaryExpr, ColumnarValue, EmitTo, Expr,
    ExprSchemable, GroupsAccumulator, LogicalPlan, Operator, ReturnFieldArgs, ReversedUDAF,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, SetMonotonicity, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule that makes integer `+`, `-` and `*` checked.
#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // Expressions of a node are typed against its inputs' columns
            // (a table scan's, or a values list's, against its own).
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            if node.inputs().is_empty() {
                schema.merge(node.schema());
            }
            node.map_expressions(|expr| expr.transform_up(|expr| checked(expr, &schema)))
        })
        .map(|t| t.data)
    }
}

/// `expr` with a checked call in place of its integer operator, if it is one.
fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let op = match op {
        Operator::Plus => CheckedOp::Add,
        Operator::Minus => CheckedOp::Sub,
        Operator::Multiply => CheckedOp::Mul,
        _ => return Ok(Transformed::no(expr)),
    };
    // A column the schema cannot type is left to DataFusion's own checks.
    let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(expr));
    };
    if !(l.is_integer() && l == r) {
        return Ok(Transformed::no(expr));
    }
    let (left, right) = (left.as_ref().clone(), right.as_ref().clone());
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(op.udf(), vec![left, right]),
    )))
}

/// An integer operator that fails on overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckedOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

impl CheckedOp {
    fn operator(self) -> Operator {
        match self {
            CheckedOp::Add => Operator::Plus,
            CheckedOp::Sub => Operator::Minus,
            CheckedOp::Mul => Operator::Multiply,
        }
    }

    /// The operator as a scalar function.
    pub fn udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(CheckedUdf {
            op: self,
            signature: Signature::any(2, Volatility::Immutable),
        }))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedUdf {
    op: CheckedOp,
    signature: Signature,
}

impl ScalarUDFImpl for CheckedUdf {
    fn name(&self) -> &str {
        match self.op {
            CheckedOp::Add => "checked_add",
            CheckedOp::Sub => "checked_subtract",
            CheckedOp::Mul => "checked_multiply",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    /// Typed and nullable exactly as the operator it replaces.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
            self.name(),
            args.arg_fields[0].data_type().clone(),
            nullable,
        )))
    }

    /// The operator's own column name, `a + b`.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} {} {}",
            args[0].schema_name(),
            self.op.operator(),
            args[1].schema_name()
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let scalar = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let (l, r) = (Operand::new(left)?, Operand::new(right)?);
        let (l, r) = (l.datum(), r.datum());
        let result = match self.op {
            CheckedOp::Add => numeric::add(l, r)?,
            CheckedOp::Sub => numeric::sub(l, r)?,
            CheckedOp::Mul => numeric::mul(l, r)?,
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// An operand as Arrow's kernels take it: an array, or a scalar.
enum Operand {
    Array(ArrayRef),
    Scalar(Scalar<ArrayRef>),
}

impl Operand {
    fn new(value: &ColumnarValue) -> Result<Self> {
        Ok(match value {
            ColumnarValue::Array(array) => Operand::Array(Arc::clone(array)),
            ColumnarValue::Scalar(scalar) => Operand::Scalar(scalar.to_scalar()?),
        })
    }

    fn datum(&self) -> &dyn Datum {
        match self {
            Operand::Array(array) => array,
            Operand::Scalar(scalar) => scalar,
        }
    }
}

/// `sum`, checked for integers; DataFusion's own for every other type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedSum {
    inner: Sum,
}

impl CheckedSum {
    /// The aggregate, to register in place of DataFusion's `sum`.
    pub fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(CheckedSum {
            inner: Sum::new(),
        }))
    }
}

/// The integer type a sum of `args` is checked in, if it is checked.
fn checked_type(args: &AccumulatorArgs) -> Option<DataType> {
    match args.return_field.data_type() {
        t @ (DataType::Int64 | DataType::UInt64) if !args.is_distinct => Some(t.clone()),
        _ => None,
    }
}

impl AggregateUDFImpl for CheckedSum {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match checked_type(&args) {
            Some(DataType::Int64) => Ok(Box::new(SumAccumulator::<Int64Type>::default())),
            Some(_) => Ok(Box::new(SumAccumulator::<UInt64Type>::default())),
            None => self.inner.accumulator(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match checked_type(&args) {
            Some(DataType::Int64) => Ok(Box::new(SumGroups::<Int64Type>::default())),
            Some(_) => Ok(Box::new(SumGroups::<UInt64Type>::default())),
            None => self.inner.create_groups_accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.reverse_expr()
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// An execution error, not Arrow's overflow error: a sum overflows for
/// its whole group, not for the row that tipped it over.
fn overflow<N: fmt::Debug>(sum: N, value: N) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!(
        "sum overflowed adding {value:?} to {sum:?}; cast its argument to DOUBLE or DECIMAL \
         for more room"
    ))
}

/// A checked integer sum of one group; `None` until a value is seen.
#[derive(Debug)]
struct SumAccumulator<T: ArrowPrimitiveType> {
    sum: Option<T::Native>,
}

impl<T: ArrowPrimitiveType> Default for SumAccumulator<T> {
    fn default() -> Self {
        SumAccumulator { sum: None }
    }
}

impl<T: ArrowPrimitiveType> SumAccumulator<T> {
    fn add(&mut self, values: &PrimitiveArray<T>) -> Result<()> {
        for value in values.iter().flatten() {
            let sum = self.sum.unwrap_or(T::Native::ZERO);
            self.sum = Some(sum.add_checked(value).map_err(|_| overflow(sum, value))?);
        }
        Ok(())
    }

    fn value(&self) -> Result<ScalarValue> {
        let array = PrimitiveArray::<T>::from_iter([self.sum]);
        ScalarValue::try_from_array(&array, 0)
    }
}

impl<T: ArrowPrimitiveType + fmt::Debug> Accumulator for SumAccumulator<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values[0].as_primitive::<T>())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(states[0].as_primitive::<T>())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.value()
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// Checked integer sums of many groups; `None` until a group sees a value.
#[derive(Debug)]
struct SumGroups<T: ArrowPrimitiveType> {
    sums: Vec<Option<T::Native>>,
}

impl<T: ArrowPrimitiveType> Default for SumGroups<T> {
    fn default() -> Self {
        SumGroups { sums: Vec::new() }
    }
}

impl<T: ArrowPrimitiveType> SumGroups<T> {
    fn add(
        &mut self,
        values: &PrimitiveArray<T>,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.sums.resize(total_groups, None);
        for (row, &group) in groups.iter().enumerate() {
            if values.is_null(row) || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            let value = values.value(row);
            let sum = self.sums[group].unwrap_or(T::Native::ZERO);
            self.sums[group] = Some(sum.add_checked(value).map_err(|_| overflow(sum, value))?);
        }
        Ok(())
    }

    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        let sums = emit_to.take_needed(&mut self.sums);
        Arc::new(PrimitiveArray::<T>::from_iter(sums))
    }
}

impl<T: ArrowPrimitiveType + fmt::Debug + Send> GroupsAccumulator for SumGroups<T> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(
            values[0].as_primitive::<T>(),
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(
            values[0].as_primitive::<T>(),
            group_indices,
            None,
            total_num_groups,
        )
    }

    /// A row's state is its value; a row the filter leaves out is null.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        Ok(vec![match opt_filter {
            None => Arc::clone(&values[0]),
            Some(filter) => nullif(&values[0], &not(&prep_null_mask_filter(filter))?)?,
        }])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<Option<T::Native>>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::streaming_session_state;

    fn ctx() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
            Field::new("n", DataType::Int32, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b"])),
                Arc::new(Int64Array::from(vec![i64::MAX, 1, -5])),
                Arc::new(Int32Array::from(vec![Some(i32::MAX), Some(i32::MAX), None])),
                Arc::new(Float64Array::from(vec![1.5, 2.5, 1e308])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new_with_state(streaming_session_state());
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?.to_string())
    }

    async fn overflow_error(ctx: &SessionContext, sql: &str) -> String {
        let error = run(ctx, sql).await.expect_err(sql).to_string();
        assert!(error.contains("verflow"), "{sql}: {error}");
        error
    }

    #[tokio::test]
    async fn integer_operators_fail_instead_of_wrapping() {
        let ctx = ctx();
        let error = overflow_error(&ctx, "SELECT v + 1 FROM t").await;
        assert!(error.contains("9223372036854775807 + 1"), "{error}");
        overflow_error(&ctx, "SELECT v * 2 FROM t").await;
        overflow_error(&ctx, "SELECT -v - 2 FROM t").await;
        // Int32 columns overflow in their own type, as PostgreSQL's do.
        overflow_error(&ctx, "SELECT n + n FROM t").await;
        // Constants are checked too, whether folded at planning or not.
        overflow_error(&ctx, "SELECT 9223372036854775807 + 1").await;
        // Values in range, floats and mixed types are unchanged.
        let out = run(&ctx, "SELECT v - 1 AS a, f * 2 AS b FROM t WHERE k = 'b'")
            .await
            .unwrap();
        assert!(
            out.contains("| -6 | 2e308 |") || out.contains("| -6 | inf"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn checked_operators_keep_names_types_and_nullability() {
        let ctx = ctx();
        let frame = ctx
            .sql("SELECT v - 1, n * 2, sum(v - 1) FROM t GROUP BY v, n")
            .await
            .unwrap();
        let schema = frame.schema();
        let fields: Vec<(String, DataType, bool)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(
            fields,
            [
                ("t.v - Int64(1)".to_string(), DataType::Int64, false),
                ("t.n * Int64(2)".to_string(), DataType::Int64, true),
                ("sum(t.v - Int64(1))".to_string(), DataType::Int64, true),
            ]
        );
        let plan = frame.create_physical_plan().await.unwrap();
        assert_eq!(plan.schema().field(0).name(), "t.v - Int64(1)");
        assert!(!plan.schema().field(0).is_nullable());
    }

    #[tokio::test]
    async fn integer_sums_fail_instead_of_wrapping() {
        let ctx = ctx();
        // Grouped (a groups accumulator) and global (an accumulator).
        let error = overflow_error(&ctx, "SELECT k, sum(v) FROM t GROUP BY k").await;
        assert!(error.contains("sum overflowed"), "{error}");
        overflow_error(&ctx, "SELECT sum(v) FROM t").await;
        // Sums in range, of narrower integers, filtered, and of floats.
        let out = run(
            &ctx,
            "SELECT k, sum(n), sum(v) FILTER (WHERE v < 10), sum(f) FROM t GROUP BY k ORDER BY k",
        )
        .await
        .unwrap();
        assert!(out.contains("| a | 4294967294 | 1 "), "{out}");
        assert!(out.contains("| b |            | -5 "), "{out}");
        let out = run(&ctx, "SELECT sum(v) FROM t WHERE v < 10")
            .await
            .unwrap();
        assert!(out.contains("| -4 "), "{out}");
        let out = run(
            &ctx,
            "SELECT sum(v) FROM t WHERE v > 100000000000000000000.0",
        )
        .await
        .unwrap();
        let value = out.lines().nth(3).map(|l| l.trim_matches(['|', ' ']));
        assert_eq!(value, Some(""), "no rows sum to null: {out}");
    }
}
