//! The scheduler handle: [`Scheduler`], its builder, and the job builders it hands out.
//!
//! A `Scheduler` is a cheap `Clone` handle over a channel to the scheduler's core task, which
//! owns the job table and decides when jobs run. Calls whose answer the handle can give itself
//! (adding a job with a fresh id, removing a known one) are checked here against a shared id
//! index and sent without waiting for the core; the channel's order keeps every later call
//! consistent with them. Calls that need the core's answer (`get_jobs`, `pause_job`, ...) wait
//! for its reply.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::core::{
    in_run_of, Command, Entry, JobChange, Key, Modification, NextRun, Settings, Shared,
    ShutdownReply, StoreIndex, StoreInfo,
};
use crate::event::EventStream;
use crate::job::{IntoTask, Task};
use crate::store::{JobStore, RunRecord};
use crate::trigger::Trigger;
use crate::{
    Cause, Clock, Error, IntoZone, Job, JobId, JobOptions, MisfireGrace, Result, SystemClock,
    TaskRegistry, Zone,
};

/// Where a scheduler is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchedulerState {
    /// Built but not started: jobs can be added and are scheduled at start.
    Stopped,
    /// Running jobs as they fall due.
    Running,
    /// Started, but not running jobs until resumed.
    Paused,
    /// Shutting down or shut down: every call returns [`Error::Shutdown`].
    ShutDown,
    /// The core task ended without a shutdown: its Tokio runtime shut down or was dropped
    /// while this handle lived on (or it panicked). Nothing runs; every call returns
    /// [`Error::Closed`].
    Closed,
}

impl std::fmt::Display for SchedulerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchedulerState::Stopped => "stopped",
            SchedulerState::Running => "running",
            SchedulerState::Paused => "paused",
            SchedulerState::ShutDown => "shut down",
            SchedulerState::Closed => "closed",
        })
    }
}

/// A run still going when [`Scheduler::shutdown_timeout`] stopped waiting for it: its
/// cancellation token was cancelled, and the scheduler no longer tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AbandonedRun {
    /// The job.
    pub job_id: JobId,
    /// The fire time the run stood for.
    pub scheduled_run_time: DateTime<Utc>,
}

/// The most events a subscriber may fall behind: the broadcast buffer is allocated up front.
const MAX_EVENT_CAPACITY: usize = 1 << 20;

/// The most fire times [`Scheduler::preview_job`] gives.
pub const MAX_PREVIEW: usize = 1000;

