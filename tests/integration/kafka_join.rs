//! Joins of two streams read from Kafka (issue 6), against the real broker
//! (`FIBERS_TEST_BROKERS`): a FULL windowed join aggregated per window and
//! symbol, and an interval join, both archived to Delta and checked row for
//! row against pairs made by hand from the independent client's listing of
//! the trades it produced.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Row, assert_ok, fibers_run_within, kafka_tool_json, kafka_tool_lines, read_table, test_brokers,
    unique_name,
};

/// How long the bounded run may take before the test calls it hung.
const BOUNDED_RUN: Duration = Duration::from_secs(120);
const WINDOW_US: i64 = 10_000_000;
/// The interval join pairs a quote from this long before a trade...
const BEFORE_MS: i64 = 200;
/// ...to this long after it (bounds included).
const AFTER_MS: i64 = 500;

/// One topic's share of the generator's trades: trades `[first, last)` of
/// `seed`, with their event times (trade `i` is at about 5 s + `i` × 100 ms).
struct Topic {
    name: String,
    seed: u64,
    first: usize,
    last: usize,
}

impl Topic {
    fn new(test: &str, seed: u64, first: usize, last: usize) -> Self {
        Topic {
            name: unique_name(test),
            seed,
            first,
            last,
        }
    }

    /// The generator's arguments selecting this topic's trades.
    fn selection(&self) -> Vec<String> {
        [
            "--count",
            &self.last.to_string(),
            "--seed",
            &self.seed.to_string(),
            "--first",
            &self.first.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Writes the trades to a new topic of three partitions (one per
    /// symbol modulo 3, in index order within each).
    fn produce(&self, brokers: &str) {
        let mut args: Vec<String> = [
            "produce-trades",
            "--brokers",
            brokers,
            "--topic",
            &self.name,
            "--partitions",
            "3",
            "--format",
            "json",
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.selection());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let produced = kafka_tool_json(&args);
        assert_eq!(
            produced["trades"].as_u64(),
            Some((self.last - self.first) as u64),
            "{produced}"
        );
    }

    /// The trades as the independent client lists them.
    fn trades(&self) -> Vec<Trade> {
        let mut args = vec!["trades".to_string()];
        args.extend(self.selection());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kafka_tool_lines(&args).iter().map(Trade::from).collect()
    }

    /// A bounded stream over the topic, its watermark `delay_s` seconds
    /// behind. The generator moves a trade back by at most
    /// `MAX_DISORDER_MS` = 4 s from its place in index order, so on a
    /// partition no trade is 4 s or more older than one before it: with a
    /// delay of 5 s or more none is late, and every trade must reach the joins.
    fn stream_sql(&self, stream: &str, brokers: &str, delay_s: u32) -> String {
        format!(
            "CREATE STREAM {stream} (symbol TEXT, price DOUBLE, volume BIGINT, ts TIMESTAMP,
                 WATERMARK FOR ts AS ts - INTERVAL '{delay_s}' SECOND)
               WITH (connector = 'kafka', brokers = '{brokers}', topic = '{}', format = 'json',
                     end = 'latest', properties.fetch.wait.max.ms = '50');\n",
            self.name
        )
    }
}

#[derive(Clone, Debug)]
struct Trade {
    symbol: String,
    price: f64,
    volume: i64,
    ts_us: i64,
}

impl From<&Row> for Trade {
    fn from(row: &Row) -> Self {
        Trade {
            symbol: text(row, "symbol"),
            price: row["price"].as_f64().expect("a price"),
            volume: int(row, "volume"),
            ts_us: int(row, "ts_us"),
        }
    }
}

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text {column} in {row:?}"))
        .to_string()
}

fn int(row: &Row, column: &str) -> i64 {
    row.get(column)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer {column} in {row:?}"))
}

/// An integer column that may be NULL.
fn maybe_int(row: &Row, column: &str) -> Option<i64> {
    match row.get(column) {
        Some(Value::Null) | None => None,
        Some(value) => Some(
            value
                .as_i64()
                .unwrap_or_else(|| panic!("{column} is no integer in {row:?}")),
        ),
    }
}

/// A row of `per_window`: window_start, symbol, joined, with_trade,
/// with_quote, trade_volume, quote_volume.
type WindowRow = (i64, String, i64, i64, i64, Option<i64>, Option<i64>);

/// The FULL join of trades and quotes on symbol and 10 s window, made pair
/// by pair, then aggregated per window and symbol like `per_window`.
fn expected_per_window(trades: &[Trade], quotes: &[Trade]) -> Vec<WindowRow> {
    let by_window = |rows: &[Trade]| {
        let mut groups: BTreeMap<(i64, String), Vec<Trade>> = BTreeMap::new();
        for row in rows {
            let start = row.ts_us.div_euclid(WINDOW_US) * WINDOW_US;
            groups
                .entry((start, row.symbol.clone()))
                .or_default()
                .push(row.clone());
        }
        groups
    };
    let (trades, quotes) = (by_window(trades), by_window(quotes));
    let mut keys: Vec<&(i64, String)> = trades.keys().chain(quotes.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = Vec::new();
    keys.into_iter()
        .map(|key| {
            let (t, q) = (
                trades.get(key).unwrap_or(&none),
                quotes.get(key).unwrap_or(&none),
            );
            // The joined rows as (trade volume, quote volume); an unmatched
            // row has NULLs on the other side.
            let joined: Vec<(Option<i64>, Option<i64>)> = if t.is_empty() {
                q.iter().map(|q| (None, Some(q.volume))).collect()
            } else if q.is_empty() {
                t.iter().map(|t| (Some(t.volume), None)).collect()
            } else {
                t.iter()
                    .flat_map(|t| q.iter().map(|q| (Some(t.volume), Some(q.volume))))
                    .collect()
            };
            // count() and sum() of each side; SQL's sum is NULL when every
            // value is NULL.
            let (mut with_trade, mut with_quote) = (0, 0);
            let (mut trade_volume, mut quote_volume) = (None, None);
            for (trade, quote) in &joined {
                if let Some(v) = trade {
                    with_trade += 1;
                    trade_volume = Some(trade_volume.unwrap_or(0) + v);
                }
                if let Some(v) = quote {
                    with_quote += 1;
                    quote_volume = Some(quote_volume.unwrap_or(0) + v);
                }
            }
            (
                key.0,
                key.1.clone(),
                joined.len() as i64,
                with_trade,
                with_quote,
                trade_volume,
                quote_volume,
            )
        })
        .collect()
}

/// A row of `close_pairs`: symbol, trade ts, quote ts, trade volume, quote
/// volume, trade price bits, quote price bits (floats must come back bit
/// for bit).
type PairRow = (String, i64, i64, i64, i64, u64, u64);

/// Every (trade, quote) of the same symbol with the quote from
/// [`BEFORE_MS`] before to [`AFTER_MS`] after the trade, bounds included.
fn expected_close_pairs(trades: &[Trade], quotes: &[Trade]) -> Vec<PairRow> {
    let mut pairs = Vec::new();
    for t in trades {
        for q in quotes {
            let within =
                q.ts_us >= t.ts_us - BEFORE_MS * 1000 && q.ts_us <= t.ts_us + AFTER_MS * 1000;
            if t.symbol == q.symbol && within {
                pairs.push((
                    t.symbol.clone(),
                    t.ts_us,
                    q.ts_us,
                    t.volume,
                    q.volume,
                    t.price.to_bits(),
                    q.price.to_bits(),
                ));
            }
        }
    }
    pairs.sort();
    pairs
}

/// Asserts two sorted multisets are equal, naming what is missing and what
/// is extra.
fn assert_same_rows<T: Ord + Clone + std::fmt::Debug>(view: &str, got: &[T], want: &[T]) {
    if got == want {
        return;
    }
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut g, mut w) = (got.iter().peekable(), want.iter().peekable());
    loop {
        match (g.peek(), w.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if a == b => {
                g.next();
                w.next();
            }
            (Some(a), Some(b)) if a < b => extra.push(g.next().unwrap().clone()),
            (Some(_), None) => extra.push(g.next().unwrap().clone()),
            _ => missing.push(w.next().unwrap().clone()),
        }
    }
    panic!(
        "{view}: {} rows archived, {} expected; {} missing (first: {:?}), {} extra (first: {:?})",
        got.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
    );
}

#[test]
fn a_windowed_join_and_an_interval_join_of_two_kafka_topics_are_exact() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    // Trades cover about 1 s to 305 s; quotes (trades 1500 to 4500 of
    // another seed) about 146 s to 455 s. Only the middle overlaps, so the
    // FULL join has windows with one side only, at both ends.
    let trades = Topic::new("join_trades", 71, 0, 3000);
    let quotes = Topic::new("join_quotes", 72, 1500, 4500);
    std::thread::scope(|s| {
        s.spawn(|| trades.produce(&brokers));
        quotes.produce(&brokers);
    });

