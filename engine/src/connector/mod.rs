//! Sources of stream rows. Each connector turns its `WITH` options into a
//! typed configuration when the stream is created (so errors surface at
//! `CREATE STREAM`), and opens a [`Source`] for every job that reads it.

pub(crate) mod file;
pub(crate) mod kafka;
pub(crate) mod nexmark;
pub mod stocks;
mod stocks_source;
pub(crate) mod union;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use fibers_sql::{ARRIVAL_TIME_COLUMN, CreateStream, Options, StreamInfo};

use crate::checkpoint::ReplayFrom;
use crate::{Error, Result};
use file::FileConfig;
use kafka::{DeadLetterTable, KafkaConfig};
use nexmark::NexmarkConfig;
use stocks_source::StocksSourceConfig;

/// The connectors a stream can read from.
pub(crate) const CONNECTORS: &[&str] = &["kafka", "stocks", "file", "nexmark"];

/// What a source yields when polled.
pub(crate) enum Poll {
    /// Rows of one partition of the source (0 for a source without
    /// partitions), in the stream's schema (without the arrival-time
    /// column). Each partition's rows are in its own order.
    Batch(u32, RecordBatch),
    /// Nothing yet; poll again after at most this long.
    Idle(Duration),
    /// The source is bounded and has no more rows.
    End,
}

/// How long an ad-hoc read waits for a source that delivers nothing (a
/// Kafka stream whose brokers cannot be reached) before it gives up.
pub(crate) struct Patience {
    stream: String,
    timeout: std::time::Duration,
    since: std::time::Instant,
}

impl Patience {
    /// Patience for reading `stream`: its Kafka `scan_timeout`, or 30 s.
    pub fn for_stream(stream: &StreamDef) -> Self {
        let timeout = stream
            .kafka()
            .map_or(std::time::Duration::from_secs(30), |k| k.scan_timeout);
        Patience::new(&stream.name, timeout)
    }

    pub fn new(stream: &str, timeout: std::time::Duration) -> Self {
        Patience {
            stream: stream.to_string(),
            timeout,
            since: std::time::Instant::now(),
        }
    }

    /// The source delivered rows.
    pub fn progressed(&mut self) {
        self.since = std::time::Instant::now();
    }

    /// Fails once nothing has come for the timeout, saying why if the
    /// source knows.
    pub fn check(&self, source: &dyn Source) -> Result<()> {
        if self.since.elapsed() < self.timeout {
            return Ok(());
        }
        let why = source
            .health()
            .unwrap_or_else(|| "the source delivered nothing".to_string());
        Err(Error::Source {
            stream: self.stream.clone(),
            message: format!(
                "nothing to read for {} ({why}); the query gives up (the stream's option \
                 'scan_timeout' sets how long to wait)",
                humantime::format_duration(self.timeout)
            ),
        })
    }
}

/// A reader of one stream for one job. Sources are polled from a dedicated
/// thread, so they may block on I/O.
pub(crate) trait Source: Send {
    /// The next rows, a wait, or the end.
    fn poll(&mut self) -> Result<Poll>;

    /// Rows skipped as malformed so far (under `bad_data = 'drop'`).
    fn bad_rows(&self) -> u64 {
        0
    }

    /// The partitions the source reads; each has its own watermark.
    fn partitions(&self) -> &[u32] {
        &[0]
    }

    /// A problem the source is retrying through (a broker outage, say),
    /// while there is one.
    fn health(&self) -> Option<String> {
        None
    }

    /// The partitions the source knows it has read to the end of what
    /// exists now. Only these may be taken for idle (stop holding the
    /// watermark back); a partition it is behind on, or cannot tell about,
    /// holds it back however long it delivers nothing. Sources with no
    /// backlog to speak of (generators, files) are always caught up.
    fn caught_up(&mut self) -> Vec<u32> {
        self.partitions().to_vec()
    }

    /// Where the source stands just after the rows it has returned, for a
    /// checkpoint: reading on from there yields exactly the rows not yet
    /// returned. `None` when the source cannot be resumed.
    fn position(&self) -> Option<serde_json::Value> {
        None
    }

    /// Resumes from a position [`Source::position`] returned, before the
    /// first poll.
    fn seek(&mut self, _position: &serde_json::Value) -> Result<()> {
        Err(Error::invalid(
            "this source cannot resume from a checkpoint",
        ))
    }
}

