//! Sync front ends for code without a Tokio runtime: [`BlockingScheduler`] and
//! [`BackgroundScheduler`], APScheduler's two thread-based schedulers.
//!
//! Both have the async [`Scheduler`]'s method names, without `async`. Neither schedules
//! anything itself: each owns a thread that runs a Tokio runtime of its own, builds an ordinary
//! [`Scheduler`] inside it, and forwards every call to that scheduler's core over its channel.
//! So there is one implementation of scheduling, and the facades only add threads, blocking
//! waits and listeners.
//!
//! # How a call waits
//!
//! A call never runs `Runtime::block_on` on the caller's runtime (which panics inside one). It
//! waits for the core's reply with `futures::executor::block_on` on the reply channel, which
//! works on any thread: a plain `main`, a job of this scheduler, or a task of another Tokio
//! runtime. Inside async code such a call briefly blocks its worker thread (a round trip to the
//! core takes microseconds; [`shutdown`](BackgroundScheduler::shutdown) waits for running
//! jobs); async code that wants to await instead uses the async handle from
//! [`scheduler()`](BackgroundScheduler::scheduler).
//!
//! # Calls from the scheduler's own jobs
//!
//! Jobs may call the facade (through a clone they captured): blocking jobs run on the runtime's
//! blocking pool, async ones on its workers (a call from an async job moves the worker's other
//! tasks away first, with `block_in_place`). `shutdown()` from a job or a listener asks the core
//! to stop and returns at once, since waiting for running jobs would wait for itself.
//!
//! A job that holds a facade handle keeps the scheduler alive until `shutdown()` (the scheduler
//! holds the job); such jobs can use [`JobContext::scheduler`](crate::JobContext::scheduler)
//! instead, which does not.

mod background;
mod blocking;

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::trigger::Trigger;
use crate::{
    Error, Event, EventMask, EventStream, IntoTask, Job, Result, Scheduler, SchedulerBuilder,
};

pub use background::{BackgroundScheduler, BackgroundSchedulerBuilder};
pub use blocking::{BlockingScheduler, BlockingSchedulerBuilder};

thread_local! {
    /// The facade whose runtime, host or listener thread this is (0: none), so a call from a
    /// job never waits for itself.
    static OWNER: Cell<u64> = const { Cell::new(0) };
    /// Set on a host thread that also drives a current-thread runtime's tasks: a blocking wait
    /// there would stop the core it waits for.
    static DRIVER: Cell<u64> = const { Cell::new(0) };
}

static NEXT_HOST_ID: AtomicU64 = AtomicU64::new(1);

/// What both facade builders collect.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) scheduler: SchedulerBuilder,
    pub(crate) runtime: Option<tokio::runtime::Builder>,
    pub(crate) handle_signals: bool,
    pub(crate) thread_name: &'static str,
}