/// Settings for a [`Scheduler`]; start from [`Scheduler::builder`].
#[must_use]
pub struct SchedulerBuilder {
    timezone: Option<Zone>,
    job_defaults: JobOptions,
    channel_capacity: usize,
    event_capacity: usize,
    max_blocking_jobs: usize,
    max_sleep: Duration,
    clock_jump_threshold: Duration,
    failure_log_level: Option<tracing::Level>,
    clock: Arc<dyn Clock>,
    stores: Vec<(String, Arc<dyn JobStore>)>,
    default_store: Option<String>,
    tasks: TaskRegistry,
    history_retention: Duration,
    memory_history: usize,
    timeout_grace: Duration,
    #[cfg(feature = "postgres")]
    clusters: Vec<(String, crate::cluster::Cluster)>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores: Vec<(&str, String)> = self
            .stores
            .iter()
            .map(|(name, store)| (name.as_str(), store.describe()))
            .collect();
        f.debug_struct("SchedulerBuilder")
            .field("timezone", &self.timezone)
            .field("job_defaults", &self.job_defaults)
            .field("stores", &stores)
            .field("default_store", &self.default_store)
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerBuilder {
    fn default() -> Self {
        SchedulerBuilder {
            timezone: None,
            job_defaults: JobOptions::default(),
            channel_capacity: 16_384,
            event_capacity: 1024,
            max_blocking_jobs: 10,
            max_sleep: Duration::from_secs(60),
            clock_jump_threshold: Duration::from_secs(1),
            failure_log_level: Some(tracing::Level::ERROR),
            clock: Arc::new(SystemClock),
            stores: Vec::new(),
            default_store: None,
            tasks: TaskRegistry::new(),
            history_retention: Duration::from_secs(7 * 86_400),
            memory_history: 1000,
            timeout_grace: Duration::from_secs(5),
            #[cfg(feature = "postgres")]
            clusters: Vec::new(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::default(),
        }
    }
}

impl SchedulerBuilder {
    /// The zone for triggers that name none. Default: the machine's local zone (UTC when it
    /// cannot be told), as APScheduler.
    pub fn timezone(mut self, zone: impl IntoZone) -> Self {
        self.timezone = Some(zone.into_zone());
        self
    }

    /// Options for jobs that do not set their own. Default: [`JobOptions::default`]
    /// (grace 1 s, coalesce, one instance).
    pub fn job_defaults(mut self, options: JobOptions) -> Self {
        self.job_defaults = options;
        self
    }

    /// How many commands may wait for the core before callers wait too. Default 16,384;
    /// at least 1, at most [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS)
    /// (values outside are clamped).
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How many events a subscriber may fall behind before it skips the oldest. Default 1,024;
    /// at least 1, at most 1,048,576 (values outside are clamped: the buffer is allocated up
    /// front, about 100 bytes an event).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.clamp(1, MAX_EVENT_CAPACITY);
        self
    }

    /// How many blocking (non-async) job runs may go at once; more wait for a free worker.
    /// Default 10, as APScheduler's thread pool; at least 1, at most
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS) (values outside are
    /// clamped). Tokio's blocking pool has its own limit (512 threads by default).
    pub fn max_blocking_jobs(mut self, workers: usize) -> Self {
        self.max_blocking_jobs = workers.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// The longest the core sleeps before it reads the wall clock again, so that a clock step
    /// or a suspend is noticed within this span. Default 60 s.
    pub fn max_sleep(mut self, span: Duration) -> Self {
        self.max_sleep = span.max(Duration::from_millis(1));
        self
    }

    /// How far the wall clock must move against the monotonic clock between two wakes to be
    /// reported as [`Event::ClockJumped`](crate::Event::ClockJumped). Default 1 s.
    pub fn clock_jump_threshold(mut self, span: Duration) -> Self {
        self.clock_jump_threshold = span;
        self
    }

    /// The level of the line the scheduler logs when a run fails (an error or a panic),
    /// inside the run's `apsched.job` span (which also records the run's `outcome` and
    /// `duration_ms`). Default `ERROR`; `None` logs no line, for applications that report
    /// [`Event::JobError`](crate::Event::JobError) themselves.
    pub fn failure_log_level(mut self, level: Option<tracing::Level>) -> Self {
        self.failure_log_level = level;
        self
    }

    /// Adds a durable job store under `name` (APScheduler's `jobstores`): jobs sent to it
    /// with [`AddJob::store`] are written to it before their add returns, and a scheduler
    /// started on it again finds them as they were. A store added again under a name replaces
    /// the one before. The memory store is named `"default"`; a durable store added under that
    /// name takes it (and becomes the default), and the memory store is then `"memory"`.
    pub fn store(mut self, name: impl Into<String>, store: impl JobStore) -> Self {
        let name = name.into();
        self.stores.retain(|(existing, _)| *existing != name);
        self.stores.push((name, Arc::new(store)));
        self
    }

    /// Makes this scheduler a node of a [`cluster`](crate::cluster) on a PostgreSQL store,
    /// named `name` as a store is: jobs sent there (`AddJob::store(name)`, or
    /// [`default_store`](Self::default_store)) live in the database, and every node of the
    /// cluster may run them, each fire time once. The node joins when the scheduler starts and
    /// leaves when it shuts down.
    ///
    /// Its settings are checked at [`start`](Scheduler::start).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn cluster(mut self, name: impl Into<String>, cluster: crate::cluster::Cluster) -> Self {
        self.clusters.push((name.into(), cluster));
        self
    }

    /// The store jobs go to when they name none. Default `"default"` (the memory store, unless
    /// a durable store took that name).
    pub fn default_store(mut self, name: impl Into<String>) -> Self {
        self.default_store = Some(name.into());
        self
    }

    /// The tasks jobs in durable stores name: a job's row names a task and carries its
    /// arguments, and the scheduler rebuilds the job from this registry when it starts. A job
    /// whose task is not here is reported ([`Event::JobNotLoaded`](crate::Event::JobNotLoaded))
    /// and left in its store, untouched. Default: none.
    pub fn tasks(mut self, tasks: TaskRegistry) -> Self {
        self.tasks = tasks;
        self
    }

    /// How long durable stores keep a job's run history; older runs are deleted by a periodic,
    /// batched delete. Default 7 days; zero keeps none (no run is written).
    pub fn history_retention(mut self, retention: Duration) -> Self {
        self.history_retention = retention;
        self
    }

    /// How many recent runs of memory-store jobs the scheduler remembers for
    /// [`Scheduler::get_job_runs`], across all of them. Default 1,000; zero remembers none.
    pub fn memory_history(mut self, runs: usize) -> Self {
        self.memory_history = runs;
        self
    }

    /// How long a run past its [`timeout`](JobOptions::timeout) has, once its token is
    /// cancelled, to end on its own before an async run is dropped (at its next `.await`).
    /// Default 5 s.
    pub fn timeout_grace(mut self, grace: Duration) -> Self {
        self.timeout_grace = grace;
        self
    }

    /// How the scheduler reports [metrics](crate::metrics) (feature `metrics`). Default
    /// [`Metrics::default`](crate::metrics::Metrics::default): every metric, no job labels.
    /// The recorder must be installed before [`build`](Self::build), which registers them.
    ///
    /// ```
    /// use apsched::metrics::Metrics;
    /// use apsched::Scheduler;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scheduler = Scheduler::builder().metrics(Metrics::new().job_labels(true)).build();
    /// # drop(scheduler);
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where wall-clock time comes from. Default [`SystemClock`]; tests use
    /// [`TestClock`](crate::TestClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the scheduler and spawns its core task, in the stopped state.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as `tokio::spawn` does. Code without a runtime uses the
    /// blocking or background scheduler.
    pub fn build(self) -> Scheduler {
        let takes_default = self.stores.iter().any(|(name, _)| name == "default");
        let memory_name = if takes_default { "memory" } else { "default" };
        let mut stores = vec![StoreInfo::new(Arc::from(memory_name), None)];
        // A scheduler of more than 255 stores keeps the first 255.
        for (name, store) in self.stores.into_iter().take(usize::from(StoreIndex::MAX)) {
            stores.push(StoreInfo::new(Arc::from(name), Some(store)));
        }
        let default_name = self.default_store.as_deref().unwrap_or("default");
        let default_store = stores
            .iter()
            .position(|store| &*store.name == default_name)
            .and_then(|i| StoreIndex::try_from(i).ok());
        #[cfg(feature = "postgres")]
        let clusters = self
            .clusters
            .into_iter()
            .map(|(name, cluster)| {
                let is_default = self.default_store.as_deref() == Some(name.as_str());
                Arc::new(crate::cluster::Node::new(
                    Arc::from(name),
                    cluster,
                    is_default,
                ))
            })
            .collect();
        #[allow(unused_mut)]
        let mut shared = Shared::new(
            self.clock,
            self.event_capacity,
            self.timezone.unwrap_or_else(Zone::local),
            self.job_defaults,
            stores,
            default_store,
            self.tasks,
        );
        #[cfg(feature = "postgres")]
        {
            shared.clusters = clusters;
        }
        #[cfg(feature = "metrics")]
        {
            shared.metrics = crate::metrics::Instruments::new(&self.metrics, &shared.stores);
        }
        let shared = Arc::new(shared);
        let tx = crate::core::spawn(
            Arc::clone(&shared),
            Settings {
                channel_capacity: self.channel_capacity,
                max_blocking_jobs: self.max_blocking_jobs,
                max_sleep: self.max_sleep,
                clock_jump_threshold: self.clock_jump_threshold,
                failure_log_level: self.failure_log_level,
                history_retention: self.history_retention,
                memory_history: self.memory_history,
                timeout_grace: self.timeout_grace,
            },
        );
        Scheduler { tx, shared }
    }
}

/// A run submitted by [`Scheduler::run_job_now`]: [`outcome`](Self::outcome) waits for how
/// it went. Dropping the handle changes nothing; the run goes on.
pub struct RunHandle {
    outcome: oneshot::Receiver<RunRecord>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle").finish_non_exhaustive()
    }
}

impl RunHandle {
    /// Waits for the run's outcome: its state (succeeded, failed, timed out, or skipped for
    /// `max_instances`), attempts, times, the JSON value it returned or its error message.
    /// A retried run answers after its last attempt.
    ///
    /// # Errors
    /// [`Error::Shutdown`] (or [`Error::Closed`]) if the scheduler stopped before the run had
    /// an outcome; in a [cluster](crate::cluster), [`Error::InvalidState`] at once: the run is
    /// the cluster's, and its outcome is in [`Scheduler::get_job_runs`].
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped wait changes nothing.
    pub async fn outcome(self) -> Result<RunRecord> {
        self.outcome.await.map_err(|_| match self.shared.state() {
            SchedulerState::Closed => Error::Closed,
            SchedulerState::ShutDown => Error::Shutdown,
            state => Error::InvalidState {
                state,
                action: "wait for the outcome of a cluster run (read it with get_job_runs)",
            },
        })
    }
}

