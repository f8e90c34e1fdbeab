//! The Nexmark queries of `benches/nexmark`: over the same bounded events,
//! each streaming query (`qN.sql`, run as a materialized view) yields the
//! same rows as its batch form (`qN.batch.sql`, run ad hoc by DataFusion),
//! and, where the streaming query bounds a join the standard text leaves
//! unbounded, as that standard form too (`qN.unbounded.sql`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fibers_engine::{Engine, EngineConfig, StatementResult};

/// 12 s of event time: one full 10 s window and a part of the next, so the
/// windows cut off by the end of input are checked too. 2,400 people,
/// 7,200 auctions, 110,400 bids.
const STREAMS: &str = "
    CREATE STREAM person WITH (connector = 'nexmark', event = 'person', events = '120000', seed = '7');
    CREATE STREAM auction WITH (connector = 'nexmark', event = 'auction', events = '120000', seed = '7',
                                partitions = '2');
    CREATE STREAM bid WITH (connector = 'nexmark', event = 'bid', events = '120000', seed = '7',
                            partitions = '4');";

/// Decimals floats are compared to: the two plans may sum in different
/// orders.
const FLOAT_DECIMALS: usize = 3;

/// A query of `benches/nexmark` and the batch queries it must agree with.
struct Query {
    name: String,
    streaming: String,
    /// (file name, SQL) of the batch forms.
    batches: Vec<(String, String)>,
}

/// Every `qN.sql` of `benches/nexmark` with its `qN.batch.sql` and, if
/// there is one, its `qN.unbounded.sql`.
fn queries() -> Vec<Query> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nexmark");
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("benches/nexmark exists") {
        let path = entry.unwrap().path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && name.ends_with(".sql")
        {
            files.insert(name.to_string(), path);
        }
    }
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let mut queries = Vec::new();
    for (file, path) in &files {
        let stem = file.trim_end_matches(".sql");
        let (name, form) = stem.split_once('.').unwrap_or((stem, ""));
        assert!(
            name.strip_prefix('q')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && ["", "batch", "unbounded"].contains(&form)
                && files.contains_key(&format!("{name}.sql")),
            "{file}: files in benches/nexmark are qN.sql, qN.batch.sql and qN.unbounded.sql"
        );
        if !form.is_empty() {
            continue;
        }
        let batch = format!("{name}.batch.sql");
        let batch_path = files
            .get(&batch)
            .unwrap_or_else(|| panic!("{file} has no {batch}"));
        let mut batches = vec![(batch.clone(), read(batch_path))];
        let unbounded = format!("{name}.unbounded.sql");
        if let Some(path) = files.get(&unbounded) {
            batches.push((unbounded, read(path)));
        }
        queries.push(Query {
            name: name.to_string(),
            streaming: read(path),
            batches,
        });
    }
    queries.sort_by_key(|q| q.name[1..].parse::<u32>().unwrap());
    queries
}

/// The rows of a query's result.
async fn run_query(engine: &Engine, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    match engine
        .execute_script(sql)
        .await
        .map_err(|e| e.to_string())?
        .pop()
    {
        Some(StatementResult::Rows { schema, batches }) => Ok((schema, batches)),
        other => Err(format!("expected rows, got {other:?}")),
    }
}

/// The rows as text, one string per row, sorted: a multiset to compare.
/// `types` are the types to compare at (the view's): a batch result's
/// nanosecond timestamps are cut to the microseconds an archive keeps.
fn rows(batches: &[RecordBatch], types: &[DataType]) -> Result<Vec<String>, String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(types)
            .map(|(column, to)| match (column.data_type(), to) {
                (DataType::Timestamp(..), DataType::Timestamp(..)) => {
                    arrow::compute::cast(column, to).map_err(|e| e.to_string())
                }
                _ => Ok(Arc::clone(column)),
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let formatters = columns
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let values: Vec<String> = columns
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| match column.data_type() {
                    DataType::Float64 if column.is_valid(row) => {
                        let value = column.as_primitive::<Float64Type>().value(row);
                        format!("{value:.FLOAT_DECIMALS$}")
                    }
                    _ => formatter.value(row).to_string(),
                })
                .collect();
            rows.push(values.join(" | "));
        }
    }
    rows.sort();
    Ok(rows)
}

