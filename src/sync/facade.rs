//! [`SyncScheduler`], the one type behind both sync schedulers, and its builder.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;

use super::host::{Config, Host};
use super::{AddJob, Events, Mode, ModifyJob};
use crate::trigger::Trigger;
use crate::{
    AbandonedRun, Clock, Event, EventMask, IntoTask, Job, JobOptions, Result, Scheduler,
    SchedulerBuilder, SchedulerState, Zone,
};

/// A run submitted by [`SyncScheduler::run_job_now`]: [`outcome`](Self::outcome) blocks until
/// it has one. Dropping the handle changes nothing; the run goes on.
pub struct RunHandle {
    run: crate::RunHandle,
    host: Arc<Host>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle").finish_non_exhaustive()
    }
}

impl RunHandle {
    /// Blocks until the run has its outcome (see
    /// [`crate::RunHandle::outcome`]).
    ///
    /// # Errors
    /// As [`crate::RunHandle::outcome`].
    pub fn outcome(self) -> Result<crate::store::RunRecord> {
        self.host.wait(self.run.outcome())
    }
}

/// A scheduler for code without a Tokio runtime: a cheap `Clone` handle (`Send + Sync`) over
/// an async [`Scheduler`] that runs on a thread and runtime of its own.
///
/// Use it as [`BlockingScheduler`](crate::BlockingScheduler) (`start` blocks until shutdown)
/// or [`BackgroundScheduler`](crate::BackgroundScheduler) (`start` returns at once); the
/// [module docs](crate::sync) say why both are one type. Every method but `start` and
/// `start_paused` is the same for both, and can be called from any thread, with or without a
/// Tokio runtime. Dropping the last handle shuts the scheduler down as
/// [`shutdown`](Self::shutdown) does.
pub struct SyncScheduler<M: Mode> {
    pub(super) host: Arc<Host>,
    mode: PhantomData<fn() -> M>,
}

impl<M: Mode> Clone for SyncScheduler<M> {
    fn clone(&self) -> Self {
        SyncScheduler {
            host: Arc::clone(&self.host),
            mode: PhantomData,
        }
    }
}

impl<M: Mode> std::fmt::Debug for SyncScheduler<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(M::TYPE_NAME)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Names a listener added with [`SyncScheduler::add_listener`], to remove it with
/// [`SyncScheduler::remove_listener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(super) u64);

impl<M: Mode> SyncScheduler<M> {
    /// A scheduler with default settings (see [`SyncSchedulerBuilder`]), stopped: its thread
    /// and runtime are up, and jobs can be added before `start`.
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn new() -> Result<SyncScheduler<M>> {
        SyncScheduler::builder().build()
    }

    /// Settings for a new scheduler.
    pub fn builder() -> SyncSchedulerBuilder<M> {
        SyncSchedulerBuilder {
            config: Config {
                scheduler: SchedulerBuilder::default(),
                runtime: None,
                handle_signals: M::HANDLE_SIGNALS,
                thread_name: M::THREAD_NAME,
            },
            mode: PhantomData,
        }
    }

    /// The async handle of the same scheduler, for async code (and async jobs) that want to
    /// `.await` instead of block.
    pub fn scheduler(&self) -> &Scheduler {
        &self.host.scheduler
    }

    /// A handle to the scheduler's own Tokio runtime, e.g. to spawn async work beside it.
    pub fn runtime_handle(&self) -> &Handle {
        &self.host.handle
    }

    /// The scheduler's state.
    pub fn state(&self) -> SchedulerState {
        self.host.scheduler.state()
    }

    /// How many jobs the scheduler holds, paused ones included; read without waiting for the
    /// core, as [`Scheduler::job_count`].
    pub fn job_count(&self) -> usize {
        self.host.scheduler.job_count()
    }

    /// How many job runs are under way now, across all jobs; read without waiting for the
    /// core, as [`Scheduler::running_jobs`].
    pub fn running_jobs(&self) -> usize {
        self.host.scheduler.running_jobs()
    }

    /// The zone used for triggers that name none.
    pub fn timezone(&self) -> Zone {
        self.host.scheduler.timezone()
    }

