//! Running one continuous query in-process over batches the caller hands
//! it, without a data dir, source thread or archive: for benchmarks,
//! embedding and tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use fibers_sql::{Statement, plan_continuous_query};

use crate::connector::union::{Widener, to_union};
use crate::connector::{Poll, StreamDef};
use crate::operator::{self, Operator};
use crate::query::Readable;
use crate::watermark::PartitionWatermarks;
use crate::{Error, Result};

/// A [`QueryRunner`]'s state: operator state as Arrow IPC, the window
/// emitted last, and the watermark state.
#[cfg(test)]
type RunnerSnapshot = (
    Option<Vec<u8>>,
    Option<i64>,
    crate::checkpoint::WatermarkState,
    Vec<bool>,
);

/// A planned continuous query fed batch by batch.
///
/// It applies the same watermark and lateness rules and the same operators
/// as a job does. A query joining two streams takes each stream's rows
/// through [`QueryRunner::push_to`]; as in a job, its watermark is the
/// smaller of the two streams'.
pub struct QueryRunner {
    operator: Box<dyn Operator>,
    /// The streams the query reads, in the order the job reads them.
    streams: Vec<String>,
    /// Turns each stream's rows into the rows of a join's two streams.
    widener: Option<Widener>,
    watermarks: PartitionWatermarks,
    late_rows: u64,
}

impl QueryRunner {
    /// Plans `query` (a `SELECT`) over the stream `create_stream` (a
    /// `CREATE STREAM` statement) defines. Batches pushed must have the
    /// stream's schema.
    pub async fn new(create_stream: &str, query: &str) -> Result<Self> {
        Self::from_script(&format!("{create_stream};\n{query}")).await
    }

    /// Plans the query of a script: `CREATE STREAM` statements, then one
    /// `SELECT`, or a `CREATE MATERIALIZED VIEW` or `CREATE SINK` whose
    /// query is run (its archive or connector is not: the runner returns
    /// the rows). The query may join two of the streams.
    pub async fn from_script(script: &str) -> Result<Self> {
        let statements = fibers_sql::parse_script(script)?;
        let mut objects = Readable::default();
        let mut query = None;
        for parsed in &statements {
            if query.is_some() {
                return Err(Error::invalid(
                    "a QueryRunner script ends with its query; nothing may follow it",
                ));
            }
            match &parsed.statement {
                Statement::CreateStream(create) => {
                    let def = StreamDef::resolve(create, Path::new("."))?;
                    objects.streams.insert(create.name.clone(), Arc::new(def));
                }
                Statement::Query(select) => match select.as_ref() {
                    datafusion::sql::sqlparser::ast::Statement::Query(select) => {
                        query = Some(("query", select.clone()));
                    }
                    _ => return Err(Error::invalid("expected a SELECT")),
                },
                Statement::CreateView(create) | Statement::CreateSink(create) => {
                    query = Some((create.name.as_str(), create.query.clone()));
                }
                _ => {
                    return Err(Error::invalid(
                        "a QueryRunner script holds CREATE STREAM statements, then a SELECT, \
                         CREATE MATERIALIZED VIEW or CREATE SINK",
                    ));
                }
            }
        }
        let Some((name, select)) = query else {
            return Err(Error::invalid("the script has no query to run"));
        };
        let planned = plan_continuous_query(name, &select, &objects).await?;
        let mut defs = Vec::with_capacity(planned.inputs.len());
        for input in &planned.inputs {
            let def = objects
                .streams
                .get(&input.stream)
                .ok_or_else(|| Error::invalid(format!("stream '{}' not found", input.stream)))?;
            if def.arrival_time {
                return Err(Error::invalid(format!(
                    "stream '{}' needs a WATERMARK to be run by a QueryRunner",
                    def.name
                )));
            }
            defs.push(Arc::clone(def));
        }
        let (stream, widener) = match defs.as_slice() {
            [one] => (Arc::clone(one), None),
            [first, second] => {
                let union = StreamDef::union(first, second)?;
                let widener = Widener::new(&[first, second], Arc::clone(&union.schema))?;
                (Arc::new(union), Some(widener))
            }
            _ => return Err(Error::invalid("the query reads no stream")),
        };
        let time_index = stream.schema.index_of(&stream.time_column)?;
        let mut watermarks = PartitionWatermarks::new(time_index, stream.delay_nanos, None);
        // Each stream holds the watermark back until it has rows.
        let now = Instant::now();
        for input in 0..defs.len() {
            watermarks.add_partition(partition(input), now);
        }
        let ctx = planned.state.task_ctx();
        let operator = operator::build(&planned, Some(&stream), ctx, None).await?;
        Ok(QueryRunner {
            operator,
            streams: defs.iter().map(|d| d.name.clone()).collect(),
            widener,
            watermarks,
            late_rows: 0,
        })
    }