/// An async job scheduler: APScheduler's `AsyncIOScheduler` for Tokio.
///
/// A cheap `Clone` handle (`Send + Sync`) to one scheduler core; put it in application state
/// and call it from anywhere. The core keeps running while any handle exists; dropping the last
/// one stops it after its running jobs finish.
///
/// ```
/// use apsched::{Scheduler, trigger::Interval};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), apsched::Error> {
/// let scheduler = Scheduler::new();
/// scheduler.start().await?;
/// let job = scheduler
///     .add_job(|| async { println!("Hello World") }, Interval::seconds(2))
///     .id("hello")
///     .await?;
/// assert_eq!(job.id, "hello");
/// tokio::time::sleep(Duration::from_secs(5)).await; // two runs
/// scheduler.shutdown().await
/// # }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("state", &self.state())
            .field("timezone", &self.shared.timezone)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with default settings (see [`SchedulerBuilder`]), stopped.
    ///
    /// # Panics
    /// Outside a Tokio runtime (it spawns the core task there). For that reason `Scheduler`
    /// has no `Default`: a `Default` that panics would surprise code that derives it.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Scheduler {
        SchedulerBuilder::default().build()
    }

    /// Settings for a new scheduler.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// A handle over the core's channel and shared state (a job's `JobContext::scheduler`).
    pub(crate) fn from_parts(tx: mpsc::Sender<Command>, shared: Arc<Shared>) -> Scheduler {
        Scheduler { tx, shared }
    }

    /// The scheduler's state.
    pub fn state(&self) -> SchedulerState {
        self.shared.state()
    }

    /// How many jobs the scheduler holds, paused ones included.
    ///
    /// Read from the handle's id index, without a round trip to the core: cheap enough for a
    /// status page polled often.
    pub fn job_count(&self) -> usize {
        self.shared.index().len()
    }

    /// How many job runs are under way now, across all jobs (async and blocking).
    ///
    /// A counter the core keeps as runs start and end, read without a round trip.
    pub fn running_jobs(&self) -> usize {
        self.shared.running()
    }

    /// The zone used for triggers that name none.
    pub fn timezone(&self) -> Zone {
        self.shared.timezone
    }

    /// The current time by the scheduler's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// A stream of everything that happens from now on.
    pub fn subscribe(&self) -> EventStream {
        self.shared.subscribe()
    }

    /// Starts running jobs; jobs added before are scheduled from now.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if already started, [`Error::Shutdown`] after shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe: dropped before the core took the call, nothing changes; after, the
    /// scheduler starts all the same.
    pub async fn start(&self) -> Result<()> {
        self.join_clusters().await?;
        self.request(|reply| Command::Start {
            paused: false,
            reply,
        })
        .await?
    }

    /// Starts in the paused state: jobs are scheduled but none runs until [`resume`](Self::resume).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    ///
    /// # Cancel safety
    /// As [`start`](Self::start).
    pub async fn start_paused(&self) -> Result<()> {
        self.join_clusters().await?;
        self.request(|reply| Command::Start {
            paused: true,
            reply,
        })
        .await?
    }

    /// Stops running jobs until [`resume`](Self::resume); runs under way go on.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if not started, [`Error::Shutdown`] after shutdown.
    ///
    /// # Cancel safety
    /// As [`start`](Self::start).
    pub async fn pause(&self) -> Result<()> {
        self.request(|reply| Command::Pause { reply }).await?
    }

    /// Runs jobs again after [`pause`](Self::pause); runs missed meanwhile follow the misfire
    /// rules.
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    ///
    /// # Cancel safety
    /// As [`start`](Self::start).
    pub async fn resume(&self) -> Result<()> {
        self.request(|reply| Command::Resume { reply }).await??;
        #[cfg(feature = "postgres")]
        for node in &self.shared.clusters {
            node.wake.notify_one();
        }
        Ok(())
    }

    /// Shuts down: no new run starts, and this waits for the runs under way to finish.
    /// Every later call returns [`Error::Shutdown`].
    ///
    /// Called from one of the scheduler's own runs (an async job awaiting it directly, or a
    /// blocking job), it returns as soon as the shutdown has begun: waiting for running jobs
    /// would wait for itself.
    ///
    /// # Errors
    /// [`Error::Shutdown`] if already shut down.
    ///
    /// # Cancel safety
    /// Cancel safe: dropped before the core took the call, nothing changes; after, the
    /// shutdown goes on without this caller waiting for it.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop(None).await.map(drop)
    }

    /// As [`shutdown`](Self::shutdown), but bounded: once `timeout` has passed, runs still
    /// going are cancelled (their [`JobContext`](crate::JobContext) token is cancelled, and
    /// async runs are dropped at their next `.await`, reported as [`Event::JobError`](crate::Event::JobError)); runs
    /// that have not ended 100 ms later (an async run that never reaches an `.await`, a
    /// blocking run, which cannot be stopped) are abandoned to finish on their own, and
    /// returned. So this returns at most 100 ms after `timeout`, whatever the jobs do.
    ///
    /// From one of the scheduler's own runs it returns as soon as the shutdown has begun, with
    /// no runs listed.
    ///
    /// # Errors
    /// [`Error::Shutdown`] if already shut down.
    ///
    /// # Cancel safety
    /// As [`shutdown`](Self::shutdown).
    pub async fn shutdown_timeout(&self, timeout: Duration) -> Result<Vec<AbandonedRun>> {
        self.stop(Some(timeout)).await
    }

    async fn stop(&self, timeout: Option<Duration>) -> Result<Vec<AbandonedRun>> {
        // Cluster nodes stop claiming first; each leaves once its runs have ended.
        #[cfg(feature = "postgres")]
        for node in &self.shared.clusters {
            node.stop();
        }
        if in_run_of(&self.shared) {
            self.request(|reply| Command::Shutdown {
                timeout,
                reply: ShutdownReply::Begun(reply),
            })
            .await??;
            return Ok(Vec::new());
        }
        let abandoned = self
            .request(|reply| Command::Shutdown {
                timeout,
                reply: ShutdownReply::Stopped(reply),
            })
            .await??;
        #[cfg(feature = "postgres")]
        for node in &self.shared.clusters {
            // Bounded: leaving is one transaction with a 10 s timeout of its own.
            let _ = tokio::time::timeout(Duration::from_secs(11), node.left()).await;
        }
        Ok(abandoned)
    }

    /// Joins the clusters this scheduler is a node of (once; later calls do nothing).
    async fn join_clusters(&self) -> Result<()> {
        self.ensure_open()?;
        #[cfg(feature = "postgres")]
        for node in &self.shared.clusters {
            node.start(Arc::clone(&self.shared), self.tx.downgrade())
                .await?;
        }
        Ok(())
    }

    /// The live nodes of this scheduler's clusters (this one among them), ordered by id.
    ///
    /// # Errors
    /// [`Error::Store`] when a cluster's database cannot be read.
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn get_nodes(&self) -> Result<Vec<crate::cluster::NodeInfo>> {
        let mut nodes = Vec::new();
        for node in &self.shared.clusters {
            nodes.extend(node.nodes().await?);
        }
        Ok(nodes)
    }

    /// This scheduler's node id in its first cluster, if it is a node of one.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn node_id(&self) -> Option<&str> {
        self.shared.clusters.first().map(|node| &*node.id)
    }

    /// The cluster named `name`, if this scheduler is a node of one by that name.
    #[cfg(feature = "postgres")]
    fn cluster_named(&self, name: &str) -> Option<&Arc<crate::cluster::Node>> {
        self.shared.clusters.iter().find(|node| &*node.name == name)
    }

    /// The cluster that has the job `id` (not a memory or durable job of this node), if any.
    #[cfg(feature = "postgres")]
    async fn cluster_of(&self, id: &str) -> Result<Option<&Arc<crate::cluster::Node>>> {
        // Without a cluster, no lookup at all: the memory path stays as it was.
        if self.shared.clusters.is_empty() || self.shared.index().key_of(id).is_some() {
            return Ok(None);
        }
        match &self.shared.clusters[..] {
            [] => Ok(None),
            [only] => Ok(Some(only)),
            several => {
                for node in several {
                    if node.get(&self.shared, id).await?.is_some() {
                        return Ok(Some(node));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Adds a job: `task` (an async or blocking closure or fn, see [`IntoTask`]) run at the
    /// times `trigger` gives. Set options on the returned builder, then `.await` it for the
    /// [`Job`].
    ///
    /// The trigger and options are checked here, and the job is handed to the core without
    /// waiting for it, so adding is cheap. Nothing happens until the builder is awaited.
    ///
    /// ```
    /// # use apsched::{Scheduler, trigger::Cron};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// # let scheduler = Scheduler::new();
    /// async fn report() {}
    /// let job = scheduler
    ///     .add_job(report, Cron::parse("30 6 * * *")?)
    ///     .id("daily-report")
    ///     .misfire_grace_time(Duration::from_secs(300))
    ///     .await?;
    /// assert_eq!(job.name, "report");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When awaited: an invalid trigger or option, [`Error::ConflictingId`],
    /// [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: the one wait is for room in the core's channel, before anything changes;
    /// a future dropped there (or never polled) adds nothing and holds no id.
    pub fn add_job<M>(&self, task: impl IntoTask<M>, trigger: impl Into<Trigger>) -> AddJob<'_> {
        AddJob {
            scheduler: self,
            task: task.into_task(),
            trigger: trigger.into(),
            id: None,
            name: None,
            options: self.shared.job_defaults,
            replace_existing: false,
            paused: false,
            store: None,
        }
    }

    /// A snapshot of one job.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing.
    pub async fn get_job(&self, id: &str) -> Result<Job> {
        #[cfg(feature = "postgres")]
        if let Some(node) = self.cluster_of(id).await? {
            self.ensure_open()?;
            return node
                .get(&self.shared, id)
                .await?
                .ok_or_else(|| Error::JobNotFound(id.to_string()));
        }
        self.request_job(id, |key, reply| Command::Get { key, reply })
            .await?
            .ok_or_else(|| Error::JobNotFound(id.to_string()))
    }

    /// The next `n` fire times of a job from now (at most [`MAX_PREVIEW`]), in its trigger's
    /// time zone, jitter excluded: none while the job is paused, and none past its end bound.
    /// These are the times the scheduler will run it at, unless the job changes or misses
    /// them.
    ///
    /// ```
    /// # use apsched::{Scheduler, trigger::Interval};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let scheduler = Scheduler::new();
    /// let job = scheduler.add_job(|| async {}, Interval::minutes(5)).await?;
    /// let next = scheduler.preview_job(&job.id, 3).await?;
    /// assert_eq!(next.len(), 3);
    /// assert_eq!(next[1] - next[0], chrono::TimeDelta::minutes(5));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`]; a trigger with no fire time within its
    /// search bound ([`Error::TriggerNeverFires`]).
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing.
    pub async fn preview_job(&self, id: &str, n: usize) -> Result<Vec<DateTime<Zone>>> {
        let job = self.get_job(id).await?;
        if job.is_paused() {
            return Ok(Vec::new());
        }
        let zone = job.trigger.timezone().unwrap_or(self.shared.timezone);
        job.trigger
            .fire_times(self.now())
            .take(n.min(MAX_PREVIEW))
            .map(|time| time.map(|time| time.with_timezone(&zone)))
            .collect()
    }

    /// Snapshots of all jobs, soonest next run first (paused jobs last).
    ///
    /// # Errors
    /// [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing.
    pub async fn get_jobs(&self) -> Result<Vec<Job>> {
        self.ensure_open()?;
        #[allow(unused_mut)]
        let mut jobs = self.request(|reply| Command::GetAll { reply }).await?;
        #[cfg(feature = "postgres")]
        if !self.shared.clusters.is_empty() {
            for node in &self.shared.clusters {
                jobs.extend(node.all(&self.shared).await?);
            }
            // As the core orders them: soonest next run first, paused jobs last.
            jobs.sort_by_key(|job| (job.next_run_time.is_none(), job.next_run_time));
        }
        Ok(jobs)
    }

    /// Changes a job's name or options; set them on the returned builder, then `.await` it.
    ///
    /// # Errors
    /// When awaited: an invalid option, [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// As [`pause_job`](Self::pause_job).
    pub fn modify_job<'a>(&'a self, id: &'a str) -> ModifyJob<'a> {
        ModifyJob {
            scheduler: self,
            id,
            changes: Modification::default(),
        }
    }

    /// Gives a job a new trigger; its next run is computed from now.
    ///
    /// # Errors
    /// An invalid trigger (the job is unchanged), [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// As [`pause_job`](Self::pause_job).
    pub async fn reschedule_job(&self, id: &str, trigger: impl Into<Trigger>) -> Result<Job> {
        self.ensure_open()?;
        let trigger = self.prepare_trigger(trigger.into())?.0;
        self.change(id, JobChange::Reschedule(trigger))
            .await?
            .ok_or_else(|| Error::JobNotFound(id.to_string()))
    }

    /// Pauses a job: it does not run until resumed.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: dropped before the core took the call, nothing changes; after, the change
    /// is made all the same (entirely: the core applies each call as one step), and only its
    /// answer is lost.
    pub async fn pause_job(&self, id: &str) -> Result<Job> {
        self.change(id, JobChange::Pause)
            .await?
            .ok_or_else(|| Error::JobNotFound(id.to_string()))
    }

    /// Resumes a paused job, its next run computed from now. A job whose trigger has no fire
    /// time left is removed instead, and `Ok(None)` returned (as APScheduler).
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// As [`pause_job`](Self::pause_job).
    pub async fn resume_job(&self, id: &str) -> Result<Option<Job>> {
        self.change(id, JobChange::Resume).await
    }

    /// Runs a job once now, outside its schedule (which does not change). The run counts
    /// against `max_instances`. The [`RunHandle`] it returns gives the run's outcome; dropping
    /// it changes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> apsched::Result<()> {
    /// use apsched::{store::RunState, trigger::Interval, Scheduler};
    ///
    /// async fn count() -> Result<u32, std::io::Error> {
    ///     Ok(42)
    /// }
    ///
    /// let scheduler = Scheduler::new();
    /// scheduler.add_job(count, Interval::hours(1)).id("count").await?;
    /// scheduler.start().await?;
    /// let outcome = scheduler.run_job_now("count").await?.outcome().await?;
    /// assert_eq!(outcome.state, RunState::Succeeded);
    /// assert_eq!(outcome.result, Some(serde_json::json!(42)));
    /// # scheduler.shutdown().await
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`], [`Error::InvalidState`] before start.
    ///
    /// # Cancel safety
    /// As [`pause_job`](Self::pause_job): dropped before the core took it, nothing runs.
    pub async fn run_job_now(&self, id: &str) -> Result<RunHandle> {
        if self.state() == SchedulerState::Stopped {
            return Err(Error::InvalidState {
                state: SchedulerState::Stopped,
                action: "run a job",
            });
        }
        let (waiter, outcome) = oneshot::channel();
        self.change(id, JobChange::RunNow(Some(waiter))).await?;
        Ok(RunHandle {
            outcome,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Removes a job. Runs under way finish.
    ///
    /// # Errors
    /// [`Error::JobNotFound`], [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: the one wait is for room in the core's channel, before anything changes;
    /// a future dropped there removes nothing.
    pub async fn remove_job(&self, id: &str) -> Result<()> {
        self.ensure_open()?;
        #[cfg(feature = "postgres")]
        if let Some(node) = self.cluster_of(id).await? {
            return match node.remove(&self.shared, id).await? {
                true => Ok(()),
                false => Err(Error::JobNotFound(id.to_string())),
            };
        }
        let permit = self.reserve().await?;
        let answer = {
            let mut index = self.shared.index();
            let key = index
                .key_of(id)
                .ok_or_else(|| Error::JobNotFound(id.to_string()))?;
            if !self.shared.store(key.store()).is_durable() {
                index.remove(id);
                // Sent under the index lock: commands reach the core in the order the index
                // changed.
                permit.send(Command::Remove { key, reply: None });
                return Ok(());
            }
            // A durable job keeps its id until the delete is written: the core releases it.
            let (reply, answer) = oneshot::channel();
            permit.send(Command::Remove {
                key,
                reply: Some(reply),
            });
            answer
        };
        answer.await.map_err(|_| self.gone())?
    }

    /// The most recent runs of a job, newest fire time first, at most `limit`: from its
    /// durable store's history, or for a memory-store job from the runs the scheduler
    /// remembers ([`SchedulerBuilder::memory_history`]). Runs under way are included. A job
    /// removed since still has its durable history.
    ///
    /// # Errors
    /// [`Error::Store`] if the store cannot be read, [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// Cancel safe: it changes nothing.
    pub async fn get_job_runs(&self, id: &str, limit: usize) -> Result<Vec<RunRecord>> {
        self.ensure_open()?;
        let key = self.shared.index().key_of(id);
        let limit_u32 = u32::try_from(limit).unwrap_or(u32::MAX);
        let stores: Vec<&StoreInfo> = match key {
            Some(key) => vec![self.shared.store(key.store())],
            None => self.shared.stores.iter().collect(),
        };
        let mut runs = Vec::new();
        for store in stores {
            match &store.backend {
                Some(backend) => {
                    // Read after the runs already reported are written.
                    if let Some(index) = self.shared.store_named(&store.name) {
                        self.request(|reply| Command::Synced {
                            store: index,
                            reply,
                        })
                        .await?;
                    }
                    runs.extend(
                        backend
                            .runs(id, limit_u32)
                            .await
                            .map_err(|error| store.error("read runs", error))?,
                    );
                }
                None => {
                    let id = JobId::new(id);
                    runs.extend(
                        self.request(|reply| Command::Runs { id, limit, reply })
                            .await?,
                    );
                }
            }
        }
        #[cfg(feature = "postgres")]
        if key.is_none() {
            for node in &self.shared.clusters {
                runs.extend(node.store.runs(id, limit_u32).await.map_err(|error| {
                    Error::Store {
                        store: node.name.to_string(),
                        operation: "read runs",
                        source: Cause::new(error),
                    }
                })?);
            }
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.fire_time));
        runs.truncate(limit);
        Ok(runs)
    }

    /// Removes every job.
    ///
    /// # Errors
    /// [`Error::Shutdown`].
    ///
    /// # Cancel safety
    /// As [`pause_job`](Self::pause_job).
    pub async fn remove_all_jobs(&self) -> Result<()> {
        self.ensure_open()?;
        #[cfg(feature = "postgres")]
        for node in &self.shared.clusters {
            node.remove_all().await?;
        }
        self.request(|reply| Command::RemoveAll { reply }).await?
    }

    /// Writes the jobs of `store` to `writer` as versioned JSON
    /// (`{"format": "apsched-jobs", "version": 1, "jobs": [...]}`, each job as a durable store
    /// keeps it), for [`import_jobs`](Self::import_jobs) into any store of any scheduler
    /// (APScheduler's `export_jobs`). Jobs of closures, which cannot be written, are left out;
    /// returns how many were written.
    ///
    /// # Errors
    /// [`Error::UnknownStore`]; [`Error::Store`] (operation `export`) if `writer` fails.
    ///
    /// # Cancel safety
    /// Cancel safe: it changes no job (what `writer` received is not taken back).
    pub async fn export_jobs(&self, store: &str, writer: impl std::io::Write) -> Result<usize> {
        self.ensure_open()?;
        let jobs = match self.shared.store_named(store) {
            Some(index) => {
                self.request(|reply| Command::Export {
                    store: index,
                    reply,
                })
                .await?
            }
            #[cfg(feature = "postgres")]
            None if self.cluster_named(store).is_some() => match self.cluster_named(store) {
                Some(node) => node.rows().await?,
                None => Vec::new(),
            },
            None => return Err(Error::UnknownStore(store.to_string())),
        };
        let exported = Export {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            jobs,
        };
        serde_json::to_writer_pretty(writer, &exported).map_err(|error| Error::Store {
            store: store.to_string(),
            operation: "export",
            source: Cause::new(error),
        })?;
        Ok(exported.jobs.len())
    }

    /// Adds the jobs of an [`export_jobs`](Self::export_jobs) to `store`, each with the next
    /// run it had (runs it missed since follow the misfire rules), its task rebuilt from the
    /// scheduler's [`tasks`](SchedulerBuilder::tasks). A job whose id is taken is handled as
    /// `on_conflict` says. All the jobs are checked first, and nothing is imported if one is
    /// refused; then they are added as by [`add_jobs`](Self::add_jobs).
    ///
    /// # Errors
    /// [`Error::Store`] (operation `import`) for input that is not an export of this format
    /// or version, or a job that cannot be rebuilt (its task unregistered, its trigger
    /// invalid); [`Error::ConflictingId`] with [`OnConflict::Fail`]; as `add_jobs`.
    ///
    /// # Cancel safety
    /// As [`add_jobs`](Self::add_jobs).
    pub async fn import_jobs(
        &self,
        store: &str,
        reader: impl std::io::Read,
        on_conflict: OnConflict,
    ) -> Result<ImportReport> {
        self.ensure_open()?;
        let failed = |reason: String| Error::Store {
            store: store.to_string(),
            operation: "import",
            source: Cause::new(reason),
        };
        #[cfg(feature = "postgres")]
        let cluster = self.cluster_named(store).cloned();
        #[cfg(not(feature = "postgres"))]
        let cluster: Option<()> = None;
        let index = match (self.shared.store_named(store), &cluster) {
            (Some(index), _) => index,
            (None, Some(_)) => 0,
            (None, None) => return Err(Error::UnknownStore(store.to_string())),
        };
        let export: Export = serde_json::from_reader(reader)
            .map_err(|e| failed(format!("not an apsched export: {e}")))?;
        if export.format != EXPORT_FORMAT || export.version != EXPORT_VERSION {
            return Err(failed(format!(
                "format '{}' version {} is not '{EXPORT_FORMAT}' version {EXPORT_VERSION}",
                export.format, export.version
            )));
        }
        let name = Arc::from(store);
        let mut report = ImportReport::default();
        let mut prepared = Vec::with_capacity(export.jobs.len());
        for row in export.jobs {
            let id = row.id.clone();
            #[allow(unused_mut)]
            let mut taken = self.shared.index().key_of(&id).is_some();
            #[cfg(feature = "postgres")]
            if let (Some(node), OnConflict::Skip, false) = (&cluster, on_conflict, taken) {
                taken = node.get(&self.shared, &id).await?.is_some();
            }
            if on_conflict == OnConflict::Skip && taken {
                report.skipped.push(id);
                continue;
            }
            let entry = crate::core::entry_from_row(&self.shared, row)
                .map_err(|reason| failed(format!("job '{id}': {reason}")))?;
            let job = entry.snapshot(self.shared.timezone, &name);
            prepared.push(PreparedAdd {
                entry,
                job,
                store: index,
                replace_existing: on_conflict == OnConflict::Replace,
                #[cfg(feature = "postgres")]
                cluster: cluster.clone(),
            });
        }
        report.imported = self.add_prepared(prepared).await?.len();
        Ok(report)
    }

    /// Adds several jobs at once: every one is checked first, and nothing is added if one is
    /// refused; each durable store's share is written in one transaction (the way to add
    /// thousands of durable jobs quickly).
    ///
    /// ```
    /// # use apsched::{Scheduler, trigger::Interval};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), apsched::Error> {
    /// let scheduler = Scheduler::new();
    /// let jobs = scheduler
    ///     .add_jobs((0..3).map(|i| {
    ///         scheduler.add_job(|| async {}, Interval::minutes(5)).id(format!("poll-{i}"))
    ///     }))
    ///     .await?;
    /// assert_eq!(jobs.len(), 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first invalid job's error, [`Error::ConflictingId`] (also for an id given twice),
    /// [`Error::Store`], [`Error::Shutdown`]; then no job was added.
    ///
    /// # Cancel safety
    /// Dropped before the core took the jobs, nothing is added; after, they are added all the
    /// same.
    pub async fn add_jobs<'a>(
        &'a self,
        jobs: impl IntoIterator<Item = AddJob<'a>>,
    ) -> Result<Vec<Job>> {
        let prepared = jobs
            .into_iter()
            .map(|add| self.prepare_add(add))
            .collect::<Result<Vec<_>>>()?;
        self.add_prepared(prepared).await
    }

    /// Enters and sends jobs checked already, all or none.
    async fn add_prepared(&self, prepared: Vec<PreparedAdd>) -> Result<Vec<Job>> {
        // Cluster jobs are written one by one, after the others are in.
        #[cfg(feature = "postgres")]
        let (prepared, cluster): (Vec<_>, Vec<_>) =
            prepared.into_iter().partition(|p| p.cluster.is_none());
        #[allow(unused_mut)]
        let mut jobs = self.add_local(prepared).await?;
        #[cfg(feature = "postgres")]
        for mut add in cluster {
            if let Some(node) = add.cluster.take() {
                jobs.push(add.into_cluster_add(node, &self.shared).await?);
            }
        }
        Ok(jobs)
    }

    /// Enters and sends jobs of this node's stores, checked already, all or none.
    async fn add_local(&self, prepared: Vec<PreparedAdd>) -> Result<Vec<Job>> {
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let permit = self.reserve().await?;
        let (reply, answer) = oneshot::channel();
        let snapshots = {
            let mut index = self.shared.index();
            let mut entered: Vec<(Key, JobId, Option<Key>)> = Vec::with_capacity(prepared.len());
            let mut jobs = Vec::with_capacity(prepared.len());
            let mut snapshots = Vec::with_capacity(prepared.len());
            for prepared in prepared {
                let PreparedAdd {
                    entry,
                    job,
                    store,
                    replace_existing,
                    ..
                } = prepared;
                let Some((key, replaces)) = index.enter(job.id.clone(), store, replace_existing)
                else {
                    // Undo what this call entered, and say which id was taken.
                    for (key, id, replaces) in entered.into_iter().rev() {
                        index.release(key, &id);
                        if let Some(old) = replaces {
                            index.restore(id, old);
                        }
                    }
                    return Err(Error::ConflictingId(job.id.to_string()));
                };
                entered.push((key, job.id.clone(), replaces));
                jobs.push((key, entry, replaces));
                snapshots.push(job);
            }
            permit.send(Command::AddMany { jobs, reply });
            snapshots
        };
        answer.await.map_err(|_| self.gone())??;
        Ok(snapshots)
    }

    // ---- the parts the sync facades share ----

    /// Resolves once the core has stopped (after shutdown, when its last run has ended).
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }

    /// Whether the core has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }

    pub(crate) fn ensure_open(&self) -> Result<()> {
        match self.state() {
            SchedulerState::ShutDown => Err(Error::Shutdown),
            SchedulerState::Closed => Err(Error::Closed),
            _ if self.tx.is_closed() => Err(self.gone()),
            _ => Ok(()),
        }
    }

    /// The error for a core that no longer answers: shut down, or gone without a shutdown.
    fn gone(&self) -> Error {
        match self.state() {
            SchedulerState::Closed => Error::Closed,
            _ => Error::Shutdown,
        }
    }

    fn prepare_trigger(&self, mut trigger: Trigger) -> Result<(Trigger, DateTime<Utc>)> {
        let now = self.shared.now();
        trigger.prepare(self.shared.timezone, now)?;
        let first = trigger.first_fire_time(now)?;
        Ok((trigger, first))
    }

    /// Checks an add and builds the job's entry and snapshot; the id is not entered yet.
    fn prepare_add(&self, add: AddJob<'_>) -> Result<PreparedAdd> {
        self.ensure_open()?;
        add.options.validate()?;
        let (trigger, first) = self.prepare_trigger(add.trigger)?;
        let id = match add.id {
            Some(id) if id.is_empty() => {
                return Err(Error::InvalidOption {
                    option: "id",
                    value: "\"\"".into(),
                    reason: "a job id cannot be empty".into(),
                })
            }
            Some(id) => JobId::new(&id),
            None => JobId::random(),
        };
        #[cfg(feature = "postgres")]
        let cluster = match &add.store {
            Some(name) => self.cluster_named(name).cloned(),
            None => self
                .shared
                .clusters
                .iter()
                .find(|node| node.is_default)
                .cloned(),
        };
        #[cfg(feature = "postgres")]
        if let Some(node) = cluster {
            if add.task.registered().is_none() {
                return Err(Error::NotDurable {
                    store: node.name.to_string(),
                });
            }
            // A cluster job's next run is its trigger's: jitter is drawn when it is due.
            let next = (!add.paused).then(|| NextRun::new(first, first));
            let entry = Entry::new(
                id,
                add.name.map(Arc::from),
                add.task,
                trigger,
                add.options,
                next,
            );
            let job = entry.snapshot(self.shared.timezone, &node.name);
            return Ok(PreparedAdd {
                entry,
                job,
                store: 0,
                replace_existing: add.replace_existing,
                cluster: Some(node),
            });
        }
        let store = match &add.store {
            Some(name) => self
                .shared
                .store_named(name)
                .ok_or_else(|| Error::UnknownStore(name.clone()))?,
            None => self
                .shared
                .default_store
                .ok_or_else(|| Error::UnknownStore("default".into()))?,
        };
        let info = self.shared.store(store);
        if info.is_durable() && add.task.registered().is_none() {
            return Err(Error::NotDurable {
                store: info.name.to_string(),
            });
        }
        let name: Option<Arc<str>> = add.name.map(Arc::from);
        let next = (!add.paused).then(|| NextRun::jittered(&trigger, first));
        let entry = Entry::new(id, name, add.task, trigger, add.options, next);
        let job = entry.snapshot(self.shared.timezone, &info.name);
        Ok(PreparedAdd {
            entry,
            job,
            store,
            replace_existing: add.replace_existing,
            #[cfg(feature = "postgres")]
            cluster: None,
        })
    }

    /// Enters a prepared job's id and sends the job, under the index lock, so commands reach
    /// the core in the order the index changed.
    ///
    /// A memory job is added once sent; a durable one once its store has written it, so then
    /// the caller waits for the returned answer.
    fn send_add(
        &self,
        permit: mpsc::Permit<'_, Command>,
        prepared: PreparedAdd,
    ) -> Result<(Job, Option<oneshot::Receiver<Result<()>>>)> {
        let PreparedAdd {
            entry,
            job,
            store,
            replace_existing,
            ..
        } = prepared;
        let mut index = self.shared.index();
        let Some((key, replaces)) = index.enter(job.id.clone(), store, replace_existing) else {
            return Err(Error::ConflictingId(job.id.to_string()));
        };
        let (reply, answer) = if self.shared.store(store).is_durable() {
            let (reply, answer) = oneshot::channel();
            (Some(reply), Some(answer))
        } else {
            (None, None)
        };
        permit.send(Command::Add {
            key,
            entry,
            replaces,
            reply,
        });
        Ok((job, answer))
    }

    async fn change(&self, id: &str, change: JobChange) -> Result<Option<Job>> {
        #[cfg(feature = "postgres")]
        if let Some(node) = self.cluster_of(id).await? {
            self.ensure_open()?;
            return node
                .change(&self.shared, id, change)
                .await?
                .ok_or_else(|| Error::JobNotFound(id.to_string()));
        }
        self.request_job(id, |key, reply| Command::Change { key, change, reply })
            .await?
    }

    /// Room for one command in the core's channel. Waiting for it is a call's only wait before
    /// its command is sent, so a call dropped here has changed nothing.
    async fn reserve(&self) -> Result<mpsc::Permit<'_, Command>> {
        // `try_reserve` first: most calls find room, and it skips the future's bookkeeping.
        match self.tx.try_reserve() {
            Ok(permit) => Ok(permit),
            Err(mpsc::error::TrySendError::Full(())) => {
                self.tx.reserve().await.map_err(|_| self.gone())
            }
            Err(mpsc::error::TrySendError::Closed(())) => Err(self.gone()),
        }
    }

    async fn request<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let permit = self.reserve().await?;
        let (reply, answer) = oneshot::channel();
        permit.send(command(reply));
        answer.await.map_err(|_| self.gone())
    }

    /// As `request`, for a command about the job `id`: the id is looked up and the command sent
    /// under the index lock, so it reaches the core in order with the index's changes.
    async fn request_job<T>(
        &self,
        id: &str,
        command: impl FnOnce(Key, oneshot::Sender<T>) -> Command,
    ) -> Result<T> {
        self.ensure_open()?;
        let permit = self.reserve().await?;
        let (reply, answer) = oneshot::channel();
        {
            let index = self.shared.index();
            let key = index
                .key_of(id)
                .ok_or_else(|| Error::JobNotFound(id.to_string()))?;
            permit.send(command(key, reply));
        }
        answer.await.map_err(|_| self.gone())
    }
}

