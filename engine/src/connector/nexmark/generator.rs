//! The Nexmark event sequence, generated straight into Arrow columns.
//!
//! Event `n` of the sequence (`n` = 0, 1, 2, ...) is a pure function of the
//! seed and `n`: its kind comes from `n % 50` (1 person, 3 auctions, 46
//! bids), its time from the [`Timeline`], and its values from a random
//! number generator seeded with `(seed, n)`. So any subset of the sequence
//! (one kind, one partition, the rest after a checkpoint) can be made on
//! its own and agrees with every other subset made with the same seed.
//!
//! The model is the standard one (Beam's and Flink's `NexmarkGenerator`,
//! as ported by the `nexmark` crate): ids derived from the event number,
//! sellers and bidders drawn from the last 1,000 people and auctions from
//! the last 100, each with a lead of 10 ids not made yet, hot sellers (3 in
//! 4 auctions), hot bidders (3 in 4 bids), hot auctions (1 in 2 bids), hot
//! channels (1 in 2 bids), prices log-uniform from $1 to $10,000, and
//! padding in `extra` to the standard average sizes (person 200 bytes,
//! auction 500, bid 100).

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::Result;

/// Events per round of the sequence, and how many of them are of each kind.
pub(crate) const PROPORTION_DENOMINATOR: u64 = 50;
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;

const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
/// People a seller or bidder is drawn from (the most recent ones).
const ACTIVE_PEOPLE: u64 = 1000;
/// Auctions a bid is drawn from (the most recent ones).
const IN_FLIGHT_AUCTIONS: u64 = 100;
/// Ids beyond the last one made that a draw may pick: the standard model
/// lets bids and auctions name people and auctions made a little later.
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// 1 in this many auctions has a random seller, the rest a hot one.
const HOT_SELLER_RATIO: u64 = 4;
/// 1 in this many bids is on a random auction, the rest on a hot one.
const HOT_AUCTION_RATIO: u64 = 2;
/// 1 in this many bids has a random bidder, the rest a hot one.
const HOT_BIDDER_RATIO: u64 = 4;
/// 1 in this many bids comes through a random channel, the rest a hot one.
const HOT_CHANNEL_RATIO: u64 = 2;
/// Hot sellers, bidders and auctions are the first of each batch of this
/// many ids.
const HOT_BATCH: u64 = 100;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
/// Events between an auction and the one `IN_FLIGHT_AUCTIONS` auctions
/// later; auctions last up to twice that long.
const EVENTS_PER_AUCTION_HORIZON: u64 =
    IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
const CHANNELS: usize = 10_000;

