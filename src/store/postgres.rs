//! [`PostgresStore`]: jobs and run history in PostgreSQL (feature `postgres`).
//!
//! This module owns the PostgreSQL schema and its migrations (under an advisory lock), the
//! statements that write a batch in a few round trips (`UNNEST` over arrays, one statement per
//! run of writes of one kind), and the rows' PostgreSQL form: JSON as `jsonb`, times as
//! `timestamptz`. It decides nothing about jobs: it stores what the scheduler's core hands it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, TimeZone, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgValueFormat};
use sqlx::{Row, TypeInfo, ValueRef};

use super::sql::{self, Columns, SchemaPlan, Step};
use super::{BackendError, JobStore, RunRecord, StoredJob, UnreadableRow, Write, SCHEMA_VERSION};

/// Short, so a database that went away is noticed (and callers' changes to it fail) within it.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per statement: arrays of this many elements a parameter.
const MAX_ROWS: usize = 1000;

/// How long opening waits for another process's migration (or a lock on the tables) before it
/// fails: a bound, not a hang.
const LOCK_TIMEOUT: &str = "60s";

/// The schema, one step per version: step `n` takes it from version `n - 1` to `n`. A released
/// step never changes; a new schema is a new step. `{schema}` and `{prefix}` are the validated
/// settings, the only text ever put into SQL.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: jobs. `paused` is derived, so it cannot disagree with `next_run_time`. The partial
    // index leaves paused jobs out; its predicate is `next_run_time IS NOT NULL` rather than
    // `NOT paused` because "due before t" implies it, so the planner uses the index without
    // the query naming `paused`.
    r#"
    CREATE TABLE "{schema}"."{prefix}jobs" (
        id text PRIMARY KEY,
        name text,
        task text NOT NULL,
        args jsonb NOT NULL,
        trigger jsonb NOT NULL,
        options jsonb NOT NULL,
        paused boolean GENERATED ALWAYS AS (next_run_time IS NULL) STORED,
        next_run_time timestamptz,
        revision bigint NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX "{prefix}jobs_next_run_time" ON "{schema}"."{prefix}jobs" (next_run_time)
        WHERE next_run_time IS NOT NULL;
    "#,
    // 2: run history, one row per (job, fire time). No foreign key: history outlives its job.
    r#"
    CREATE TABLE "{schema}"."{prefix}runs" (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id text NOT NULL,
        fire_time timestamptz NOT NULL,
        state text NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        result jsonb,
        error text,
        UNIQUE (job_id, fire_time)
    );
    CREATE INDEX "{prefix}runs_fire_time" ON "{schema}"."{prefix}runs" (fire_time);
    "#,
    // 3: cluster mode. A run row is materialized `pending` (due at `due_at`, its fire time
    // plus jitter), claimed by a node (`owner`, `fence` counted up on every claim) and ended
    // by that node only while its fence still matches. A job whose trigger has no fire time
    // left is `finished` until its last run is claimed. `nodes` is a logged table: an UNLOGGED
    // one would be emptied by crash recovery and orphan every live run.
    r#"
    ALTER TABLE "{schema}"."{prefix}runs" ADD COLUMN owner text,
        ADD COLUMN fence bigint NOT NULL DEFAULT 0, ADD COLUMN due_at timestamptz;
    CREATE INDEX "{prefix}runs_pending" ON "{schema}"."{prefix}runs" (due_at)
        WHERE state = 'pending';
    CREATE INDEX "{prefix}runs_running" ON "{schema}"."{prefix}runs" (job_id)
        WHERE state = 'running';
    ALTER TABLE "{schema}"."{prefix}jobs" ADD COLUMN finished boolean NOT NULL DEFAULT false;
    CREATE TABLE "{schema}"."{prefix}nodes" (
        id text PRIMARY KEY,
        lease_until timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        renewed_at timestamptz NOT NULL DEFAULT now(),
        running integer NOT NULL DEFAULT 0
    );
    "#,
    // 4: retries. `attempts` made so far; a run waiting for its next one is `retrying`, due at
    // `due_at`, and found at start through the partial index.
    r#"
    ALTER TABLE "{schema}"."{prefix}runs" ADD COLUMN attempts integer NOT NULL DEFAULT 1;
    CREATE INDEX "{prefix}runs_retrying" ON "{schema}"."{prefix}runs" (job_id)
        WHERE state = 'retrying';
    "#,
];

