//! Job stores: where jobs, their schedule state and their run history are kept.
//!
//! Every scheduler has the memory store, named `"default"` unless the builder names another
//! default: its jobs live in the core's job table only, and nothing is awaited for them. A
//! durable store (`SqliteStore`, `PostgresStore`, or your own [`JobStore`]) keeps its jobs
//! in a database, so a scheduler started on it again finds them as they were. Add one with
//! `SchedulerBuilder::store` and send jobs to it with
//! `AddJob::store`.
//!
//! This module owns the contract between the scheduler and a backend: the rows ([`StoredJob`],
//! [`RunRecord`]), the changes ([`Write`]) and the [`JobStore`] trait. A backend only reads and
//! writes rows; the scheduler's core decides every change, and a writer task per store sends
//! the backend the changes in the order the core made them, batched into transactions.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresStore, PostgresStoreOptions};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteStore, SqliteStoreOptions};

/// An error from a backend, boxed: the scheduler reports it as
/// [`Error::Store`](crate::Error::Store), naming the store and the operation.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// The schema version this apsched writes and reads. A store whose schema is newer is refused
/// ([`Error::StoreSchema`](crate::Error::StoreSchema)); an older one is migrated when the store
/// opens.
///
/// Version 1 is the jobs table; version 2 adds the run history; version 3 the node that ran
/// each run, and (PostgreSQL) what cluster mode needs: claims, fences and node leases; version
/// 4 a run's attempts, and when a run waiting for a retry is due.
pub const SCHEMA_VERSION: i64 = 4;

/// A job as a store keeps it: everything needed to rebuild it in a new process.
///
/// The trigger and the options are kept as JSON (their serde form), so a new option or trigger
/// field needs no new column; the task is a name registered in the scheduler's
/// [`TaskRegistry`](crate::TaskRegistry), with its arguments as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// The job's id (the primary key).
    pub id: String,
    /// The name given with `.name(..)`, if any (else the task's name is the job's name).
    pub name: Option<String>,
    /// The registered task's name.
    pub task: String,
    /// The task's arguments.
    pub args: serde_json::Value,
    /// The [`Trigger`](crate::trigger::Trigger), as its JSON.
    pub trigger: serde_json::Value,
    /// The [`JobOptions`](crate::JobOptions), as their JSON.
    pub options: serde_json::Value,
    /// The next run's fire time (the trigger's, without jitter: jitter is drawn anew when
    /// the job is loaded); `None` while paused.
    ///
    /// The SQL stores keep times to the microsecond, truncated (as PostgreSQL does): a time read
    /// back may have lost its nanoseconds.
    pub next_run_time: Option<DateTime<Utc>>,
}

/// One row of a store that could not be read as a job: reported and skipped, never deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableRow {
    /// The row's id, if that much could be read.
    pub id: Option<String>,
    /// Why it could not be read.
    pub reason: String,
}

/// What became of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunState {
    /// Due, waiting for a node to claim it (cluster mode only).
    Pending,
    /// Started, not yet ended.
    Running,
    /// Ended without error.
    Succeeded,
    /// Returned an error, panicked, or was cancelled.
    Failed,
    /// Skipped: later than the job's `misfire_grace_time` (the first of a stretch).
    Missed,
    /// Skipped: `max_instances` runs were going.
    Skipped,
    /// Still going when the scheduler stopped waiting for it.
    Abandoned,
    /// Passed its job's timeout (see [`JobOptions::timeout`](crate::JobOptions::timeout)).
    TimedOut,
    /// An attempt failed; the next one is due at [`RunRecord::due_at`] (see
    /// [`RetryPolicy`](crate::RetryPolicy)).
    Retrying,
}

impl RunState {
    /// The state's name as stored (`running`, `succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Missed => "missed",
            RunState::Skipped => "skipped",
            RunState::Abandoned => "abandoned",
            RunState::TimedOut => "timed_out",
            RunState::Retrying => "retrying",
        }
    }

    /// The state named `name`, as [`as_str`](Self::as_str) writes it.
    pub fn parse(name: &str) -> Option<RunState> {
        Some(match name {
            "pending" => RunState::Pending,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "missed" => RunState::Missed,
            "skipped" => RunState::Skipped,
            "abandoned" => RunState::Abandoned,
            "timed_out" => RunState::TimedOut,
            "retrying" => RunState::Retrying,
            _ => return None,
        })
    }

    /// Whether the run has ended (every state but `Pending`, `Running` and `Retrying`).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunState::Pending | RunState::Running | RunState::Retrying
        )
    }
}