const FIRST_NAMES: &[&str] = &[
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: &[&str] = &[
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_CITIES: &[&str] = &[
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const US_STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const HOT_CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// The kinds of Nexmark event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Person,
    Auction,
    Bid,
}

impl EventKind {
    /// The names users give the kinds, in option values and errors.
    pub const NAMES: &[&str] = &["person", "auction", "bid"];

    /// The kind named `name` (one of [`EventKind::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "person" => Some(EventKind::Person),
            "auction" => Some(EventKind::Auction),
            "bid" => Some(EventKind::Bid),
            _ => None,
        }
    }

    /// The kind of event number `n` of the sequence.
    pub fn of(n: u64) -> Self {
        let rem = n % PROPORTION_DENOMINATOR;
        if rem < PERSON_PROPORTION {
            EventKind::Person
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// The columns of a stream of this kind.
    pub fn schema(self) -> SchemaRef {
        Arc::clone(match self {
            EventKind::Person => &PERSON_SCHEMA,
            EventKind::Auction => &AUCTION_SCHEMA,
            EventKind::Bid => &BID_SCHEMA,
        })
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

static PERSON_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email_address", DataType::Utf8, false),
        Field::new("credit_card", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("date_time", timestamp(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
});

static AUCTION_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("initial_bid", DataType::Int64, false),
        Field::new("reserve", DataType::Int64, false),
        Field::new("date_time", timestamp(), false),
        Field::new("expires", timestamp(), false),
        Field::new("seller", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
});

static BID_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("date_time", timestamp(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
});

/// Event times: event `n` happens at `start_nanos + (n - origin) *
/// step_nanos` (ns since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timeline {
    pub start_nanos: i64,
    pub origin: u64,
    pub step_nanos: f64,
}

impl Timeline {
    fn nanos(&self, n: u64) -> i64 {
        let offset = (n as i128 - self.origin as i128) as f64 * self.step_nanos;
        self.start_nanos.saturating_add(offset.round() as i64)
    }
}

/// Makes the events of one kind.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    pub seed: u64,
    pub kind: EventKind,
    pub timeline: Timeline,
}

impl Generator {
    /// The events of the generator's kind among event numbers `*next`,
    /// `*next + step`, ... below `end`, at most `max_rows` of them, with
    /// `*next` moved past them. `None` when there were none.
    pub fn batch(
        &self,
        next: &mut u64,
        step: u64,
        end: u64,
        max_rows: usize,
    ) -> Result<Option<RecordBatch>> {
        match self.kind {
            EventKind::Person => self.fill(PersonColumns::with_capacity(max_rows), next, step, end),
            EventKind::Auction => {
                self.fill(AuctionColumns::with_capacity(max_rows), next, step, end)
            }
            EventKind::Bid => self.fill(BidColumns::with_capacity(max_rows), next, step, end),
        }
    }

    fn fill<C: Columns>(
        &self,
        mut columns: C,
        next: &mut u64,
        step: u64,
        end: u64,
    ) -> Result<Option<RecordBatch>> {
        let mut rows = 0;
        let mut n = *next;
        while n < end && rows < columns.capacity() {
            if EventKind::of(n) == self.kind {
                let mut rng = Rng::new(self.seed, n);
                columns.push(n, &self.timeline, &mut rng);
                rows += 1;
            }
            n = n.saturating_add(step);
        }
        *next = n;
        if rows == 0 {
            return Ok(None);
        }
        columns.finish().map(Some)
    }
}

/// Arrow columns being filled with events of one kind.
trait Columns {
    fn capacity(&self) -> usize;
    fn push(&mut self, n: u64, timeline: &Timeline, rng: &mut Rng);
    fn finish(self) -> Result<RecordBatch>;
}

struct PersonColumns {
    capacity: usize,
    id: Vec<i64>,
    name: Text,
    email_address: Text,
    credit_card: Text,
    city: Text,
    state: Text,
    date_time: Vec<i64>,
    extra: Text,
}

impl PersonColumns {
    fn with_capacity(rows: usize) -> Self {
        PersonColumns {
            capacity: rows,
            id: Vec::with_capacity(rows),
            name: Text::with_capacity(rows, 12),
            email_address: Text::with_capacity(rows, 17),
            credit_card: Text::with_capacity(rows, 19),
            city: Text::with_capacity(rows, 8),
            state: Text::with_capacity(rows, 2),
            date_time: Vec::with_capacity(rows),
            extra: Text::with_capacity(rows, AVG_PERSON_BYTES),
        }
    }
}

impl Columns for PersonColumns {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn push(&mut self, n: u64, timeline: &Timeline, rng: &mut Rng) {
        self.id.push((FIRST_PERSON_ID + person_last_id(n)) as i64);
        let before = self.byte_len();
        self.name.values.extend_from_slice(pick(rng, FIRST_NAMES));
        self.name.values.push(b' ');
        self.name.values.extend_from_slice(pick(rng, LAST_NAMES));
        self.name.end_row();
        rng.letters(&mut self.email_address.values, 7);
        self.email_address.values.push(b'@');
        rng.letters(&mut self.email_address.values, 5);
        self.email_address.values.extend_from_slice(b".com");
        self.email_address.end_row();
        for group in 0..4 {
            if group > 0 {
                self.credit_card.values.push(b' ');
            }
            let digits = rng.below(10_000);
            for div in [1000, 100, 10, 1] {
                self.credit_card
                    .values
                    .push(b'0' + (digits / div % 10) as u8);
            }
        }
        self.credit_card.end_row();
        self.city.values.extend_from_slice(pick(rng, US_CITIES));
        self.city.end_row();
        self.state.values.extend_from_slice(pick(rng, US_STATES));
        self.state.end_row();
        self.date_time.push(timeline.nanos(n));
        let size = 8 + self.byte_len() - before;
        rng.extra(&mut self.extra, size, AVG_PERSON_BYTES);
    }

    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.id)),
            self.name.finish()?,
            self.email_address.finish()?,
            self.credit_card.finish()?,
            self.city.finish()?,
            self.state.finish()?,
            Arc::new(TimestampNanosecondArray::from(self.date_time)),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(EventKind::Person.schema(), columns)?)
    }
}

