//! [`SqliteStore`]: jobs and run history in an SQLite file (feature `sqlite`).
//!
//! This module owns the SQLite schema and its migrations, the settings that let several
//! connections and processes share one file (WAL, `synchronous = NORMAL`, a busy timeout, every
//! write transaction `BEGIN IMMEDIATE`), and the rows' SQLite form: JSON as TEXT, times as
//! integer microseconds since the Unix epoch. It decides nothing about jobs: it stores what the
//! scheduler's core hands it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous, SqliteTransactionManager,
};
use sqlx::{Connection, Row, TransactionManager};

use super::sql::{self, Columns, SchemaPlan, Step};
use super::{BackendError, JobStore, RunRecord, StoredJob, UnreadableRow, Write, SCHEMA_VERSION};
use crate::Error;

/// The name of an in-memory database.
const MEMORY: &str = "sqlite::memory:";

/// SQLite's primary result codes for a file that cannot be written.
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;

const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per multi-row statement: at 9 parameters a job row, well inside SQLite's 32,766.
const MAX_ROWS: usize = 500;

/// Connections of a file store: the writer task's, and readers beside it (WAL lets them read
/// while it writes).
const FILE_CONNECTIONS: u32 = 4;

/// The schema, one step per version: step `n` takes it from version `n - 1` to `n`. A released
/// step never changes; a new schema is a new step. `{prefix}` is the validated table prefix.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: jobs. STRICT, so a value of the wrong type cannot get in; `paused` is derived, so it
    // cannot disagree with `next_run_time`. The partial index serves "due before t" (which
    // implies `next_run_time IS NOT NULL`) without holding paused jobs.
    r#"
    CREATE TABLE "{prefix}jobs" (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT,
        task TEXT NOT NULL,
        args TEXT NOT NULL,
        trigger TEXT NOT NULL,
        options TEXT NOT NULL,
        paused INTEGER GENERATED ALWAYS AS (next_run_time IS NULL) VIRTUAL,
        next_run_time INTEGER,
        revision INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX "{prefix}jobs_next_run_time" ON "{prefix}jobs" (next_run_time)
        WHERE next_run_time IS NOT NULL;
    "#,
    // 2: run history, one row per (job, fire time). No foreign key: history outlives its job.
    // AUTOINCREMENT so a pruned run's id is never handed to a new one.
    r#"
    CREATE TABLE "{prefix}runs" (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        fire_time INTEGER NOT NULL,
        state TEXT NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        result TEXT,
        error TEXT,
        UNIQUE (job_id, fire_time)
    ) STRICT;
    CREATE INDEX "{prefix}runs_fire_time" ON "{prefix}runs" (fire_time);
    "#,
    // 3: the node that ran a run (PostgreSQL's cluster mode writes it; here it stays NULL).
    r#"
    ALTER TABLE "{prefix}runs" ADD COLUMN owner TEXT;
    "#,
    // 4: retries. `attempts` made so far; a run waiting for its next one is `retrying`, due at
    // `due_at`, and found at start through the partial index.
    r#"
    ALTER TABLE "{prefix}runs" ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE "{prefix}runs" ADD COLUMN due_at INTEGER;
    CREATE INDEX "{prefix}runs_retrying" ON "{prefix}runs" (job_id) WHERE state = 'retrying';
    "#,
];

/// A [`JobStore`] in an SQLite database: a file, or memory (for tests and demos).
///
/// Jobs are in `<prefix>jobs`, runs in `<prefix>runs`, the schema version in
/// `<prefix>apsched_schema`; the schema is created, or migrated from an older apsched, when the
/// store opens. JSON is kept as TEXT and times as integer microseconds since the Unix epoch (so
/// times keep microseconds, not nanoseconds).
///
/// Several processes may open one file: the file is in WAL mode, every write transaction starts
/// with `BEGIN IMMEDIATE`, and a write that finds another connection holding the write lock
/// waits up to the [busy timeout](SqliteStoreOptions::busy_timeout), then fails with an error
/// that says so (never a hang).
///
/// A `write` dropped before it completes rolls its transaction back, unless its commit was
/// already sent (then the batch may be written whole).
///
/// Cloning is cheap: clones share the connection pool.
///
/// # Examples
///
/// ```
/// use apsched::store::{JobStore, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), apsched::Error> {
/// # let dir = std::env::temp_dir().join(format!("apsched-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("jobs.db");
/// let store = SqliteStore::open(&path).await?; // created if missing
/// assert_eq!(store.load().await.unwrap().len(), 0);
///
/// let memory = SqliteStore::open("sqlite::memory:").await?;
/// assert_eq!(memory.describe(), "sqlite::memory:");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    describe: String,
    busy_timeout: Duration,
    prefix: String,
    sql: Sql,
}

