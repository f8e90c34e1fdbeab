//! The engine: a data dir's catalog, streams, views, sinks and their jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use fibers_catalog::{Catalog, Definition, JobStatus, ObjectKind};
use fibers_sql::{
    ContinuousQuery, CreateQuery, CreateStream, ParsedStatement, RestartFrom, SqlLimits, Statement,
    StreamInfo, StreamResolver, SubscribeFrom, TimeAttribute, plan_continuous_query,
};
use tokio::sync::{Mutex, watch};

use crate::access::Access;
use crate::archive::ArchiveConfig;
use crate::archive::ArchiveFormat;
use crate::checkpoint::{CheckpointConfig, CheckpointStore, Replay, ReplayFrom, Rewrite};
use crate::connector::{StreamDef, kafka};
use crate::job::{JobCheckpoints, JobHandle, JobSpec};
use crate::plan::InputTable;
use crate::query::{AdHocPlan, Readable};
use crate::subscribe::{Feed, subscribe_stream};
use crate::table::ReferenceTable;
use crate::{Error, Result, RowStream, StatementOutput, StatementResult, insert, query};

/// Settings of an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the catalog and (by default) archives live.
    pub data_dir: PathBuf,
    /// Rows per batch read from sources.
    pub batch_size: usize,
    /// How often jobs checkpoint, and where.
    pub checkpoints: CheckpointConfig,
    /// Where statements may read, write and connect.
    pub access: Access,
    /// How large and deep SQL text may be.
    pub sql_limits: SqlLimits,
}

impl EngineConfig {
    /// Defaults for a data dir: 8192-row batches, a checkpoint every 10 s
    /// in `<data dir>/checkpoints`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            batch_size: 8192,
            checkpoints: CheckpointConfig::default(),
            access: Access::Unrestricted,
            sql_limits: SqlLimits::default(),
        }
    }
}

/// A view or sink: where its rows go.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub kind: ObjectKind,
    pub archive: ArchiveConfig,
    pub schema: SchemaRef,
    /// Where its job's rows reach subscribers.
    pub feed: Arc<Feed>,
    /// Its definition, planned again for every job that reads it.
    pub create: Arc<CreateQuery>,
    /// What its query reads: streams, or one view.
    pub input: OutputInput,
    /// The column of its rows that carries event time, if one does.
    pub time: Option<TimeAttribute>,
}

/// What a view's or sink's query reads.
#[derive(Debug, Clone)]
pub(crate) enum OutputInput {
    /// Streams (one, or a join's two).
    Streams,
    /// The rows of a view, computed in process.
    View(String),
}

#[derive(Default)]
pub(crate) struct Objects {
    pub streams: BTreeMap<String, Arc<StreamDef>>,
    pub outputs: BTreeMap<String, Output>,
    pub jobs: BTreeMap<String, JobHandle>,
    pub tables: BTreeMap<String, Arc<ReferenceTable>>,
    /// Objects of the catalog that could not be restored, with the error:
    /// their jobs show as failed, and they can be dropped and created
    /// again, while everything else runs.
    pub unavailable: BTreeMap<String, (ObjectKind, String)>,
}

impl Objects {
    fn kind_of(&self, name: &str) -> Option<ObjectKind> {
        if self.streams.contains_key(name) {
            Some(ObjectKind::Stream)
        } else if self.tables.contains_key(name) {
            Some(ObjectKind::Table)
        } else if let Some(output) = self.outputs.get(name) {
            Some(output.kind)
        } else {
            self.unavailable.get(name).map(|(kind, _)| *kind)
        }
    }

    /// What ad-hoc queries read, as it stands now.
    fn readable(&self) -> Readable {
        Readable {
            streams: self.streams.clone(),
            outputs: self.outputs.clone(),
            tables: self.tables.clone(),
        }
    }
}

/// Continuous queries are planned against a [`Readable`] copy of the
/// objects, taken under the lock and planned without it.
impl StreamResolver for Readable {
    fn stream(&self, name: &str) -> Option<StreamInfo> {
        if let Some(stream) = self.streams.get(name) {
            return Some(stream.info());
        }
        // A view reads like a stream whose event time is its time attribute.
        let view = self
            .outputs
            .get(name)
            .filter(|o| o.kind == ObjectKind::View)?;
        Some(StreamInfo {
            schema: Arc::clone(&view.schema),
            time_column: view.time.as_ref().map(|t| t.column.clone()),
        })
    }

    fn kind_of(&self, name: &str) -> Option<ObjectKind> {
        if self.streams.contains_key(name) {
            Some(ObjectKind::Stream)
        } else if self.tables.contains_key(name) {
            Some(ObjectKind::Table)
        } else {
            self.outputs.get(name).map(|output| output.kind)
        }
    }

    fn input_table(&self, stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
        Arc::new(InputTable::new(stream, schema))
    }

    fn reference_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.tables.get(name).map(|t| t.provider())
    }
}

/// A stream, view or sink, as metadata listings (such as Flight SQL's
/// `GetTables`) show it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Its name, as queries refer to it.
    pub name: String,
    /// Whether it is a stream, a view or a sink.
    pub kind: ObjectKind,
    /// The schema of its rows.
    pub schema: SchemaRef,
}

/// What a statement will return, known before it runs: for a prepared
/// statement or a Flight SQL `FlightInfo`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The schema of its rows; `None` for a statement that changes
    /// something (and returns only its outcome).
    pub schema: Option<SchemaRef>,
    /// Its parameters (`$1`, `$2`, ...) with their types; empty if none.
    pub parameters: SchemaRef,
}

/// The DataFibers engine over one data dir.
///
/// Opening it re-plans every definition in the catalog and resumes the jobs
/// that had not finished; [`Engine::execute`] runs statements.
pub struct Engine {
    config: EngineConfig,
    catalog: Arc<Catalog>,
    objects: Mutex<Objects>,
    /// Names with a statement in flight that holds no lock while it waits
    /// (a job being planned, started, stopped or restarted), and what is
    /// happening to each: another statement on the same name is refused
    /// meanwhile, while statements on other objects go on.
    busy: Arc<BusyNames>,
    /// Where jobs keep their checkpoints: the store, its root and its URL.
    checkpoint_store: (
        Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
        String,
    ),
    /// Set when the engine stops: every subscription ends.
    closing: watch::Sender<bool>,
    /// Held open (and locked) while the engine lives: two engines on one
    /// data dir would both run its jobs and write every result twice.
    _lock: std::fs::File,
}