/// A [`JobStore`] in PostgreSQL (12 or newer).
///
/// Jobs are in `<schema>.<prefix>jobs`, runs in `<schema>.<prefix>runs`, the schema version in
/// `<schema>.<prefix>apsched_schema`; the schema (the PostgreSQL one, too) is created, or
/// migrated from an older apsched, when the store connects. JSON is kept as `jsonb` (so object
/// keys come back sorted and without duplicates) and times as `timestamptz` (microseconds).
/// PostgreSQL text cannot hold a NUL byte: a write with one in a string is refused, and
/// nothing of its batch is written. A job id is a btree key, which PostgreSQL holds up to about
/// 2.7 KB (after compression): a longer one fails its batch with the server's error.
///
/// A `write` dropped before it completes rolls its transaction back, unless its commit was
/// already sent (then the batch may be written whole).
///
/// Every value is a bound parameter; the schema and the table prefix, validated when the store
/// connects, are the only text put into SQL.
///
/// Cloning is cheap: clones share the connection pool.
///
/// # Examples
///
/// ```no_run
/// use apsched::store::{JobStore, PostgresStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), apsched::Error> {
/// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
/// println!("{} jobs", store.load().await.map_err(apsched::Cause::new).unwrap().len());
///
/// // Or in a schema of its own, with a pool the application already has:
/// let pool = sqlx::PgPool::connect("postgres://app@db.internal/app").await.unwrap();
/// let store = PostgresStore::from_pool(pool).schema("apsched").connect().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    describe: String,
    schema: String,
    prefix: String,
    sql: Sql,
}

/// How to connect a [`PostgresStore`]: built by [`PostgresStore::options`] or
/// [`PostgresStore::from_pool`], connected by [`connect`](PostgresStoreOptions::connect).
#[derive(Clone)]
#[must_use = "options do nothing until `connect` is awaited"]
pub struct PostgresStoreOptions {
    source: Source,
    schema: String,
    table_prefix: String,
    acquire_timeout: Duration,
}

