use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Definition, Error, JobCounters, JobRecord, JobStatus, ObjectKind, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL DEFAULT 'default',
    sql        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dependencies (
    object     TEXT NOT NULL REFERENCES objects(name) ON DELETE CASCADE,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (object, depends_on)
);
CREATE TABLE IF NOT EXISTS jobs (
    name                TEXT PRIMARY KEY REFERENCES objects(name) ON DELETE CASCADE,
    status              TEXT NOT NULL,
    error               TEXT,
    committed_watermark INTEGER,
    updated_at          TEXT NOT NULL,
    input_rows          INTEGER NOT NULL DEFAULT 0,
    output_rows         INTEGER NOT NULL DEFAULT 0,
    late_rows           INTEGER NOT NULL DEFAULT 0,
    bad_rows            INTEGER NOT NULL DEFAULT 0,
    idle_late_rows      INTEGER NOT NULL DEFAULT 0
);
";

/// Columns added to `jobs` after its first release, added to older
/// catalogs when they are opened.
const JOB_COUNTER_COLUMNS: &[&str] = &[
    "input_rows",
    "output_rows",
    "late_rows",
    "bad_rows",
    "idle_late_rows",
];

/// The catalog of one data dir.
///
/// Calls are short, local SQLite transactions; the connection is shared
/// behind a mutex so the catalog can be used from any task.
pub struct Catalog {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

impl Catalog {
    /// Opens (creating if needed) the catalog file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|source| Error::Store {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn, path.to_path_buf())
    }