/// The thread, runtime and async scheduler behind a facade. Facades are `Arc<Host>` handles;
/// dropping the last one shuts the scheduler down and joins the thread.
pub(crate) struct Host {
    id: u64,
    scheduler: Scheduler,
    handle: Handle,
    thread: Mutex<Option<JoinHandle<()>>>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    /// Set by `shutdown_timeout`: runs still going may be abandoned, so the runtime is dropped
    /// without waiting for its blocking threads.
    abandon: Arc<AtomicBool>,
    /// Whether `start` installs the Ctrl-C / SIGTERM handler (only then, so a scheduler that
    /// is built but never started leaves the program's signals alone).
    handle_signals: bool,
    signals_watched: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only join handles live behind these locks; a panic cannot leave them half-changed.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    /// Starts the thread and its runtime, and builds the scheduler inside it (stopped).
    pub(crate) fn spawn(config: Config) -> Result<Arc<Host>> {
        let id = NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed);
        let mut runtime = config.runtime.unwrap_or_else(|| {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // Workers only poll the core and async jobs; blocking jobs have their own pool.
            builder.worker_threads(2).thread_name("apsched");
            builder
        });
        runtime
            .enable_all()
            .on_thread_start(move || OWNER.with(|o| o.set(id)));
        let abandon = Arc::new(AtomicBool::new(false));
        let abandon_in_thread = Arc::clone(&abandon);
        let scheduler_builder = config.scheduler;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(config.thread_name.into())
            .spawn(move || {
                OWNER.with(|o| o.set(id));
                let runtime = match runtime.build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(Error::Runtime(error.to_string())));
                        return;
                    }
                };
                if runtime.handle().runtime_flavor() == RuntimeFlavor::CurrentThread {
                    DRIVER.with(|d| d.set(id));
                }
                runtime.block_on(async move {
                    let scheduler = scheduler_builder.build();
                    let stopped = scheduler.stopped();
                    let _ = ready_tx.send(Ok((scheduler, Handle::current())));
                    // The core closes its channel when it has stopped, after its last run.
                    stopped.await;
                });
                // Dropped here, on its own thread, never inside a caller's async context.
                // Dropping waits for the blocking pool's threads, unless runs were abandoned.
                if abandon_in_thread.load(Ordering::Acquire) {
                    runtime.shutdown_background();
                } else {
                    drop(runtime);
                }
            })
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let ready = ready_rx.recv();
        let (scheduler, handle) = match ready {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(error);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Runtime("the scheduler thread stopped early".into()));
            }
        };
        let host = Arc::new(Host {
            id,
            scheduler,
            handle,
            thread: Mutex::new(Some(thread)),
            listeners: Mutex::new(Vec::new()),
            abandon,
            handle_signals: config.handle_signals,
            signals_watched: AtomicBool::new(false),
        });
        Ok(host)
    }

    fn on_own_thread(&self) -> bool {
        OWNER.with(Cell::get) == self.id
    }

    /// Waits for `fut` (a send to the core or its reply) on the calling thread.
    ///
    /// # Panics
    /// From an async job of this scheduler on a current-thread runtime: the wait would stop the
    /// only thread that runs the core, so it could never end.
    fn wait<F: Future>(&self, fut: F) -> F::Output {
        assert!(
            DRIVER.with(Cell::get) != self.id,
            "apsched: a blocking call from an async job on the scheduler's own current-thread \
             runtime would deadlock; use the async handle (JobContext::scheduler) there"
        );
        // Unconstrained: inside a Tokio task whose cooperative budget is spent, the channel
        // futures would return `Pending` forever under a foreign executor.
        let fut = tokio::task::unconstrained(fut);
        let run = move || {
            // The scheduler's clock (a test clock follows the runtime's paused time) must read
            // the scheduler's runtime, not the caller's.
            let _enter = self.handle.enter();
            futures::executor::block_on(fut)
        };
        let on_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        if self.on_own_thread() && on_multi_thread_runtime {
            // An async job of ours: hand this worker's other tasks (maybe the core) to another
            // worker while we block. On a blocking-pool thread this just runs `run`.
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }

    /// Runs a synchronous part of the async scheduler (a clock read, `prepare_add`) inside the
    /// scheduler's runtime context.
    fn enter<T>(&self, f: impl FnOnce(&Scheduler) -> T) -> T {
        let _enter = self.handle.enter();
        f(&self.scheduler)
    }

    /// Shuts the core down on Ctrl-C (SIGINT) or SIGTERM, waiting for running jobs.
    fn watch_signals(&self) {
        if self.signals_watched.swap(true, Ordering::AcqRel) {
            return;
        }
        let scheduler = self.scheduler.clone();
        self.handle.spawn(async move {
            let ctrl_c = async {
                if let Err(error) = tokio::signal::ctrl_c().await {
                    tracing::warn!(%error, "apsched: cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
            };
            #[cfg(unix)]
            let terminate = async {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::terminate()) {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "apsched: cannot listen for SIGTERM");
                        std::future::pending::<()>().await;
                    }
                }
            };
            #[cfg(not(unix))]
            let terminate = std::future::pending::<()>();
            tokio::select! {
                () = ctrl_c => {}
                () = terminate => {}
            }
            tracing::info!("apsched: signal received, shutting down (waiting for running jobs)");
            let _ = scheduler.shutdown().await;
        });
    }

    fn start(&self, paused: bool) -> Result<()> {
        if paused {
            self.wait(self.scheduler.start_paused())?;
        } else {
            self.wait(self.scheduler.start())?;
        }
        if self.handle_signals {
            self.watch_signals();
        }
        Ok(())
    }

    /// Blocks until the core has stopped, then joins the threads.
    fn wait_stopped(&self) {
        if !self.on_own_thread() {
            self.wait(self.scheduler.stopped());
        }
        self.join();
    }

    fn shutdown(&self, timeout: Option<Duration>) -> Result<()> {
        if timeout.is_some() {
            self.abandon.store(true, Ordering::Release);
        }
        if self.on_own_thread() {
            // From a job or a listener: waiting for the running jobs would wait for ourselves.
            self.scheduler.ensure_open()?;
            self.request_shutdown(timeout);
            return Ok(());
        }
        match timeout {
            Some(timeout) => drop(self.wait(self.scheduler.shutdown_timeout(timeout))?),
            None => self.wait(self.scheduler.shutdown())?,
        }
        self.join();
        Ok(())
    }

    fn request_shutdown(&self, timeout: Option<Duration>) {
        let scheduler = self.scheduler.clone();
        self.handle.spawn(async move {
            let _ = match timeout {
                Some(timeout) => scheduler.shutdown_timeout(timeout).await.map(drop),
                None => scheduler.shutdown().await,
            };
        });
    }

    /// Joins the scheduler thread and the listener threads. Concurrent callers all return
    /// after the join: the lock is held through it.
    fn join(&self) {
        if self.on_own_thread() {
            return;
        }
        {
            let mut thread = lock(&self.thread);
            if let Some(thread) = thread.take() {
                if thread.join().is_err() {
                    tracing::error!("apsched: the scheduler thread panicked");
                }
            }
        }
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        for listener in listeners {
            // A listener that panicked was already reported on its thread.
            let _ = listener.join();
        }
    }

    fn events(&self) -> Events {
        let stream = self.scheduler.subscribe();
        // Subscribed after the core stopped, the stream would wait forever for its last event.
        let stopped = self.scheduler.is_stopped();
        Events { stream, stopped }
    }

    fn add_listener<F>(&self, mask: EventMask, mut listener: F) -> Result<()>
    where
        F: FnMut(&Event) + Send + 'static,
    {
        self.scheduler.ensure_open()?;
        let events = self.events();
        let id = self.id;
        let thread = std::thread::Builder::new()
            .name("apsched-listener".into())
            .spawn(move || {
                OWNER.with(|o| o.set(id));
                for event in events.filter(|event| mask.matches(event)) {
                    let called = std::panic::catch_unwind(AssertUnwindSafe(|| listener(&event)));
                    if called.is_err() {
                        tracing::error!(?event, "apsched: an event listener panicked");
                    }
                }
            })
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let mut listeners = lock(&self.listeners);
        listeners.retain(|l| !l.is_finished());
        listeners.push(thread);
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.scheduler.is_stopped() {
            if self.on_own_thread() {
                // The last handle went with a job (or a listener) of this scheduler: ask the
                // core to stop; the thread ends on its own.
                self.request_shutdown(None);
                return;
            }
            let _ = self.wait(self.scheduler.shutdown());
        }
        self.join();
    }
}