#[derive(Clone)]
enum Source {
    Url(String),
    Pool(PgPool),
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// anything [`PgConnectOptions`] parses) with the default options: schema `public`, no
    /// table prefix, a pool with sqlx's defaults.
    ///
    /// # Errors
    ///
    /// As [`PostgresStoreOptions::connect`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let store = apsched::store::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> crate::Result<PostgresStore> {
        PostgresStore::options(url).connect().await
    }

    /// Options for the database at `url` (as in [`connect`](PostgresStore::connect)), to set
    /// before connecting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let store = apsched::store::PostgresStore::options("postgres://app@localhost/app")
    ///     .schema("apsched")
    ///     .table_prefix("p_")
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn options(url: &str) -> PostgresStoreOptions {
        PostgresStoreOptions::new(Source::Url(url.to_string()))
    }

    /// Options for a store on a pool the application already has (its size, timeouts and TLS
    /// settings are the application's). The store keeps a clone of the pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(4)
    ///     .connect("postgres://app@localhost/app")
    ///     .await?;
    /// let store = apsched::store::PostgresStore::from_pool(pool)
    ///     .schema("apsched")
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_pool(pool: PgPool) -> PostgresStoreOptions {
        PostgresStoreOptions::new(Source::Pool(pool))
    }

    /// The connection pool, for queries of your own (a report on the run history, say).
    /// Changing apsched's tables behind a running scheduler's back is not supported.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = apsched::store::PostgresStore::connect("postgres://app@localhost/app").await?;
    /// let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'failed'")
    ///     .fetch_one(store.pool())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// A table's name as SQL takes it, schema and prefix included (`"apsched"."p_jobs"`): for
    /// cluster mode's statements.
    pub(crate) fn table(&self, name: &str) -> String {
        format!("\"{}\".\"{}{name}\"", self.inner.schema, self.inner.prefix)
    }

    /// The channel cluster nodes on this store notify each other on: one per schema and
    /// prefix, within PostgreSQL's 63 bytes whatever their length.
    pub(crate) fn channel(&self) -> String {
        let key = lock_key(&self.inner.schema, &self.inner.prefix);
        format!("apsched_{:016x}", u64::from_ne_bytes(key.to_ne_bytes()))
    }

    async fn connect_with(options: PostgresStoreOptions) -> crate::Result<PostgresStore> {
        let PostgresStoreOptions {
            source,
            schema,
            table_prefix: prefix,
            acquire_timeout,
        } = options;
        sql::check_identifier("schema", &schema, sql::MAX_SCHEMA_LEN, false)?;
        sql::check_identifier("table_prefix", &prefix, sql::MAX_PREFIX_LEN, true)?;
        let settings = |connect: &PgConnectOptions| describe(connect, &schema, &prefix);
        let (pool, describe) = match source {
            Source::Url(url) => {
                let connect: PgConnectOptions = url
                    .parse()
                    .map_err(|e| sql::open_error("postgres (an invalid URL)", e))?;
                let describe = settings(&connect);
                let pool = PgPoolOptions::new()
                    .acquire_timeout(acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|e| sql::open_error(&describe, e))?;
                (pool, describe)
            }
            Source::Pool(pool) => {
                let describe = settings(&pool.connect_options());
                (pool, describe)
            }
        };
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&schema, &prefix),
                describe,
                schema,
                prefix,
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the schema, or migrates an older one, in one transaction under an advisory lock
    /// of this schema and prefix, so two processes connecting at once do not race.
    async fn migrate(&self) -> crate::Result<()> {
        let Inner {
            pool,
            describe,
            schema,
            prefix,
            sql,
        } = &*self.inner;
        let fail = |error: sqlx::Error| sql::open_error(describe, error);
        // Read first, without the lock: a store that is current needs no lock and no right to
        // create anything.
        let mut conn = pool.acquire().await.map_err(fail)?;
        let found = self.schema_version(&mut conn).await.map_err(fail)?;
        drop(conn);
        if let SchemaPlan::Current = sql::plan(describe, found)? {
            return Ok(());
        }
        let mut tx = pool.begin().await.map_err(fail)?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(schema, prefix))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        // Created only if missing: `CREATE SCHEMA IF NOT EXISTS` needs the right to create
        // schemas even when this one exists.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
        if !exists {
            sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        // Again, under the lock: another process may have migrated in between.
        let found = self.schema_version(&mut tx).await.map_err(fail)?;
        let SchemaPlan::Migrate { from } = sql::plan(describe, found)? else {
            return Ok(());
        };
        if found.is_none() {
            for statement in sql::statements(&sql.version_table) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
        }
        for (version, step) in (1_i64..).zip(MIGRATIONS).skip(from as usize) {
            let step = step.replace("{schema}", schema).replace("{prefix}", prefix);
            for statement in sql::statements(&step) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query(&sql.version_insert)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// The schema's version, `None` if it has no version table yet.
    async fn schema_version(&self, conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&self.inner.sql.version_table_name)
            .fetch_one(&mut *conn)
            .await?;
        if table.is_none() {
            return Ok(None);
        }
        let version: Option<i64> = sqlx::query_scalar(&self.inner.sql.version)
            .fetch_one(conn)
            .await?;
        Ok(Some(version.unwrap_or(0)))
    }

    async fn write_batch(&self, writes: &[Write]) -> Result<(), BackendError> {
        if writes.is_empty() {
            return Ok(());
        }
        refuse_nul(writes)?;
        let sql = &self.inner.sql;
        let steps = sql::steps(writes, MAX_ROWS);
        // One statement is atomic on its own: a lone change costs one round trip, not three
        // (BEGIN, the statement, COMMIT).
        if let [step] = &steps[..] {
            query_for(sql, step).execute(&self.inner.pool).await?;
            return Ok(());
        }
        let mut tx = Tx::begin(&self.inner.pool).await?;
        for step in &steps {
            query_for(sql, step).execute(tx.conn()).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A transaction on a pooled connection that is closed, not returned to the pool, unless the
/// transaction commits.
///
/// sqlx's own `Transaction` queues a `ROLLBACK` when dropped, but a future dropped between
/// sending `BEGIN` and reading its answer leaves the server in a transaction that sqlx does
/// not know of: the connection goes back to the pool, and the next statements on it run (and
/// hold their locks) inside that transaction, never committed. Closing the connection makes
/// the server roll back whatever was open.
pub(crate) struct Tx {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl Tx {
    pub(crate) async fn begin(pool: &PgPool) -> Result<Tx, sqlx::Error> {
        let mut tx = Tx {
            conn: Some(pool.acquire().await?),
        };
        sqlx::query("BEGIN").execute(tx.conn()).await?;
        Ok(tx)
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        // Only `commit` takes the connection, and it consumes the `Tx`.
        self.conn
            .as_deref_mut()
            .expect("a Tx holds its connection until it commits")
    }

    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("COMMIT").execute(self.conn()).await?;
        // Committed: the connection may serve others again.
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

/// The statement of one step of a batch, its rows bound as arrays.
fn query_for<'q>(
    sql: &'q Sql,
    step: &'q Step<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match step {
        Step::Put(jobs) => sqlx::query(&sql.put)
            .bind(jobs.iter().map(|job| job.id.as_str()).collect::<Vec<_>>())
            .bind(
                jobs.iter()
                    .map(|job| job.name.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(jobs.iter().map(|job| job.task.as_str()).collect::<Vec<_>>())
            .bind(
                jobs.iter()
                    .map(|job| job.args.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|job| job.trigger.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|job| job.options.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|job| job.next_run_time.map(truncated))
                    .collect::<Vec<_>>(),
            ),
        Step::Next(nexts) => sqlx::query(&sql.next)
            .bind(nexts.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(
                nexts
                    .iter()
                    .map(|(_, at)| at.map(truncated))
                    .collect::<Vec<_>>(),
            ),
        Step::Delete(ids) => sqlx::query(&sql.delete).bind(ids),
        Step::DeleteAll => sqlx::query(&sql.delete_all),
        Step::Run(runs) => sqlx::query(&sql.run)
            .bind(
                runs.iter()
                    .map(|run| run.job_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| truncated(run.fire_time))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.state.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.started_at.map(truncated))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.finished_at.map(truncated))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.result.as_ref().map(|result| result.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.error.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    // Past i32::MAX attempts, the count stops.
                    .map(|run| i32::try_from(run.attempts).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|run| run.due_at.map(truncated))
                    .collect::<Vec<_>>(),
            ),
    }
}

impl PostgresStoreOptions {
    fn new(source: Source) -> PostgresStoreOptions {
        PostgresStoreOptions {
            source,
            schema: "public".to_string(),
            table_prefix: String::new(),
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }

    /// The PostgreSQL schema the tables are in, created if missing. ASCII letters, digits and
    /// `_`, not starting with a digit, at most 63 bytes; used as given (quoted, so its case is
    /// kept). Default `public`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Checked before anything is sent to the server.
    /// let refused = apsched::store::PostgresStore::options("postgres://app@localhost/app")
    ///     .schema("x; DROP TABLE jobs; --")
    ///     .connect()
    ///     .await;
    /// assert!(matches!(refused, Err(apsched::Error::InvalidOption { option: "schema", .. })));
    /// # }
    /// ```
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// A prefix for the table names (`<prefix>jobs`, ...), so several stores can share one
    /// schema. ASCII letters, digits and `_`, not starting with a digit, at most 32 bytes.
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// use apsched::store::PostgresStore;
    ///
    /// let url = "postgres://app@localhost/app";
    /// let billing = PostgresStore::options(url).table_prefix("billing_").connect().await?;
    /// let reports = PostgresStore::options(url).table_prefix("reports_").connect().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// How long connecting waits for the server (while it refuses connections, as one that is
    /// starting does, it is tried again), and how long any later call waits for a free
    /// connection of the pool. Default 5 s (sqlx's is 30 s): a database that went away is
    /// noticed, and callers' changes to it fail, within it. For a store [from a
    /// pool](PostgresStore::from_pool), that pool's own timeout applies instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// // A service that would rather fail its start than wait long for its database.
    /// let store = apsched::store::PostgresStore::options("postgres://app@localhost/app")
    ///     .acquire_timeout(Duration::from_secs(5))
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Connects (from a URL, a new pool; from a pool, a connection of it) and creates the
    /// schema, or migrates an older apsched's, in one transaction under an advisory lock (so
    /// two processes connecting at once do not race). A store whose schema is current takes no
    /// lock and needs no right to create anything.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidOption`](crate::Error::InvalidOption) for a bad schema or table
    ///   prefix;
    /// - [`Error::StoreSchema`](crate::Error::StoreSchema) when the schema is newer than this
    ///   apsched knows;
    /// - [`Error::Store`](crate::Error::Store) (operation `open`) when the URL does not parse,
    ///   the server cannot be reached within the [acquire
    ///   timeout](PostgresStoreOptions::acquire_timeout) or refuses the login, or the schema cannot be read or
    ///   written (another process's migration held the lock for over a minute, say).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use apsched::store::PostgresStore;
    ///
    /// match PostgresStore::options("postgres://app@localhost/app").schema("apsched").connect().await {
    ///     Ok(store) => { /* hand it to the scheduler */ }
    ///     Err(apsched::Error::StoreSchema { found, .. }) => {
    ///         eprintln!("the database was written by a newer apsched (schema {found})")
    ///     }
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    pub async fn connect(self) -> crate::Result<PostgresStore> {
        PostgresStore::connect_with(self).await
    }
}

impl JobStore for PostgresStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<Result<StoredJob, UnreadableRow>>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(&self.inner.sql.load)
                .fetch_all(&self.inner.pool)
                .await?;
            Ok(rows.iter().map(|row| sql::read_job(&Cols(row))).collect())
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.write_batch(writes))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.inner.pool)
                .await
                .map(drop)
                .map_err(BackendError::from)
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
                .await?;
            read_runs(&rows)
        })
    }

    fn retries(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async move {
            let rows = sqlx::query(&self.inner.sql.retries)
                .fetch_all(&self.inner.pool)
                .await?;
            read_runs(&rows)
        })
    }

    fn prune_runs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            let deleted = sqlx::query(&self.inner.sql.prune)
                .bind(truncated(before))
                .bind(i64::from(limit))
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
            Ok(deleted)
        })
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PostgresStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("PostgresStoreOptions")
            .field("source", &source)
            .field("schema", &self.schema)
            .field("table_prefix", &self.table_prefix)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// Where the store is, for messages: server, database, schema (never the user or password).