/// How to open a [`SqliteStore`]: built by [`SqliteStore::options`], opened by
/// [`open`](SqliteStoreOptions::open).
#[derive(Clone, Debug)]
#[must_use = "options do nothing until `open` is awaited"]
pub struct SqliteStoreOptions {
    path: PathBuf,
    busy_timeout: Duration,
    table_prefix: String,
}

impl SqliteStore {
    /// Opens the database at `path` with the default options: a file (created if missing), or
    /// `sqlite::memory:` (or `:memory:`) for a database in memory, which lives as long as the
    /// store and its clones.
    ///
    /// The schema is created or migrated first (see [`SqliteStoreOptions::open`]).
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreOptions::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let store = apsched::store::SqliteStore::open("sqlite::memory:").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> crate::Result<SqliteStore> {
        SqliteStore::options(path).open().await
    }

    /// Options for the database at `path` (as in [`open`](SqliteStore::open)), to set before
    /// opening it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let store = apsched::store::SqliteStore::options("sqlite::memory:")
    ///     .busy_timeout(Duration::from_secs(1))
    ///     .table_prefix("sched_")
    ///     .open()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn options(path: impl AsRef<Path>) -> SqliteStoreOptions {
        SqliteStoreOptions {
            path: path.as_ref().to_path_buf(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            table_prefix: String::new(),
        }
    }

    /// The connection pool, for queries of your own (a report on the run history, say).
    /// Changing apsched's tables behind a running scheduler's back is not supported.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = apsched::store::SqliteStore::open("sqlite::memory:").await?;
    /// let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'failed'")
    ///     .fetch_one(store.pool())
    ///     .await?;
    /// assert_eq!(failed, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// An error of the database as the store reports it: a lock held past the busy timeout
    /// says so.
    fn backend(&self, error: sqlx::Error) -> BackendError {
        let code = match &error {
            sqlx::Error::Database(e) => e.code().and_then(|code| code.parse::<i32>().ok()),
            _ => None,
        };
        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
        if matches!(code.map(|code| code & 0xff), Some(5 | 6)) {
            Box::new(Locked {
                timeout: self.inner.busy_timeout,
                source: error,
            })
        } else {
            Box::new(error)
        }
    }