/// Adds a job when awaited; returned by [`Scheduler::add_job`]. Options not set take the
/// scheduler's job defaults.
#[must_use = "the job is added only when this is awaited"]
pub struct AddJob<'a> {
    scheduler: &'a Scheduler,
    task: Task,
    trigger: Trigger,
    id: Option<String>,
    name: Option<String>,
    options: JobOptions,
    replace_existing: bool,
    paused: bool,
    store: Option<String>,
}

impl AddJob<'_> {
    /// The store the job lives in, by the name given to [`SchedulerBuilder::store`]. Default:
    /// the default store (the memory store unless the builder says else). A job for a
    /// durable store must be a task from a [`TaskRegistry`] ([`Error::NotDurable`]
    /// otherwise), and its add returns once the store has written it.
    pub fn store(mut self, name: impl Into<String>) -> Self {
        self.store = Some(name.into());
        self
    }

    /// The job's id. Default: a random UUID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The job's name. Default: the task's function name, or for a closure the job's id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How late a run may start and still run: a `Duration`, or [`MisfireGrace::Unlimited`].
    /// Default: the scheduler's job defaults (1 s).
    pub fn misfire_grace_time(mut self, grace: impl Into<MisfireGrace>) -> Self {
        self.options.misfire_grace_time = grace.into();
        self
    }

    /// Whether missed runs collapse into one. Default `true`.
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.options.coalesce = coalesce;
        self
    }

    /// How many runs may go at once. Default 1.
    pub fn max_instances(mut self, max: u32) -> Self {
        self.options.max_instances = max;
        self
    }

    /// In a [cluster](crate::cluster), run a run again on another node when its node dies
    /// during it (at least once), instead of reporting it abandoned (at most once, the
    /// default).
    pub fn retry_abandoned(mut self, retry: bool) -> Self {
        self.options.retry_abandoned = retry;
        self
    }

    /// How long a run may take before it is cancelled, then stopped (see
    /// [`JobOptions::timeout`]). Default: the scheduler's job defaults (none).
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.options.timeout = timeout.into();
        self
    }

    /// How a failed run is tried again (see [`RetryPolicy`](crate::RetryPolicy)). Default:
    /// the scheduler's job defaults (not at all).
    pub fn retry(mut self, policy: impl Into<Option<crate::RetryPolicy>>) -> Self {
        self.options.retry = policy.into();
        self
    }

    /// Replace a job with the same id instead of failing with [`Error::ConflictingId`].
    pub fn replace_existing(mut self, replace: bool) -> Self {
        self.replace_existing = replace;
        self
    }

    /// Add the job paused: it runs only once resumed.
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }
}