    /// Feeds rows of the query's (first) stream; returns the rows that
    /// became final.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.push_input(0, batch).await
    }

    /// Feeds rows of stream `stream`; returns the rows that became final.
    pub async fn push_to(&mut self, stream: &str, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let input = self
            .streams
            .iter()
            .position(|s| s.eq_ignore_ascii_case(stream))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the query does not read stream '{stream}'; it reads {}",
                    self.streams.join(", ")
                ))
            })?;
        self.push_input(input, batch).await
    }

    async fn push_input(&mut self, input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let batch = match &self.widener {
            Some(widener) => widener.widen(input, batch)?,
            None => batch,
        };
        let now = Instant::now();
        let observed = self.watermarks.observe(partition(input), batch, now)?;
        self.late_rows += observed.late as u64;
        let mut out = self.operator.process(observed.batch).await?;
        if let Some(watermark) = self.watermarks.advance(now) {
            out.extend(self.operator.advance(watermark).await?);
        }
        Ok(out)
    }

    /// Ends the input: every window closes.
    pub async fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.operator.advance(i64::MAX).await
    }

    /// The streams the query reads.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// Rows dropped as late so far.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// The runner's state as a checkpoint keeps it: the operator's state
    /// encoded as Arrow IPC, and the watermark.
    #[cfg(test)]
    fn snapshot(&self) -> Result<RunnerSnapshot> {
        let state = self.operator.snapshot()?;
        let ipc = match self.operator.state_schema() {
            Some(schema) => Some(crate::checkpoint::encode_ipc(&schema, &state.batches)?),
            None => None,
        };
        Ok((
            ipc,
            state.emitted_through,
            self.watermarks.snapshot(),
            state.merged,
        ))
    }

    /// Restores a [`QueryRunner::snapshot`] into a fresh runner.
    #[cfg(test)]
    async fn restore(&mut self, snapshot: RunnerSnapshot) -> Result<()> {
        let (ipc, emitted_through, watermarks, merged) = snapshot;
        let batches = match ipc {
            Some(bytes) => crate::checkpoint::decode_ipc(bytes.into())?,
            None => Vec::new(),
        };
        self.operator
            .restore(crate::checkpoint::OperatorState {
                emitted_through,
                batches,
                merged,
            })
            .await?;
        self.watermarks.restore(&watermarks, Instant::now());
        Ok(())
    }
}

/// Reads every row of the bounded stream `create_stream` (a `CREATE STREAM`
/// statement) defines, in batches of up to `batch_rows` rows in the order
/// its source yields them (partitions interleaved): input prepared ahead
/// of a [`QueryRunner`], so that reading it is not part of what is measured.
pub fn read_stream(create_stream: &str, batch_rows: usize) -> Result<Vec<RecordBatch>> {
    let statements = fibers_sql::parse_script(create_stream)?;
    let [parsed] = statements.as_slice() else {
        return Err(Error::invalid("expected one CREATE STREAM statement"));
    };
    let Statement::CreateStream(create) = &parsed.statement else {
        return Err(Error::invalid("expected a CREATE STREAM statement"));
    };
    let def = StreamDef::resolve(create, Path::new("."))?;
    def.check_snapshot()?;
    let mut source = def.open(batch_rows)?;
    let mut batches = Vec::new();
    loop {
        match source.poll()? {
            Poll::Batch(_, batch) => batches.push(batch),
            Poll::Idle(wait) => std::thread::sleep(wait),
            Poll::End => return Ok(batches),
        }
    }
}

