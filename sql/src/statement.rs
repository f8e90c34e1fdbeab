use arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast;
use fibers_catalog::ObjectKind;

use crate::Options;

/// A DataFibers statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE STREAM`.
    CreateStream(CreateStream),
    /// `CREATE TABLE name [(columns)] WITH (connector = 'delta' | 'parquet'
    /// | 'file', path = ...)`: reference data streams are joined with. It
    /// has the shape of a stream declaration, without a WATERMARK.
    CreateTable(CreateStream),
    /// `CREATE MATERIALIZED VIEW ... AS SELECT`.
    CreateView(CreateQuery),
    /// `CREATE SINK ... AS SELECT`.
    CreateSink(CreateQuery),
    /// `SHOW STREAMS | TABLES | VIEWS | SINKS | JOBS`.
    Show(ShowTarget),
    /// `DESCRIBE name`.
    Describe(String),
    /// `SHOW TOPICS [FROM 'brokers']`.
    ShowTopics {
        /// The brokers to ask; by default those of the Kafka streams.
        brokers: Option<String>,
    },
    /// `DESCRIBE TOPIC name [FROM 'brokers']`.
    DescribeTopic {
        /// The topic, as written (topic names are case-sensitive).
        topic: String,
        /// The brokers to ask; by default those of the Kafka streams.
        brokers: Option<String>,
    },
    /// `INSERT INTO stream VALUES (...)` or `INSERT INTO stream SELECT ...`:
    /// publishes rows into a stream's topic.
    Insert(Box<ast::Statement>),
    /// `DROP STREAM | TABLE | MATERIALIZED VIEW | SINK [IF EXISTS] name`.
    Drop {
        /// What is dropped.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Whether a missing object is fine.
        if_exists: bool,
    },
    /// An ad-hoc query (`SELECT`, `EXPLAIN`), run once over archives and
    /// bounded streams.
    Query(Box<ast::Statement>),
    /// `ALTER MATERIALIZED VIEW | SINK name RESTART FROM EARLIEST | LATEST |
    /// TIMESTAMP '...'`: discards the job's state and replays its stream
    /// from that point.
    Restart {
        /// A view or a sink.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// Where the replay starts.
        from: RestartFrom,
    },
    /// `SUBSCRIBE name [FROM NOW | FROM BEGINNING]`: the rows of a stream,
    /// view or sink as they are produced, until the subscriber leaves.
    Subscribe {
        /// The stream, view or sink.
        name: String,
        /// Where the subscription starts.
        from: SubscribeFrom,
    },
}

/// Where a `SUBSCRIBE` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscribeFrom {
    /// Only rows produced after the subscription (the default).
    #[default]
    Now,
    /// Every row kept so far (a view's archive, a stream from its earliest
    /// record), then the new ones.
    Beginning,
}

/// Where `ALTER ... RESTART` replays a job's stream from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartFrom {
    /// The stream's earliest record.
    Earliest,
    /// Its next record: state is discarded, nothing is replayed.
    Latest,
    /// The first record at or after this time (RFC 3339, as written).
    Timestamp(String),
}

/// What a `SHOW` statement lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowTarget {
    /// Streams.
    Streams,
    /// Reference tables.
    Tables,
    /// Materialized views.
    Views,
    /// Sinks.
    Sinks,
    /// The jobs running views and sinks.
    Jobs,
}

/// `CREATE STREAM name (columns, WATERMARK ...) WITH (options)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateStream {
    /// The stream's name.
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// Declared columns; empty when the connector supplies the schema.
    pub columns: Vec<ColumnSpec>,
    /// The event-time column and its delay, when declared.
    pub watermark: Option<WatermarkSpec>,
    /// The `WITH` options (connector and its settings).
    pub options: Options,
}

/// A declared column of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Its Arrow type.
    pub data_type: DataType,
    /// False when declared `NOT NULL`.
    pub nullable: bool,
}

/// `WATERMARK FOR column AS column - INTERVAL ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// How far the watermark trails the largest event time seen.
    pub delay_nanos: i64,
}

/// `CREATE MATERIALIZED VIEW` or `CREATE SINK`: a named continuous query.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateQuery {
    /// The view's or sink's name.
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// The `WITH` options (archive or connector and its settings).
    pub options: Options,
    /// The continuous query.
    pub query: Box<ast::Query>,
}