fn describe(connect: &PgConnectOptions, schema: &str, prefix: &str) -> String {
    let server = match connect.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", connect.get_host(), connect.get_port()),
    };
    let database = connect.get_database().unwrap_or(connect.get_username());
    let mut describe = format!("postgres://{server}/{database} (schema {schema}");
    if !prefix.is_empty() {
        describe.push_str(&format!(", tables {prefix}*"));
    }
    describe.push(')');
    describe
}

/// The advisory lock of one schema and prefix: a stable hash (FNV-1a), the same in every
/// process and every apsched version.
fn lock_key(schema: &str, prefix: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("apsched schema {schema}.{prefix}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// A string PostgreSQL cannot store: it holds a NUL byte.
#[derive(Debug, thiserror::Error)]
#[error("job {job:?}: {what} holds a NUL byte, which PostgreSQL text cannot store")]
struct NulByte {
    job: String,
    what: &'static str,
}

/// Refuses a batch with a NUL byte in any string, before anything of it is written.
fn refuse_nul(writes: &[Write]) -> Result<(), NulByte> {
    let check = |job: &str, what: &'static str, holds: bool| match holds {
        true => Err(NulByte {
            job: job.to_string(),
            what,
        }),
        false => Ok(()),
    };
    for write in writes {
        match write {
            Write::Put(job) => {
                let id = &job.id;
                check(id, "the id", id.contains('\0'))?;
                check(id, "the name", job.name.as_deref().is_some_and(has_nul))?;
                check(id, "the task name", has_nul(&job.task))?;
                check(id, "the arguments", json_has_nul(&job.args))?;
                check(id, "the trigger", json_has_nul(&job.trigger))?;
                check(id, "the options", json_has_nul(&job.options))?;
            }
            Write::Next { id, .. } | Write::Delete { id } => check(id, "the id", has_nul(id))?,
            Write::DeleteAll => {}
            Write::Run(run) => {
                let id = &run.job_id;
                check(id, "the run's job id", has_nul(id))?;
                check(
                    id,
                    "the run's result",
                    run.result.as_ref().is_some_and(json_has_nul),
                )?;
                check(
                    id,
                    "the run's error",
                    run.error.as_deref().is_some_and(has_nul),
                )?;
            }
        }
    }
    Ok(())
}

fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Whether a string or key anywhere in `value` holds a NUL (`jsonb` refuses `\u0000`).
pub(crate) fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => has_nul(text),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, value)| has_nul(key) || json_has_nul(value)),
        _ => false,
    }
}