impl<'a> IntoFuture for AddJob<'a> {
    type Output = Result<Job>;
    type IntoFuture = AddJobFuture<'a>;

    fn into_future(self) -> AddJobFuture<'a> {
        AddJobFuture {
            scheduler: self.scheduler,
            state: Adding::Start(self),
        }
    }
}

/// What [`Scheduler::import_jobs`] does with a job whose id is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnConflict {
    /// Refuse the import ([`Error::ConflictingId`]); nothing is imported.
    Fail,
    /// Keep the job there, leave the imported one out (reported in [`ImportReport::skipped`]).
    Skip,
    /// Replace the job there with the imported one.
    Replace,
}

/// What [`Scheduler::import_jobs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// How many jobs were added (or replaced ones).
    pub imported: usize,
    /// The ids left out because a job had them ([`OnConflict::Skip`]).
    pub skipped: Vec<String>,
}

const EXPORT_FORMAT: &str = "apsched-jobs";
const EXPORT_VERSION: u32 = 1;

/// An export's JSON.
#[derive(Serialize, Deserialize)]
struct Export {
    format: String,
    version: u32,
    jobs: Vec<crate::store::StoredJob>,
}

/// A job checked and built, its id not yet entered.
struct PreparedAdd {
    entry: Entry,
    job: Job,
    store: StoreIndex,
    replace_existing: bool,
    /// Set for a cluster job: it is written to the cluster's database, not sent to the core.
    #[cfg(feature = "postgres")]
    cluster: Option<Arc<crate::cluster::Node>>,
}