impl Engine {
    /// Opens (creating if needed) the data dir and resumes its jobs.
    pub async fn open(config: EngineConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let lock = lock_data_dir(&config.data_dir)?;
        check_catalog_file(&config.data_dir)?;
        let catalog = Arc::new(Catalog::open(&config.data_dir.join("catalog.db"))?);
        let checkpoint_store =
            crate::checkpoint::open_store(&config.checkpoints, &config.data_dir)?;
        let engine = Engine {
            config,
            catalog,
            checkpoint_store,
            objects: Mutex::new(Objects::default()),
            busy: Arc::default(),
            closing: watch::Sender::new(false),
            _lock: lock,
        };
        engine.restore().await?;
        Ok(engine)
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Restores every object of the catalog. One that cannot be restored
    /// (its definition damaged, its stream or archive unusable) is set
    /// aside with its error, its job recorded as failed, and the others
    /// still start: one broken object never keeps the engine down.
    async fn restore(&self) -> Result<()> {
        for def in self.catalog.list(None)? {
            if let Err(e) = self.restore_one(&def).await {
                let error = format!(
                    "cannot restore {} '{}' from the catalog: {e}",
                    def.kind, def.name
                );
                tracing::error!("{error}; the other objects start without it");
                if matches!(def.kind, ObjectKind::View | ObjectKind::Sink) {
                    let previous = self.catalog.job(&def.name).ok().flatten();
                    let record = fibers_catalog::JobRecord {
                        name: def.name.clone(),
                        status: JobStatus::Failed,
                        error: Some(error.clone()),
                        committed_watermark: previous.as_ref().and_then(|j| j.committed_watermark),
                        counters: previous.map(|j| j.counters).unwrap_or_default(),
                    };
                    if let Err(e) = self.catalog.put_job(&record) {
                        tracing::error!("job '{}': cannot record its state: {e}", def.name);
                    }
                }
                self.objects
                    .lock()
                    .await
                    .unavailable
                    .insert(def.name.clone(), (def.kind, error));
            }
        }
        Ok(())
    }

    async fn restore_one(&self, def: &Definition) -> Result<()> {
        let parsed = fibers_sql::parse_script(&def.sql)?;
        let Some(statement) = parsed.into_iter().next() else {
            return Err(Error::invalid("its definition holds no statement"));
        };
        match statement.statement {
            Statement::CreateStream(create) => {
                self.check_access(&create.options)?;
                let stream = StreamDef::resolve(&create, &self.config.data_dir)?;
                self.objects
                    .lock()
                    .await
                    .streams
                    .insert(def.name.clone(), Arc::new(stream));
            }
            Statement::CreateTable(create) => {
                self.check_access(&create.options)?;
                let table = ReferenceTable::open(&create, &self.config.data_dir).await?;
                self.objects
                    .lock()
                    .await
                    .tables
                    .insert(def.name.clone(), Arc::new(table));
            }
            Statement::CreateView(create) | Statement::CreateSink(create) => {
                let resume = self
                    .catalog
                    .job(&def.name)?
                    .is_none_or(|job| job.status.resumes());
                let planned = self.prepare_output(def.kind, &create).await?;
                self.start_output(planned, None, resume, None).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs every statement of a script, in order, returning each result.
    pub async fn execute_script(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let mut results = Vec::new();
        for statement in fibers_sql::parse_script_with(sql, &self.config.sql_limits)? {
            results.push(self.execute(&statement).await?);
        }
        Ok(results)
    }

    /// Runs one statement, streaming the rows of a query or subscription
    /// as they come, with `parameters` (one row, a column per `$n`) bound
    /// in a query.
    ///
    /// Like [`Engine::execute`], queries first wait for the jobs over
    /// bounded sources to finish.
    pub async fn run(
        &self,
        statement: &ParsedStatement,
        parameters: Option<&RecordBatch>,
    ) -> Result<StatementOutput> {
        let values = parameter_values(parameters)?;
        match &statement.statement {
            Statement::Query(query) => {
                let plan = self.plan_query(query).await?;
                Ok(StatementOutput::Rows(plan.execute(values).await?))
            }
            Statement::Subscribe { name, from } => {
                Ok(StatementOutput::Rows(self.subscribe(name, *from).await?))
            }
            _ if !values.is_empty() => Err(Error::invalid(
                "parameters can only be bound in a query (SELECT ... $1)",
            )),
            _ => Ok(self.execute(statement).await?.into()),
        }
    }

    /// What `statement` will return and the parameters it takes, without
    /// running it; `SHOW` and `DESCRIBE` statements are run to learn their
    /// schema (they are cheap and change nothing).
    pub async fn prepare(&self, statement: &ParsedStatement) -> Result<Prepared> {
        let no_parameters = || Arc::new(Schema::empty());
        let schema = match &statement.statement {
            Statement::Query(query) => {
                let plan = self.plan_query(query).await?;
                return Ok(Prepared {
                    schema: Some(plan.schema()),
                    parameters: plan.parameters()?,
                });
            }
            Statement::Subscribe { name, .. } => Some(self.subscription_schema(name).await?),
            Statement::Show(_)
            | Statement::Describe(_)
            | Statement::ShowTopics { .. }
            | Statement::DescribeTopic { .. } => match self.execute(statement).await? {
                StatementResult::Rows { schema, .. } => Some(schema),
                StatementResult::Done(_) => None,
            },
            Statement::CreateStream(_)
            | Statement::CreateTable(_)
            | Statement::CreateView(_)
            | Statement::CreateSink(_)
            | Statement::Insert(_)
            | Statement::Restart { .. }
            | Statement::Drop { .. } => None,
        };
        Ok(Prepared {
            schema,
            parameters: no_parameters(),
        })
    }

    async fn plan_query(
        &self,
        query: &datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<AdHocPlan> {
        self.wait_for_bounded_jobs().await;
        self.plan_query_now(query).await
    }

    /// Plans `query` over what is committed now, without waiting for the
    /// bounded jobs: for the snapshot a subscription starts with, which
    /// the job's later commits follow live (waiting there would wait on a
    /// job that cannot commit while the snapshot is taken).
    async fn plan_query_now(
        &self,
        query: &datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<AdHocPlan> {
        let readable = self.objects.lock().await.readable();
        AdHocPlan::new(query, &readable, self.config.batch_size).await
    }

    /// Appends `batches` (columns named like the stream's, any subset and
    /// order, plus `_key`) to the Kafka stream `stream`'s topic, each batch
    /// acknowledged before the next is read; returns the rows published.
    pub async fn ingest(
        &self,
        stream: &str,
        schema: &SchemaRef,
        batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
    ) -> Result<u64> {
        let (streams, outputs) = {
            let objects = self.objects.lock().await;
            (objects.streams.clone(), objects.outputs.clone())
        };
        insert::ingest(stream, &streams, &outputs, schema, batches).await
    }

    /// `SUBSCRIBE name [FROM NOW | FROM BEGINNING]`.
    async fn subscribe(&self, name: &str, from: SubscribeFrom) -> Result<RowStream> {
        let closing = self.closing.subscribe();
        let (stream, output) = {
            let objects = self.objects.lock().await;
            (
                objects.streams.get(name).cloned(),
                objects.outputs.get(name).cloned(),
            )
        };
        if let Some(stream) = stream {
            return subscribe_stream(
                &stream,
                from == SubscribeFrom::Beginning,
                self.config.batch_size,
                closing,
            );
        }
        let output = output.ok_or_else(|| missing_object(name))?;
        match from {
            SubscribeFrom::Now => Ok(output.feed.subscribe(closing)),
            SubscribeFrom::Beginning => {
                let select = select_all(name)?;
                let archived = async {
                    let plan = self.plan_query_now(&select).await?;
                    plan.execute(Vec::new()).await
                };
                output
                    .feed
                    .subscribe_from_beginning(archived, closing)
                    .await
            }
        }
    }

    /// The schema of the rows a subscription to `name` returns.
    async fn subscription_schema(&self, name: &str) -> Result<SchemaRef> {
        let objects = self.objects.lock().await;
        if let Some(stream) = objects.streams.get(name) {
            return Ok(Arc::clone(&stream.schema));
        }
        match objects.outputs.get(name) {
            Some(output) => Ok(crate::archive::archive_schema(&output.schema)),
            None => Err(missing_object(name)),
        }
    }

    /// Ends every subscription: a server stops them before it waits for
    /// its requests to finish.
    pub fn close_subscriptions(&self) {
        self.closing.send_replace(true);
    }

    /// Runs one statement.
    ///
    /// Queries, `SHOW JOBS` and `DESCRIBE` first wait for the jobs over
    /// bounded sources to finish, so a script sees the complete results of
    /// the bounded jobs it started.
    pub async fn execute(&self, statement: &ParsedStatement) -> Result<StatementResult> {
        match &statement.statement {
            Statement::CreateStream(create) => self.create_stream(create, &statement.text).await,
            Statement::CreateTable(create) => self.create_table(create, &statement.text).await,
            Statement::CreateView(create) => {
                self.create_output(ObjectKind::View, create, &statement.text)
                    .await
            }
            Statement::CreateSink(create) => {
                self.create_output(ObjectKind::Sink, create, &statement.text)
                    .await
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => self.drop_object(*kind, name, *if_exists).await,
            Statement::Restart { kind, name, from } => self.restart(*kind, name, from).await,
            Statement::Show(target) => {
                self.wait_for_bounded_jobs().await;
                let objects = self.objects.lock().await;
                query::show(*target, &objects, &self.catalog)
            }
            Statement::Describe(name) => {
                self.wait_for_bounded_jobs().await;
                let objects = self.objects.lock().await;
                query::describe(name, &objects, &self.catalog)
            }
            Statement::ShowTopics { brokers } => {
                let (brokers, properties) = self.kafka_cluster(brokers.as_deref()).await?;
                kafka::show_topics(brokers, properties).await
            }
            Statement::DescribeTopic { topic, brokers } => {
                let (brokers, properties) = self.kafka_cluster(brokers.as_deref()).await?;
                kafka::describe_topic(brokers, properties, topic.clone()).await
            }
            Statement::Insert(statement) => {
                let readable = self.objects.lock().await.readable();
                insert::insert(statement, &readable, self.config.batch_size).await
            }
            Statement::Subscribe { name, .. } => Err(Error::invalid(format!(
                "SUBSCRIBE {name} streams rows until it is cancelled; run it from `fibers shell` \
                 or another Flight SQL client"
            ))),
            Statement::Query(statement) => {
                self.wait_for_bounded_jobs().await;
                let readable = self.objects.lock().await.readable();
                query::ad_hoc(statement, &readable, self.config.batch_size).await
            }
        }
    }

    /// The brokers a topic statement talks to: those named, or else the
    /// ones every Kafka stream uses (with that stream's client
    /// properties, security settings included).
    async fn kafka_cluster(
        &self,
        brokers: Option<&str>,
    ) -> Result<(String, Vec<(String, String)>)> {
        if let Some(brokers) = brokers {
            self.config.access.check_brokers(brokers)?;
        }
        let objects = self.objects.lock().await;
        let clusters: BTreeMap<&str, &[(String, String)]> = objects
            .streams
            .values()
            .filter_map(|s| s.kafka())
            .map(|k| (k.brokers.as_str(), k.properties.as_slice()))
            .collect();
        match brokers {
            Some(b) => Ok((
                b.to_string(),
                clusters.get(b).map(|p| p.to_vec()).unwrap_or_default(),
            )),
            None => match clusters.iter().next() {
                Some((b, p)) if clusters.len() == 1 => Ok((b.to_string(), p.to_vec())),
                None => Err(Error::invalid(
                    "no Kafka stream is declared to take the brokers from; \
                     name them: ... FROM 'host:9092'",
                )),
                Some(_) => Err(Error::invalid(format!(
                    "Kafka streams use several clusters ({}); name one: ... FROM 'host:9092'",
                    clusters.keys().copied().collect::<Vec<_>>().join("; ")
                ))),
            },
        }
    }

    /// Checks the paths and Kafka brokers a statement's options name (a
    /// stream's file, an archive, a reference table, a certificate) against
    /// the engine's [`Access`], before anything is read or connected to.
    fn check_access(&self, options: &fibers_sql::Options) -> Result<()> {
        let access = &self.config.access;
        let data_dir = &self.config.data_dir;
        let path = |what: &str, written: &str| {
            access.check_path(what, written, &data_dir.join(written), data_dir)
        };
        if let Some(written) = options.get("path") {
            path("path", written)?;
        }
        if let Some(brokers) = options.get("brokers") {
            access.check_brokers(brokers)?;
        }
        for (key, value) in options.iter() {
            if let Some(setting) = key.strip_prefix(kafka::PROPERTIES_PREFIX)
                && kafka::properties::FILE_SETTINGS.contains(&setting.to_ascii_lowercase().as_str())
            {
                path(&format!("property '{key}'"), value)?;
            }
        }
        Ok(())
    }

    async fn create_stream(&self, create: &CreateStream, sql: &str) -> Result<StatementResult> {
        self.check_idle(&create.name)?;
        let mut objects = self.objects.lock().await;
        if let Some(kind) = objects.kind_of(&create.name) {
            if create.if_not_exists {
                return Ok(StatementResult::Done("CREATE STREAM".into()));
            }
            return Err(fibers_catalog::Error::AlreadyExists {
                kind,
                name: create.name.clone(),
            }
            .into());
        }
        self.check_access(&create.options)?;
        let stream = StreamDef::resolve(create, &self.config.data_dir)?;
        self.catalog.create(&Definition {
            name: create.name.clone(),
            kind: ObjectKind::Stream,
            sql: sql.to_string(),
            depends_on: vec![],
            created_at: now(),
        })?;
        objects
            .streams
            .insert(create.name.clone(), Arc::new(stream));
        Ok(StatementResult::Done("CREATE STREAM".into()))
    }

    async fn create_table(&self, create: &CreateStream, sql: &str) -> Result<StatementResult> {
        let done = || Ok(StatementResult::Done("CREATE TABLE".into()));
        let _busy = self.reserve(&create.name, "being created")?;
        if let Some(kind) = self.objects.lock().await.kind_of(&create.name) {
            if create.if_not_exists {
                return done();
            }
            return Err(fibers_catalog::Error::AlreadyExists {
                kind,
                name: create.name.clone(),
            }
            .into());
        }
        self.check_access(&create.options)?;
        // Read before taking the lock: a large table takes a while.
        let table = ReferenceTable::open(create, &self.config.data_dir).await?;
        let mut objects = self.objects.lock().await;
        if objects.kind_of(&create.name).is_some() {
            // Created meanwhile by another session.
            return if create.if_not_exists {
                done()
            } else {
                Err(fibers_catalog::Error::AlreadyExists {
                    kind: ObjectKind::Table,
                    name: create.name.clone(),
                }
                .into())
            };
        }
        self.catalog.create(&Definition {
            name: create.name.clone(),
            kind: ObjectKind::Table,
            sql: sql.to_string(),
            depends_on: vec![],
            created_at: now(),
        })?;
        objects.tables.insert(create.name.clone(), Arc::new(table));
        done()
    }

    async fn create_output(
        &self,
        kind: ObjectKind,
        create: &CreateQuery,
        sql: &str,
    ) -> Result<StatementResult> {
        let done = match kind {
            ObjectKind::View => "CREATE MATERIALIZED VIEW",
            _ => "CREATE SINK",
        };
        let _busy = self.reserve(&create.name, "being created")?;
        if let Some(existing) = self.objects.lock().await.kind_of(&create.name) {
            if create.if_not_exists {
                return Ok(StatementResult::Done(done.into()));
            }
            return Err(fibers_catalog::Error::AlreadyExists {
                kind: existing,
                name: create.name.clone(),
            }
            .into());
        }
        let prepared = self.prepare_output(kind, create).await?;
        self.start_output(prepared, Some(sql), true, None).await?;
        Ok(StatementResult::Done(done.into()))
    }

    /// Plans a view or sink and creates its archive, holding the objects'
    /// lock only to copy what the plan reads: planning and the archive's
    /// I/O do not hold up statements on other objects.
    async fn prepare_output(
        &self,
        kind: ObjectKind,
        create: &CreateQuery,
    ) -> Result<PlannedOutput> {
        let (owner, format_key) = match kind {
            ObjectKind::View => ("view", "archive"),
            _ => ("sink", "connector"),
        };
        self.check_access(&create.options)?;
        let mut options = create.options.clone();
        let archive = ArchiveConfig::from_options(
            &mut options,
            format_key,
            owner,
            &create.name,
            &self.config.data_dir,
        )?;
        let mut valid = vec![format_key];
        valid.extend_from_slice(archive.valid_options());
        options.finish(&format!("{owner} '{}'", create.name), &valid)?;

        let readable = self.objects.lock().await.readable();
        let planned = plan_query(&create.name, &create.query, &readable).await?;
        let table_names = planned.tables();
        let tables = table_names
            .iter()
            .map(|name| {
                readable
                    .tables
                    .get(name)
                    .cloned()
                    .ok_or_else(|| Error::invalid(format!("table '{name}' not found")))
            })
            .collect::<Result<Vec<_>>>()?;
        let head = planned.head();
        let views: Vec<_> = head
            .inputs
            .iter()
            .filter(|input| !readable.streams.contains_key(&input.stream))
            .map(|input| input.stream.clone())
            .collect();
        let (input, mut upstream) = match views.as_slice() {
            [] => {
                let mut upstream = Upstream::default();
                for input in &head.inputs {
                    let stream = readable.streams.get(&input.stream).ok_or_else(|| {
                        Error::invalid(format!("stream '{}' not found", input.stream))
                    })?;
                    upstream.stream_names.push(input.stream.clone());
                    upstream.streams.push(Arc::clone(stream));
                }
                (OutputInput::Streams, upstream)
            }
            [view] if head.inputs.len() == 1 => (
                OutputInput::View(view.clone()),
                upstream_of(view, &readable).await?,
            ),
            [view, ..] => {
                return Err(Error::invalid(format!(
                    "'{}' joins view '{view}': a join reads streams; join the streams the view \
                     reads, or read the view alone",
                    create.name
                )));
            }
        };
        let depends_on = match &input {
            OutputInput::Streams => upstream.stream_names.clone(),
            OutputInput::View(view) => vec![view.clone()],
        }
        .into_iter()
        .chain(table_names.iter().cloned())
        .collect();
        let Planned { stages, query } = planned;
        upstream.queries.extend(stages);
        let inputs = upstream.streams.clone();
        // A join of two streams reads both as one.
        let stream = match inputs.as_slice() {
            [one] => Arc::clone(one),
            [first, second] => Arc::new(StreamDef::union(first, second)?),
            _ => return Err(Error::invalid(format!("'{}' reads no stream", create.name))),
        };
        let schema = query.output_schema();
        archive.create(&create.name, &schema).await?;
        Ok(PlannedOutput {
            kind,
            name: create.name.clone(),
            create: Arc::new(create.clone()),
            input,
            query,
            stream,
            inputs,
            upstream,
            tables,
            table_names,
            depends_on,
            archive,
            schema,
        })
    }

    /// Registers a prepared view or sink and, if `start`, starts its job
    /// (with `replay`, for a RESTART). A new definition (`sql` given) is
    /// stored in the catalog before its job starts, since the job records
    /// its state there.
    async fn start_output(
        &self,
        prepared: PlannedOutput,
        sql: Option<&str>,
        start: bool,
        replay: Option<Replay>,
    ) -> Result<()> {
        let PlannedOutput {
            kind,
            name,
            create,
            input,
            query,
            stream,
            inputs,
            upstream,
            tables,
            table_names,
            depends_on,
            archive,
            schema,
        } = prepared;
        let mut objects = self.objects.lock().await;
        // What the plan read may have been dropped or replaced while it
        // was planned without the lock.
        for (stream_name, planned) in upstream.stream_names.iter().zip(&inputs) {
            if !objects
                .streams
                .get(stream_name)
                .is_some_and(|now| Arc::ptr_eq(now, planned))
            {
                return Err(changed_meanwhile("stream", stream_name, &name));
            }
        }
        for (view, feed) in &upstream.views {
            if !objects
                .outputs
                .get(view)
                .is_some_and(|now| Arc::ptr_eq(&now.feed, feed))
            {
                return Err(changed_meanwhile("view", view, &name));
            }
        }
        for (table, planned) in table_names.iter().zip(&tables) {
            if !objects
                .tables
                .get(table)
                .is_some_and(|now| Arc::ptr_eq(now, planned))
            {
                return Err(changed_meanwhile("table", table, &name));
            }
        }
        if let Some(sql) = sql {
            if let Some(existing) = objects.kind_of(&name) {
                return Err(fibers_catalog::Error::AlreadyExists {
                    kind: existing,
                    name,
                }
                .into());
            }
            self.catalog.create(&Definition {
                name: name.clone(),
                kind,
                sql: sql.to_string(),
                depends_on,
                created_at: now(),
            })?;
        }
        let feed = Arc::new(Feed::new(
            &name,
            crate::archive::archive_schema(&schema),
            archive.readable(),
        ));
        objects.outputs.insert(
            name.clone(),
            Output {
                kind,
                archive: archive.clone(),
                schema,
                feed: Arc::clone(&feed),
                create,
                input,
                time: query.time_attribute.clone(),
            },
        );
        if start {
            let checkpoints = self.job_checkpoints(&name, &archive);
            let job = JobHandle::start(JobSpec {
                name: name.clone(),
                stream,
                upstream: upstream.queries,
                query,
                archive,
                batch_size: self.config.batch_size,
                catalog: Arc::clone(&self.catalog),
                feed,
                checkpoints,
                replay,
            });
            objects.jobs.insert(name, job);
        }
        Ok(())
    }

    /// `ALTER MATERIALIZED VIEW | SINK name RESTART FROM ...`: stops the
    /// job (its last checkpoint commits what it emitted), discards its
    /// state, and starts it again reading its streams from `from`. A view's
    /// archive is rewritten for the replayed windows: each commit of the
    /// replay replaces the windows it covers, in one Delta commit.
    ///
    /// The views and sinks that read a view, directly or through others,
    /// compute its rows in their own jobs, so they replay with it, from the
    /// same point: a reader whose archive cannot be replayed from there
    /// refuses the whole statement, naming it.
    ///
    /// Every job is planned, and every stream it reads is checked for the
    /// replay, before any stops: a RESTART that cannot run leaves the old
    /// jobs running.
    async fn restart(
        &self,
        kind: ObjectKind,
        name: &str,
        from: &RestartFrom,
    ) -> Result<StatementResult> {
        let done = match kind {
            ObjectKind::View => "ALTER MATERIALIZED VIEW",
            _ => "ALTER SINK",
        };
        let from = match from {
            RestartFrom::Earliest => ReplayFrom::Earliest,
            RestartFrom::Latest => ReplayFrom::Latest,
            RestartFrom::Timestamp(t) => ReplayFrom::Timestamp(
                chrono::DateTime::parse_from_rfc3339(t.trim())
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "invalid RESTART time '{t}': expected an RFC 3339 time such as \
                             '2025-01-02T14:30:00Z'"
                        ))
                    })?,
            ),
        };
        let targets = self.restart_targets(kind, name)?;
        let _busy = targets
            .iter()
            .map(|(_, target, _)| self.reserve(target, "restarting"))
            .collect::<Result<Vec<_>>>()?;
        for (kind, target, create) in &targets {
            self.plan_restart(*kind, target, create, from)
                .await
                .map_err(|e| match e {
                    Error::Invalid(message) if target != name => Error::Invalid(format!(
                        "'{target}' reads '{name}' and replays with it: {message}"
                    )),
                    e => e,
                })?;
        }
        // Upstream first: a reader is planned again once the view it reads
        // runs anew (its plan checks that view's feed).
        for (kind, target, create) in &targets {
            let plan = self.plan_restart(*kind, target, create, from).await?;
            self.run_restart(target, plan, from).await?;
        }
        Ok(StatementResult::Done(done.into()))
    }

    /// The job `name` and the views and sinks reading it, directly or
    /// through others, in the order they were created (so each comes after
    /// what it reads), each with its definition.
    fn restart_targets(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Vec<(ObjectKind, String, CreateQuery)>> {
        let definitions = self.catalog.list(None)?;
        if !definitions.iter().any(|d| d.name == name && d.kind == kind) {
            return Err(fibers_catalog::Error::NotFound {
                kind,
                name: name.to_string(),
            }
            .into());
        }
        let mut names = BTreeSet::from([name]);
        let mut targets = Vec::new();
        for definition in &definitions {
            let wanted = definition.name == name
                || (definition.kind.runs_job()
                    && definition
                        .depends_on
                        .iter()
                        .any(|d| names.contains(d.as_str())));
            if !wanted {
                continue;
            }
            names.insert(&definition.name);
            let Some(Statement::CreateView(create) | Statement::CreateSink(create)) =
                fibers_sql::parse_script(&definition.sql)?
                    .into_iter()
                    .next()
                    .map(|s| s.statement)
            else {
                return Err(Error::invalid(format!(
                    "the definition of '{}' is damaged",
                    definition.name
                )));
            };
            targets.push((definition.kind, definition.name.clone(), create));
        }
        Ok(targets)
    }

    /// Plans job `name` again for a replay from `from`, checking that its
    /// streams and its archive can replay from there.
    async fn plan_restart(
        &self,
        kind: ObjectKind,
        name: &str,
        create: &CreateQuery,
        from: ReplayFrom,
    ) -> Result<RestartPlan> {
        let output = self
            .objects
            .lock()
            .await
            .outputs
            .get(name)
            .cloned()
            .ok_or_else(|| missing_object(name))?;
        let prepared = self.prepare_output(kind, create).await?;
        // Every stream it reads (both of a join's) must replay from there.
        prepared.stream.replaying(from)?;
        let windowed = output.schema.index_of(fibers_sql::WINDOW_START).is_ok();
        if let ReplayFrom::Timestamp(_) = from
            && !windowed
        {
            return Err(Error::invalid(format!(
                "{name} has no window_start column, so a replay from a time cannot tell which \
                 of its rows to replace; RESTART FROM EARLIEST rewrites it whole"
            )));
        }
        // Parquet files cannot drop some windows: its archive is rewritten
        // whole or not at all.
        let parquet = output.archive.format == ArchiveFormat::Parquet;
        if parquet && matches!(from, ReplayFrom::Timestamp(_)) {
            return Err(Error::invalid(format!(
                "the Parquet archive of '{name}' can only be rewritten whole: RESTART FROM \
                 EARLIEST, or archive the view to Delta to reprocess part of it"
            )));
        }
        Ok(RestartPlan {
            prepared,
            output,
            windowed,
            parquet,
        })
    }

    /// Stops job `name` and starts it again as `plan` says, replaying from
    /// `from`.
    async fn run_restart(&self, name: &str, plan: RestartPlan, from: ReplayFrom) -> Result<()> {
        let RestartPlan {
            prepared,
            output,
            windowed,
            parquet,
        } = plan;
        // The job's last checkpoint commits what it emitted; the windows
        // committed so far are what the replay replaces. It stops without
        // the lock: other statements go on meanwhile.
        let old_job = self.objects.lock().await.jobs.remove(name);
        if let Some(mut job) = old_job {
            job.stop().await;
        }
        let old = self.catalog.job(name)?;
        let through = old.as_ref().and_then(|j| j.committed_watermark);
        let rewrite = match (output.archive.readable(), from) {
            // A topic keeps what was produced: a replay produces again.
            (false, _) | (_, ReplayFrom::Latest) => None,
            (true, ReplayFrom::Earliest) if !windowed || parquet => Some(Rewrite {
                full: true,
                after: None,
                through: i64::MAX,
            }),
            (true, ReplayFrom::Earliest) => through.map(|through| Rewrite {
                full: false,
                after: None,
                through,
            }),
            (true, ReplayFrom::Timestamp(t)) => {
                through.filter(|&w| w >= t).map(|through| Rewrite {
                    full: false,
                    after: Some(t - 1),
                    through,
                })
            }
        };
        let replay = Replay {
            from,
            skip_before: match from {
                ReplayFrom::Timestamp(t) => Some(t),
                _ => None,
            },
            rewrite,
        };
        let store = self.checkpoints_of(name);
        store.delete_all().await?;
        // Kept until the first checkpoint, so a crash before it restarts
        // the replay rather than the stream's usual start.
        if self.job_checkpoints(name, &output.archive).store.is_some() {
            store.set_replay(Some(&replay)).await?;
        }
        // Windows the old job committed are replaced, not skipped.
        self.catalog.put_job(&fibers_catalog::JobRecord {
            name: name.to_string(),
            status: JobStatus::Running,
            error: None,
            committed_watermark: None,
            counters: Default::default(),
        })?;
        self.start_output(prepared, None, true, Some(replay)).await
    }

    /// The checkpoints of job `name`.
    fn checkpoints_of(&self, name: &str) -> CheckpointStore {
        let (store, root, url) = &self.checkpoint_store;
        CheckpointStore::new(Arc::clone(store), root, url, name)
    }

    /// A job's checkpoint settings: its `WITH` options over the engine's.
    fn job_checkpoints(&self, name: &str, archive: &ArchiveConfig) -> JobCheckpoints {
        let engine = &self.config.checkpoints;
        let policy = archive.commit;
        let enabled = policy.checkpoints.unwrap_or(engine.interval.is_some());
        JobCheckpoints {
            store: enabled.then(|| self.checkpoints_of(name)),
            interval: policy
                .interval
                .or(engine.interval)
                .unwrap_or(crate::checkpoint::DEFAULT_INTERVAL),
            retained: engine.retained,
        }
    }

    /// Reserves `name` for a statement that waits without the objects'
    /// lock (`doing` says what it does, for the error another statement on
    /// the name gets meanwhile); released when the guard drops, also when
    /// the statement is cancelled.
    fn reserve(&self, name: &str, doing: &'static str) -> Result<Busy> {
        let mut busy = lock_busy(&self.busy);
        if let Some(other) = busy.get(name) {
            return Err(busy_error(name, other));
        }
        busy.insert(name.to_string(), doing);
        Ok(Busy {
            names: Arc::clone(&self.busy),
            name: name.to_string(),
        })
    }

    /// Refuses a statement on `name` while another one on it is in flight.
    fn check_idle(&self, name: &str) -> Result<()> {
        match lock_busy(&self.busy).get(name) {
            Some(other) => Err(busy_error(name, other)),
            None => Ok(()),
        }
    }

    /// The objects whose definitions read `name`, in the order they were
    /// created.
    fn readers_of(&self, name: &str) -> Result<Vec<(ObjectKind, String)>> {
        Ok(self
            .catalog
            .list(None)?
            .into_iter()
            .filter(|d| d.depends_on.iter().any(|dep| dep == name))
            .map(|d| (d.kind, d.name))
            .collect())
    }

    async fn drop_object(
        &self,
        kind: ObjectKind,
        name: &str,
        if_exists: bool,
    ) -> Result<StatementResult> {
        let done = match kind {
            ObjectKind::Stream => "DROP STREAM",
            ObjectKind::View => "DROP MATERIALIZED VIEW",
            ObjectKind::Sink => "DROP SINK",
            ObjectKind::Table => "DROP TABLE",
        };
        let _busy = self.reserve(name, "being dropped")?;
        let mut objects = self.objects.lock().await;
        if objects.kind_of(name) != Some(kind) {
            if if_exists {
                return Ok(StatementResult::Done(done.into()));
            }
            return Err(fibers_catalog::Error::NotFound {
                kind,
                name: name.to_string(),
            }
            .into());
        }
        // Refused before anything stops.
        let used_by = self.readers_of(name)?;
        if !used_by.is_empty() {
            return Err(fibers_catalog::Error::InUse {
                kind,
                name: name.to_string(),
                used_by,
            }
            .into());
        }
        let job = objects.jobs.remove(name);
        let unavailable = objects.unavailable.contains_key(name);
        match kind {
            ObjectKind::Stream | ObjectKind::Table => {
                self.catalog.drop_object(kind, name)?;
                objects.streams.remove(name);
                objects.tables.remove(name);
                objects.unavailable.remove(name);
                return Ok(StatementResult::Done(done.into()));
            }
            ObjectKind::View | ObjectKind::Sink => {}
        }
        // A view or sink stops first, without the lock (its final
        // checkpoint may take a while), so the job's last commit lands
        // before the definition (and its job record) disappear.
        drop(objects);
        if let Some(mut job) = job {
            job.stop().await;
        }
        self.catalog.drop_object(kind, name)?;
        // A view re-created under this name is a new job: it must not
        // resume this one's state.
        self.checkpoints_of(name).delete_all().await?;
        let mut objects = self.objects.lock().await;
        objects.outputs.remove(name);
        if unavailable {
            objects.unavailable.remove(name);
        }
        Ok(StatementResult::Done(done.into()))
    }

    /// Every stream, view and sink with the schema of its rows: streams
    /// first, then views and sinks, each ordered by name.
    pub async fn tables(&self) -> Vec<TableInfo> {
        let objects = self.objects.lock().await;
        // The columns `SELECT *` returns: a stream without a WATERMARK
        // has `_arrival_time` only in the jobs that read it.
        let streams = objects.streams.iter().map(|(name, stream)| TableInfo {
            name: name.clone(),
            kind: ObjectKind::Stream,
            schema: stream.source_schema(),
        });
        // A view's rows as queries and subscriptions return them: in the
        // archive's types.
        let outputs = objects.outputs.iter().map(|(name, output)| TableInfo {
            name: name.clone(),
            kind: output.kind,
            schema: crate::archive::archive_schema(&output.schema),
        });
        let tables = objects.tables.iter().map(|(name, table)| TableInfo {
            name: name.clone(),
            kind: ObjectKind::Table,
            schema: Arc::clone(&table.schema),
        });
        streams.chain(tables).chain(outputs).collect()
    }

    /// Waits for every running job over a bounded source to finish.
    pub async fn wait_for_bounded_jobs(&self) {
        let waiters: Vec<_> = {
            let objects = self.objects.lock().await;
            objects
                .jobs
                .values()
                .filter(|j| j.bounded)
                .map(|j| j.waiter())
                .collect()
        };
        for w in waiters {
            w.await;
        }
    }

    /// Waits until no job is running: every one finished, stopped or
    /// failed.
    pub async fn wait_for_jobs(&self) {
        let waiters: Vec<_> = {
            let objects = self.objects.lock().await;
            objects.jobs.values().map(|j| j.waiter()).collect()
        };
        for w in waiters {
            w.await;
        }
    }

    /// Whether any job is still running, and whether all running ones are
    /// over bounded sources (and so will finish by themselves).
    pub async fn running_jobs(&self) -> (usize, bool) {
        let objects = self.objects.lock().await;
        let running: Vec<_> = objects
            .jobs
            .values()
            .filter(|j| j.state().status() == JobStatus::Running)
            .collect();
        (running.len(), running.iter().all(|j| j.bounded))
    }

    /// The first job failure, if any job failed during this session.
    pub async fn failures(&self) -> Vec<(String, String)> {
        let objects = self.objects.lock().await;
        objects
            .jobs
            .iter()
            .filter_map(|(name, j)| match j.state() {
                crate::job::JobState::Failed(e) => Some((name.clone(), e)),
                _ => None,
            })
            .collect()
    }

    /// Stops every job after committing what it has emitted. The jobs
    /// stop side by side, without the objects' lock.
    pub async fn shutdown(&self) {
        self.close_subscriptions();
        let mut jobs = std::mem::take(&mut self.objects.lock().await.jobs);
        futures::future::join_all(jobs.values_mut().map(JobHandle::stop)).await;
        // Kept, so that `failures` reports the jobs that failed.
        self.objects.lock().await.jobs.append(&mut jobs);
    }
}

/// A view or sink planned and its archive created, ready to start.
struct PlannedOutput {
    kind: ObjectKind,
    name: String,
    query: ContinuousQuery,
    create: Arc<CreateQuery>,
    input: OutputInput,
    /// What the job reads: its stream, or a join's two streams as one (for
    /// a query over a view, the stream its chain of views reads).
    stream: Arc<StreamDef>,
    /// The streams and reference tables it was planned against, in the
    /// order of the query's inputs (or of `upstream.stream_names`) and
    /// tables: when it starts, they must still be the objects of those
    /// names.
    inputs: Vec<Arc<StreamDef>>,
    /// The views between the stream and the query, planned for this job.
    upstream: Upstream,
    tables: Vec<Arc<ReferenceTable>>,
    /// The names of `tables`.
    table_names: Vec<String>,
    /// The objects the definition reads, for the catalog.
    depends_on: Vec<String>,
    archive: ArchiveConfig,
    schema: SchemaRef,
}

/// A view's or sink's query, planned: the stages of the CTEs its windows
/// read (see [`fibers_sql::split_stages`]), each reading the one before,
/// and then the query itself, reading the last.
struct Planned {
    stages: Vec<ContinuousQuery>,
    query: ContinuousQuery,
}

impl Planned {
    /// The query that reads the catalog's objects: the first stage, or the
    /// query itself.
    fn head(&self) -> &ContinuousQuery {
        self.stages.first().unwrap_or(&self.query)
    }

    /// The reference tables of every stage, in order, each once.
    fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for table in self
            .stages
            .iter()
            .chain([&self.query])
            .flat_map(|q| &q.tables)
        {
            if !names.contains(table) {
                names.push(table.clone());
            }
        }
        names
    }
}

/// The objects, and the stages of one query planned so far, which the
/// stages after them read as views.
struct WithStages<'a> {
    readable: &'a Readable,
    stages: BTreeMap<String, StreamInfo>,
}

impl StreamResolver for WithStages<'_> {
    fn stream(&self, name: &str) -> Option<StreamInfo> {
        match self.stages.get(name) {
            Some(stage) => Some(stage.clone()),
            None => self.readable.stream(name),
        }
    }

    fn kind_of(&self, name: &str) -> Option<ObjectKind> {
        match self.stages.contains_key(name) {
            true => Some(ObjectKind::View),
            false => self.readable.kind_of(name),
        }
    }

    fn input_table(&self, stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
        self.readable.input_table(stream, schema)
    }

    fn reference_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.readable.reference_table(name)
    }
}

