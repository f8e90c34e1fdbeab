//! Synthetic stock-trade feed: a deterministic, realistic source of trades
//! that builds Arrow record batches directly.
//!
//! The feed exists so that queries, windows and watermarks can be exercised
//! without any external system. It is realistic enough to produce interesting
//! results (skewed symbol popularity, random-walk prices, lot-sized volumes,
//! bounded out-of-order event times) and fully reproducible: the same
//! [`StocksConfig`] always yields the same events, bit for bit, no matter how
//! the caller splits them into batches. The PRNG lives in this module so that
//! output never changes with a dependency upgrade.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// Well-known US tickers used when no symbols are configured, most popular
/// first: the generator gives earlier symbols more trades.
pub const DEFAULT_SYMBOLS: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AMD", "NFLX", "AVGO", "INTC", "JPM",
    "BAC", "ORCL", "CRM", "ADBE", "CSCO", "QCOM", "V", "MA", "PYPL", "WMT", "COST", "KO", "PEP",
    "DIS", "NKE", "MCD", "HD", "XOM", "CVX", "PFE", "JNJ", "UNH", "BA", "CAT", "IBM", "GS",
];

/// Per-trade relative price volatility (standard deviation).
const PRICE_SIGMA: f64 = 0.0007;

/// Pull of each price back towards its starting level, per trade of that
/// symbol. A pure random walk wanders off to pennies or millions over a long
/// run; this keeps prices within roughly +-10 % (one stdev) of their start
/// while leaving short-term moves indistinguishable from a random walk.
const PRICE_REVERSION: f64 = 2e-5;

/// Most rows in one batch, whatever the caller asks for (see
/// `StocksGenerator::max_batch_rows`).
const MAX_BATCH_ROWS: usize = 1 << 20;

/// Floor of the internal price: exchanges delist sub-dollar stocks, and it
/// keeps prices far away from zero whatever the random walk does.
const MIN_PRICE: f64 = 1.0;

/// Range of starting prices (sampled log-uniformly, so cheap and expensive
/// stocks are equally common on a log scale, as in real markets).
const START_PRICE_MIN: f64 = 20.0;
const START_PRICE_MAX: f64 = 500.0;

/// Settings of the generator (the engine parses SQL options into this).
#[derive(Debug, Clone, PartialEq)]
pub struct StocksConfig {
    /// Seed of every random choice; equal seeds give equal feeds.
    pub seed: u64,
    /// Ticker symbols to trade, most popular first; empty means
    /// [`DEFAULT_SYMBOLS`].
    pub symbols: Vec<String>,
    /// Nominal event-time spacing between consecutive events; values <= 0
    /// are treated as 1.
    pub step_nanos: i64,
    /// Maximum amount an event's time lags its nominal time; negative values
    /// are treated as 0.
    pub disorder_nanos: i64,
    /// Nominal event time of event 0 (ns since Unix epoch, UTC).
    pub start_nanos: i64,
    /// Stop after this many events; `None` runs forever.
    pub limit: Option<u64>,
}

/// Returns the first `n` of [`DEFAULT_SYMBOLS`] (fewer if `n` exceeds its
/// length), for configs that ask for a number of symbols rather than names.
pub fn default_symbols(n: usize) -> Vec<String> {
    DEFAULT_SYMBOLS
        .iter()
        .take(n)
        .map(|s| (*s).to_string())
        .collect()
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("volume", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]))
});

/// Schema of every batch the generator produces: `symbol` Utf8, `price`
/// Float64, `volume` Int64, `ts` Timestamp(ns, no zone), all non-null.
pub fn stocks_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Deterministic stock-trade generator.
///
/// Event `i` has nominal time `start_nanos + i * step_nanos` (saturating at
/// the ends of the `i64` range) and event time `ts_i = nominal_i - d_i` with
/// `d_i` uniform in `[0, disorder_nanos)` (always 0 when `disorder_nanos` is
/// 0).
///
/// # Lateness invariant
///
/// For every `i`, `ts_i >= max(ts_0, ..., ts_{i-1}) - disorder_nanos`.
/// Nominal times never decrease, so every earlier `ts_j <= nominal_j <=
/// nominal_i`, while `ts_i > nominal_i - disorder_nanos`. Hence a watermark
/// of "max event time seen so far minus `disorder_nanos`" never declares an
/// event of this feed late, which makes the feed usable for testing windows
/// with exact, loss-free results.
pub struct StocksGenerator {
    symbols: Vec<String>,
    /// Longest symbol in bytes, to size the string buffer of a batch once.
    max_symbol_len: usize,
    alias: AliasTable,
    /// Current (unrounded) price of each symbol.
    prices: Vec<f64>,
    /// Starting price of each symbol, which the walk reverts towards.
    anchors: Vec<f64>,
    rng: Xoshiro256StarStar,
    step_nanos: i64,
    disorder_nanos: i64,
    next_nominal: i64,
    limit: Option<u64>,
    produced: u64,
}

