//! SQL text through the parser (our statements and DataFusion's) and the
//! planners: a view's or sink's continuous query, and an ad-hoc query,
//! planned down to a physical plan but not run.
#![no_main]

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use fibers_catalog::ObjectKind;
use fibers_fuzz::stream_schema;
use fibers_sql::{Statement, StreamInfo, StreamResolver, parse_script, plan_continuous_query};
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fn table_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sym", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("sector", DataType::Utf8, true),
    ]))
}

fn empty(schema: SchemaRef) -> Arc<dyn TableProvider> {
    Arc::new(MemTable::try_new(schema, vec![vec![]]).expect("an empty table"))
}

/// Two streams (`trades` with event time `ts`, `quotes` on arrival time),
/// a reference table `symbols` and a view `v`.
struct Objects;

impl StreamResolver for Objects {
    fn stream(&self, name: &str) -> Option<StreamInfo> {
        let time_column = match name {
            "trades" => "ts".to_string(),
            "quotes" => "at".to_string(),
            _ => return None,
        };
        Some(StreamInfo {
            schema: stream_schema(),
            time_column,
        })
    }

    fn kind_of(&self, name: &str) -> Option<ObjectKind> {
        match name {
            "trades" | "quotes" => Some(ObjectKind::Stream),
            "symbols" => Some(ObjectKind::Table),
            "v" => Some(ObjectKind::View),
            _ => None,
        }
    }

    fn input_table(&self, _stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
        empty(schema)
    }

    fn reference_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        (name == "symbols").then(|| empty(table_schema()))
    }
}

static ADHOC: LazyLock<SessionContext> = LazyLock::new(|| {
    let ctx = SessionContext::new_with_state(fibers_sql::streaming_session_state());
    for (name, schema) in [
        ("trades", stream_schema()),
        ("v", stream_schema()),
        ("symbols", table_schema()),
    ] {
        ctx.register_table(name, empty(schema)).expect("a table");
    }
    ctx
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statements) = parse_script(sql) else {
        return;
    };
    RUNTIME.block_on(async {
        for parsed in statements {
            match parsed.statement {
                Statement::CreateView(create) | Statement::CreateSink(create) => {
                    if let Ok(query) =
                        plan_continuous_query(&create.name, &create.query, &Objects).await
                    {
                        let _ = query.state.create_physical_plan(&query.plan).await;
                    }
                }
                Statement::Query(statement) => {
                    let state = ADHOC.state();
                    if let Ok(plan) = state
                        .statement_to_plan(DfStatement::Statement(statement))
                        .await
                    {
                        let _ = state.create_physical_plan(&plan).await;
                    }
                }
                _ => {}
            }
        }
    });
});