/// The watermark partition of the query's `input`th stream.
fn partition(input: usize) -> u32 {
    to_union(input, 0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::AsArray;
    use arrow::compute::concat_batches;
    use arrow::datatypes::{
        Float64Type, Int64Type, TimestampMicrosecondType, TimestampNanosecondType,
    };
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::{StocksConfig, StocksGenerator, default_symbols};

    const STREAM: &str = "CREATE STREAM trades WITH (connector = 'stocks', rate = '0')";

    fn events(n: u64, batch_rows: usize) -> Vec<RecordBatch> {
        let mut generator = StocksGenerator::new(StocksConfig {
            seed: 3,
            symbols: default_symbols(5),
            step_nanos: 10_000_000,
            disorder_nanos: 2_000_000_000,
            start_nanos: 1_735_828_200_000_000_000,
            limit: Some(n),
        });
        std::iter::from_fn(|| generator.next_batch(batch_rows)).collect()
    }

    /// (symbol, window_start ns) -> (vwap, volume, trades)
    type Windows = BTreeMap<(String, i64), (f64, i64, i64)>;

    fn windows(batches: &[RecordBatch]) -> Windows {
        let mut out = Windows::new();
        for b in batches {
            let starts: Vec<i64> = match b.column(1).data_type() {
                arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Microsecond,
                    _,
                ) => b
                    .column(1)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter()
                    .map(|v| v * 1000)
                    .collect(),
                _ => b
                    .column(1)
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec(),
            };
            for (i, start) in starts.iter().enumerate() {
                let key = (b.column(0).as_string::<i32>().value(i).to_string(), *start);
                let value = (
                    b.column(2).as_primitive::<Float64Type>().value(i),
                    b.column(3).as_primitive::<Int64Type>().value(i),
                    b.column(4).as_primitive::<Int64Type>().value(i),
                );
                assert!(
                    out.insert(key.clone(), value).is_none(),
                    "window {key:?} emitted twice"
                );
            }
        }
        out
    }

    async fn streamed(query: &str, input: &[RecordBatch]) -> Windows {
        let mut runner = QueryRunner::new(STREAM, query).await.unwrap();
        let mut out = Vec::new();
        for batch in input {
            out.extend(runner.push(batch.clone()).await.unwrap());
        }
        out.extend(runner.finish().await.unwrap());
        assert_eq!(runner.late_rows(), 0);
        windows(&out)
    }

    async fn batch_query(query: &str, input: &[RecordBatch]) -> Windows {
        let ctx = SessionContext::new();
        let all = concat_batches(&input[0].schema(), input).unwrap();
        ctx.register_table(
            "trades",
            std::sync::Arc::new(MemTable::try_new(all.schema(), vec![vec![all]]).unwrap()),
        )
        .unwrap();
        windows(&ctx.sql(query).await.unwrap().collect().await.unwrap())
    }

    fn assert_same(streamed: &Windows, expected: &Windows) {
        assert!(
            expected.len() > 20,
            "too few windows to compare: {}",
            expected.len()
        );
        assert_eq!(streamed.len(), expected.len());
        for (key, (vwap, volume, trades)) in expected {
            let got = streamed
                .get(key)
                .unwrap_or_else(|| panic!("missing window {key:?}"));
            assert_eq!((got.1, got.2), (*volume, *trades), "{key:?}");
            assert!(
                (got.0 - vwap).abs() <= vwap.abs() * 1e-12,
                "{key:?}: {} vs {vwap}",
                got.0
            );
        }
    }

    #[tokio::test]
    async fn tumbling_aggregate_with_compaction_matches_a_batch_query() {
        // 50-row batches: each 60 s window gets ~120 partial states, so the
        // pane compaction (partial-reduce) runs several times per window.
        let input = events(30_000, 50);
        let streaming = streamed(
            "SELECT symbol, window_start, sum(price * volume) / sum(volume), sum(volume), count(*)
             FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) GROUP BY symbol, window_start, window_end",
            &input,
        )
        .await;
        let expected = batch_query(
            "SELECT symbol, date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00') AS ws,
                    sum(price * volume) / sum(volume), sum(volume), count(*)
             FROM trades GROUP BY symbol, ws",
            &input,
        )
        .await;
        assert_same(&streaming, &expected);
    }

    #[tokio::test]
    async fn hopping_windows_combine_panes_like_a_batch_query() {
        // HOP(20 s slide, 50 s size): panes of 10 s, five per window.
        let input = events(12_000, 64);
        let streaming = streamed(
            "SELECT symbol, window_start, sum(price * volume) / sum(volume), sum(volume), count(*)
             FROM HOP(trades, ts, INTERVAL '20' SECOND, INTERVAL '50' SECOND)
             GROUP BY symbol, window_start, window_end",
            &input,
        )
        .await;
        // Each event belongs to the windows starting at the multiples of
        // 20 s in (ts - 50 s, ts]: offsets 0, 20 s and 40 s back.
        let expected = batch_query(
            "SELECT symbol, ws, sum(price * volume) / sum(volume), sum(volume), count(*) FROM (
               SELECT symbol, price, volume,
                      date_bin(INTERVAL '20 seconds', ts, TIMESTAMP '1970-01-01T00:00:00') - o.back AS ws, ts
               FROM trades CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '20 seconds'), (INTERVAL '40 seconds')) AS o(back)
             ) WHERE ts < ws + INTERVAL '50 seconds'
             GROUP BY symbol, ws",
            &input,
        )
        .await;
        assert_same(&streaming, &expected);
    }

    /// Rows as sorted strings, for comparing results that are exact.
    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let text = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string();
        let mut rows: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(String::from)
            .collect();
        rows.sort();
        rows
    }

    /// Runs `query` over `input`, checkpointing after `cut` batches into a
    /// new runner (the first is dropped), and returns all rows emitted.
    async fn interrupted(query: &str, input: &[RecordBatch], cut: usize) -> Vec<RecordBatch> {
        let mut first = QueryRunner::new(STREAM, query).await.unwrap();
        let mut out = Vec::new();
        for batch in &input[..cut] {
            out.extend(first.push(batch.clone()).await.unwrap());
        }
        let snapshot = first.snapshot().unwrap();
        drop(first);
        let mut second = QueryRunner::new(STREAM, query).await.unwrap();
        second.restore(snapshot).await.unwrap();
        for batch in &input[cut..] {
            out.extend(second.push(batch.clone()).await.unwrap());
        }
        out.extend(second.finish().await.unwrap());
        out
    }

    async fn uninterrupted(query: &str, input: &[RecordBatch]) -> Vec<RecordBatch> {
        let mut runner = QueryRunner::new(STREAM, query).await.unwrap();
        let mut out = Vec::new();
        for batch in input {
            out.extend(runner.push(batch.clone()).await.unwrap());
        }
        out.extend(runner.finish().await.unwrap());
        out
    }

    #[tokio::test]
    async fn every_operator_restored_from_a_snapshot_continues_like_an_uninterrupted_run() {
        let input = events(20_000, 64);
        let queries = [
            // Tumbling windows, with panes compacted before the cut.
            "SELECT symbol, window_start, sum(price * volume) / sum(volume) AS vwap, count(*) AS n
             FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) GROUP BY symbol, window_start, window_end",
            // Hopping windows: panes shared by windows on both sides of the cut.
            "SELECT symbol, window_start, sum(volume) AS v, max(price) AS hi
             FROM HOP(trades, ts, INTERVAL '20' SECOND, INTERVAL '50' SECOND)
             GROUP BY symbol, window_start, window_end",
            // DISTINCT keeps sets in its state; HAVING and ORDER run at emit.
            "SELECT symbol, window_start, count(DISTINCT volume) AS lots, min(price) AS lo
             FROM TUMBLE(trades, ts, INTERVAL '30' SECOND) GROUP BY symbol, window_start, window_end
             HAVING count(*) > 3",
            // Stateless: a filter and a projection.
            "SELECT symbol, price * 2 AS double FROM trades WHERE volume > 500",
            // Sessions per symbol: open (and merged) sessions cross the cut.
            SESSIONS,
            // A windowed self-join (Nexmark q7): the trades of each window
            // with its largest volume; buffered windows cross the cut.
            "SELECT t.symbol, t.window_start, t.price, t.volume
             FROM TUMBLE(trades, ts, INTERVAL '10' SECOND) AS t
             JOIN (SELECT window_start, max(volume) AS top
                   FROM TUMBLE(trades, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end) AS m
               ON t.window_start = m.window_start AND t.volume = m.top",
        ];
        for query in queries {
            let expected = rows(&uninterrupted(query, &input).await);
            assert!(expected.len() > 20, "too few rows for {query}");
            // Cuts at the start, in the middle and near the end.
            for cut in [1, input.len() / 2, input.len() - 3] {
                let got = rows(&interrupted(query, &input, cut).await);
                assert_eq!(got, expected, "cut after {cut} batches: {query}");
            }
        }
    }

    /// Sessions per symbol with a 60 ms gap: the generated trades (about
    /// 50 ms apart per symbol, up to 2 s out of order) form thousands of
    /// sessions, many merged by late-arriving events.
    const SESSIONS: &str = "SELECT symbol, window_start, window_end, sum(volume) AS v, count(*) AS n
         FROM SESSION(trades, ts, INTERVAL '60' MILLISECOND) GROUP BY symbol, window_start, window_end";

    #[tokio::test]
    async fn session_windows_match_a_batch_query() {
        let input = events(20_000, 64);
        let streaming = rows(&uninterrupted(SESSIONS, &input).await);
        // A batch query sessionizes with LAG: a trade starts a new session
        // unless it is less than the gap after the symbol's previous trade.
        let ctx = SessionContext::new();
        let all = concat_batches(&input[0].schema(), &input).unwrap();
        ctx.register_table(
            "trades",
            std::sync::Arc::new(MemTable::try_new(all.schema(), vec![vec![all]]).unwrap()),
        )
        .unwrap();
        let batch = ctx
            .sql(
                "WITH marked AS (
                   SELECT symbol, volume, ts,
                          CASE WHEN ts - lag(ts) OVER (PARTITION BY symbol ORDER BY ts)
                                    < INTERVAL '60 milliseconds' THEN 0 ELSE 1 END AS starts
                   FROM trades),
                 numbered AS (
                   SELECT *, sum(starts) OVER (PARTITION BY symbol ORDER BY ts
                                              ROWS UNBOUNDED PRECEDING) AS session
                   FROM marked)
                 SELECT symbol, min(ts) AS window_start,
                        max(ts) + INTERVAL '60 milliseconds' AS window_end,
                        sum(volume) AS v, count(*) AS n
                 FROM numbered GROUP BY symbol, session",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let expected = rows(&batch);
        assert!(
            expected.len() > 1000,
            "too few sessions: {}",
            expected.len()
        );
        assert_eq!(streaming, expected);
    }

    #[tokio::test]
    async fn session_state_holds_open_sessions_not_events() {
        let input = events(20_000, 64);
        let mut runner = QueryRunner::new(STREAM, SESSIONS).await.unwrap();
        let mut emitted = 0;
        for batch in &input {
            emitted += runner
                .push(batch.clone())
                .await
                .unwrap()
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>();
        }
        let state = runner.operator.snapshot().unwrap();
        let kept: usize = state.batches.iter().map(RecordBatch::num_rows).sum();
        // The watermark trails by 2 s: about 200 trades per symbol are in
        // open sessions, never the 20,000 pushed.
        assert!(emitted > 1000, "only {emitted} sessions closed");
        assert!(kept > 0 && kept < 2_000, "{kept} state rows kept");
    }

    #[tokio::test]
    async fn window_state_from_another_query_is_refused() {
        let input = events(2_000, 64);
        let mut first = QueryRunner::new(
            STREAM,
            "SELECT symbol, window_start, count(*) FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
             GROUP BY symbol, window_start, window_end",
        )
        .await
        .unwrap();
        for batch in &input[..5] {
            first.push(batch.clone()).await.unwrap();
        }
        let snapshot = first.snapshot().unwrap();
        let mut other = QueryRunner::new(
            STREAM,
            "SELECT symbol, window_start, sum(price) FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
             GROUP BY symbol, window_start, window_end",
        )
        .await
        .unwrap();
        let e = other.restore(snapshot).await.unwrap_err().to_string();
        assert!(e.contains("query changed since the checkpoint"), "{e}");
    }

    #[tokio::test]
    async fn distinct_min_max_avg_survive_compaction() {
        let input = events(30_000, 50);
        let mut runner = QueryRunner::new(
            STREAM,
            "SELECT symbol, window_start, count(DISTINCT volume) AS lots, min(price) AS lo, max(price) AS hi,
                    avg(volume) AS avg_volume, count(*) AS n
             FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) GROUP BY symbol, window_start, window_end",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        for batch in &input {
            out.extend(runner.push(batch.clone()).await.unwrap());
        }
        out.extend(runner.finish().await.unwrap());

        let ctx = SessionContext::new();
        let all = concat_batches(&input[0].schema(), &input).unwrap();
        ctx.register_table(
            "trades",
            std::sync::Arc::new(MemTable::try_new(all.schema(), vec![vec![all]]).unwrap()),
        )
        .unwrap();
        let expected = ctx
            .sql(
                "SELECT symbol, date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00') AS window_start,
                        count(DISTINCT volume) AS lots, min(price) AS lo, max(price) AS hi,
                        avg(volume) AS avg_volume, count(*) AS n
                 FROM trades GROUP BY 1, 2",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let (got, want) = (rows(&out), rows(&expected));
        assert!(want.len() > 20, "too few windows: {}", want.len());
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_join_of_two_streams_fed_in_turn_matches_a_batch_query() {
        let person = "CREATE STREAM person WITH (connector = 'nexmark', event = 'person', \
                      events = '40000', seed = '5')";
        let auction = "CREATE STREAM auction WITH (connector = 'nexmark', event = 'auction', \
                       events = '40000', seed = '5')";
        let people = read_stream(person, 100).unwrap();
        let auctions = read_stream(auction, 300).unwrap();
        let mut runner = QueryRunner::from_script(&format!(
            "{person}; {auction};
             CREATE SINK new_sellers WITH (connector = 'discard') AS
             SELECT p.id, p.window_start, count(*) AS auctions
             FROM TUMBLE(person, date_time, INTERVAL '1' SECOND) AS p
             JOIN TUMBLE(auction, date_time, INTERVAL '1' SECOND) AS a
               ON p.id = a.seller AND p.window_start = a.window_start
             GROUP BY p.id, p.window_start"
        ))
        .await
        .unwrap();
        let mut out = Vec::new();
        for i in 0..people.len().max(auctions.len()) {
            if let Some(batch) = people.get(i) {
                out.extend(runner.push_to("person", batch.clone()).await.unwrap());
            }
            if let Some(batch) = auctions.get(i) {
                out.extend(runner.push_to("AUCTION", batch.clone()).await.unwrap());
            }
        }
        let emitted_before_the_end = out.iter().map(|b| b.num_rows()).sum::<usize>();
        out.extend(runner.finish().await.unwrap());
        assert_eq!(runner.late_rows(), 0);
        assert!(
            emitted_before_the_end > 0,
            "the watermark of both streams closed no window before the end"
        );
        let e = runner
            .push_to("bid", people[0].clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not read stream 'bid'; it reads auction, person"),
            "{e}"
        );

        let ctx = SessionContext::new();
        for (name, batches) in [("person", &people), ("auction", &auctions)] {
            let table = MemTable::try_new(batches[0].schema(), vec![batches.clone()]).unwrap();
            ctx.register_table(name, std::sync::Arc::new(table))
                .unwrap();
        }
        let expected = ctx
            .sql(
                "SELECT p.id, p.window_start, count(*) AS auctions
                 FROM (SELECT id, date_bin(INTERVAL '1 second', date_time) AS window_start FROM person) p
                 JOIN (SELECT seller, date_bin(INTERVAL '1 second', date_time) AS window_start FROM auction) a
                   ON p.id = a.seller AND p.window_start = a.window_start
                 GROUP BY p.id, p.window_start",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let (got, want) = (rows(&out), rows(&expected));
        assert!(want.len() > 20, "too few rows: {}", want.len());
        assert_eq!(got, want);
    }
}