/// A time as PostgreSQL keeps it: to the microsecond, truncated as SQLite's store does.
pub(crate) fn truncated(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The statements, with the schema and the table prefix in their names.
struct Sql {
    /// The version table's name, quoted, for `to_regclass`.
    version_table_name: String,
    version_table: String,
    version: String,
    version_insert: String,
    load: String,
    put: String,
    next: String,
    delete: String,
    delete_all: String,
    run: String,
    runs: String,
    retries: String,
    prune: String,
}

impl Sql {
    fn new(schema: &str, prefix: &str) -> Sql {
        let jobs = format!("\"{schema}\".\"{prefix}jobs\"");
        let runs = format!("\"{schema}\".\"{prefix}runs\"");
        let version_table_name = format!("\"{schema}\".\"{prefix}apsched_schema\"");
        let versions = &version_table_name;
        Sql {
            version_table: format!(
                "CREATE TABLE {versions} (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ),
            version: format!("SELECT MAX(version) FROM {versions}"),
            version_insert: format!("INSERT INTO {versions} (version) VALUES ($1)"),
            load: format!("SELECT {} FROM {jobs} WHERE NOT finished", sql::JOB_COLUMNS),
            put: format!(
                "INSERT INTO {jobs} (id, name, task, args, trigger, options, next_run_time) \
                 SELECT id, name, task, args::jsonb, trigger::jsonb, options::jsonb, next_run_time \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) \
                 AS t(id, name, task, args, trigger, options, next_run_time) \
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, task = EXCLUDED.task, \
                 args = EXCLUDED.args, trigger = EXCLUDED.trigger, options = EXCLUDED.options, \
                 next_run_time = EXCLUDED.next_run_time, revision = {jobs}.revision + 1, \
                 updated_at = now()"
            ),
            next: format!(
                "UPDATE {jobs} AS j SET next_run_time = v.next_run_time, revision = j.revision + 1, \
                 updated_at = now() \
                 FROM UNNEST($1::text[], $2::timestamptz[]) AS v(id, next_run_time) WHERE j.id = v.id"
            ),
            delete: format!("DELETE FROM {jobs} WHERE id = ANY($1::text[])"),
            delete_all: format!("DELETE FROM {jobs}"),
            run: format!(
                "INSERT INTO {runs} (job_id, fire_time, state, started_at, finished_at, result, error, attempts, due_at) \
                 SELECT job_id, fire_time, state, started_at, finished_at, result::jsonb, error, attempts, due_at \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::text[], $8::int4[], $9::timestamptz[]) \
                 AS r(job_id, fire_time, state, started_at, finished_at, result, error, attempts, due_at) \
                 ON CONFLICT (job_id, fire_time) DO UPDATE SET state = EXCLUDED.state, \
                 started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, \
                 result = EXCLUDED.result, error = EXCLUDED.error, \
                 attempts = EXCLUDED.attempts, due_at = EXCLUDED.due_at"
            ),
            retries: format!(
                "SELECT {} FROM {runs} WHERE state = 'retrying'",
                sql::RUN_COLUMNS
            ),
            runs: format!(
                "SELECT {} FROM {runs} WHERE job_id = $1 ORDER BY fire_time DESC LIMIT $2",
                sql::RUN_COLUMNS
            ),
            prune: format!(
                "DELETE FROM {runs} WHERE id IN (SELECT id FROM {runs} \
                 WHERE fire_time < $1 AND state NOT IN ('running', 'pending', 'retrying') ORDER BY fire_time LIMIT $2)"
            ),
            version_table_name,
        }
    }
}

/// A row of [`sql::JOB_COLUMNS`] as a job (for cluster mode's reads).
pub(crate) fn read_job(row: &PgRow) -> Result<StoredJob, UnreadableRow> {
    sql::read_job(&Cols(row))
}

/// A PostgreSQL row's columns, decoded.
struct Cols<'r>(&'r PgRow);

/// Rows of [`sql::RUN_COLUMNS`] as runs; one that cannot be read fails them all.
fn read_runs(rows: &[PgRow]) -> Result<Vec<RunRecord>, BackendError> {
    rows.iter()
        .map(|row| sql::read_run(&Cols(row)).map_err(BackendError::from))
        .collect()
}

impl Columns for Cols<'_> {
    fn text(&self, index: usize) -> Result<Option<String>, String> {
        self.0.try_get(index).map_err(sql::decode_reason)
    }

    fn json(&self, index: usize) -> Result<Option<serde_json::Value>, String> {
        self.0.try_get(index).map_err(sql::decode_reason)
    }

    fn int(&self, index: usize) -> Result<Option<i64>, String> {
        let value: Option<i32> = self.0.try_get(index).map_err(sql::decode_reason)?;
        Ok(value.map(i64::from))
    }

    /// Read from the wire format itself: sqlx's chrono decoding panics on `infinity` and on
    /// times past chrono's range, and one such row must not fail the whole load.
    fn time(&self, index: usize) -> Result<Option<DateTime<Utc>>, String> {
        let value = self.0.try_get_raw(index).map_err(sql::decode_reason)?;
        if value.is_null() {
            return Ok(None);
        }
        if value.type_info().name() != "TIMESTAMPTZ" || value.format() != PgValueFormat::Binary {
            return Err(format!(
                "a {} value in {:?} format, not a binary timestamptz",
                value.type_info().name(),
                value.format()
            ));
        }
        let bytes: [u8; 8] = value
            .as_bytes()
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "a timestamptz that is not 8 bytes".to_string())?;
        // Microseconds since 2000-01-01 00:00 UTC; the extremes are PostgreSQL's infinities.
        match i64::from_be_bytes(bytes) {
            i64::MAX => Err("'infinity' is not a time apsched can run at".to_string()),
            i64::MIN => Err("'-infinity' is not a time apsched can run at".to_string()),
            micros => Utc
                .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
                .single()
                .and_then(|epoch| epoch.checked_add_signed(TimeDelta::microseconds(micros)))
                .map(Some)
                .ok_or_else(|| {
                    format!("{micros} µs after 2000-01-01 is outside the times apsched can hold")
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_is_stable_and_differs_by_schema_and_prefix() {
        // A changed key would let an old and a new apsched migrate one schema at once.
        assert_eq!(lock_key("public", ""), lock_key("public", ""));
        assert_ne!(lock_key("public", ""), lock_key("public", "p_"));
        assert_ne!(lock_key("a", "b_"), lock_key("ab", "_"));
        assert_eq!(lock_key("public", ""), 3_906_952_746_567_901_975); // FNV-1a, by hand
    }

    #[test]
    fn a_nul_anywhere_in_a_string_is_found() {
        let json = serde_json::json!({"a": [1, {"b\u{0}": 2}]});
        assert!(json_has_nul(&json));
        assert!(json_has_nul(&serde_json::json!(["x\u{0}"])));
        // An escaped backslash followed by "u0000" is text, not a NUL.
        assert!(!json_has_nul(&serde_json::json!({"a": "\\u0000"})));
    }
}