impl PreparedAdd {
    /// The future that writes a cluster job to `node`'s database.
    #[cfg(feature = "postgres")]
    fn into_cluster_add(self, node: Arc<crate::cluster::Node>, shared: &Arc<Shared>) -> ClusterAdd {
        let shared = Arc::clone(shared);
        Box::pin(async move {
            if shared.index().key_of(self.job.id.as_str()).is_some() {
                return Err(Error::ConflictingId(self.job.id.to_string()));
            }
            node.add(&shared, self.entry, self.replace_existing).await
        })
    }
}

#[cfg(feature = "postgres")]
type ClusterAdd = Pin<Box<dyn Future<Output = Result<Job>> + Send>>;

/// The future of an [`AddJob`]: resolves to the added [`Job`].
///
/// Most adds finish in their first poll, without allocating; only when the core's channel is
/// full does the add wait (for room, before anything changes: see
/// [`Scheduler::add_job`]'s cancel safety).
///
/// # Panics
/// If polled again after it completed, as any future may.
#[must_use = "futures do nothing unless polled"]
pub struct AddJobFuture<'a> {
    scheduler: &'a Scheduler,
    state: Adding<'a>,
}

enum Adding<'a> {
    Start(AddJob<'a>),
    WaitingForRoom(PreparedAdd, Pin<Box<Reserve<'a>>>),
    /// A durable job, sent: waiting for its store to write it.
    WaitingForWrite(Job, oneshot::Receiver<Result<()>>),
    /// A cluster job, being written to the cluster's database.
    #[cfg(feature = "postgres")]
    Cluster(ClusterAdd),
    Done,
}

type Reserve<'a> = dyn Future<Output = std::result::Result<mpsc::Permit<'a, Command>, mpsc::error::SendError<()>>>
    + Send
    + 'a;

impl Future for AddJobFuture<'_> {
    type Output = Result<Job>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Job>> {
        use std::task::Poll;
        let this = self.get_mut();
        let scheduler = this.scheduler;
        loop {
            let permit = match std::mem::replace(&mut this.state, Adding::Done) {
                Adding::Start(add) => {
                    #[allow(unused_mut)]
                    let mut prepared = match scheduler.prepare_add(add) {
                        Ok(prepared) => prepared,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    #[cfg(feature = "postgres")]
                    if let Some(node) = prepared.cluster.take() {
                        this.state =
                            Adding::Cluster(prepared.into_cluster_add(node, &scheduler.shared));
                        continue;
                    }
                    match scheduler.tx.try_reserve() {
                        Ok(permit) => (permit, prepared),
                        Err(mpsc::error::TrySendError::Full(())) => {
                            let reserve = Box::pin(scheduler.tx.reserve());
                            this.state = Adding::WaitingForRoom(prepared, reserve);
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(())) => {
                            return Poll::Ready(Err(scheduler.gone()))
                        }
                    }
                }
                Adding::WaitingForRoom(prepared, mut reserve) => match reserve.as_mut().poll(cx) {
                    Poll::Ready(Ok(permit)) => (permit, prepared),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(scheduler.gone())),
                    Poll::Pending => {
                        this.state = Adding::WaitingForRoom(prepared, reserve);
                        return Poll::Pending;
                    }
                },
                Adding::WaitingForWrite(job, mut answer) => {
                    return match Pin::new(&mut answer).poll(cx) {
                        Poll::Ready(Ok(Ok(()))) => Poll::Ready(Ok(job)),
                        Poll::Ready(Ok(Err(error))) => Poll::Ready(Err(error)),
                        Poll::Ready(Err(_)) => Poll::Ready(Err(scheduler.gone())),
                        Poll::Pending => {
                            this.state = Adding::WaitingForWrite(job, answer);
                            Poll::Pending
                        }
                    };
                }
                #[cfg(feature = "postgres")]
                Adding::Cluster(mut add) => {
                    return match add.as_mut().poll(cx) {
                        Poll::Ready(result) => Poll::Ready(result),
                        Poll::Pending => {
                            this.state = Adding::Cluster(add);
                            Poll::Pending
                        }
                    };
                }
                Adding::Done => panic!("`AddJobFuture` polled after it completed"),
            };
            let (permit, prepared) = permit;
            match scheduler.send_add(permit, prepared) {
                Ok((job, None)) => return Poll::Ready(Ok(job)),
                Ok((job, Some(answer))) => this.state = Adding::WaitingForWrite(job, answer),
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl std::fmt::Debug for AddJobFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            Adding::Start(_) => "not started",
            Adding::WaitingForRoom(..) => "waiting for room in the core's channel",
            Adding::WaitingForWrite(..) => "waiting for its store to write it",
            #[cfg(feature = "postgres")]
            Adding::Cluster(..) => "being written to its cluster",
            Adding::Done => "done",
        };
        f.debug_struct("AddJobFuture")
            .field("state", &state)
            .finish()
    }
}

/// Changes a job's name and options when awaited; returned by [`Scheduler::modify_job`].
/// Only what is set changes.
#[must_use = "the job changes only when this is awaited"]
pub struct ModifyJob<'a> {
    scheduler: &'a Scheduler,
    id: &'a str,
    changes: Modification,
}