impl StocksGenerator {
    /// Creates a generator; never fails, sanitising odd settings instead
    /// (see [`StocksConfig`]).
    pub fn new(config: StocksConfig) -> Self {
        let symbols = if config.symbols.is_empty() {
            default_symbols(DEFAULT_SYMBOLS.len())
        } else {
            config.symbols
        };
        // Zipf weights: the share of trades falls off with popularity rank,
        // the way volume concentrates in a few names on real exchanges.
        let weights: Vec<f64> = (0..symbols.len()).map(|k| 1.0 / (k as f64 + 1.0)).collect();
        // Starting prices hash the symbol name with the seed, so a symbol's
        // level does not change when other symbols are added or reordered.
        let anchors: Vec<f64> = symbols
            .iter()
            .map(|s| start_price(config.seed, s))
            .collect();
        Self {
            max_symbol_len: symbols.iter().map(String::len).max().unwrap_or(0),
            alias: AliasTable::new(&weights),
            prices: anchors.clone(),
            anchors,
            symbols,
            rng: Xoshiro256StarStar::seed_from(config.seed),
            step_nanos: config.step_nanos.max(1),
            disorder_nanos: config.disorder_nanos.max(0),
            next_nominal: config.start_nanos,
            limit: config.limit,
            produced: 0,
        }
    }

    /// Next batch of at most `max_rows` events; `None` once `limit` events
    /// were produced. A `max_rows` of 0 yields an empty batch (not `None`),
    /// because the feed is not exhausted.
    pub fn next_batch(&mut self, max_rows: usize) -> Option<RecordBatch> {
        let remaining = match self.limit {
            Some(limit) => limit.saturating_sub(self.produced),
            None => u64::MAX,
        };
        if remaining == 0 {
            return None;
        }
        let rows = usize::try_from(remaining)
            .map_or(max_rows, |r| r.min(max_rows))
            .min(self.max_batch_rows());

        // `finish` hands the builders' buffers over to the batch, so nothing
        // survives between batches to reuse; sizing them exactly once here is
        // what avoids reallocations in the loop.
        let mut symbol_col =
            StringBuilder::with_capacity(rows, rows.saturating_mul(self.max_symbol_len));
        let mut price_col = Float64Builder::with_capacity(rows);
        let mut volume_col = Int64Builder::with_capacity(rows);
        let mut ts_col = TimestampNanosecondBuilder::with_capacity(rows);

        for _ in 0..rows {
            // Exactly four draws per event, in a fixed order, so the stream
            // of events does not depend on batch boundaries, and changing
            // the disorder only changes timestamps.
            let sym_bits = self.rng.next_u64();
            let price_bits = self.rng.next_u64();
            let volume_bits = self.rng.next_u64();
            let disorder_bits = self.rng.next_u64();

            let idx = self.alias.sample(sym_bits);
            let price = self.step_price(idx, price_bits);
            let ts = self
                .next_nominal
                .saturating_sub(bounded(disorder_bits, self.disorder_nanos));
            self.next_nominal = self.next_nominal.saturating_add(self.step_nanos);

            symbol_col.append_value(&self.symbols[idx]);
            price_col.append_value(price);
            volume_col.append_value(volume(volume_bits));
            ts_col.append_value(ts);
        }
        self.produced += rows as u64;

        let columns: Vec<ArrayRef> = vec![
            Arc::new(symbol_col.finish()),
            Arc::new(price_col.finish()),
            Arc::new(volume_col.finish()),
            Arc::new(ts_col.finish()),
        ];
        Some(
            RecordBatch::try_new(stocks_schema(), columns)
                .expect("columns are built to match stocks_schema, without nulls"),
        )
    }