/// A blocking iterator over a sync scheduler's [`Event`]s from the moment of `events()`; ends
/// after [`Event::SchedulerShutdown`].
///
/// `next()` blocks the calling thread until the next event. A reader that falls more than the
/// scheduler's event capacity behind skips the oldest events (the core never waits for it).
pub struct Events {
    stream: EventStream,
    stopped: bool,
}

impl Events {
    /// The next event if one is waiting, without blocking.
    pub fn try_next(&mut self) -> Option<Event> {
        self.stream.recv().now_or_never().flatten()
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.stopped {
            return self.try_next();
        }
        futures::executor::block_on(tokio::task::unconstrained(self.stream.recv()))
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

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
    host: &'a Host,
    inner: crate::AddJob<'a>,
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

    /// Replace a job with the same id instead of failing with [`Error::ConflictingId`].
    pub fn replace_existing(self, replace: bool) -> Self {
        self.map(|a| a.replace_existing(replace))
    }

    /// Add the job paused: it runs only once resumed.
    pub fn paused(self) -> Self {
        self.map(crate::AddJob::paused)
    }

    /// Adds the job and returns its snapshot. The trigger and options are checked here; the
    /// core is not waited for (as the async `add_job`).
    ///
    /// # Errors
    /// An invalid trigger or option, [`Error::ConflictingId`], [`Error::Shutdown`].
    pub fn add(self) -> Result<Job> {
        self.host.wait(self.inner.into_future())
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
    host: &'a Host,
    inner: crate::ModifyJob<'a>,
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

    /// Applies the changes and returns the job's new snapshot.
    ///
    /// # Errors
    /// An invalid option, [`Error::JobNotFound`], [`Error::Shutdown`].
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

/// The builder setters both facade builders share; each forwards to the [`SchedulerBuilder`].
macro_rules! builder_setters {
    () => {
        /// The zone for triggers that name none. Default: the machine's local zone.
        pub fn timezone(mut self, zone: impl $crate::IntoZone) -> Self {
            self.config.scheduler = self.config.scheduler.timezone(zone);
            self
        }

        /// Options for jobs that do not set their own. Default: [`JobOptions::default`](crate::JobOptions::default).
        pub fn job_defaults(mut self, options: $crate::JobOptions) -> Self {
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

        /// How many events a listener or [`events()`](crate::sync::Events) reader may fall
        /// behind before it skips the oldest. Default 1,024.
        pub fn event_capacity(mut self, capacity: usize) -> Self {
            self.config.scheduler = self.config.scheduler.event_capacity(capacity);
            self
        }

        /// Where wall-clock time comes from. Default [`SystemClock`](crate::SystemClock). A
        /// [`TestClock`](crate::TestClock) follows the scheduler's runtime's clock, so pair it
        /// with a paused runtime from [`runtime`](Self::runtime).
        pub fn clock(mut self, clock: impl $crate::Clock) -> Self {
            self.config.scheduler = self.config.scheduler.clock(clock);
            self
        }

        /// Every setting of the async scheduler at once (`max_sleep`, `channel_capacity`, ...),
        /// replacing those set before.
        pub fn scheduler(mut self, builder: $crate::SchedulerBuilder) -> Self {
            self.config.scheduler = builder;
            self
        }

        /// The Tokio runtime the scheduler runs on, built on the scheduler's thread. Default: a
        /// multi-thread runtime with two workers (blocking jobs have their own pool).
        ///
        /// Its drivers are enabled (`enable_all`) and its `on_thread_start` hook is replaced:
        /// the scheduler uses it to tell its own threads. A current-thread runtime runs async
        /// jobs on the scheduler's thread; a runtime started paused (Tokio's `test-util`
        /// feature) with a [`TestClock`](crate::TestClock) runs days of schedule in
        /// milliseconds.
        pub fn runtime(mut self, builder: tokio::runtime::Builder) -> Self {
            self.config.runtime = Some(builder);
            self
        }
    };
}

/// The methods both facades share, forwarding to their [`Host`].
macro_rules! facade_methods {
    () => {
        /// The async handle of the same scheduler, for async code (and async jobs) that want to
        /// `.await` instead of block.
        pub fn scheduler(&self) -> &$crate::Scheduler {
            &self.host.scheduler
        }

        /// A handle to the scheduler's own Tokio runtime, e.g. to spawn async work beside it.
        pub fn runtime_handle(&self) -> &tokio::runtime::Handle {
            &self.host.handle
        }

        /// The scheduler's state.
        pub fn state(&self) -> $crate::SchedulerState {
            self.host.scheduler.state()
        }

        /// The zone used for triggers that name none.
        pub fn timezone(&self) -> $crate::Zone {
            self.host.scheduler.timezone()
        }

        /// The current time by the scheduler's clock.
        pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
            self.host.enter(|s| s.now())
        }

        /// Stops running jobs until [`resume`](Self::resume); runs under way go on.
        ///
        /// # Errors
        /// [`Error::InvalidState`](crate::Error::InvalidState) if not started,
        /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
        pub fn pause(&self) -> $crate::Result<()> {
            self.host.wait(self.host.scheduler.pause())
        }

        /// Runs jobs again after [`pause`](Self::pause); runs missed meanwhile follow the
        /// misfire rules.
        ///
        /// # Errors
        /// As [`pause`](Self::pause).
        pub fn resume(&self) -> $crate::Result<()> {
            self.host.wait(self.host.scheduler.resume())
        }

        /// Shuts down: no new run starts, running jobs are waited for, and the scheduler's
        /// thread is joined. Called from one of the scheduler's own jobs or listeners, it only
        /// asks for the shutdown and returns at once (waiting would wait for itself).
        ///
        /// # Errors
        /// [`Error::Shutdown`](crate::Error::Shutdown) if already shut down.
        pub fn shutdown(&self) -> $crate::Result<()> {
            self.host.shutdown(None)
        }

        /// As [`shutdown`](Self::shutdown), but runs still going after `timeout` are cancelled
        /// (async ones) or abandoned to finish on their own (blocking ones, which cannot be
        /// stopped); the scheduler's thread does not wait for abandoned runs.
        ///
        /// # Errors
        /// [`Error::Shutdown`](crate::Error::Shutdown) if already shut down.
        pub fn shutdown_timeout(&self, timeout: std::time::Duration) -> $crate::Result<()> {
            self.host.shutdown(Some(timeout))
        }

        /// Adds a job: `task` (a plain `fn`/closure, run on the thread pool, or an async one,
        /// run on the scheduler's runtime; see [`IntoTask`](crate::IntoTask)) run at the times
        /// `trigger` gives. Set options on the returned builder, then call
        /// [`.add()`](crate::sync::AddJob::add) for the [`Job`](crate::Job).
        pub fn add_job<M>(
            &self,
            task: impl $crate::IntoTask<M>,
            trigger: impl Into<$crate::trigger::Trigger>,
        ) -> $crate::sync::AddJob<'_> {
            self.host.add_job(task, trigger)
        }

        /// A snapshot of one job.
        ///
        /// # Errors
        /// [`Error::JobNotFound`](crate::Error::JobNotFound),
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn get_job(&self, id: &str) -> $crate::Result<$crate::Job> {
            self.host.wait(self.host.scheduler.get_job(id))
        }

        /// Snapshots of all jobs, soonest next run first (paused jobs last).
        ///
        /// # Errors
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn get_jobs(&self) -> $crate::Result<Vec<$crate::Job>> {
            self.host.wait(self.host.scheduler.get_jobs())
        }

        /// Changes a job's name or options: set them on the returned builder, then call
        /// [`.apply()`](crate::sync::ModifyJob::apply).
        pub fn modify_job<'a>(&'a self, id: &'a str) -> $crate::sync::ModifyJob<'a> {
            $crate::sync::ModifyJob {
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
        pub fn reschedule_job(
            &self,
            id: &str,
            trigger: impl Into<$crate::trigger::Trigger>,
        ) -> $crate::Result<$crate::Job> {
            self.host
                .wait(self.host.scheduler.reschedule_job(id, trigger))
        }

        /// Pauses a job: it does not run until resumed.
        ///
        /// # Errors
        /// [`Error::JobNotFound`](crate::Error::JobNotFound),
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn pause_job(&self, id: &str) -> $crate::Result<$crate::Job> {
            self.host.wait(self.host.scheduler.pause_job(id))
        }

        /// Resumes a paused job, its next run computed from now. A job whose trigger has no
        /// fire time left is removed instead, and `Ok(None)` returned.
        ///
        /// # Errors
        /// [`Error::JobNotFound`](crate::Error::JobNotFound),
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn resume_job(&self, id: &str) -> $crate::Result<Option<$crate::Job>> {
            self.host.wait(self.host.scheduler.resume_job(id))
        }

        /// Runs a job once now, outside its schedule (which does not change). The run counts
        /// against `max_instances`.
        ///
        /// # Errors
        /// [`Error::JobNotFound`](crate::Error::JobNotFound),
        /// [`Error::Shutdown`](crate::Error::Shutdown),
        /// [`Error::InvalidState`](crate::Error::InvalidState) before start.
        pub fn run_job_now(&self, id: &str) -> $crate::Result<()> {
            self.host.wait(self.host.scheduler.run_job_now(id))
        }

        /// Removes a job. Runs under way finish.
        ///
        /// # Errors
        /// [`Error::JobNotFound`](crate::Error::JobNotFound),
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn remove_job(&self, id: &str) -> $crate::Result<()> {
            self.host.wait(self.host.scheduler.remove_job(id))
        }

        /// Removes every job.
        ///
        /// # Errors
        /// [`Error::Shutdown`](crate::Error::Shutdown).
        pub fn remove_all_jobs(&self) -> $crate::Result<()> {
            self.host.wait(self.host.scheduler.remove_all_jobs())
        }

        /// A blocking iterator over everything that happens from now on; it ends after
        /// [`Event::SchedulerShutdown`](crate::Event::SchedulerShutdown).
        pub fn events(&self) -> $crate::sync::Events {
            self.host.events()
        }

        /// Calls `listener` with every event whose kind is in `mask` (APScheduler's
        /// `add_listener(callback, mask)`), on a thread of its own: a slow listener never
        /// delays the scheduler, only its own later events. The thread ends after
        /// [`Event::SchedulerShutdown`](crate::Event::SchedulerShutdown) and is joined by
        /// [`shutdown`](Self::shutdown). A panic in the listener is logged and the listener
        /// goes on.
        ///
        /// # Errors
        /// [`Error::Shutdown`](crate::Error::Shutdown), [`Error::Runtime`](crate::Error::Runtime)
        /// if the thread cannot be started.
        pub fn add_listener<F>(&self, mask: $crate::EventMask, listener: F) -> $crate::Result<()>
        where
            F: FnMut(&$crate::Event) + Send + 'static,
        {
            self.host.add_listener(mask, listener)
        }
    };
}

pub(crate) use builder_setters;
pub(crate) use facade_methods;

impl Host {
    fn add_job<M>(&self, task: impl IntoTask<M>, trigger: impl Into<Trigger>) -> AddJob<'_> {
        AddJob {
            host: self,
            inner: self.scheduler.add_job(task, trigger),
        }
    }
}