/// Plans the query of view or sink `name`, in stages when its windows read
/// its CTEs.
async fn plan_query(
    name: &str,
    query: &datafusion::sql::sqlparser::ast::Query,
    readable: &Readable,
) -> Result<Planned> {
    let Some(split) = fibers_sql::split_stages(query)? else {
        return Ok(Planned {
            stages: Vec::new(),
            query: plan_continuous_query(name, query, readable).await?,
        });
    };
    let mut resolver = WithStages {
        readable,
        stages: BTreeMap::new(),
    };
    let mut stages: Vec<ContinuousQuery> = Vec::with_capacity(split.ctes.len());
    let mut previous: Option<&str> = None;
    for (cte, cte_query) in &split.ctes {
        let stage = plan_continuous_query(name, cte_query, &resolver)
            .await
            .map_err(|e| match e {
                fibers_sql::Error::Invalid(message) => {
                    Error::invalid(format!("in the CTE '{cte}': {message}"))
                }
                e => e.into(),
            })?;
        check_reads_stage(name, &format!("the CTE '{cte}'"), &stage, previous)?;
        resolver.stages.insert(
            cte.clone(),
            StreamInfo {
                schema: stage.output_schema(),
                time_column: stage.time_attribute.as_ref().map(|t| t.column.clone()),
            },
        );
        stages.push(stage);
        previous = Some(cte);
    }
    let query = plan_continuous_query(name, &split.body, &resolver).await?;
    check_reads_stage(name, "its body", &query, previous)?;
    Ok(Planned { stages, query })
}