    /// The generator's state after the events made so far: a generator
    /// restored from it makes exactly the events this one would make next.
    pub(crate) fn state(&self) -> GeneratorState {
        GeneratorState {
            prices: self.prices.clone(),
            rng: self.rng.s,
            next_nominal: self.next_nominal,
            produced: self.produced,
        }
    }

    /// Continues from a state [`StocksGenerator::state`] returned by a
    /// generator with the same configuration.
    pub(crate) fn restore(&mut self, state: GeneratorState) -> std::result::Result<(), String> {
        if state.prices.len() != self.prices.len() {
            return Err(format!(
                "the checkpoint has {} symbols, the stream {}",
                state.prices.len(),
                self.prices.len()
            ));
        }
        self.prices = state.prices;
        self.rng.s = state.rng;
        self.next_nominal = state.next_nominal;
        self.produced = state.produced;
        Ok(())
    }

    /// Events produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Hard cap on rows per batch: a caller asking for `usize::MAX` rows of
    /// an unbounded feed must get a batch, not an allocation failure or an
    /// overflow of the string column's i32 offsets.
    fn max_batch_rows(&self) -> usize {
        (i32::MAX as usize / self.max_symbol_len.max(1)).clamp(1, MAX_BATCH_ROWS)
    }

    /// Advances the price of symbol `idx` by one trade and returns it rounded
    /// to cents.
    fn step_price(&mut self, idx: usize, bits: u64) -> f64 {
        let p = self.prices[idx];
        let anchor = self.anchors[idx];
        let next = (p * (1.0 + PRICE_SIGMA * normalish(bits)) + PRICE_REVERSION * (anchor - p))
            .max(MIN_PRICE);
        self.prices[idx] = next;
        round_cents(next)
    }
}

fn round_cents(p: f64) -> f64 {
    (p * 100.0).round() / 100.0
}

/// Trade size in shares: mostly round lots, sometimes odd lots, rarely
/// blocks, each skewed towards the small end as on real tapes.
fn volume(bits: u64) -> i64 {
    // The top 10 bits pick the kind of trade, the low 53 bits its size, so a
    // single draw suffices.
    let kind = bits >> 54;
    let u = unit_f64(bits);
    match kind {
        // ~0.5 %: block trades of 10_000..=100_000 shares, in round lots.
        0..5 => 10_000 + 100 * (901.0 * u * u) as i64,
        // ~10 %: odd lots of 1..=99 shares.
        5..107 => 1 + (99.0 * u) as i64,
        // The rest: 1..=50 round lots of 100, a single lot the most common.
        _ => 100 * (1 + (50.0 * u * u * u) as i64),
    }
}

/// Uniform in `[0, n)` from 64 random bits (0 when `n <= 0`), via the
/// multiply-high trick, which avoids division and modulo bias worth caring
/// about.
fn bounded(bits: u64, n: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    // The result is below `n`, so it fits back into i64.
    ((u128::from(bits) * n as u128) >> 64) as i64
}