/// One run of a job, as its history keeps it: one per (job, fire time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct RunRecord {
    /// The job.
    pub job_id: String,
    /// The fire time the run stood for (without jitter).
    pub fire_time: DateTime<Utc>,
    /// What became of it.
    pub state: RunState,
    /// When it started (`None` for a run that never started: missed or skipped).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The JSON value the task returned, if any.
    pub result: Option<serde_json::Value>,
    /// The error's message (with its causes), for a failed run.
    pub error: Option<String>,
    /// The cluster node that ran it (cluster mode only; `None` elsewhere).
    pub node: Option<String>,
    /// Attempts made: 1, more for a run its job's [`RetryPolicy`](crate::RetryPolicy) tried
    /// again (0 for a run that never started).
    #[serde(default = "one")]
    pub attempts: u32,
    /// For a run waiting ([`RunState::Retrying`]): when its next attempt is due.
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
}

fn one() -> u32 {
    1
}

impl RunRecord {
    /// A run of `job_id` for `fire_time` in `state`, with nothing else known yet.
    pub fn new(job_id: &str, fire_time: DateTime<Utc>, state: RunState) -> RunRecord {
        RunRecord {
            job_id: job_id.to_string(),
            fire_time,
            state,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            node: None,
            attempts: u32::from(!matches!(
                state,
                RunState::Missed | RunState::Skipped | RunState::Pending
            )),
            due_at: None,
        }
    }

    /// How long the run took, once it has ended.
    pub fn duration(&self) -> Option<std::time::Duration> {
        (self.finished_at? - self.started_at?).to_std().ok()
    }
}

/// A change to a store, as the scheduler's core made it. A backend applies a batch of them in
/// order, in one transaction, all or none.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Insert the job, or replace the row with its id. (The SQL stores count a row's
    /// `revision` up on every `Put` and `Next`.)
    Put(StoredJob),
    /// Move a job's next run (`None`: paused). A job that is gone is not an error.
    Next {
        /// The job.
        id: String,
        /// Its next run.
        next_run_time: Option<DateTime<Utc>>,
    },
    /// Delete a job (its run history stays until retention removes it). A job that is gone is
    /// not an error.
    Delete {
        /// The job.
        id: String,
    },
    /// Delete every job.
    DeleteAll,
    /// Insert a run, or update the run of the same (job, fire time).
    Run(RunRecord),
}

/// A durable job store: a backend the scheduler reads jobs from when it starts and writes every
/// change of them to.
///
/// Implement it to keep jobs elsewhere; `SqliteStore` and `PostgresStore` (features
/// `sqlite`, `postgres`) are the two apsched brings. Every method may be called from any task;
/// the scheduler calls [`write`](JobStore::write) from one writer task per store, so writes
/// never race each other.
pub trait JobStore: Send + Sync + 'static {
    /// Where the store is, for messages: `sqlite:/var/lib/app/jobs.db`,
    /// `postgres://db.internal:5432/app (schema apsched)` (never a password).
    fn describe(&self) -> String;

    /// Every job row, in no particular order: those that can be read, and those that cannot
    /// (reported, then left alone).
    fn load(&self) -> BoxFuture<'_, Result<Vec<Result<StoredJob, UnreadableRow>>, BackendError>>;

    /// Applies `writes` in order, in one transaction: all of them, or (on error) none.
    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The most recent runs of a job, newest fire time first, at most `limit`.
    fn runs<'a>(
        &'a self,
        job_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, BackendError>>;

    /// The runs waiting for a retry ([`RunState::Retrying`]), read at start so a restarted
    /// scheduler carries them out. Default: none, for a backend that keeps no run history.
    fn retries(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Deletes at most `limit` ended runs whose fire time is before `before`; returns how many
    /// it deleted (the scheduler calls it again while it deletes `limit`). A run waiting for a
    /// retry has not ended.
    fn prune_runs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, BackendError>>;

    /// A round trip to the database: the scheduler asks while a store is away, to tell when
    /// it is back. Default: an empty [`write`](JobStore::write), which a backend that skips
    /// empty batches must not rely on.
    fn ping(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.write(&[])
    }
}

/// A shared store is a store: `Arc<dyn JobStore>` (or `Arc<S>`) goes where a store does.
impl<S: JobStore + ?Sized> JobStore for std::sync::Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<Result<StoredJob, UnreadableRow>>, BackendError>> {
        (**self).load()
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), BackendError>> {
        (**self).write(writes)
    }

    fn runs<'a>(
        &'a self,
        job_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, BackendError>> {
        (**self).runs(job_id, limit)
    }

    fn retries(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BackendError>> {
        (**self).retries()
    }

    fn prune_runs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, BackendError>> {
        (**self).prune_runs(before, limit)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        (**self).ping()
    }
}