    async fn open_with(options: SqliteStoreOptions) -> crate::Result<SqliteStore> {
        let SqliteStoreOptions {
            path,
            busy_timeout,
            table_prefix: prefix,
        } = options;
        sql::check_identifier("table_prefix", &prefix, sql::MAX_PREFIX_LEN, true)?;
        if i32::try_from(busy_timeout.as_millis()).is_err() {
            return Err(Error::InvalidOption {
                option: "busy_timeout",
                value: format!("{busy_timeout:?}"),
                reason: format!("SQLite takes at most {} ms", i32::MAX),
            });
        }
        let memory = path.as_os_str() == MEMORY || path.as_os_str() == ":memory:";
        // sqlx's URLs would otherwise name a file `sqlite:` something, in a folder that is not
        // there.
        if !memory && path.to_string_lossy().starts_with("sqlite:") {
            return Err(Error::InvalidOption {
                option: "path",
                value: format!("{:?}", path.display().to_string()),
                reason: "is a URL: give the file's path (`jobs.db`), or `sqlite::memory:`".into(),
            });
        }
        let mut describe = if memory {
            MEMORY.to_string()
        } else {
            format!("sqlite:{}", path.display())
        };
        if !prefix.is_empty() {
            describe.push_str(&format!(" (tables {prefix}*)"));
        }
        let connect = if memory {
            // One connection (below), so no cache to share: shared-cache mode would only add
            // table locks.
            SqliteConnectOptions::from_str(MEMORY)
                .map_err(|e| sql::open_error(&describe, e))?
                .shared_cache(false)
        } else {
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
        }
        .busy_timeout(busy_timeout)
        .synchronous(SqliteSynchronous::Normal);
        let pool = if memory {
            // Every connection to `sqlite::memory:` would be a database of its own, and closing
            // the one there is would lose it: one connection, kept for the store's life.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(FILE_CONNECTIONS)
        }
        // A ping before each use costs a round trip to the connection's thread and finds
        // nothing: a local file's connection does not drop.
        .test_before_acquire(false)
        // sqlx 0.8's `begin_with` has an await between its BEGIN and the `Transaction` that
        // would roll it back: a write dropped there (a timeout, say) returns its connection
        // still in the transaction, holding the file's write lock from the pool until that
        // connection's next use. End it as the connection comes back.
        .after_release(|conn, _| {
            Box::pin(async move {
                if conn.is_in_transaction() {
                    <SqliteTransactionManager as TransactionManager>::rollback(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| sql::open_error(&describe, e))?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&prefix),
                describe,
                busy_timeout,
                prefix,
            }),
        };
        if !memory {
            store
                .use_wal()
                .await
                .map_err(|e| sql::open_error(&store.inner.describe, e))?;
        }
        store.migrate().await?;
        Ok(store)
    }

    /// Puts the file in WAL mode (it stays in it), so readers do not block the writer.
    async fn use_wal(&self) -> Result<(), BackendError> {
        // Switching to WAL takes an exclusive lock that SQLite's busy timeout does not wait
        // for: two processes opening a new file at once retry here, within the same bound.
        let started = Instant::now();
        loop {
            match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                .fetch_one(&self.inner.pool)
                .await
            {
                Ok(mode) => {
                    if !mode.eq_ignore_ascii_case("wal") {
                        tracing::warn!(store = %self.inner.describe, %mode, "SQLite refused WAL mode; readers will wait for writers");
                    }
                    return Ok(());
                }
                Err(error) => {
                    let error = self.backend(error);
                    if !error.is::<Locked>() || started.elapsed() >= self.inner.busy_timeout {
                        return Err(error);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Creates the schema, or migrates an older one, in one `BEGIN IMMEDIATE` transaction.
    async fn migrate(&self) -> crate::Result<()> {
        let describe = &self.inner.describe;
        let fail = |error: sqlx::Error| sql::open_error(describe, self.backend(error));
        // Read first, without the write lock: a store that is current needs no lock.
        let mut conn = self.inner.pool.acquire().await.map_err(fail)?;
        let found = self.schema_version(&mut conn).await.map_err(fail)?;
        drop(conn); // a memory store has one connection, and the transaction needs it
        if let SchemaPlan::Current = sql::plan(describe, found)? {
            return Ok(());
        }
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        // Again, under the lock: another process may have migrated in between.
        let found = self.schema_version(&mut tx).await.map_err(fail)?;
        let SchemaPlan::Migrate { from } = sql::plan(describe, found)? else {
            return Ok(());
        };
        if found.is_none() {
            for statement in sql::statements(&self.inner.sql.version_table) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
        }
        let now = Utc::now().timestamp_micros();
        for (version, step) in (1_i64..).zip(MIGRATIONS).skip(from as usize) {
            let step = step.replace("{prefix}", &self.inner.prefix);
            for statement in sql::statements(&step) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query(&self.inner.sql.version_insert)
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// The schema's version, `None` if it has no version table yet.
    async fn schema_version(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Option<i64>, sqlx::Error> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        )
        .bind(format!("{}apsched_schema", self.inner.prefix))
        .fetch_one(&mut *conn)
        .await?;
        if tables == 0 {
            return Ok(None);
        }
        let version: Option<i64> = sqlx::query_scalar(&self.inner.sql.version)
            .fetch_one(conn)
            .await?;
        Ok(Some(version.unwrap_or(0)))
    }

    async fn write_batch(&self, writes: &[Write]) -> Result<(), sqlx::Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut conn = self.inner.pool.acquire().await?;
        let written = self.write_on(&mut conn, writes).await;
        // A connection that could not write its file (read-only, an I/O error) may stay
        // read-only once the file is writable again: the pool opens a fresh one instead.
        if let Err(sqlx::Error::Database(error)) = &written {
            let primary = error
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .map(|code| code & 0xff);
            if matches!(primary, Some(SQLITE_READONLY | SQLITE_IOERR)) {
                conn.close_on_drop();
            }
        }
        written
    }

    async fn write_on(
        &self,
        conn: &mut SqliteConnection,
        writes: &[Write],
    ) -> Result<(), sqlx::Error> {
        let sql = &self.inner.sql;
        let now = Utc::now().timestamp_micros();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for step in sql::steps(writes, MAX_ROWS) {
            match step {
                Step::Put(jobs) => {
                    let text = repeat_rows(
                        &sql.put.0,
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        jobs.len(),
                        &sql.put.1,
                    );
                    let mut query = sqlx::query(&text);
                    for job in jobs {
                        query = query
                            .bind(job.id.as_str())
                            .bind(job.name.as_deref())
                            .bind(job.task.as_str())
                            .bind(job.args.to_string())
                            .bind(job.trigger.to_string())
                            .bind(job.options.to_string())
                            .bind(job.next_run_time.map(micros))
                            .bind(now)
                            .bind(now);
                    }
                    query.execute(&mut *tx).await?;
                }
                Step::Next(nexts) => {
                    let text = repeat_rows(&sql.next.0, "(?, ?)", nexts.len(), &sql.next.1);
                    let mut query = sqlx::query(&text).bind(now);
                    for (id, next_run_time) in nexts {
                        query = query.bind(id).bind(next_run_time.map(micros));
                    }
                    query.execute(&mut *tx).await?;
                }
                Step::Delete(ids) => {
                    let text = repeat_rows(&sql.delete, "?", ids.len(), ")");
                    let mut query = sqlx::query(&text);
                    for id in ids {
                        query = query.bind(id);
                    }
                    query.execute(&mut *tx).await?;
                }
                Step::DeleteAll => {
                    sqlx::query(&sql.delete_all).execute(&mut *tx).await?;
                }
                Step::Run(runs) => {
                    let text = repeat_rows(
                        &sql.run.0,
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        runs.len(),
                        &sql.run.1,
                    );
                    let mut query = sqlx::query(&text);
                    for run in runs {
                        query = query
                            .bind(run.job_id.as_str())
                            .bind(micros(run.fire_time))
                            .bind(run.state.as_str())
                            .bind(run.started_at.map(micros))
                            .bind(run.finished_at.map(micros))
                            .bind(run.result.as_ref().map(|result| result.to_string()))
                            .bind(run.error.as_deref())
                            .bind(i64::from(run.attempts))
                            .bind(run.due_at.map(micros));
                    }
                    query.execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await
    }
}

impl SqliteStoreOptions {
    /// How long a write waits for another connection's write lock on the file before it fails
    /// (SQLite's `busy_timeout`). Default 5 s; at most `i32::MAX` milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// // Fail fast where another process may hold the file for long.
    /// let store = apsched::store::SqliteStore::options("sqlite::memory:")
    ///     .busy_timeout(Duration::from_millis(200))
    ///     .open()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// A prefix for the table names (`<prefix>jobs`, ...), so several stores can share one
    /// file. ASCII letters, digits and `_`, not starting with a digit, at most 32 bytes.
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use apsched::store::{JobStore, SqliteStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let store = SqliteStore::options("sqlite::memory:").table_prefix("billing_").open().await?;
    /// assert_eq!(store.describe(), "sqlite::memory: (tables billing_*)");
    ///
    /// let refused = SqliteStore::options("sqlite::memory:").table_prefix("x; --").open().await;
    /// assert!(matches!(refused, Err(apsched::Error::InvalidOption { option: "table_prefix", .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Opens the database (creating the file if it is missing) and creates its schema, or
    /// migrates an older apsched's, in one `BEGIN IMMEDIATE` transaction (so two processes
    /// opening it at once do not race).
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidOption`] for a bad table prefix, a busy timeout SQLite cannot take, or
    ///   a `sqlite:` URL instead of a path;
    /// - [`Error::StoreSchema`] when the schema is newer than this apsched knows;
    /// - [`Error::Store`] (operation `open`) when the file cannot be opened or created, or the
    ///   schema cannot be read or written.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let error = apsched::store::SqliteStore::options("/no/such/dir/jobs.db")
    ///     .open()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(error, apsched::Error::Store { operation: "open", .. }));
    /// # }
    /// ```
    pub async fn open(self) -> crate::Result<SqliteStore> {
        SqliteStore::open_with(self).await
    }
}

impl JobStore for SqliteStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<Result<StoredJob, UnreadableRow>>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(&self.inner.sql.load)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| self.backend(e))?;
            Ok(rows.iter().map(|row| sql::read_job(&Cols(row))).collect())
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.write_batch(writes).await.map_err(|e| self.backend(e)) })
    }

    /// A write that changes nothing (the schema row, rewritten as it is): a file that can be
    /// read but not written is still away.
    fn ping(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let prefix = &self.inner.prefix;
            let probe = format!(
                "UPDATE \"{prefix}apsched_schema\" SET applied_at = applied_at \
                 WHERE version = (SELECT MAX(version) FROM \"{prefix}apsched_schema\")"
            );
            let mut conn = self
                .inner
                .pool
                .acquire()
                .await
                .map_err(|e| self.backend(e))?;
            let probed = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(&probe).execute(&mut *tx).await?;
                tx.commit().await
            }
            .await;
            if probed.is_err() {
                conn.close_on_drop();
            }
            probed.map_err(|e| self.backend(e))
        })
    }

    fn runs<'a>(
        &'a self,
        job_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(&self.inner.sql.runs)
                .bind(job_id)
                .bind(i64::from(limit))
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| self.backend(e))?;
            read_runs(&rows)
        })
    }

    fn retries(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(&self.inner.sql.retries)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|e| self.backend(e))?;
            read_runs(&rows)
        })
    }

    fn prune_runs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            let prune = async {
                let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await?;
                let deleted = sqlx::query(&self.inner.sql.prune)
                    .bind(micros(before))
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(deleted)
            };
            prune.await.map_err(|e| self.backend(e))
        })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("store", &self.inner.describe)
            .field("busy_timeout", &self.inner.busy_timeout)
            .finish_non_exhaustive()
    }
}