/// A position recorded by another kind of source, or damaged.
pub(crate) fn bad_position(
    stream: &str,
    position: &serde_json::Value,
    e: impl std::fmt::Display,
) -> Error {
    Error::Source {
        stream: stream.to_string(),
        message: format!("cannot resume from the checkpointed position {position}: {e}"),
    }
}

/// A resolved stream: its schema, time attribute and connector settings.
#[derive(Debug, Clone)]
pub(crate) struct StreamDef {
    pub name: String,
    /// The columns the stream exposes (with `_arrival_time` appended for a
    /// stream without a WATERMARK).
    pub schema: SchemaRef,
    /// The event-time column (or `_arrival_time`).
    pub time_column: String,
    /// Watermark delay in nanoseconds.
    pub delay_nanos: i64,
    /// Whether the time attribute is arrival time (stamped by the engine).
    pub arrival_time: bool,
    pub connector: ConnectorConfig,
    /// The columns a job's source decodes, when its query reads only some
    /// (see [`StreamDef::reading_only`]).
    pub decode_only: Option<Arc<BTreeSet<String>>>,
}

/// The typed settings of a stream's connector.
#[derive(Debug, Clone)]
pub(crate) enum ConnectorConfig {
    Stocks(StocksSourceConfig),
    Nexmark(NexmarkConfig),
    File(FileConfig),
    Kafka(KafkaConfig),
    /// Two streams a job joins, read as one (see [`union`]).
    Union(Box<[StreamDef; 2]>),
}