    /// The current time by the scheduler's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.host.enter(Scheduler::now)
    }

    /// Stops running jobs until [`resume`](Self::resume); runs under way go on.
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) if not started,
    /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
    pub fn pause(&self) -> Result<()> {
        self.host.wait(self.host.scheduler.pause())
    }

    /// Runs jobs again after [`pause`](Self::pause); runs missed meanwhile follow the misfire
    /// rules.
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    pub fn resume(&self) -> Result<()> {
        self.host.wait(self.host.scheduler.resume())
    }

    /// Shuts down: no new run starts, running jobs and listeners are waited for (however
    /// long), and the scheduler's thread is joined. Called from one of the scheduler's own
    /// jobs or listeners, it only asks for the shutdown and returns at once (waiting would wait
    /// for itself).
    ///
    /// # Errors
    /// [`Error::Shutdown`](crate::Error::Shutdown) if already shut down.
    pub fn shutdown(&self) -> Result<()> {
        self.host.shutdown(None).map(drop)
    }

    /// As [`shutdown`](Self::shutdown), but waits at most `timeout` (by the scheduler's clock)
    /// and returns the runs still going then: async ones are cancelled at their next `.await`,
    /// blocking ones (which cannot be stopped) are abandoned to finish on their own, and the
    /// scheduler's thread ends without waiting for them. Listeners still busy at the deadline
    /// are detached: each ends after its current call. `Duration::ZERO` is APScheduler's
    /// `shutdown(wait=False)`.
    ///
    /// Called from one of the scheduler's own jobs or listeners, it only asks for the shutdown
    /// and returns an empty list at once.
    ///
    /// ```
    /// use apsched::{trigger::Interval, BackgroundScheduler};
    /// use std::sync::{mpsc, Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), apsched::Error> {
    /// let scheduler = BackgroundScheduler::new()?;
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = Arc::clone(&lock);
    /// let guard = lock.lock().unwrap(); // the job waits for it
    /// let (started, running) = mpsc::channel();
    /// scheduler
    ///     .add_job(move || { started.send(()).unwrap(); drop(held.lock()); }, Interval::hours(1))
    ///     .id("slow")
    ///     .add()?;
    /// scheduler.start()?;
    /// scheduler.run_job_now("slow")?;
    /// running.recv().unwrap();
    /// // Returns at once, although the job still runs.
    /// let abandoned = scheduler.shutdown_timeout(Duration::ZERO)?;
    /// # let _ = abandoned;
    /// drop(guard); // the job goes on and ends on its own
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Shutdown`](crate::Error::Shutdown) if already shut down.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<Vec<AbandonedRun>> {
        self.host.shutdown(Some(timeout))
    }

    /// Adds a job: `task` (a plain `fn`/closure, run on the thread pool, or an async one,
    /// run on the scheduler's runtime; see [`IntoTask`]) run at the times `trigger` gives. Set
    /// options on the returned builder, then call [`.add()`](AddJob::add) for the [`Job`].
    pub fn add_job<T>(&self, task: impl IntoTask<T>, trigger: impl Into<Trigger>) -> AddJob<'_> {
        AddJob {
            host: &self.host,
            inner: self.host.scheduler.add_job(task, trigger),
        }
    }

    /// A snapshot of one job.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn get_job(&self, id: &str) -> Result<Job> {
        self.host.wait(self.host.scheduler.get_job(id))
    }

    /// The next `n` fire times of a job from now, as
    /// [`Scheduler::preview_job`](crate::Scheduler::preview_job).
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound), [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn preview_job(&self, id: &str, n: usize) -> Result<Vec<chrono::DateTime<crate::Zone>>> {
        self.host.wait(self.host.scheduler.preview_job(id, n))
    }

    /// Snapshots of all jobs, soonest next run first (paused jobs last).
    ///
    /// # Errors
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn get_jobs(&self) -> Result<Vec<Job>> {
        self.host.wait(self.host.scheduler.get_jobs())
    }

    /// Changes a job's name or options: set them on the returned builder, then call
    /// [`.apply()`](ModifyJob::apply).
    pub fn modify_job<'a>(&'a self, id: &'a str) -> ModifyJob<'a> {
        ModifyJob {
            host: &self.host,
            inner: self.host.scheduler.modify_job(id),
        }
    }

    /// Gives a job a new trigger; its next run is computed from now.
    ///
    /// # Errors
    /// An invalid trigger (the job is unchanged),
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn reschedule_job(&self, id: &str, trigger: impl Into<Trigger>) -> Result<Job> {
        self.host
            .wait(self.host.scheduler.reschedule_job(id, trigger))
    }

    /// Pauses a job: it does not run until resumed.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn pause_job(&self, id: &str) -> Result<Job> {
        self.host.wait(self.host.scheduler.pause_job(id))
    }

    /// Resumes a paused job, its next run computed from now. A job whose trigger has no
    /// fire time left is removed instead, and `Ok(None)` returned.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn resume_job(&self, id: &str) -> Result<Option<Job>> {
        self.host.wait(self.host.scheduler.resume_job(id))
    }

    /// Runs a job once now, outside its schedule (which does not change). The run counts
    /// against `max_instances`. The [`RunHandle`] it returns gives the run's outcome;
    /// dropping it changes nothing.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown),
    /// [`Error::InvalidState`](crate::Error::InvalidState) before start.
    pub fn run_job_now(&self, id: &str) -> Result<RunHandle> {
        let run = self.host.wait(self.host.scheduler.run_job_now(id))?;
        Ok(RunHandle {
            run,
            host: Arc::clone(&self.host),
        })
    }

    /// Removes a job. Runs under way finish.
    ///
    /// # Errors
    /// [`Error::JobNotFound`](crate::Error::JobNotFound),
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn remove_job(&self, id: &str) -> Result<()> {
        self.host.wait(self.host.scheduler.remove_job(id))
    }

    /// Removes every job.
    ///
    /// # Errors
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn remove_all_jobs(&self) -> Result<()> {
        self.host.wait(self.host.scheduler.remove_all_jobs())
    }

    /// The most recent runs of a job, newest first (see
    /// [`Scheduler::get_job_runs`](crate::Scheduler::get_job_runs)).
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store), [`Error::Shutdown`](crate::Error::Shutdown).
    pub fn get_job_runs(&self, id: &str, limit: usize) -> Result<Vec<crate::store::RunRecord>> {
        self.host.wait(self.host.scheduler.get_job_runs(id, limit))
    }

    /// A blocking iterator over everything that happens from now on; it ends after
    /// [`Event::SchedulerShutdown`].
    pub fn events(&self) -> Events {
        self.host.events()
    }

    /// Calls `listener` with every event whose kind is in `mask` (APScheduler's
    /// `add_listener(callback, mask)`), on a thread of its own: a slow listener never delays
    /// the scheduler, only its own later events. The thread ends after
    /// [`Event::SchedulerShutdown`], or at its next event once removed with
    /// [`remove_listener`](Self::remove_listener). [`shutdown`](Self::shutdown) waits for it;
    /// [`shutdown_timeout`](Self::shutdown_timeout) only until its deadline. A panic in the
    /// listener is logged and the listener goes on.
    ///
    /// ```
    /// use apsched::{trigger::Interval, BackgroundScheduler, Event, EventMask};
    ///
    /// # fn main() -> Result<(), apsched::Error> {
    /// let scheduler = BackgroundScheduler::new()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let listener = scheduler.add_listener(EventMask::JOB_EXECUTED, move |event| {
    ///     let _ = tx.send(event.clone());
    /// })?;
    /// scheduler.add_job(|| (), Interval::hours(1)).id("job").add()?;
    /// scheduler.start()?;
    /// scheduler.run_job_now("job")?;
    /// assert!(matches!(rx.recv().unwrap(), Event::JobExecuted { .. }));
    /// assert!(scheduler.remove_listener(listener));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Shutdown`](crate::Error::Shutdown), [`Error::Runtime`](crate::Error::Runtime)
    /// if the thread cannot be started.
    pub fn add_listener<F>(&self, mask: EventMask, listener: F) -> Result<ListenerId>
    where
        F: FnMut(&Event) + Send + 'static,
    {
        self.host.add_listener(mask, listener)
    }

    /// Removes a listener added with [`add_listener`](Self::add_listener): it is not called
    /// again, and its closure is dropped. Returns whether it was still there (`false` for a
    /// listener removed before, one of another scheduler, or any after shutdown).
    ///
    /// This waits for a call of the listener under way to return, so that none runs after it;
    /// called from one of the scheduler's own jobs or listeners (the one removed, say), it
    /// does not wait, and the listener ends after its current call.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.host.remove_listener(id)
    }
}