    let dir = tempfile::tempdir().unwrap();
    // Different delays: the joins must wait for the larger one.
    let sql = trades.stream_sql("trades", &brokers, 5)
        + &quotes.stream_sql("quotes", &brokers, 8)
        + &format!(
            "CREATE MATERIALIZED VIEW per_window WITH (archive = 'delta', path = 'per_window') AS
               SELECT coalesce(t.window_start, q.window_start) AS window_start,
                      coalesce(t.symbol, q.symbol) AS symbol,
                      count(*) AS joined, count(t.volume) AS with_trade,
                      count(q.volume) AS with_quote,
                      sum(t.volume) AS trade_volume, sum(q.volume) AS quote_volume
               FROM TUMBLE(trades, ts, INTERVAL '10' SECOND) AS t
               FULL JOIN TUMBLE(quotes, ts, INTERVAL '10' SECOND) AS q
                 ON t.symbol = q.symbol AND t.window_start = q.window_start
               GROUP BY coalesce(t.window_start, q.window_start), coalesce(t.symbol, q.symbol);
             CREATE MATERIALIZED VIEW close_pairs WITH (archive = 'delta', path = 'close_pairs') AS
               SELECT t.symbol, t.ts AS trade_ts, q.ts AS quote_ts, t.volume AS trade_volume,
                      q.volume AS quote_volume, t.price AS trade_price, q.price AS quote_price
               FROM trades t JOIN quotes q
                 ON t.symbol = q.symbol
                AND q.ts BETWEEN t.ts - INTERVAL '{BEFORE_MS}' MILLISECOND
                             AND t.ts + INTERVAL '{AFTER_MS}' MILLISECOND;\n"
        );
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));

    let (trades, quotes) = (trades.trades(), quotes.trades());
    let want = expected_per_window(&trades, &quotes);
    // The data must exercise the FULL join's three kinds of rows.
    assert!(want.iter().any(|r| r.5.is_none()) && want.iter().any(|r| r.6.is_none()));
    assert!(want.iter().any(|r| r.5.is_some() && r.6.is_some()));
    let mut got: Vec<WindowRow> = read_table("delta", &dir.path().join("data/per_window"))
        .iter()
        .map(|r| {
            (
                int(r, "window_start"),
                text(r, "symbol"),
                int(r, "joined"),
                int(r, "with_trade"),
                int(r, "with_quote"),
                maybe_int(r, "trade_volume"),
                maybe_int(r, "quote_volume"),
            )
        })
        .collect();
    got.sort();
    assert_same_rows("per_window", &got, &want);

    let want = expected_close_pairs(&trades, &quotes);
    assert!(
        (1000..10_000).contains(&want.len()),
        "{} close pairs",
        want.len()
    );
    let mut got: Vec<PairRow> = read_table("delta", &dir.path().join("data/close_pairs"))
        .iter()
        .map(|r| {
            (
                text(r, "symbol"),
                int(r, "trade_ts"),
                int(r, "quote_ts"),
                int(r, "trade_volume"),
                int(r, "quote_volume"),
                r["trade_price"].as_f64().expect("trade_price").to_bits(),
                r["quote_price"].as_f64().expect("quote_price").to_bits(),
            )
        })
        .collect();
    got.sort();
    assert_same_rows("close_pairs", &got, &want);
}
