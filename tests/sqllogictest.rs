//! SQL behaviour tests: every `tests/slt/*.slt` file runs against a fresh
//! engine in an empty data dir in which `data/` is `tests/slt/data`.
//!
//! `cargo test --test sqllogictest [-- FILTER]` runs the files whose name
//! contains FILTER.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fibers_engine::{Engine, EngineConfig, StatementResult};
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

struct Fibers {
    engine: Arc<Engine>,
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Fibers {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let results = self
            .engine
            .execute_script(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        match results.into_iter().last() {
            Some(StatementResult::Rows { schema, batches }) => {
                let options = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for batch in &batches {
                    let formatters = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| SltError(e.to_string()))?;
                    for row in 0..batch.num_rows() {
                        rows.push(
                            formatters
                                .iter()
                                .zip(batch.columns())
                                .map(|(f, c)| {
                                    let value = f.value(row).to_string();
                                    if value.is_empty() && !c.is_null(row) {
                                        "(empty)".to_string()
                                    } else {
                                        value
                                    }
                                })
                                .collect(),
                        );
                    }
                }
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; schema.fields().len()],
                    rows,
                })
            }
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {
        self.engine.shutdown().await;
    }

    fn engine_name(&self) -> &str {
        "datafibers"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

async fn run_file(path: &Path, data: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(data, dir.path().join("data")).map_err(|e| e.to_string())?;
    let engine = Arc::new(
        Engine::open(EngineConfig::new(dir.path()))
            .await
            .map_err(|e| e.to_string())?,
    );
    let shared = Arc::clone(&engine);
    let mut runner = sqllogictest::Runner::new(move || {
        let engine = Arc::clone(&shared);
        async move { Ok(Fibers { engine }) }
    });
    let result = runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string());
    engine.shutdown().await;
    result
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data = root.join("data");
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        match runtime.block_on(run_file(file, &data)) {
            Ok(()) => {
                passed += 1;
                println!("ok      {name}");
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {name}\n{e}\n");
            }
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed > 0 || files.is_empty() {
        std::process::exit(1);
    }
}