/// Settings for a [`SyncScheduler`]: a [`BlockingSchedulerBuilder`](crate::sync::BlockingSchedulerBuilder)
/// or a [`BackgroundSchedulerBuilder`](crate::sync::BackgroundSchedulerBuilder), from
/// `BlockingScheduler::builder()` or `BackgroundScheduler::builder()`.
///
/// ```
/// use apsched::{BlockingScheduler, Zone};
///
/// # fn main() -> Result<(), apsched::Error> {
/// let sched = BlockingScheduler::builder()
///     .timezone(Zone::UTC)
///     .max_blocking_jobs(4)
///     .handle_signals(false)
///     .build()?;
/// assert_eq!(sched.timezone(), Zone::UTC);
/// # Ok(()) }
/// ```
#[must_use]
pub struct SyncSchedulerBuilder<M: Mode> {
    config: Config,
    mode: PhantomData<fn() -> M>,
}

impl<M: Mode> std::fmt::Debug for SyncSchedulerBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(M::BUILDER_NAME)
            .field("config", &self.config)
            .finish()
    }
}

impl<M: Mode> SyncSchedulerBuilder<M> {
    /// The zone for triggers that name none. Default: the machine's local zone.
    pub fn timezone(mut self, zone: impl crate::IntoZone) -> Self {
        self.config.scheduler = self.config.scheduler.timezone(zone);
        self
    }

