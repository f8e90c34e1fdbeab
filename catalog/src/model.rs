use std::fmt;
use std::str::FromStr;

/// What kind of object a definition creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A source of rows: a Kafka topic, a file, a built-in generator.
    Stream,
    /// A continuous query whose results are archived and can be queried.
    View,
    /// A continuous query whose results are delivered to an external system.
    Sink,
    /// Reference data (a Delta table, Parquet files, a file) that streams
    /// are joined with.
    Table,
}

impl ObjectKind {
    /// The word stored in the catalog file.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Stream => "stream",
            ObjectKind::View => "view",
            ObjectKind::Sink => "sink",
            ObjectKind::Table => "table",
        }
    }

    /// Whether objects of this kind run a job.
    pub fn runs_job(self) -> bool {
        matches!(self, ObjectKind::View | ObjectKind::Sink)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Stream => "stream",
            ObjectKind::View => "materialized view",
            ObjectKind::Sink => "sink",
            ObjectKind::Table => "table",
        })
    }
}

impl FromStr for ObjectKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stream" => Ok(ObjectKind::Stream),
            "view" => Ok(ObjectKind::View),
            "sink" => Ok(ObjectKind::Sink),
            "table" => Ok(ObjectKind::Table),
            other => Err(format!("unknown object kind '{other}'")),
        }
    }
}

/// A stream, view or sink as the user defined it.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Unique among all objects.
    pub name: String,
    /// What the definition creates.
    pub kind: ObjectKind,
    /// The `CREATE` statement, as written.
    pub sql: String,
    /// Names of the objects this one reads from.
    pub depends_on: Vec<String>,
    /// When the object was created (RFC 3339).
    pub created_at: String,
}

/// The lifecycle of a view's or sink's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Reading its sources; resumed when the engine starts.
    Running,
    /// Stopped by the user or by the end of a timed run; resumed at start.
    Stopped,
    /// Every bounded source was consumed and every result committed.
    Finished,
    /// Stopped by an error; not resumed until redefined.
    Failed,
}

impl JobStatus {
    /// The word shown to users and stored in the catalog file.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Stopped => "stopped",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
        }
    }

    /// Whether a job in this state is started again when the engine starts.
    pub fn resumes(self) -> bool {
        matches!(self, JobStatus::Running | JobStatus::Stopped)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "running" => Ok(JobStatus::Running),
            "stopped" => Ok(JobStatus::Stopped),
            "finished" => Ok(JobStatus::Finished),
            "failed" => Ok(JobStatus::Failed),
            other => Err(format!("unknown job status '{other}'")),
        }
    }
}

/// The persisted state of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The view or sink the job runs.
    pub name: String,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// Why the job failed, when it did.
    pub error: Option<String>,
    /// The watermark (nanoseconds since the epoch) up to which the job's
    /// windowed results are committed to its archive; a resumed job does not
    /// emit windows that end at or before it again.
    pub committed_watermark: Option<i64>,
    /// The job's counters as of its last update (of its latest run).
    pub counters: JobCounters,
}

/// Rows a job has read, written, found late and found malformed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounters {
    /// Rows read from the source.
    pub input_rows: u64,
    /// Rows the job emitted.
    pub output_rows: u64,
    /// Rows dropped as late.
    pub late_rows: u64,
    /// Of the late rows, those that were late only because the watermark
    /// moved on while their partition was idle.
    pub idle_late_rows: u64,
    /// Records that did not decode.
    pub bad_rows: u64,
}