/// A write that waited the whole busy timeout for another connection's lock.
#[derive(Debug, thiserror::Error)]
#[error("the database is locked by another connection, still after the busy timeout ({timeout:?})")]
struct Locked {
    timeout: Duration,
    #[source]
    source: sqlx::Error,
}

/// The statements, with the table prefix in their names.
struct Sql {
    version_table: String,
    version: String,
    version_insert: String,
    load: String,
    /// Head and tail around the rows of a multi-row statement.
    put: (String, String),
    next: (String, String),
    delete: String,
    delete_all: String,
    run: (String, String),
    runs: String,
    retries: String,
    prune: String,
}

impl Sql {
    fn new(prefix: &str) -> Sql {
        let jobs = format!("\"{prefix}jobs\"");
        let runs = format!("\"{prefix}runs\"");
        let schema = format!("\"{prefix}apsched_schema\"");
        Sql {
            version_table: format!(
                "CREATE TABLE {schema} (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL) STRICT"
            ),
            version: format!("SELECT MAX(version) FROM {schema}"),
            version_insert: format!("INSERT INTO {schema} (version, applied_at) VALUES (?, ?)"),
            load: format!("SELECT {} FROM {jobs}", sql::JOB_COLUMNS),
            put: (
                format!(
                    "INSERT INTO {jobs} (id, name, task, args, trigger, options, next_run_time, created_at, updated_at) VALUES "
                ),
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, task = excluded.task, \
                 args = excluded.args, trigger = excluded.trigger, options = excluded.options, \
                 next_run_time = excluded.next_run_time, revision = revision + 1, \
                 updated_at = excluded.updated_at"
                    .to_string(),
            ),
            next: (
                format!(
                    "UPDATE {jobs} SET next_run_time = v.column2, revision = revision + 1, updated_at = ? FROM (VALUES "
                ),
                format!(") AS v WHERE {jobs}.id = v.column1"),
            ),
            delete: format!("DELETE FROM {jobs} WHERE id IN ("),
            delete_all: format!("DELETE FROM {jobs}"),
            run: (
                format!(
                    "INSERT INTO {runs} (job_id, fire_time, state, started_at, finished_at, result, error, attempts, due_at) VALUES "
                ),
                " ON CONFLICT (job_id, fire_time) DO UPDATE SET state = excluded.state, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 result = excluded.result, error = excluded.error, \
                 attempts = excluded.attempts, due_at = excluded.due_at"
                    .to_string(),
            ),
            retries: format!(
                "SELECT {} FROM {runs} WHERE state = 'retrying'",
                sql::RUN_COLUMNS
            ),
            runs: format!(
                "SELECT {} FROM {runs} WHERE job_id = ? ORDER BY fire_time DESC LIMIT ?",
                sql::RUN_COLUMNS
            ),
            prune: format!(
                "DELETE FROM {runs} WHERE id IN (SELECT id FROM {runs} \
                 WHERE fire_time < ? AND state NOT IN ('running', 'pending', 'retrying') ORDER BY fire_time LIMIT ?)"
            ),
        }
    }
}