    /// Options for jobs that do not set their own. Default: [`JobOptions::default`].
    pub fn job_defaults(mut self, options: JobOptions) -> Self {
        self.config.scheduler = self.config.scheduler.job_defaults(options);
        self
    }

    /// The size of the thread pool for plain `fn`/closure jobs: how many may run at once;
    /// more wait for a free thread (without delaying the schedule or async jobs).
    /// Default 10, as APScheduler's thread pool.
    pub fn max_blocking_jobs(mut self, workers: usize) -> Self {
        self.config.scheduler = self.config.scheduler.max_blocking_jobs(workers);
        self
    }

    /// How long a run past its [`timeout`](JobOptions::timeout) has to end once cancelled,
    /// before an async run is dropped. Default 5 s.
    pub fn timeout_grace(mut self, grace: Duration) -> Self {
        self.config.scheduler = self.config.scheduler.timeout_grace(grace);
        self
    }

    /// How many events a listener or [`events()`](Events) reader may fall behind before it
    /// skips the oldest. Default 1,024.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.scheduler = self.config.scheduler.event_capacity(capacity);
        self
    }

    /// Where wall-clock time comes from. Default [`SystemClock`](crate::SystemClock). A
    /// [`TestClock`](crate::TestClock) follows the scheduler's runtime's clock, so pair it
    /// with a paused runtime from [`runtime`](Self::runtime).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.scheduler = self.config.scheduler.clock(clock);
        self
    }

    /// Every setting of the async scheduler at once (`max_sleep`, `channel_capacity`, ...),
    /// replacing those set before.
    pub fn scheduler(mut self, builder: SchedulerBuilder) -> Self {
        self.config.scheduler = builder;
        self
    }

    /// The Tokio runtime the scheduler runs on, built on the scheduler's thread. Default: a
    /// multi-thread runtime with two workers (blocking jobs have their own pool).
    ///
    /// The scheduler enables its drivers (`enable_all`) and **replaces its `on_thread_start`
    /// hook**: a hook set on `builder` never runs. The scheduler marks its runtime's threads
    /// with it, so that a call from one of its jobs never waits for itself; Tokio keeps one
    /// hook and offers no way to chain it. Everything else set on `builder` is kept (worker
    /// count, thread names and stack size, `on_thread_stop`, ...).
    ///
    /// A current-thread runtime runs async jobs on the scheduler's thread; a runtime started
    /// paused (Tokio's `test-util` feature) with a [`TestClock`](crate::TestClock) runs days
    /// of schedule in milliseconds.
    pub fn runtime(mut self, builder: tokio::runtime::Builder) -> Self {
        self.config.runtime = Some(builder);
        self
    }

    /// Whether Ctrl-C (SIGINT) and SIGTERM shut the scheduler down gracefully (waiting for
    /// running jobs). Default: `true` for a [`BlockingScheduler`](crate::BlockingScheduler),
    /// whose `start` then returns; `false` for a
    /// [`BackgroundScheduler`](crate::BackgroundScheduler), which leaves signals to its
    /// program.
    ///
    /// The handler is installed by `start`, before the first job can run. Once Tokio listens
    /// for a signal, the process keeps listening for it: after the scheduler stops, Ctrl-C no
    /// longer ends the program by itself.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.config.handle_signals = handle;
        self
    }

    /// Starts the scheduler's thread and runtime, and builds the scheduler (stopped).
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn build(self) -> Result<SyncScheduler<M>> {
        Ok(SyncScheduler {
            host: Host::spawn(self.config)?,
            mode: PhantomData,
        })
    }
}