/// Uniform in `[0, 1)` from the low 53 bits.
fn unit_f64(bits: u64) -> f64 {
    (bits & ((1 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Roughly standard normal value from one draw: the sum of four 16-bit
/// uniforms (Irwin-Hall), rescaled to unit variance. Its tails stop at about
/// 3.5 sigma, which rules out absurd single-trade jumps.
fn normalish(bits: u64) -> f64 {
    let sum = (bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48);
    // Each 16-bit part has mean 32767.5, so `sum + 2` centres at 2 * 65536.
    ((sum as f64 + 2.0) / 65536.0 - 2.0) * 3.0_f64.sqrt()
}

/// Starting price of a symbol: log-uniform in the start range, from the seed
/// and the symbol name.
fn start_price(seed: u64, symbol: &str) -> f64 {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let name_hash = symbol.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut state = seed ^ name_hash;
    let u = unit_f64(splitmix64(&mut state));
    round_cents(START_PRICE_MIN * (START_PRICE_MAX / START_PRICE_MIN).powf(u))
}

/// Walker/Vose alias table: O(1) sampling from a fixed discrete distribution.
struct AliasTable {
    /// Acceptance threshold of each column, scaled to 2^32.
    threshold: Vec<u64>,
    alias: Vec<usize>,
}

impl AliasTable {
    /// Builds the table; `weights` must be non-empty and positive.
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<usize> = (0..n).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Columns left over are full up to rounding error.
        for i in small.into_iter().chain(large) {
            scaled[i] = 1.0;
        }
        let threshold = scaled
            .iter()
            .map(|p| (p.clamp(0.0, 1.0) * 4_294_967_296.0) as u64)
            .collect();
        Self { threshold, alias }
    }

    /// Samples an index: the high 32 bits choose a column, the low 32 bits
    /// decide between the column and its alias.
    fn sample(&self, bits: u64) -> usize {
        let column = (((bits >> 32) * self.threshold.len() as u64) >> 32) as usize;
        if (bits & 0xffff_ffff) < self.threshold[column] {
            column
        } else {
            self.alias[column]
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman & Vigna): fast, high quality, and tiny enough to
/// own, which pins the feed's output independently of any crate.
/// Where a [`StocksGenerator`] stands, for checkpoints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GeneratorState {
    prices: Vec<f64>,
    rng: [u64; 4],
    next_nominal: i64,
    produced: u64,
}

struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Seeds via SplitMix64, as the authors recommend; it never yields the
    /// all-zero state.
    fn seed_from(seed: u64) -> Self {
        let mut state = seed;
        Self {
            s: std::array::from_fn(|_| splitmix64(&mut state)),
        }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::compute::concat_batches;
    use std::collections::HashMap;

    fn config(seed: u64) -> StocksConfig {
        StocksConfig {
            seed,
            symbols: default_symbols(10),
            step_nanos: 1_000_000,
            disorder_nanos: 5_000_000,
            start_nanos: 1_700_000_000_000_000_000,
            limit: None,
        }
    }

    fn column<T: 'static>(batch: &RecordBatch, i: usize) -> &T {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<T>()
            .expect("column has the schema's type")
    }

    fn one_batch(config: StocksConfig, rows: usize) -> RecordBatch {
        StocksGenerator::new(config)
            .next_batch(rows)
            .expect("unlimited feed")
    }

    #[test]
    fn schema_matches() {
        let schema = stocks_schema();
        let expected = Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("price", DataType::Float64, false),
            Field::new("volume", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]);
        assert_eq!(*schema, expected);
        let batch = one_batch(config(1), 100);
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.num_rows(), 100);
        for col in batch.columns() {
            assert_eq!(col.null_count(), 0);
        }
    }

    #[test]
    fn deterministic_across_batch_splits() {
        let n = 20_000;
        let whole = one_batch(config(42), n);
        for sizes in [&[1usize, 7, 4096][..], &[3, 0, 999, 10_000], &[19_999, 5]] {
            let mut generator = StocksGenerator::new(config(42));
            let mut parts = Vec::new();
            let mut got = 0;
            let mut k = 0;
            while got < n {
                let want = sizes[k % sizes.len()].min(n - got);
                k += 1;
                let batch = generator.next_batch(want).expect("unlimited feed");
                assert_eq!(batch.num_rows(), want);
                got += want;
                parts.push(batch);
            }
            let joined = concat_batches(&stocks_schema(), &parts).expect("same schema");
            assert_eq!(joined, whole, "split {sizes:?}");
            assert_eq!(generator.produced(), n as u64);
        }
        // A fresh generator with the same config repeats itself too.
        assert_eq!(one_batch(config(42), n), whole);
    }

    #[test]
    fn no_event_is_late_for_the_disorder_watermark() {
        for (step, disorder) in [(1_000_000, 5_000_000), (10, 3), (7, 0), (1_000, 1)] {
            let cfg = StocksConfig {
                step_nanos: step,
                disorder_nanos: disorder,
                ..config(9)
            };
            let mut generator = StocksGenerator::new(cfg.clone());
            let mut max_ts = i64::MIN;
            let mut out_of_order = 0;
            let mut i: i64 = 0;
            while let Some(batch) = generator.next_batch(1000) {
                let ts = column::<TimestampNanosecondArray>(&batch, 3);
                for &t in ts.values() {
                    let nominal = cfg.start_nanos + i * step;
                    assert!(t <= nominal && t > nominal - disorder.max(1), "event {i}");
                    if i > 0 {
                        assert!(t >= max_ts - disorder, "event {i} would be late");
                        if t < max_ts {
                            out_of_order += 1;
                        }
                    }
                    max_ts = max_ts.max(t);
                    i += 1;
                }
                if i >= 100_000 {
                    break;
                }
            }
            // The invariant must not hold merely because events are ordered.
            if disorder > step {
                assert!(out_of_order > 1000, "only {out_of_order} out of order");
            }
            if disorder <= 1 {
                assert_eq!(out_of_order, 0);
            }
        }
    }

    #[test]
    fn limit_is_respected_exactly() {
        let cfg = StocksConfig {
            limit: Some(10_001),
            ..config(3)
        };
        let mut generator = StocksGenerator::new(cfg);
        let mut sizes = Vec::new();
        while let Some(batch) = generator.next_batch(4096) {
            sizes.push(batch.num_rows());
        }
        assert_eq!(sizes, [4096, 4096, 1809]);
        assert_eq!(generator.produced(), 10_001);
        assert!(generator.next_batch(4096).is_none());

        let mut empty = StocksGenerator::new(StocksConfig {
            limit: Some(0),
            ..config(3)
        });
        assert!(empty.next_batch(10).is_none());
    }

    #[test]
    fn extreme_max_rows_are_handled() {
        let mut generator = StocksGenerator::new(config(3));
        let batch = generator.next_batch(0).expect("feed not exhausted");
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(generator.produced(), 0);
        let batch = generator.next_batch(usize::MAX).expect("unlimited feed");
        assert_eq!(batch.num_rows(), MAX_BATCH_ROWS);
        // Long names shrink the cap so string offsets cannot overflow i32
        // (checked without building the 2 GiB batch it allows).
        let generator = StocksGenerator::new(StocksConfig {
            symbols: vec!["X".repeat(1 << 14)],
            ..config(3)
        });
        assert_eq!(generator.max_batch_rows(), (i32::MAX as usize) >> 14);
    }

    #[test]
    fn prices_and_volumes_are_plausible() {
        let batch = one_batch(config(5), 200_000);
        let symbols = column::<StringArray>(&batch, 0);
        let prices = column::<Float64Array>(&batch, 1);
        let volumes = column::<Int64Array>(&batch, 2);

        let mut last: HashMap<&str, f64> = HashMap::new();
        for (i, &p) in prices.values().iter().enumerate() {
            assert!(p > 0.01 && p.is_finite(), "price {p}");
            assert!(
                ((p * 100.0).round() / 100.0 - p).abs() < 1e-9,
                "not cents: {p}"
            );
            if let Some(prev) = last.insert(symbols.value(i), p) {
                // Small steps only (3.5 sigma plus rounding).
                assert!((p / prev - 1.0).abs() < 0.01, "jump {prev} -> {p}");
            }
        }

        let (mut odd, mut round, mut block) = (0, 0, 0);
        for &v in volumes.values() {
            match v {
                1..=99 => odd += 1,
                100..=5000 if v % 100 == 0 => round += 1,
                10_000..=100_000 if v % 100 == 0 => block += 1,
                _ => panic!("unexpected volume {v}"),
            }
        }
        let n = volumes.len() as f64;
        assert!(round as f64 > 0.85 * n, "round lots {round}");
        assert!(
            (0.07 * n..0.13 * n).contains(&(odd as f64)),
            "odd lots {odd}"
        );
        assert!(
            (0.002 * n..0.01 * n).contains(&(block as f64)),
            "blocks {block}"
        );
    }

    #[test]
    fn starting_prices_are_plausible() {
        for seed in 0..20 {
            for s in DEFAULT_SYMBOLS {
                let p = start_price(seed, s);
                assert!((START_PRICE_MIN..=START_PRICE_MAX).contains(&p), "{s}: {p}");
            }
        }
    }

    #[test]
    fn popularity_is_skewed() {
        let cfg = StocksConfig {
            symbols: default_symbols(DEFAULT_SYMBOLS.len()),
            ..config(8)
        };
        let batch = one_batch(cfg, 400_000);
        let symbols = column::<StringArray>(&batch, 0);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in symbols.iter().flatten() {
            *counts.entry(s).or_default() += 1;
        }
        assert_eq!(counts.len(), DEFAULT_SYMBOLS.len(), "every symbol trades");
        let first = counts[DEFAULT_SYMBOLS[0]] as f64;
        let last = counts[DEFAULT_SYMBOLS[DEFAULT_SYMBOLS.len() - 1]] as f64;
        // Zipf with exponent 1: the first symbol trades ~38x the last.
        assert!(first / last > 25.0, "first {first}, last {last}");
        // ...and the first gets about 1 / H_38 of all trades.
        let share = first / symbols.len() as f64;
        assert!((0.22..0.25).contains(&share), "share {share}");
    }

    #[test]
    fn different_seeds_differ() {
        let a = one_batch(config(1), 1000);
        let b = one_batch(config(2), 1000);
        assert_ne!(a, b);
        for i in 0..3 {
            assert_ne!(a.column(i), b.column(i), "column {i}");
        }
    }

    #[test]
    fn odd_configs_do_not_panic() {
        let extremes = [
            (i64::MAX - 5, 0, i64::MAX),
            (i64::MIN, i64::MIN, -1),
            (i64::MAX, i64::MAX, i64::MIN),
            (0, 1, i64::MAX),
        ];
        for (start, step, disorder) in extremes {
            let mut generator = StocksGenerator::new(StocksConfig {
                seed: u64::MAX,
                symbols: Vec::new(),
                step_nanos: step,
                disorder_nanos: disorder,
                start_nanos: start,
                limit: Some(50),
            });
            let batch = generator.next_batch(100).expect("limit not reached");
            assert_eq!(batch.num_rows(), 50);
        }
        // Empty symbols fall back to the defaults; step <= 0 acts as 1.
        let mut generator = StocksGenerator::new(StocksConfig {
            symbols: Vec::new(),
            step_nanos: -3,
            disorder_nanos: 0,
            start_nanos: 100,
            ..config(4)
        });
        let batch = generator.next_batch(1000).expect("unlimited feed");
        let ts = column::<TimestampNanosecondArray>(&batch, 3);
        assert!(ts.values().iter().copied().eq(100..1100));
        let symbols = column::<StringArray>(&batch, 0);
        assert!(
            symbols
                .iter()
                .flatten()
                .all(|s| DEFAULT_SYMBOLS.contains(&s))
        );
        // Odd symbol names are traded as given.
        let cfg = StocksConfig {
            symbols: vec![String::new(), "ÄÖÜ".to_string()],
            ..config(4)
        };
        let batch = one_batch(cfg, 100);
        assert_eq!(batch.num_rows(), 100);
    }

    #[test]
    fn default_symbols_clamps() {
        assert!((30..=40).contains(&DEFAULT_SYMBOLS.len()));
        assert_eq!(default_symbols(3), ["AAPL", "MSFT", "NVDA"]);
        assert_eq!(default_symbols(0), Vec::<String>::new());
        assert_eq!(default_symbols(1000).len(), DEFAULT_SYMBOLS.len());
        let mut unique = DEFAULT_SYMBOLS.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), DEFAULT_SYMBOLS.len());
    }

    #[test]
    fn alias_table_matches_weights() {
        let table = AliasTable::new(&[1.0, 2.0, 3.0, 4.0]);
        let mut rng = Xoshiro256StarStar::seed_from(11);
        let mut counts = [0usize; 4];
        let n = 1_000_000;
        for _ in 0..n {
            counts[table.sample(rng.next_u64())] += 1;
        }
        for (k, &c) in counts.iter().enumerate() {
            let expected = (k as f64 + 1.0) / 10.0;
            assert!((c as f64 / n as f64 - expected).abs() < 0.003, "{k}: {c}");
        }
    }

    #[test]
    fn prng_matches_reference() {
        // SplitMix64 reference outputs for seed 0 (from the published
        // algorithm); pinning them guards against accidental edits.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
    }

    /// Run by hand: `cargo test --release -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput() {
        let mut generator = StocksGenerator::new(StocksConfig {
            symbols: default_symbols(DEFAULT_SYMBOLS.len()),
            ..config(1)
        });
        let total = 50_000_000u64;
        let start = std::time::Instant::now();
        let mut rows = 0u64;
        while rows < total {
            let batch = generator.next_batch(8192).expect("unlimited feed");
            rows += batch.num_rows() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{rows} events in {secs:.3} s = {:.1} M events/s",
            rows as f64 / secs / 1e6
        );
    }
}