impl PersonColumns {
    /// Bytes in the text columns before `extra`, for sizing `extra`.
    fn byte_len(&self) -> usize {
        self.name.values.len()
            + self.email_address.values.len()
            + self.credit_card.values.len()
            + self.city.values.len()
            + self.state.values.len()
    }
}

struct AuctionColumns {
    capacity: usize,
    id: Vec<i64>,
    item_name: Text,
    description: Text,
    initial_bid: Vec<i64>,
    reserve: Vec<i64>,
    date_time: Vec<i64>,
    expires: Vec<i64>,
    seller: Vec<i64>,
    category: Vec<i64>,
    extra: Text,
}

impl AuctionColumns {
    fn with_capacity(rows: usize) -> Self {
        AuctionColumns {
            capacity: rows,
            id: Vec::with_capacity(rows),
            item_name: Text::with_capacity(rows, 20),
            description: Text::with_capacity(rows, 100),
            initial_bid: Vec::with_capacity(rows),
            reserve: Vec::with_capacity(rows),
            date_time: Vec::with_capacity(rows),
            expires: Vec::with_capacity(rows),
            seller: Vec::with_capacity(rows),
            category: Vec::with_capacity(rows),
            extra: Text::with_capacity(rows, AVG_AUCTION_BYTES),
        }
    }
}

impl Columns for AuctionColumns {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn push(&mut self, n: u64, timeline: &Timeline, rng: &mut Rng) {
        self.id.push((FIRST_AUCTION_ID + auction_last_id(n)) as i64);
        rng.letters(&mut self.item_name.values, 20);
        self.item_name.end_row();
        rng.letters(&mut self.description.values, 100);
        self.description.end_row();
        let initial_bid = rng.price();
        self.initial_bid.push(initial_bid);
        self.reserve.push(initial_bid + rng.price());
        let time = timeline.nanos(n);
        self.date_time.push(time);
        let horizon = timeline
            .nanos(n + EVENTS_PER_AUCTION_HORIZON)
            .saturating_sub(time)
            .max(0) as u64;
        let length = 1 + rng.below(horizon.saturating_mul(2).max(1));
        self.expires.push(time.saturating_add(length as i64));
        let seller = if rng.below(HOT_SELLER_RATIO) > 0 {
            person_last_id(n) / HOT_BATCH * HOT_BATCH
        } else {
            person_next_id(n, rng)
        };
        self.seller.push((FIRST_PERSON_ID + seller) as i64);
        self.category
            .push((FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES)) as i64);
        // The standard size: the id, the two names and five 8-byte numbers.
        rng.extra(&mut self.extra, 8 + 20 + 100 + 5 * 8, AVG_AUCTION_BYTES);
    }

    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.id)),
            self.item_name.finish()?,
            self.description.finish()?,
            Arc::new(Int64Array::from(self.initial_bid)),
            Arc::new(Int64Array::from(self.reserve)),
            Arc::new(TimestampNanosecondArray::from(self.date_time)),
            Arc::new(TimestampNanosecondArray::from(self.expires)),
            Arc::new(Int64Array::from(self.seller)),
            Arc::new(Int64Array::from(self.category)),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(EventKind::Auction.schema(), columns)?)
    }
}

struct BidColumns {
    capacity: usize,
    auction: Vec<i64>,
    bidder: Vec<i64>,
    price: Vec<i64>,
    channel: Text,
    url: Text,
    date_time: Vec<i64>,
    extra: Text,
}

impl BidColumns {
    fn with_capacity(rows: usize) -> Self {
        BidColumns {
            capacity: rows,
            auction: Vec::with_capacity(rows),
            bidder: Vec::with_capacity(rows),
            price: Vec::with_capacity(rows),
            channel: Text::with_capacity(rows, 10),
            url: Text::with_capacity(rows, 80),
            date_time: Vec::with_capacity(rows),
            extra: Text::with_capacity(rows, AVG_BID_BYTES),
        }
    }
}