/// Why `expected` (from `what`) and `actual` (the view's rows) differ, as
/// a few rows found on one side only; `None` if they are equal.
fn difference(what: &str, expected: &[String], actual: &[String]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for row in expected {
        *counts.entry(row).or_default() += 1;
    }
    for row in actual {
        *counts.entry(row).or_default() -= 1;
    }
    let sample = |missing: bool| -> String {
        counts
            .iter()
            .filter(|(_, n)| if missing { **n > 0 } else { **n < 0 })
            .take(3)
            .map(|(row, n)| format!("\n      {}x {}", n.abs(), truncate(row)))
            .collect()
    };
    Some(format!(
        "{} rows from the view, {} from {what}\n    only in {what}:{}\n    only in the view:{}",
        actual.len(),
        expected.len(),
        sample(true),
        sample(false),
    ))
}

/// `name type` of each column.
fn columns(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect()
}

fn truncate(row: &str) -> String {
    const MAX: usize = 300;
    match row.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &row[..at]),
        None => row.to_string(),
    }
}

/// Checks one query against its batch forms; `Err` says how it failed.
async fn check(engine: &Engine, query: &Query) -> Result<usize, String> {
    let (view_schema, view_batches) = run_query(engine, &format!("SELECT * FROM {}", query.name))
        .await
        .map_err(|e| format!("reading the view back: {e}"))?;
    let types: Vec<DataType> = view_schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let actual = rows(&view_batches, &types)?;
    if actual.is_empty() {
        return Err("the view has no rows: the query proves nothing at this size".into());
    }
    let mut failures = Vec::new();
    for (file, sql) in &query.batches {
        let (schema, batches) = match run_query(engine, sql).await {
            Ok(result) => result,
            Err(e) => {
                failures.push(format!("{file} failed: {e}"));
                continue;
            }
        };
        // Compared at the view's types: timestamps in microseconds.
        let batch_types: Vec<String> = schema
            .fields()
            .iter()
            .zip(&types)
            .map(|(f, view)| match (f.data_type(), view) {
                (DataType::Timestamp(..), DataType::Timestamp(..)) => {
                    format!("{} {view}", f.name())
                }
                (other, _) => format!("{} {other}", f.name()),
            })
            .collect();
        if schema.fields().len() != types.len() || batch_types != columns(&view_schema) {
            failures.push(format!(
                "{file} returns columns {:?}, the view {:?}",
                columns(&schema),
                columns(&view_schema)
            ));
            continue;
        }
        let expected = rows(&batches, &types)?;
        if let Some(diff) = difference(file, &expected, &actual) {
            failures.push(diff);
        }
    }
    if failures.is_empty() {
        Ok(actual.len())
    } else {
        Err(failures.join("\n  "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nexmark_query_streams_the_rows_of_its_batch_form() {
    let queries = queries();
    assert!(!queries.is_empty(), "no query in benches/nexmark");
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path())).await.unwrap();
    engine.execute_script(STREAMS).await.unwrap();

    // All views run at once, as they would side by side in a deployment.
    let mut failures = Vec::new();
    let mut created = Vec::new();
    for query in &queries {
        let sql = format!(
            "CREATE MATERIALIZED VIEW {} WITH (archive = 'parquet') AS\n{}",
            query.name, query.streaming
        );
        match engine.execute_script(&sql).await {
            Ok(_) => created.push(query),
            Err(e) => failures.push(format!("{}: refused: {e}", query.name)),
        }
    }
    engine.wait_for_bounded_jobs().await;
    for (name, error) in engine.failures().await {
        failures.push(format!("{name}: the job failed: {error}"));
    }

    for query in created {
        match check(&engine, query).await {
            Ok(rows) => eprintln!("{}: {rows} rows, as in batch", query.name),
            Err(e) => failures.push(format!("{}: {e}", query.name)),
        }
    }
    engine.shutdown().await;
    assert!(
        failures.is_empty(),
        "streaming and batch results disagree:\n{}",
        failures.join("\n")
    );
}