impl ModifyJob<'_> {
    /// A new name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.changes.name = Some(Arc::from(name.into()));
        self
    }

    /// A new misfire grace time: a `Duration`, or [`MisfireGrace::Unlimited`].
    pub fn misfire_grace_time(mut self, grace: impl Into<MisfireGrace>) -> Self {
        self.changes.misfire_grace_time = Some(grace.into());
        self
    }

    /// Whether missed runs collapse into one.
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.changes.coalesce = Some(coalesce);
        self
    }

    /// How many runs may go at once.
    pub fn max_instances(mut self, max: u32) -> Self {
        self.changes.max_instances = Some(max);
        self
    }

    /// A new timeout (`None`: none). Runs under way keep the one they started with.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.changes.timeout = Some(timeout.into());
        self
    }

    /// A new retry policy (`None`: failed runs are not tried again).
    pub fn retry(mut self, policy: impl Into<Option<crate::RetryPolicy>>) -> Self {
        self.changes.retry = Some(policy.into());
        self
    }
}

impl<'a> IntoFuture for ModifyJob<'a> {
    type Output = Result<Job>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Job>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // The defaults are valid: this checks the values changed.
            self.changes.applied_to(JobOptions::default()).validate()?;
            self.scheduler
                .change(self.id, JobChange::Modify(self.changes))
                .await?
                .ok_or_else(|| Error::JobNotFound(self.id.to_string()))
        })
    }
}
