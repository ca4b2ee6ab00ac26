//! The sync schedulers' job builders: [`AddJob`] and [`ModifyJob`], the async builders with a
//! blocking last call.

use std::future::IntoFuture;

use super::host::Host;
use crate::{Job, Result};

/// Adds a job when [`add`](AddJob::add) is called; returned by the sync schedulers' `add_job`.
/// Options not set take the scheduler's job defaults.
///
/// ```
/// # use apsched::{BackgroundScheduler, trigger::Interval};
/// # fn main() -> Result<(), apsched::Error> {
/// let scheduler = BackgroundScheduler::new()?;
/// let job = scheduler
///     .add_job(|| println!("tick"), Interval::seconds(5))
///     .id("tick")
///     .max_instances(2)
///     .add()?;
/// assert_eq!(job.id, "tick");
/// # Ok(()) }
/// ```
#[must_use = "the job is added only when `.add()` is called"]
pub struct AddJob<'a> {
    pub(super) host: &'a Host,
    pub(super) inner: crate::AddJob<'a>,
}

impl<'a> AddJob<'a> {
    /// The job's id. Default: a random UUID.
    pub fn id(self, id: impl Into<String>) -> Self {
        self.map(|a| a.id(id))
    }

    /// The job's name. Default: the task's function name.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.map(|a| a.name(name))
    }

    /// How late a run may start and still run: a `Duration`, or
    /// [`MisfireGrace::Unlimited`](crate::MisfireGrace::Unlimited). Default 1 s.
    pub fn misfire_grace_time(self, grace: impl Into<crate::MisfireGrace>) -> Self {
        self.map(|a| a.misfire_grace_time(grace))
    }

    /// Whether missed runs collapse into one. Default `true`.
    pub fn coalesce(self, coalesce: bool) -> Self {
        self.map(|a| a.coalesce(coalesce))
    }

    /// How many runs may go at once. Default 1.
    pub fn max_instances(self, max: u32) -> Self {
        self.map(|a| a.max_instances(max))
    }

    /// How long a run may take (see [`JobOptions::timeout`](crate::JobOptions::timeout)).
    pub fn timeout(self, timeout: impl Into<Option<std::time::Duration>>) -> Self {
        self.map(|a| a.timeout(timeout))
    }

    /// How failed runs are tried again (see [`RetryPolicy`](crate::RetryPolicy)).
    pub fn retry(self, policy: impl Into<Option<crate::RetryPolicy>>) -> Self {
        self.map(|a| a.retry(policy))
    }

    /// Replace a job with the same id instead of failing with
    /// [`Error::ConflictingId`](crate::Error::ConflictingId).
    pub fn replace_existing(self, replace: bool) -> Self {
        self.map(|a| a.replace_existing(replace))
    }

    /// Add the job paused: it runs only once resumed.
    pub fn paused(self) -> Self {
        self.map(crate::AddJob::paused)
    }

    /// The store the job lives in (see [`crate::AddJob::store`]); a durable job's add
    /// returns once its store has written it.
    pub fn store(self, name: impl Into<String>) -> Self {
        self.map(|a| a.store(name))
    }

    /// Adds the job and returns its snapshot. The trigger and options are checked here, and
    /// the first run is computed by the scheduler's clock; the core is not waited for (as the
    /// async `add_job`).
    ///
    /// # Errors
    /// An invalid trigger or option, [`Error::ConflictingId`](crate::Error::ConflictingId),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn add(self) -> Result<Job> {
        let AddJob { host, inner } = self;
        // `into_future` checks the job and reads the clock for its first run: deferred into
        // the wait, which polls inside the scheduler's runtime context, so a test clock reads
        // the scheduler's (paused) time rather than the caller's.
        host.wait(async move { inner.into_future().await })
    }

    fn map(self, f: impl FnOnce(crate::AddJob<'a>) -> crate::AddJob<'a>) -> Self {
        AddJob {
            host: self.host,
            inner: f(self.inner),
        }
    }
}

impl std::fmt::Debug for AddJob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddJob").finish_non_exhaustive()
    }
}

/// Changes a job's name and options when [`apply`](ModifyJob::apply) is called; returned by
/// the sync schedulers' `modify_job`. Only what is set changes.
#[must_use = "the job changes only when `.apply()` is called"]
pub struct ModifyJob<'a> {
    pub(super) host: &'a Host,
    pub(super) inner: crate::ModifyJob<'a>,
}

impl<'a> ModifyJob<'a> {
    /// A new name.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.map(|m| m.name(name))
    }

    /// A new misfire grace time: a `Duration`, or
    /// [`MisfireGrace::Unlimited`](crate::MisfireGrace::Unlimited).
    pub fn misfire_grace_time(self, grace: impl Into<crate::MisfireGrace>) -> Self {
        self.map(|m| m.misfire_grace_time(grace))
    }

    /// Whether missed runs collapse into one.
    pub fn coalesce(self, coalesce: bool) -> Self {
        self.map(|m| m.coalesce(coalesce))
    }

    /// How many runs may go at once.
    pub fn max_instances(self, max: u32) -> Self {
        self.map(|m| m.max_instances(max))
    }

    /// A new timeout (`None`: none).
    pub fn timeout(self, timeout: impl Into<Option<std::time::Duration>>) -> Self {
        self.map(|m| m.timeout(timeout))
    }

    /// A new retry policy (`None`: none).
    pub fn retry(self, policy: impl Into<Option<crate::RetryPolicy>>) -> Self {
        self.map(|m| m.retry(policy))
    }

    /// Applies the changes and returns the job's new snapshot.
    ///
    /// # Errors
    /// An invalid option, [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn apply(self) -> Result<Job> {
        self.host.wait(self.inner.into_future())
    }

    fn map(self, f: impl FnOnce(crate::ModifyJob<'a>) -> crate::ModifyJob<'a>) -> Self {
        ModifyJob {
            host: self.host,
            inner: f(self.inner),
        }
    }
}

impl std::fmt::Debug for ModifyJob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModifyJob").finish_non_exhaustive()
    }
}