impl StreamDef {
    /// Validates a `CREATE STREAM` and resolves its schema and connector.
    pub fn resolve(create: &CreateStream, data_dir: &Path) -> Result<Self> {
        let mut options = create.options.clone();
        let owner = format!("stream '{}'", create.name);
        let connector = options
            .take("connector")
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{owner} requires option 'connector'; expected one of: {}",
                    CONNECTORS.join(", ")
                ))
            })?
            .to_ascii_lowercase();
        let properties = match connector.as_str() {
            "kafka" => kafka::take_properties(&mut options)?,
            _ => Vec::new(),
        };
        let valid = match connector.as_str() {
            "stocks" => Some(stocks_source::OPTIONS),
            "nexmark" => Some(nexmark::OPTIONS),
            "file" => Some(file::OPTIONS),
            "kafka" => Some(kafka::OPTIONS),
            _ => None,
        };
        if let Some(valid) = valid {
            options.check_known(&format!("connector '{connector}'"), valid)?;
        }
        let (connector, declared) = match connector.as_str() {
            "stocks" => {
                if !create.columns.is_empty() {
                    return Err(Error::invalid(format!(
                        "connector 'stocks' defines the columns of {owner} itself \
                         (symbol, price, volume, ts); remove the column list"
                    )));
                }
                let config = StocksSourceConfig::from_options(&mut options)?;
                (ConnectorConfig::Stocks(config), stocks::stocks_schema())
            }
            "nexmark" => {
                let config = NexmarkConfig::from_options(&mut options, &owner)?;
                if !create.columns.is_empty() {
                    let columns: Vec<String> = config
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    return Err(Error::invalid(format!(
                        "connector 'nexmark' defines the columns of {owner} itself ({}); \
                         remove the column list",
                        columns.join(", ")
                    )));
                }
                let schema = config.schema();
                (ConnectorConfig::Nexmark(config), schema)
            }
            "file" => {
                let schema = declared_schema(create)?;
                let config = FileConfig::from_options(&mut options, data_dir)?;
                (ConnectorConfig::File(config), schema)
            }
            "kafka" => {
                let schema = declared_schema(create)?;
                let mut config = KafkaConfig::from_options(&mut options, properties)?;
                // Check now what would otherwise fail the job: metadata
                // column types, and columns the format cannot carry.
                let (payload, _) = kafka::split_schema(&schema)?;
                config.format.decoder(payload, config.limits)?;
                if config.bad_data == BadData::DeadLetter {
                    config.dead_letters = Some(DeadLetterTable::new(data_dir, &create.name));
                }
                (ConnectorConfig::Kafka(config), schema)
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown connector '{other}' for {owner}; expected one of: {}",
                    CONNECTORS.join(", ")
                )));
            }
        };
        options.finish(
            &format!("connector '{}'", connector_name(&connector)),
            &valid_options(&connector),
        )?;

        // The stock feed knows its own disorder bound: its default watermark
        // lets no generated event be late.
        let watermark = match (&create.watermark, &connector) {
            (Some(w), _) => Some((w.column.clone(), w.delay_nanos)),
            (None, ConnectorConfig::Stocks(c)) => {
                Some(("ts".to_string(), c.generator.disorder_nanos))
            }
            // Event times never decrease within a partition.
            (None, ConnectorConfig::Nexmark(_)) => Some((
                nexmark::TIME_COLUMN.to_string(),
                nexmark::DEFAULT_DELAY_NANOS,
            )),
            (None, _) => None,
        };
        let (schema, time_column, delay_nanos, arrival_time) = match watermark {
            Some((column, delay)) => {
                let ok = declared
                    .field_with_name(&column)
                    .map(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
                    .unwrap_or(false);
                if !ok {
                    return Err(Error::invalid(format!(
                        "WATERMARK column '{column}' is not a TIMESTAMP column of {owner}"
                    )));
                }
                (declared, column, delay, false)
            }
            None => {
                let mut fields = declared.fields().to_vec();
                fields.push(Arc::new(Field::new(
                    ARRIVAL_TIME_COLUMN,
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    false,
                )));
                (
                    Arc::new(Schema::new(fields)),
                    ARRIVAL_TIME_COLUMN.to_string(),
                    0,
                    true,
                )
            }
        };
        Ok(StreamDef {
            name: create.name.clone(),
            schema,
            time_column,
            delay_nanos,
            arrival_time,
            connector,
            decode_only: None,
        })
    }

    /// The stream as read by a job whose query reads only `columns` of
    /// it: its JSON and CSV records are decoded into those columns (and
    /// the time column), the others left NULL. Streams that decode
    /// nothing, and joins of two streams, read every column.
    pub fn reading_only(&self, mut columns: BTreeSet<String>) -> StreamDef {
        let mut def = self.clone();
        if matches!(
            def.connector,
            ConnectorConfig::File(_) | ConnectorConfig::Kafka(_)
        ) {
            columns.insert(self.time_column.clone());
            def.decode_only = Some(Arc::new(columns));
        }
        def
    }

    /// The schema the connector decodes into (without `_arrival_time`).
    pub fn source_schema(&self) -> SchemaRef {
        if self.arrival_time {
            let fields = &self.schema.fields()[..self.schema.fields().len() - 1];
            Arc::new(Schema::new(fields.to_vec()))
        } else {
            Arc::clone(&self.schema)
        }
    }

    /// Whether the stream ends by itself.
    pub fn bounded(&self) -> bool {
        match &self.connector {
            ConnectorConfig::Stocks(c) => c.generator.limit.is_some(),
            ConnectorConfig::Nexmark(c) => c.events.is_some(),
            ConnectorConfig::File(_) => true,
            ConnectorConfig::Kafka(c) => c.end_at_latest,
            ConnectorConfig::Union(streams) => streams.iter().all(StreamDef::bounded),
        }
    }

    /// The Kafka settings of a Kafka stream.
    pub fn kafka(&self) -> Option<&KafkaConfig> {
        match &self.connector {
            ConnectorConfig::Kafka(c) => Some(c),
            _ => None,
        }
    }

    /// What the stream does with a record it cannot take (`bad_data`);
    /// streams that decode nothing fail.
    pub fn bad_data(&self) -> BadData {
        match &self.connector {
            ConnectorConfig::Kafka(c) => c.bad_data,
            ConnectorConfig::File(c) => c.bad_data,
            _ => BadData::Fail,
        }
    }

    /// The dead-letter table of a `bad_data = 'dead_letter'` stream.
    pub fn dead_letters(&self) -> Option<&DeadLetterTable> {
        match &self.connector {
            ConnectorConfig::Kafka(c) => c.dead_letters.as_ref(),
            _ => None,
        }
    }

    /// A reader of the rows there are now, for an ad-hoc query: a bounded
    /// stream's rows, or a topic up to its current end offsets.
    pub fn open_snapshot(&self, batch_size: usize) -> Result<Box<dyn Source>> {
        match &self.connector {
            ConnectorConfig::Kafka(c) if !c.end_at_latest => {
                let mut config = c.clone();
                config.end_at_latest = true;
                Ok(Box::new(kafka::KafkaSource::new(
                    &self.name,
                    &config,
                    self.source_schema(),
                    batch_size,
                    config.dead_letters.clone(),
                )?))
            }
            _ => {
                self.check_snapshot()?;
                self.open(batch_size)
            }
        }
    }

    /// Whether [`StreamDef::open_snapshot`] can read this stream: Kafka
    /// topics (up to their end offsets) and bounded streams can.
    pub fn check_snapshot(&self) -> Result<()> {
        if self.kafka().is_some() || self.bounded() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "stream '{}' is unbounded; query a materialized view over it, give the stream a \
             'limit', or SUBSCRIBE to it",
            self.name
        )))
    }

    /// A reader for a subscriber to this stream: from its latest record
    /// (or, `from_beginning`, its earliest) on, without consumer group,
    /// dead letters or offset commits, which belong to the jobs. `None`
    /// when there is nothing to read: a bounded stream of files has no
    /// records after now.
    pub fn open_subscription(
        &self,
        from_beginning: bool,
        batch_size: usize,
    ) -> Result<Option<Box<dyn Source>>> {
        match &self.connector {
            ConnectorConfig::Kafka(c) => {
                let mut config = c.clone();
                config.start = if from_beginning {
                    kafka::StartOffset::Earliest
                } else {
                    kafka::StartOffset::Latest
                };
                config.end_at_latest = false;
                config.group = None;
                config.dead_letters = None;
                if config.bad_data == BadData::DeadLetter {
                    config.bad_data = BadData::Drop;
                }
                Ok(Some(Box::new(kafka::KafkaSource::new(
                    &self.name,
                    &config,
                    self.source_schema(),
                    batch_size,
                    None,
                )?)))
            }
            ConnectorConfig::File(_) if !from_beginning => Ok(None),
            // A generator has no past: both start with what it makes next.
            ConnectorConfig::File(_) | ConnectorConfig::Stocks(_) | ConnectorConfig::Nexmark(_) => {
                self.open(batch_size).map(Some)
            }
            ConnectorConfig::Union(_) => Err(Error::invalid(
                "the input of a join is not a stream one can subscribe to",
            )),
        }
    }

    /// The stream read again from `from`, for a replay
    /// (`ALTER ... RESTART`).
    pub fn replaying(&self, from: ReplayFrom) -> Result<StreamDef> {
        let mut def = self.clone();
        let refuse = |what: &str| {
            Err(Error::invalid(format!(
                "stream '{}' ({} connector) cannot restart from {what}; it restarts FROM EARLIEST",
                self.name,
                self.connector_name()
            )))
        };
        if let ConnectorConfig::Union(streams) = &mut def.connector {
            for stream in streams.iter_mut() {
                *stream = stream.replaying(from)?;
            }
            return Ok(def);
        }
        match (&mut def.connector, from) {
            (ConnectorConfig::Kafka(c), from) => {
                c.start = match from {
                    ReplayFrom::Earliest => kafka::StartOffset::Earliest,
                    ReplayFrom::Latest => kafka::StartOffset::Latest,
                    ReplayFrom::Timestamp(ns) => {
                        kafka::StartOffset::Timestamp(ns.div_euclid(1_000_000))
                    }
                };
            }
            // A generator makes the same events again from its start.
            (ConnectorConfig::Stocks(_), ReplayFrom::Earliest) => {}
            (ConnectorConfig::Nexmark(_), ReplayFrom::Earliest) => {}
            // A live feed has no past: it goes on with what it makes next.
            (ConnectorConfig::Stocks(c), ReplayFrom::Latest) if c.live_start => {}
            (ConnectorConfig::File(_), ReplayFrom::Earliest) => {}
            // Handled above, each stream on its own.
            (ConnectorConfig::Union(_), _) => {}
            (_, ReplayFrom::Latest) => return refuse("LATEST"),
            (_, ReplayFrom::Timestamp(_)) => return refuse("a TIMESTAMP"),
        }
        Ok(def)
    }

    /// How long a partition may deliver nothing before it stops holding
    /// the watermark back (sources with partitions only).
    pub fn idle_timeout(&self) -> Option<Duration> {
        match &self.connector {
            ConnectorConfig::Stocks(_) | ConnectorConfig::Nexmark(_) | ConnectorConfig::File(_) => {
                None
            }
            ConnectorConfig::Kafka(c) => Some(c.idle_timeout),
            ConnectorConfig::Union(streams) => {
                streams.iter().filter_map(StreamDef::idle_timeout).min()
            }
        }
    }

    /// The connector's name.
    pub fn connector_name(&self) -> &'static str {
        connector_name(&self.connector)
    }

    /// What the planner needs to know.
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            schema: Arc::clone(&self.schema),
            time_column: Some(self.time_column.clone()),
        }
    }

    /// Opens a new reader of this stream.
    pub fn open(&self, batch_size: usize) -> Result<Box<dyn Source>> {
        Ok(match &self.connector {
            ConnectorConfig::Stocks(c) => Box::new(c.open(batch_size)),
            ConnectorConfig::Nexmark(c) => Box::new(c.open(batch_size)),
            ConnectorConfig::File(c) => Box::new(
                c.open(&self.name, self.source_schema(), batch_size)?
                    .reading(self.decode_only.clone())?,
            ),
            ConnectorConfig::Kafka(c) => Box::new(
                kafka::KafkaSource::new(
                    &self.name,
                    c,
                    self.source_schema(),
                    batch_size,
                    c.dead_letters.clone(),
                )?
                .reading(self.decode_only.as_deref())?,
            ),
            ConnectorConfig::Union(streams) => {
                let [first, second] = streams.as_ref();
                Box::new(union::UnionSource::new(
                    &[first, second],
                    [first.open(batch_size)?, second.open(batch_size)?],
                    Arc::clone(&self.schema),
                )?)
            }
        })
    }

    /// Two streams read as one, for a job joining them. Both must have
    /// event time; the watermark waits for the larger of their delays.
    pub fn union(first: &StreamDef, second: &StreamDef) -> Result<StreamDef> {
        for stream in [first, second] {
            if stream.arrival_time {
                return Err(Error::invalid(format!(
                    "stream '{}' has no WATERMARK: joins of streams need event time on both; \
                     declare `WATERMARK FOR <column> AS <column> - INTERVAL '5' SECOND`",
                    stream.name
                )));
            }
        }
        Ok(StreamDef {
            name: format!("{}+{}", first.name, second.name),
            schema: union::union_schema(&[first, second]),
            time_column: union::TIME_COLUMN.to_string(),
            delay_nanos: first.delay_nanos.max(second.delay_nanos),
            arrival_time: false,
            connector: ConnectorConfig::Union(Box::new([first.clone(), second.clone()])),
            decode_only: None,
        })
    }
}