impl Columns for BidColumns {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn push(&mut self, n: u64, timeline: &Timeline, rng: &mut Rng) {
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
            auction_last_id(n) / HOT_BATCH * HOT_BATCH
        } else {
            auction_next_id(n, rng)
        };
        self.auction.push((FIRST_AUCTION_ID + auction) as i64);
        // Hot bidders are the second of their batch, so that they are not
        // also the hot sellers.
        let bidder = if rng.below(HOT_BIDDER_RATIO) > 0 {
            person_last_id(n) / HOT_BATCH * HOT_BATCH + 1
        } else {
            person_next_id(n, rng)
        };
        self.bidder.push((FIRST_PERSON_ID + bidder) as i64);
        self.price.push(rng.price());
        let (channel, url) = if rng.below(HOT_CHANNEL_RATIO) > 0 {
            let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[i], HOT_URLS[i].as_str())
        } else {
            let (channel, url) = &CHANNEL_URLS[rng.below(CHANNELS as u64) as usize];
            (channel.as_str(), url.as_str())
        };
        self.channel.values.extend_from_slice(channel.as_bytes());
        self.channel.end_row();
        self.url.values.extend_from_slice(url.as_bytes());
        self.url.end_row();
        self.date_time.push(timeline.nanos(n));
        // The standard size: four 8-byte numbers.
        rng.extra(&mut self.extra, 4 * 8, AVG_BID_BYTES);
    }

    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.auction)),
            Arc::new(Int64Array::from(self.bidder)),
            Arc::new(Int64Array::from(self.price)),
            self.channel.finish()?,
            self.url.finish()?,
            Arc::new(TimestampNanosecondArray::from(self.date_time)),
            self.extra.finish()?,
        ];
        Ok(RecordBatch::try_new(EventKind::Bid.schema(), columns)?)
    }
}

/// A text column built in place: rows are appended to `values` and closed
/// with [`Text::end_row`].
struct Text {
    offsets: Vec<i32>,
    values: Vec<u8>,
}

impl Text {
    fn with_capacity(rows: usize, bytes_per_row: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Text {
            offsets,
            values: Vec::with_capacity(rows * bytes_per_row),
        }
    }

    fn end_row(&mut self) {
        // Batches are capped (see `MAX_BATCH_ROWS` in the source) well
        // below 2 GiB per column; saturating keeps an impossible overflow
        // an error at `finish` rather than a wrap.
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
    }

    fn finish(self) -> Result<ArrayRef> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Ok(Arc::new(StringArray::try_new(
            offsets,
            Buffer::from_vec(self.values),
            None,
        )?))
    }
}

/// The last person id made by event `n` (0-based, before
/// `FIRST_PERSON_ID`): the id of the person `n` makes, if it makes one.
fn person_last_id(n: u64) -> u64 {
    // Each round of the sequence opens with its one person.
    const _: () = assert!(PERSON_PROPORTION == 1);
    n / PROPORTION_DENOMINATOR
}

/// A person among the most recent [`ACTIVE_PEOPLE`] (or the next
/// [`PERSON_ID_LEAD`]), 0-based.
fn person_next_id(n: u64, rng: &mut Rng) -> u64 {
    let people = person_last_id(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// The last auction id made by event `n` (0-based, before
/// `FIRST_AUCTION_ID`): the id of the auction `n` makes, if it makes one.
/// Only called for auctions and bids, which come after the first auction.
fn auction_last_id(n: u64) -> u64 {
    let epoch = n / PROPORTION_DENOMINATOR;
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        (epoch * AUCTION_PROPORTION).saturating_sub(1)
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else {
        epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION
    }
}

/// An auction among the most recent [`IN_FLIGHT_AUCTIONS`] (or the next
/// [`AUCTION_ID_LEAD`]), 0-based.
fn auction_next_id(n: u64, rng: &mut Rng) -> u64 {
    let max = auction_last_id(n);
    let min = max.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

fn pick<'a>(rng: &mut Rng, choices: &[&'a str]) -> &'a [u8] {
    choices[rng.below(choices.len() as u64) as usize].as_bytes()
}

/// The 4 hot channels' URLs.
static HOT_URLS: LazyLock<Vec<String>> = LazyLock::new(|| (0..4).map(base_url).collect());

/// The other channels (`channel-<i>`) and their URLs, most with a
/// `channel_id` parameter.
static CHANNEL_URLS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    (0..CHANNELS)
        .map(|i| {
            let mut url = base_url(i as u64);
            let mut rng = Rng::new(u64::MAX, i as u64);
            if rng.below(10) > 0 {
                let id = i64::from((i as i32).reverse_bits()).abs();
                url.push_str(&format!("&channel_id={id}"));
            }
            (format!("channel-{i}"), url)
        })
        .collect()
});