    /// A catalog that lives only as long as the process, for tests and
    /// throw-away sessions.
    pub fn open_in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| Error::Store {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self> {
        let catalog = Catalog {
            conn: Mutex::new(conn),
            path,
        };
        {
            let conn = catalog.lock();
            // WAL keeps readers (SHOW, DESCRIBE) from blocking job updates.
            conn.pragma_update(None, "journal_mode", "WAL")
                .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
                .and_then(|_| conn.execute_batch(SCHEMA))
                .and_then(|_| add_missing_columns(&conn))
                .map_err(|e| catalog.store_error(e))?;
        }
        Ok(catalog)
    }

    /// Where the catalog is stored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (every write is its own transaction), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store_error(&self, source: rusqlite::Error) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Adds a definition. Names are unique across streams, views and sinks.
    pub fn create(&self, def: &Definition) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.store_error(e))?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT kind FROM objects WHERE name = ?1",
                params![def.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.store_error(e))?;
        if let Some(kind) = existing {
            let kind = parse_kind(&def.name, &kind)?;
            return Err(Error::AlreadyExists {
                kind,
                name: def.name.clone(),
            });
        }
        tx.execute(
            "INSERT INTO objects (name, kind, sql, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![def.name, def.kind.as_str(), def.sql, def.created_at],
        )
        .map_err(|e| self.store_error(e))?;
        for dep in &def.depends_on {
            tx.execute(
                "INSERT OR IGNORE INTO dependencies (object, depends_on) VALUES (?1, ?2)",
                params![def.name, dep],
            )
            .map_err(|e| self.store_error(e))?;
        }
        tx.commit().map_err(|e| self.store_error(e))
    }

    /// The definition named `name`, of any kind.
    pub fn get(&self, name: &str) -> Result<Option<Definition>> {
        let conn = self.lock();
        let row: Option<(String, String, String, String)> = conn
            .query_row(
                "SELECT name, kind, sql, created_at FROM objects WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.store_error(e))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.definition(&conn, row)?)),
        }
    }

    /// All definitions of `kind` (or of every kind), in creation order, so
    /// that re-planning them meets every dependency before its dependents.
    pub fn list(&self, kind: Option<ObjectKind>) -> Result<Vec<Definition>> {
        let conn = self.lock();
        let rows = {
            let mut stmt = conn
                .prepare("SELECT name, kind, sql, created_at FROM objects ORDER BY seq")
                .map_err(|e| self.store_error(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.store_error(e))?
        };
        let mut defs = Vec::with_capacity(rows.len());
        for row in rows {
            let def = self.definition(&conn, row)?;
            if kind.is_none_or(|k| k == def.kind) {
                defs.push(def);
            }
        }
        Ok(defs)
    }

    fn definition(
        &self,
        conn: &Connection,
        (name, kind, sql, created_at): (String, String, String, String),
    ) -> Result<Definition> {
        let kind = parse_kind(&name, &kind)?;
        let depends_on = conn
            .prepare("SELECT depends_on FROM dependencies WHERE object = ?1 ORDER BY depends_on")
            .and_then(|mut stmt| {
                stmt.query_map(params![name], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| self.store_error(e))?;
        Ok(Definition {
            name,
            kind,
            sql,
            depends_on,
            created_at,
        })
    }

    /// Removes the object `name` of `kind` and its job record. Fails if the
    /// object does not exist or other objects read from it.
    pub fn drop_object(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.store_error(e))?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT kind FROM objects WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.store_error(e))?;
        if existing.as_deref() != Some(kind.as_str()) {
            return Err(Error::NotFound {
                kind,
                name: name.to_string(),
            });
        }
        let used_by = {
            let mut stmt = tx
                .prepare(
                    "SELECT o.kind, o.name FROM dependencies d JOIN objects o ON o.name = d.object \
                     WHERE d.depends_on = ?1 ORDER BY o.seq",
                )
                .map_err(|e| self.store_error(e))?;
            stmt.query_map(params![name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.store_error(e))?
        };
        if !used_by.is_empty() {
            let used_by = used_by
                .into_iter()
                .map(|(k, n)| Ok((parse_kind(&n, &k)?, n)))
                .collect::<Result<Vec<_>>>()?;
            return Err(Error::InUse {
                kind,
                name: name.to_string(),
                used_by,
            });
        }
        tx.execute("DELETE FROM objects WHERE name = ?1", params![name])
            .map_err(|e| self.store_error(e))?;
        tx.commit().map_err(|e| self.store_error(e))
    }

    /// The persisted state of the job of view or sink `name`.
    pub fn job(&self, name: &str) -> Result<Option<JobRecord>> {
        let conn = self.lock();
        type Row = (String, Option<String>, Option<i64>, JobCounters);
        let row: Option<Row> = conn
            .query_row(
                "SELECT status, error, committed_watermark, input_rows, output_rows, late_rows,
                        bad_rows, idle_late_rows
                 FROM jobs WHERE name = ?1",
                params![name],
                |r| {
                    let counters = JobCounters {
                        input_rows: r.get::<_, i64>(3)?.max(0) as u64,
                        output_rows: r.get::<_, i64>(4)?.max(0) as u64,
                        late_rows: r.get::<_, i64>(5)?.max(0) as u64,
                        bad_rows: r.get::<_, i64>(6)?.max(0) as u64,
                        idle_late_rows: r.get::<_, i64>(7)?.max(0) as u64,
                    };
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, counters))
                },
            )
            .optional()
            .map_err(|e| self.store_error(e))?;
        row.map(|(status, error, committed_watermark, counters)| {
            let status = status
                .parse::<JobStatus>()
                .map_err(|reason| Error::Corrupt {
                    name: name.to_string(),
                    reason,
                })?;
            Ok(JobRecord {
                name: name.to_string(),
                status,
                error,
                committed_watermark,
                counters,
            })
        })
        .transpose()
    }

    /// Records the state of a job. The object must exist.
    pub fn put_job(&self, job: &JobRecord) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO jobs (name, status, error, committed_watermark, updated_at,
                               input_rows, output_rows, late_rows, bad_rows, idle_late_rows)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(name) DO UPDATE SET status = excluded.status, error = excluded.error,
                 committed_watermark = excluded.committed_watermark, updated_at = excluded.updated_at,
                 input_rows = excluded.input_rows, output_rows = excluded.output_rows,
                 late_rows = excluded.late_rows, bad_rows = excluded.bad_rows,
                 idle_late_rows = excluded.idle_late_rows",
            params![
                job.name,
                job.status.as_str(),
                job.error,
                job.committed_watermark,
                now_rfc3339(),
                saturating_i64(job.counters.input_rows),
                saturating_i64(job.counters.output_rows),
                saturating_i64(job.counters.late_rows),
                saturating_i64(job.counters.bad_rows),
                saturating_i64(job.counters.idle_late_rows),
            ],
        )
        .map_err(|e| self.store_error(e))?;
        Ok(())
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Brings a catalog written by an older version up to the current schema.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info('jobs')")?;
    let existing: Vec<String> = statement
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for column in JOB_COUNTER_COLUMNS {
        if !existing.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
    }
    Ok(())
}