/// Stages run as a chain: each reads the one before it only (the first
/// reads the catalog's objects, as any query does).
fn check_reads_stage(
    name: &str,
    part: &str,
    query: &ContinuousQuery,
    previous: Option<&str>,
) -> Result<()> {
    let Some(previous) = previous else {
        return Ok(());
    };
    match query.inputs.as_slice() {
        [input] if input.stream == previous => Ok(()),
        inputs => Err(Error::invalid(format!(
            "in the query of '{name}', {part} reads {}: a query whose windows read its CTEs runs \
             them as a chain, each CTE reading the one before it and the query reading the \
             last ('{previous}')",
            inputs
                .iter()
                .map(|i| format!("'{}'", i.stream))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// A job planned again for a RESTART, with what its archive allows.
struct RestartPlan {
    prepared: PlannedOutput,
    /// The view or sink as it runs now.
    output: Output,
    windowed: bool,
    parquet: bool,
}

/// The chain of views a query over a view reads, from the one reading
/// streams down to the view the query reads. Each job plans the chain for
/// itself: the views' operators run in the job, ahead of its own, and
/// their rows reach it in process.
#[derive(Default)]
struct Upstream {
    /// The views' queries, the first reading the streams.
    queries: Vec<ContinuousQuery>,
    /// The views, each with its feed (which tells it from a view re-created
    /// under its name meanwhile).
    views: Vec<(String, Arc<Feed>)>,
    /// The streams the first view reads, and their definitions.
    stream_names: Vec<String>,
    streams: Vec<Arc<StreamDef>>,
}

/// Views read views to this depth at most: deeper chains are refused, so
/// a definition can never make planning recurse without end.
const MAX_VIEW_DEPTH: usize = 32;

/// Plans the chain of views ending at `view` for a job that reads it.
async fn upstream_of(view: &str, readable: &Readable) -> Result<Upstream> {
    let mut chain = Vec::new();
    let mut current = view.to_string();
    loop {
        if chain.len() == MAX_VIEW_DEPTH {
            return Err(Error::invalid(format!(
                "'{view}' reads a chain of more than {MAX_VIEW_DEPTH} views"
            )));
        }
        let output = readable
            .outputs
            .get(&current)
            .ok_or_else(|| Error::invalid(format!("view '{current}' not found")))?;
        chain.push((current.clone(), output.clone()));
        match &output.input {
            OutputInput::View(next) => current = next.clone(),
            OutputInput::Streams => break,
        }
    }
    chain.reverse();
    let mut upstream = Upstream::default();
    for (name, output) in chain {
        let planned = plan_query(&name, &output.create.query, readable).await?;
        if upstream.queries.is_empty() {
            for input in &planned.head().inputs {
                let stream = readable.streams.get(&input.stream).ok_or_else(|| {
                    Error::invalid(format!("stream '{}' not found", input.stream))
                })?;
                upstream.stream_names.push(input.stream.clone());
                upstream.streams.push(Arc::clone(stream));
            }
        }
        upstream.queries.extend(planned.stages);
        upstream.queries.push(planned.query);
        upstream.views.push((name, Arc::clone(&output.feed)));
    }
    Ok(upstream)
}

/// Names with a statement in flight, and what it does to each.
type BusyNames = std::sync::Mutex<BTreeMap<String, &'static str>>;

/// A name reserved in [`Engine::busy`], released when dropped.
struct Busy {
    names: Arc<BusyNames>,
    name: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock_busy(&self.names).remove(&self.name);
    }
}

fn lock_busy(names: &BusyNames) -> std::sync::MutexGuard<'_, BTreeMap<String, &'static str>> {
    // A plain map, changed by single inserts and removes: a panic
    // elsewhere cannot leave it half-changed.
    names.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error of a statement on `name` while another one on it is `doing`.
fn busy_error(name: &str, doing: &str) -> Error {
    Error::invalid(format!(
        "'{name}' is {doing}; run the statement again once that has finished"
    ))
}

/// The error of a view or sink whose `what` `name` was dropped or
/// replaced while `output` was planned.
fn changed_meanwhile(what: &str, name: &str, output: &str) -> Error {
    Error::invalid(format!(
        "{what} '{name}' was dropped or replaced while '{output}' was planned; run the \
         statement again"
    ))
}

fn missing_object(name: &str) -> Error {
    Error::invalid(format!(
        "'{name}' does not exist; SUBSCRIBE takes a stream, materialized view or sink"
    ))
}

/// `SELECT * FROM "name"`, parsed.
fn select_all(name: &str) -> Result<datafusion::sql::sqlparser::ast::Statement> {
    let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
    match fibers_sql::parse_script(&sql)?.pop().map(|s| s.statement) {
        Some(Statement::Query(select)) => Ok(*select),
        _ => Err(Error::invalid(format!("cannot read '{name}' back"))),
    }
}

/// The values of a one-row parameter batch, in column order.
pub(crate) fn parameter_values(parameters: Option<&RecordBatch>) -> Result<Vec<ScalarValue>> {
    let Some(batch) = parameters else {
        return Ok(Vec::new());
    };
    match batch.num_rows() {
        0 if batch.num_columns() == 0 => Ok(Vec::new()),
        1 => batch
            .columns()
            .iter()
            .map(|column| Ok(ScalarValue::try_from_array(column, 0)?))
            .collect(),
        n => Err(Error::invalid(format!(
            "bind one row of parameter values, not {n}"
        ))),
    }
}

/// Takes the data dir's lock, released when the process ends (even by a
/// crash, so a stale lock never blocks a restart).
/// Refuses a zero-byte catalog in a data dir that holds anything else
/// (archives, checkpoints): SQLite would take it for a new, empty catalog,
/// and every view, sink and job state would be forgotten without a word.
fn check_catalog_file(data_dir: &Path) -> Result<()> {
    let path = data_dir.join("catalog.db");
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == 0 => {}
        _ => return Ok(()),
    }
    let entries = std::fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut others: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("catalog.db") && name != "LOCK")
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    others.sort();
    others.truncate(5);
    Err(Error::invalid(format!(
        "the catalog {} is empty (0 bytes), but the data dir holds {}: the catalog was lost \
         or truncated, and opening it would forget every stream, view, sink and job. Restore \
         catalog.db from a backup, or remove it (and what the data dir holds) to start anew",
        path.display(),
        others.join(", ")
    )))
}

fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::invalid(format!(
            "data dir {} is in use by another DataFibers process",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