fn base_url(i: u64) -> String {
    let mut rng = Rng::new(0, i);
    let mut part = || {
        let len = 3 + rng.below(2);
        (0..len)
            .map(|_| {
                if rng.below(13) == 0 {
                    '_'
                } else {
                    (b'a' + rng.below(26) as u8) as char
                }
            })
            .collect::<String>()
    };
    let (a, b, c) = (part(), part(), part());
    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1")
}

/// SplitMix64, seeded per event: fast, and any event can be made without
/// making the ones before it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, n: u64) -> Self {
        Rng(mix(mix(seed) ^ n))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (`bound` > 0), by Lemire's multiply-shift.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A price in cents, log-uniform from $1 to $10,000.
    fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// Appends `len` random lower-case letters, eight from each draw.
    fn letters(&mut self, out: &mut Vec<u8>, len: usize) {
        let mut left = len;
        while left > 0 {
            let mut bits = self.next();
            for _ in 0..left.min(8) {
                let wide = u128::from(bits) * 26;
                out.push(b'a' + (wide >> 64) as u8);
                bits = wide as u64;
            }
            left -= left.min(8);
        }
    }

    /// Appends a row of padding that brings an event of `size` bytes to
    /// `average` bytes on average (±20%).
    fn extra(&mut self, column: &mut Text, size: usize, average: usize) {
        if size < average {
            let wanted = average - size;
            let delta = (wanted + 2) / 5;
            let len = wanted - delta + self.below(2 * delta as u64) as usize;
            self.letters(&mut column.values, len);
        }
        column.end_row();
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampNanosecondType};

    const TIMELINE: Timeline = Timeline {
        start_nanos: 1_000_000_000,
        origin: 0,
        step_nanos: 100_000.0,
    };

    fn events(kind: EventKind, seed: u64, end: u64) -> RecordBatch {
        let generator = Generator {
            seed,
            kind,
            timeline: TIMELINE,
        };
        let mut next = 0;
        let batch = generator.batch(&mut next, 1, end, end as usize).unwrap();
        assert_eq!(next, end);
        batch.unwrap()
    }

    fn ints(batch: &RecordBatch, column: &str) -> Vec<i64> {
        let column = batch.column_by_name(column).unwrap();
        if let Some(times) = column.as_primitive_opt::<TimestampNanosecondType>() {
            return times.values().to_vec();
        }
        column.as_primitive::<Int64Type>().values().to_vec()
    }

    fn texts(batch: &RecordBatch, column: &str) -> Vec<String> {
        let column = batch.column_by_name(column).unwrap().as_string::<i32>();
        column.iter().map(|s| s.unwrap().to_string()).collect()
    }

    #[test]
    fn proportions_are_1_person_3_auctions_46_bids_per_50_events() {
        let n = 50_000;
        assert_eq!(events(EventKind::Person, 1, n).num_rows(), 1_000);
        assert_eq!(events(EventKind::Auction, 1, n).num_rows(), 3_000);
        assert_eq!(events(EventKind::Bid, 1, n).num_rows(), 46_000);
        // Not a multiple of 50: events 0..=53 hold 2 people, 6 auctions.
        assert_eq!(events(EventKind::Person, 1, 54).num_rows(), 2);
        assert_eq!(events(EventKind::Auction, 1, 54).num_rows(), 6);
        assert_eq!(events(EventKind::Bid, 1, 54).num_rows(), 46);
    }

    #[test]
    fn ids_agree_across_the_three_kinds() {
        let n = 200_000;
        let people = events(EventKind::Person, 3, n);
        let auctions = events(EventKind::Auction, 3, n);
        let bids = events(EventKind::Bid, 3, n);
        // People and auctions get consecutive ids from 1000.
        let person_ids = ints(&people, "id");
        assert!(person_ids.iter().copied().eq(1000..1000 + 4_000));
        let auction_ids = ints(&auctions, "id");
        assert!(auction_ids.iter().copied().eq(1000..1000 + 12_000));

        // Merge by event time: every reference is to an id made so far, or
        // at most the standard lead of 10 ids ahead, and (these runs being
        // long) all referenced ids are made eventually.
        let person_times = ints(&people, "date_time");
        let auction_times = ints(&auctions, "date_time");
        let made_by = |times: &[i64], t: i64| times.partition_point(|&x| x <= t) as i64;
        for (seller, t) in ints(&auctions, "seller")
            .into_iter()
            .zip(ints(&auctions, "date_time"))
        {
            let made = made_by(&person_times, t);
            assert!(
                seller >= 1000 && seller < 1000 + made + 10,
                "{seller} at {t}"
            );
        }
        let mut hot_auction_bids = 0;
        let mut made_so_far = 0;
        let bid_count = bids.num_rows();
        for (auction, t) in ints(&bids, "auction")
            .into_iter()
            .zip(ints(&bids, "date_time"))
        {
            let made = made_by(&auction_times, t);
            assert!(
                auction >= 1000 && auction < 1000 + made + 10,
                "{auction} at {t}"
            );
            if auction < 1000 + made {
                made_so_far += 1;
            }
            if (auction - 1000) % 100 == 0 {
                hot_auction_bids += 1;
            }
        }
        // Most bids name an auction already made: the lead is the exception.
        assert!(
            made_so_far * 100 > bid_count * 95,
            "{made_so_far} of {bid_count}"
        );
        // Half the bids go to hot auctions, plus the random ones that hit
        // one: about 50.5%.
        let share = hot_auction_bids as f64 / bid_count as f64;
        assert!((0.49..0.53).contains(&share), "{share}");
        for (bidder, t) in ints(&bids, "bidder")
            .into_iter()
            .zip(ints(&bids, "date_time"))
        {
            let made = made_by(&person_times, t);
            assert!(
                bidder >= 1000 && bidder < 1000 + made.max(2) + 10,
                "{bidder} at {t}"
            );
        }
    }

    #[test]
    fn the_seed_decides_the_values_and_nothing_else() {
        let a = events(EventKind::Bid, 1, 5_000);
        let b = events(EventKind::Bid, 1, 5_000);
        let c = events(EventKind::Bid, 2, 5_000);
        assert_eq!(a, b);
        assert_ne!(ints(&a, "price"), ints(&c, "price"));
        assert_eq!(ints(&a, "date_time"), ints(&c, "date_time"));
        let auctions = events(EventKind::Auction, 2, 5_000);
        assert_eq!(
            ints(&auctions, "id"),
            ints(&events(EventKind::Auction, 1, 5_000), "id")
        );
    }

    #[test]
    fn values_have_the_standard_shapes() {
        let people = events(EventKind::Person, 1, 50_000);
        for card in texts(&people, "credit_card") {
            assert_eq!(card.len(), 19, "{card}");
        }
        let sizes: usize = [
            "name",
            "email_address",
            "credit_card",
            "city",
            "state",
            "extra",
        ]
        .iter()
        .map(|c| {
            people
                .column_by_name(c)
                .unwrap()
                .as_string::<i32>()
                .values()
                .len()
        })
        .sum();
        let average = (sizes + 8 * people.num_rows()) as f64 / people.num_rows() as f64;
        assert!((190.0..210.0).contains(&average), "{average}");

        let bids = events(EventKind::Bid, 1, 50_000);
        let channels = texts(&bids, "channel");
        let hot = channels
            .iter()
            .filter(|c| HOT_CHANNELS.contains(&c.as_str()))
            .count();
        let share = hot as f64 / channels.len() as f64;
        assert!((0.48..0.52).contains(&share), "{share}");
        let prices = ints(&bids, "price");
        assert!(prices.iter().all(|&p| (100..=100_000_000).contains(&p)));
        // Log-uniform over 6 decades: half the prices are below $1,000.
        let cheap = prices.iter().filter(|&&p| p < 100_000).count() as f64;
        assert!((0.48..0.52).contains(&(cheap / prices.len() as f64)));

        let auctions = events(EventKind::Auction, 1, 50_000);
        let categories = ints(&auctions, "category");
        assert!(categories.iter().all(|c| (10..15).contains(c)));
        let (start, expires) = (ints(&auctions, "date_time"), ints(&auctions, "expires"));
        assert!(start.iter().zip(&expires).all(|(s, e)| e > s));
        assert_eq!(texts(&auctions, "item_name")[0].len(), 20);
        assert!(auctions.column(1).null_count() == 0);
    }

    #[test]
    fn event_times_follow_the_timeline() {
        let bids = events(EventKind::Bid, 1, 100);
        let times = ints(&bids, "date_time");
        // Bids are events 4..50 and 54..100: 100 us apart.
        assert_eq!(times[0], 1_000_000_000 + 4 * 100_000);
        assert_eq!(times[46], 1_000_000_000 + 54 * 100_000);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