fn parse_kind(name: &str, kind: &str) -> Result<ObjectKind> {
    kind.parse().map_err(|reason| Error::Corrupt {
        name: name.to_string(),
        reason,
    })
}

/// The current time as stored in `created_at` and `updated_at`.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, kind: ObjectKind, deps: &[&str]) -> Definition {
        Definition {
            name: name.into(),
            kind,
            sql: format!("CREATE ... {name}"),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            created_at: now_rfc3339(),
        }
    }

    #[test]
    fn definitions_survive_reopen_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let c = Catalog::open(&path).unwrap();
            c.create(&def("trades", ObjectKind::Stream, &[])).unwrap();
            c.create(&def("vwap", ObjectKind::View, &["trades"]))
                .unwrap();
            c.create(&def("a_sink", ObjectKind::Sink, &["trades"]))
                .unwrap();
        }
        let c = Catalog::open(&path).unwrap();
        let names: Vec<_> = c.list(None).unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["trades", "vwap", "a_sink"]);
        let views = c.list(Some(ObjectKind::View)).unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].depends_on, ["trades"]);
    }

    #[test]
    fn names_are_unique_across_kinds() {
        let c = Catalog::open_in_memory().unwrap();
        c.create(&def("trades", ObjectKind::Stream, &[])).unwrap();
        let err = c.create(&def("trades", ObjectKind::View, &[])).unwrap_err();
        assert_eq!(err.to_string(), "stream 'trades' already exists");
    }

    #[test]
    fn drop_checks_kind_and_dependents() {
        let c = Catalog::open_in_memory().unwrap();
        c.create(&def("trades", ObjectKind::Stream, &[])).unwrap();
        c.create(&def("vwap", ObjectKind::View, &["trades"]))
            .unwrap();
        let err = c.drop_object(ObjectKind::Stream, "trades").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot drop stream 'trades': used by materialized view 'vwap'"
        );
        let err = c.drop_object(ObjectKind::Sink, "vwap").unwrap_err();
        assert_eq!(err.to_string(), "sink 'vwap' does not exist");
        c.drop_object(ObjectKind::View, "vwap").unwrap();
        c.drop_object(ObjectKind::Stream, "trades").unwrap();
        assert!(c.list(None).unwrap().is_empty());
    }

    #[test]
    fn catalogs_of_older_versions_gain_the_job_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&SCHEMA.replace(
                "updated_at          TEXT NOT NULL,
    input_rows          INTEGER NOT NULL DEFAULT 0,
    output_rows         INTEGER NOT NULL DEFAULT 0,
    late_rows           INTEGER NOT NULL DEFAULT 0,
    bad_rows            INTEGER NOT NULL DEFAULT 0,
    idle_late_rows      INTEGER NOT NULL DEFAULT 0",
                "updated_at          TEXT NOT NULL",
            ))
            .unwrap();
            conn.execute_batch(
                "INSERT INTO objects (name, kind, sql, created_at) VALUES ('v', 'view', 'x', 'now');
                 INSERT INTO jobs (name, status, updated_at) VALUES ('v', 'finished', 'now');",
            )
            .unwrap();
        }
        let c = Catalog::open(&path).unwrap();
        let job = c.job("v").unwrap().unwrap();
        assert_eq!(job.counters, JobCounters::default());
        let mut job = job;
        job.counters.bad_rows = 4;
        c.put_job(&job).unwrap();
        assert_eq!(c.job("v").unwrap().unwrap().counters.bad_rows, 4);
    }

    #[test]
    fn job_records_round_trip_and_go_with_their_object() {
        let c = Catalog::open_in_memory().unwrap();
        c.create(&def("vwap", ObjectKind::View, &[])).unwrap();
        assert_eq!(c.job("vwap").unwrap(), None);
        let mut job = JobRecord {
            name: "vwap".into(),
            status: JobStatus::Running,
            error: None,
            committed_watermark: Some(42),
            counters: JobCounters {
                input_rows: 10,
                output_rows: 2,
                late_rows: 1,
                idle_late_rows: 1,
                bad_rows: 3,
            },
        };
        c.put_job(&job).unwrap();
        job.status = JobStatus::Failed;
        job.error = Some("boom".into());
        c.put_job(&job).unwrap();
        assert_eq!(c.job("vwap").unwrap(), Some(job));
        c.drop_object(ObjectKind::View, "vwap").unwrap();
        assert_eq!(c.job("vwap").unwrap(), None);
    }
}