fn connector_name(connector: &ConnectorConfig) -> &'static str {
    match connector {
        ConnectorConfig::Stocks(_) => "stocks",
        ConnectorConfig::Nexmark(_) => "nexmark",
        ConnectorConfig::File(_) => "file",
        ConnectorConfig::Kafka(_) => "kafka",
        ConnectorConfig::Union(_) => "join",
    }
}

fn valid_options(connector: &ConnectorConfig) -> Vec<&'static str> {
    let mut valid = vec!["connector"];
    valid.extend_from_slice(match connector {
        ConnectorConfig::Stocks(_) => stocks_source::OPTIONS,
        ConnectorConfig::Nexmark(_) => nexmark::OPTIONS,
        ConnectorConfig::File(_) => file::OPTIONS,
        ConnectorConfig::Kafka(_) => kafka::OPTIONS,
        ConnectorConfig::Union(_) => &[],
    });
    valid
}

fn declared_schema(create: &CreateStream) -> Result<SchemaRef> {
    if create.columns.is_empty() {
        return Err(Error::invalid(format!(
            "stream '{}' needs a column list: CREATE STREAM {} (name TYPE, ...) WITH (...)",
            create.name, create.name
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut fields = Vec::with_capacity(create.columns.len());
    for c in &create.columns {
        if !seen.insert(c.name.as_str()) {
            return Err(Error::invalid(format!(
                "column '{}' is declared twice in stream '{}'",
                c.name, create.name
            )));
        }
        if c.name == ARRIVAL_TIME_COLUMN
            || c.name == fibers_sql::WINDOW_START
            || c.name == fibers_sql::WINDOW_END
        {
            return Err(Error::invalid(format!(
                "column name '{}' of stream '{}' is reserved",
                c.name, create.name
            )));
        }
        fields.push(Field::new(&c.name, c.data_type.clone(), c.nullable));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Takes `bad_data`, shared by connectors that decode records; only some
/// keep a dead-letter table.
pub(crate) fn take_bad_data(options: &mut Options, dead_letter: bool) -> Result<BadData> {
    let choices: &[&str] = if dead_letter {
        &["fail", "drop", "dead_letter"]
    } else {
        &["fail", "drop"]
    };
    Ok(match options.take_choice("bad_data", choices)?.as_deref() {
        Some("drop") => BadData::Drop,
        Some("dead_letter") => BadData::DeadLetter,
        _ => BadData::Fail,
    })
}

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadData {
    /// Stop the job with an error naming the record.
    Fail,
    /// Skip the record and count it.
    Drop,
    /// Skip and count the record, and keep it in the stream's dead-letter
    /// table.
    DeadLetter,
}