/// `n` copies of `row`, comma-separated, between `head` and `tail`: a multi-row statement.
pub(crate) fn repeat_rows(head: &str, row: &str, n: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + n * (row.len() + 2) + tail.len());
    sql.push_str(head);
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql
}

/// Microseconds since the Unix epoch: every `DateTime<Utc>` fits in an `i64` of them.
fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// An SQLite row's columns, decoded.
struct Cols<'r>(&'r SqliteRow);

impl Cols<'_> {
    fn get<'r, T>(&'r self, index: usize) -> Result<Option<T>, String>
    where
        T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.0.try_get(index).map_err(sql::decode_reason)
    }
}

/// Rows of [`sql::RUN_COLUMNS`] as runs; one that cannot be read fails them all.
fn read_runs(rows: &[SqliteRow]) -> Result<Vec<RunRecord>, BackendError> {
    rows.iter()
        .map(|row| sql::read_run(&Cols(row)).map_err(BackendError::from))
        .collect()
}

impl Columns for Cols<'_> {
    fn text(&self, index: usize) -> Result<Option<String>, String> {
        self.get(index)
    }

    fn json(&self, index: usize) -> Result<Option<serde_json::Value>, String> {
        self.get::<&str>(index)?
            .map(|text| serde_json::from_str(text).map_err(|e| format!("not JSON ({e})")))
            .transpose()
    }

    fn int(&self, index: usize) -> Result<Option<i64>, String> {
        self.get(index)
    }

    fn time(&self, index: usize) -> Result<Option<DateTime<Utc>>, String> {
        self.get::<i64>(index)?
            .map(|micros| {
                DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                    format!("{micros} µs since 1970 is outside the times apsched can hold")
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_memory_store_is_one_database_however_often_it_is_used() {
        let store = SqliteStore::open(":memory:").await.unwrap();
        let job = StoredJob {
            id: "a".into(),
            name: None,
            task: "t".into(),
            args: serde_json::Value::Null,
            trigger: serde_json::Value::Null,
            options: serde_json::Value::Null,
            next_run_time: None,
        };
        let put = [Write::Put(job.clone())];
        let (left, right) = tokio::join!(store.write(&put), store.load());
        left.unwrap();
        right.unwrap();
        assert_eq!(store.load().await.unwrap(), vec![Ok(job)]);
        assert_eq!(store.describe(), "sqlite::memory:");
    }

    #[tokio::test]
    async fn a_busy_timeout_sqlite_cannot_take_is_refused() {
        let error = SqliteStore::options(MEMORY)
            .busy_timeout(Duration::from_secs(30 * 24 * 3600))
            .open()
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidOption {
                    option: "busy_timeout",
                    ..
                }
            ),
            "{error}"
        );
    }
}
