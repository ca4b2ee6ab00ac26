//! The scheduler core: the one task that owns the job table and decides when jobs run.
//!
//! The core is an actor: [`Scheduler`](crate::Scheduler) handles send it [`Command`]s over a
//! bounded channel, and it answers over oneshot channels. It never awaits a job, a store write
//! or a subscriber.
//!
//! | module | owns |
//! |---|---|
//! | this one | the loop, its wakeups (wall clock against monotonic clock) and the lifecycle |
//! | `command` | the commands and how they apply |
//! | `commit` | the commit point: every change to a job passes through it |
//! | `table` | the job table, its keys, and the id index shared with the handles |
//! | `due` | the wall-clock due queue and the handling of due jobs |
//! | `misfire` | the misfire rules, as a pure function |
//! | `run` | launching runs and hearing of their end |
//!
//! Wall-clock time decides when; Tokio's timer only how long to sleep: the core sleeps until
//! the earliest due time or `max_sleep`, whichever is first, and reads the wall clock again on
//! every wake, so clock steps and suspends are noticed and far-off due times need no timer.
//!
//! The core must not panic or stop because of a job or a trigger: runs are isolated in their
//! own tasks with panics caught, and each command and each due job is handled under
//! `catch_unwind`, so a bug there costs that one job, not the scheduler.

mod command;
mod commit;
mod due;
mod misfire;
mod run;
mod store;
mod table;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, Sleep};

pub(crate) use command::{Command, JobChange, Modification, ShutdownReply};
#[cfg(feature = "postgres")]
pub(crate) use commit::stored;
#[cfg(feature = "postgres")]
pub(crate) use misfire::decide;
#[cfg(feature = "metrics")]
pub(crate) use run::End;
pub(crate) use run::{in_run_of, Launch, RunEnv};
#[cfg(feature = "postgres")]
pub(crate) use run::{ClusterRun, ClusterRunDone};
pub(crate) use store::{entry_from_row, StoreInfo};
#[cfg(feature = "postgres")]
pub(crate) use table::Admission;
pub(crate) use table::{Entry, Index, Key, NextRun, StoreIndex};

use self::command::reject;
use self::commit::{Change, Removal};
use self::due::DueQueue;
use self::run::{Retries, RunDone, RunTask, Runs};
use self::store::{FromWriter, History, Pending, Starting, ToWriter};
use self::table::JobTable;
use crate::store::Write;
use crate::{
    AbandonedRun, Clock, Error, Event, JobOptions, Result, SchedulerState, TaskRegistry, Zone,
};

/// How many queued commands the core takes in one go.
const COMMAND_BATCH: usize = 1024;

/// How long cancelled runs get to end once a shutdown's timeout has passed, before the core
/// stops waiting for them and reports them abandoned (a run that never reaches an `.await`
/// cannot be stopped).
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// The core's settings, from the builder.
pub(crate) struct Settings {
    pub(crate) channel_capacity: usize,
    pub(crate) max_blocking_jobs: usize,
    pub(crate) max_sleep: Duration,
    pub(crate) clock_jump_threshold: Duration,
    pub(crate) failure_log_level: Option<tracing::Level>,
    /// How long durable stores keep run history (zero: none is written).
    pub(crate) history_retention: Duration,
    /// How many runs of memory-store jobs the core remembers.
    pub(crate) memory_history: usize,
    /// How long a run past its timeout has to end once cancelled.
    pub(crate) timeout_grace: Duration,
}

/// What the handles and the core share: the clock, the events, the id index, and the
/// scheduler's state and run count, published by the core so handles read them without a
/// round trip.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    /// How many `EventStream`s are alive: events are built only while one is.
    subscribers: Arc<AtomicUsize>,
    index: Mutex<Index>,
    state: AtomicU8,
    running: AtomicUsize,
    pub(crate) timezone: Zone,
    pub(crate) job_defaults: JobOptions,
    /// The memory store first, then the durable stores.
    pub(crate) stores: Vec<StoreInfo>,
    /// The store jobs go to unless they name one.
    pub(crate) default_store: Option<StoreIndex>,
    /// The tasks durable (and imported) jobs name.
    pub(crate) tasks: TaskRegistry,
    /// Cancelled when a shutdown stops waiting for runs: every run's token is this one or a
    /// child of it.
    pub(crate) runs_cancel: tokio_util::sync::CancellationToken,
    /// The clusters this scheduler is a node of, by store name.
    #[cfg(feature = "postgres")]
    pub(crate) clusters: Vec<Arc<crate::cluster::Node>>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments,
}

impl Shared {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        event_capacity: usize,
        timezone: Zone,
        job_defaults: JobOptions,
        stores: Vec<StoreInfo>,
        default_store: Option<StoreIndex>,
        tasks: TaskRegistry,
    ) -> Shared {
        Shared {
            stores,
            default_store,
            tasks,
            runs_cancel: tokio_util::sync::CancellationToken::new(),
            #[cfg(feature = "postgres")]
            clusters: Vec::new(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::default(),
            clock,
            events: broadcast::channel(event_capacity).0,
            subscribers: Arc::new(AtomicUsize::new(0)),
            index: Mutex::new(Index::default()),
            state: AtomicU8::new(SchedulerState::Stopped as u8),
            running: AtomicUsize::new(0),
            timezone,
            job_defaults,
        }
    }

    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        // The index holds no invariant a panic elsewhere could break half-way.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scheduler's state as the core last published it.
    pub(crate) fn state(&self) -> SchedulerState {
        match self.state.load(Ordering::Acquire) {
            0 => SchedulerState::Stopped,
            1 => SchedulerState::Running,
            2 => SchedulerState::Paused,
            3 => SchedulerState::ShutDown,
            _ => SchedulerState::Closed,
        }
    }

    fn publish(&self, state: SchedulerState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The scheduler's time, to the microsecond: what a database keeps, so a job's times are
    /// the same before and after a restart.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        now.with_nanosecond(now.nanosecond() / 1000 * 1000)
            .unwrap_or(now)
    }

    /// The store named `name`.
    pub(crate) fn store_named(&self, name: &str) -> Option<StoreIndex> {
        let index = self.stores.iter().position(|s| &*s.name == name)?;
        StoreIndex::try_from(index).ok()
    }

    pub(crate) fn store(&self, index: StoreIndex) -> &StoreInfo {
        &self.stores[usize::from(index)]
    }

    /// Runs under way now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn subscribe(&self) -> crate::EventStream {
        crate::EventStream::new(self.events.subscribe(), Arc::clone(&self.subscribers))
    }

    /// Sends an event, built only if someone subscribes: at a million runs, events nobody
    /// reads would cost the core a lock and an allocation each.
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if self.subscribers.load(Ordering::Relaxed) > 0 {
            // A subscriber that left since is not an error.
            let _ = self.events.send(event());
        }
    }
}

/// Where the core is in its life: the one place that says whether jobs run.
enum Lifecycle {
    /// Built, not started: jobs are kept, not queued.
    Stopped,
    Running,
    Paused,
    /// No run starts; waiting for the runs under way (and maybe a deadline).
    ShuttingDown(Shutdown),
    /// Stopped for good.
    ShutDown,
}

/// A shutdown under way: who waits for it, and when to stop waiting for runs.
struct Shutdown {
    waiters: Vec<oneshot::Sender<Result<Vec<AbandonedRun>>>>,
    /// First, when to cancel the runs still going; once cancelled, when to abandon them.
    deadline: Option<Instant>,
    cancelled: bool,
}

impl Lifecycle {
    /// The state handles see.
    fn state(&self) -> SchedulerState {
        match self {
            Lifecycle::Stopped => SchedulerState::Stopped,
            Lifecycle::Running => SchedulerState::Running,
            Lifecycle::Paused => SchedulerState::Paused,
            Lifecycle::ShuttingDown(_) | Lifecycle::ShutDown => SchedulerState::ShutDown,
        }
    }

    /// Whether jobs are queued by their next run (started, not yet stopped).
    fn is_started(&self) -> bool {
        !matches!(self, Lifecycle::Stopped)
    }

    /// Whether due jobs start runs.
    fn runs_jobs(&self) -> bool {
        matches!(self, Lifecycle::Running)
    }

    /// Whether a failed run may be tried again (it waits out a pause).
    fn retries(&self) -> bool {
        matches!(self, Lifecycle::Running | Lifecycle::Paused)
    }
}

/// Spawns a scheduler's core on the current Tokio runtime; returns the channel to it.
///
/// # Panics
/// Outside a Tokio runtime, as `tokio::spawn` does.
pub(crate) fn spawn(shared: Arc<Shared>, settings: Settings) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(settings.channel_capacity);
    let core = Core::new(rx, tx.downgrade(), shared, settings);
    tokio::spawn(core.run());
    tx
}

pub(crate) struct Core {
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    settings: Settings,
    lifecycle: Lifecycle,
    jobs: JobTable,
    due: DueQueue,
    env: Arc<RunEnv>,
    done: mpsc::UnboundedReceiver<RunDone>,
    /// The runs spawned and not yet reported done.
    runs: Runs,
    /// The runs waiting for a retry.
    retries: Retries,
    /// Runs ready to spawn, gathered while handling due jobs or commands.
    ready: Vec<RunTask>,
    /// Each durable store's writer (`None` for the memory store), and the core's own writes
    /// gathered for it since the last flush.
    writers: Vec<Option<mpsc::UnboundedSender<ToWriter>>>,
    outbox: Vec<Vec<Write>>,
    from_writers: mpsc::UnboundedReceiver<FromWriter>,
    /// Callers' changes to durable jobs, waiting for their write.
    pending: Pending,
    /// A start waiting for the durable stores' jobs.
    starting: Option<Starting>,
    /// The recent runs of memory-store jobs.
    history: History,
    /// The wall and monotonic clocks at the last wake, to tell a clock jump.
    last_wall: DateTime<Utc>,
    last_mono: Instant,
}

impl Core {
    fn new(
        rx: mpsc::Receiver<Command>,
        weak_tx: mpsc::WeakSender<Command>,
        shared: Arc<Shared>,
        settings: Settings,
    ) -> Core {
        let last_wall = shared.now();
        let (env, done) = RunEnv::new(
            Arc::clone(&shared),
            weak_tx,
            settings.max_blocking_jobs,
            settings.failure_log_level,
            settings.timeout_grace,
        );
        let (to_core, from_writers) = mpsc::unbounded_channel();
        let writers: Vec<_> = (0..shared.stores.len())
            .map(|i| {
                let index = StoreIndex::try_from(i).unwrap_or(StoreIndex::MAX);
                shared.stores[i].is_durable().then(|| {
                    let retention = settings.history_retention;
                    store::spawn_writer(Arc::clone(&shared), index, retention, to_core.clone())
                })
            })
            .collect();
        let history = History::new(settings.memory_history);
        Core {
            outbox: vec![Vec::new(); writers.len()],
            writers,
            from_writers,
            pending: Pending::default(),
            starting: None,
            history,
            rx,
            shared,
            settings,
            lifecycle: Lifecycle::Stopped,
            jobs: JobTable::default(),
            due: DueQueue::default(),
            env,
            done,
            runs: Runs::default(),
            retries: Retries::default(),
            ready: Vec::new(),
            last_wall,
            last_mono: Instant::now(),
        }
    }

    async fn run(mut self) {
        let mut sleep: std::pin::Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(Duration::ZERO));
        // The due time the timer is armed for; re-armed only when that changes or it fires.
        let mut armed: Option<Option<i64>> = None;
        let mut rx_open = true;
        loop {
            let now = self.wake();
            let mut backlog = false;
            if self.lifecycle.runs_jobs() {
                backlog = self.run_due(now);
                backlog |= self.run_due_retries(now);
            }
            self.spawn_ready();
            self.flush_writes();
            self.due.compact(&self.jobs);
            #[cfg(feature = "metrics")]
            self.shared
                .metrics
                .publish(self.runs.len(), self.jobs.by_store());
            if matches!(self.lifecycle, Lifecycle::ShuttingDown(_))
                && self.runs.is_empty()
                && self.pending.is_empty()
            {
                break;
            }
            if !backlog {
                let target = self.next_due_us();
                if armed != Some(target) {
                    sleep.as_mut().reset(self.deadline_for(target, now));
                    armed = Some(target);
                }
            }
            let shutdown_deadline = match &self.lifecycle {
                Lifecycle::ShuttingDown(shutdown) => shutdown.deadline,
                _ => None,
            };
            tokio::select! {
                biased;
                command = self.rx.recv(), if rx_open => match command {
                    Some(command) => {
                        self.handle(command);
                        for _ in 1..COMMAND_BATCH {
                            match self.rx.try_recv() {
                                Ok(command) => self.handle(command),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every handle is gone: stop as a graceful shutdown would.
                    None => {
                        rx_open = false;
                        self.begin_shutdown(None);
                    }
                },
                Some(done) = self.done.recv() => {
                    self.finished(done);
                    while let Ok(done) = self.done.try_recv() {
                        self.finished(done);
                    }
                }
                Some(written) = self.from_writers.recv() => self.heard_from_writer(written),
                // More due runs than one batch: let this worker run some of the jobs just
                // spawned, then go round again (not through the timer, which would round up to
                // the next millisecond).
                () = tokio::task::yield_now(), if backlog => {}
                () = &mut sleep, if !backlog => armed = None,
                () = sleep_until_opt(shutdown_deadline) => {
                    if self.give_up_waiting() {
                        break;
                    }
                }
            }
        }
        let abandoned = self.abandon_runs();
        self.drain_writers().await;
        self.finish_shutdown(abandoned);
    }

    /// Reads both clocks, reports a wall-clock jump, and returns the wall-clock time.
    fn wake(&mut self) -> DateTime<Utc> {
        let wall = self.shared.now();
        let mono = Instant::now();
        let elapsed = TimeDelta::from_std(mono - self.last_mono).unwrap_or(TimeDelta::MAX);
        let drift = wall - self.last_wall - elapsed;
        let threshold =
            TimeDelta::from_std(self.settings.clock_jump_threshold).unwrap_or(TimeDelta::MAX);
        if drift.abs() > threshold {
            tracing::info!(by = %drift, "apsched: wall clock jumped");
            self.shared.emit(|| Event::ClockJumped { by: drift });
        }
        self.last_wall = wall;
        self.last_mono = mono;
        wall
    }

    fn next_due_us(&self) -> Option<i64> {
        if !self.lifecycle.runs_jobs() {
            return None;
        }
        match (self.due.first_us(), self.retries.first_us()) {
            (Some(job), Some(retry)) => Some(job.min(retry)),
            (job, retry) => job.or(retry),
        }
    }

    /// When to wake for a wall-clock due time: never later than `max_sleep` from now.
    fn deadline_for(&self, target_us: Option<i64>, now: DateTime<Utc>) -> Instant {
        let cap = self.settings.max_sleep;
        let wait = match target_us {
            Some(at_us) => {
                let wait_us = at_us.saturating_sub(now.timestamp_micros()).max(0);
                Duration::from_micros(wait_us as u64).min(cap)
            }
            None => cap,
        };
        // A sleep cap past the end of `Instant` means "wake for due jobs only".
        let now = Instant::now();
        now.checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
    }

    /// Moves to a new lifecycle stage and publishes the state handles see.
    fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.shared.publish(lifecycle.state());
        self.lifecycle = lifecycle;
    }

    fn start(&mut self, paused: bool) -> Result<()> {
        if !matches!(self.lifecycle, Lifecycle::Stopped) {
            return Err(Error::InvalidState {
                state: self.lifecycle.state(),
                action: "start",
            });
        }
        self.set_lifecycle(if paused {
            Lifecycle::Paused
        } else {
            Lifecycle::Running
        });
        // Jobs added before start run from now on, as APScheduler: recompute their first run.
        let now = self.shared.now();
        let waiting: Vec<Key> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.next.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in waiting {
            let Some(entry) = self.jobs.get(key) else {
                continue;
            };
            match entry.trigger.next_fire_time(None, now) {
                Ok(Some(first)) => self.commit(key, Change::Next(Some(first))),
                Ok(None) => self.commit(key, Change::Remove(Removal::Finished)),
                Err(error) => self.commit(key, Change::Remove(Removal::Failed(error))),
            }
        }
        self.shared.emit(|| Event::SchedulerStarted);
        if paused {
            self.shared.emit(|| Event::SchedulerPaused);
        }
        Ok(())
    }

    fn set_paused(&mut self, paused: bool) -> Result<()> {
        match (&self.lifecycle, paused) {
            (Lifecycle::Running, true) => {
                self.set_lifecycle(Lifecycle::Paused);
                self.shared.emit(|| Event::SchedulerPaused);
            }
            (Lifecycle::Paused, false) => {
                self.set_lifecycle(Lifecycle::Running);
                self.shared.emit(|| Event::SchedulerResumed);
            }
            (Lifecycle::Running, false) | (Lifecycle::Paused, true) => {}
            (lifecycle, _) => {
                return Err(Error::InvalidState {
                    state: lifecycle.state(),
                    action: if paused { "pause" } else { "resume" },
                })
            }
        }
        Ok(())
    }

    fn begin_shutdown(&mut self, timeout: Option<Duration>) {
        if !matches!(self.lifecycle, Lifecycle::ShuttingDown(_)) {
            self.set_lifecycle(Lifecycle::ShuttingDown(Shutdown {
                waiters: Vec::new(),
                deadline: None,
                cancelled: false,
            }));
        }
        let Lifecycle::ShuttingDown(shutdown) = &mut self.lifecycle else {
            return;
        };
        // A timeout past the end of `Instant` is no timeout.
        if let Some(deadline) = timeout.and_then(|t| Instant::now().checked_add(t)) {
            if !shutdown.cancelled {
                shutdown.deadline = Some(shutdown.deadline.map_or(deadline, |d| d.min(deadline)));
            }
        }
    }

    /// A shutdown's deadline passed: the first time, cancel what still runs and give the runs a
    /// moment to end at their next `.await`; the second time, stop waiting (returns `true`).
    fn give_up_waiting(&mut self) -> bool {
        let Lifecycle::ShuttingDown(shutdown) = &mut self.lifecycle else {
            return false;
        };
        if shutdown.cancelled {
            return true;
        }
        self.env.cancel_runs();
        shutdown.cancelled = true;
        shutdown.deadline = Instant::now().checked_add(CANCEL_GRACE);
        false
    }

    /// Stops tracking the runs still going (they were cancelled and had their grace), and
    /// records them abandoned.
    fn abandon_runs(&mut self) -> Vec<AbandonedRun> {
        let runs: Vec<_> = self.runs.drain().collect();
        let now = self.shared.now();
        runs.into_iter()
            .map(|mut run| {
                tracing::warn!(job.id = %run.id, scheduled = %run.scheduled, "apsched: run abandoned at shutdown, still going after its cancellation");
                #[cfg(feature = "metrics")]
                self.shared.metrics.count(&run.job, crate::metrics::Outcome::Abandoned);
                let mut record = crate::store::RunRecord::new(
                    &run.id,
                    run.scheduled,
                    crate::store::RunState::Abandoned,
                );
                record.started_at = Some(run.started_at);
                record.finished_at = Some(now);
                run.answer(&record);
                // A cluster run's node marks its row abandoned when it leaves.
                if let Some(key) = run.key {
                    self.record_run(key, &run.id, record);
                }
                AbandonedRun {
                    job_id: run.id,
                    scheduled_run_time: run.scheduled,
                }
            })
            .collect()
    }

    fn finish_shutdown(&mut self, abandoned: Vec<AbandonedRun>) {
        let waiters = match std::mem::replace(&mut self.lifecycle, Lifecycle::ShutDown) {
            Lifecycle::ShuttingDown(shutdown) => shutdown.waiters,
            _ => Vec::new(),
        };
        self.shared.publish(SchedulerState::ShutDown);
        self.shared.running.store(0, Ordering::Release);
        self.rx.close();
        while let Ok(command) = self.rx.try_recv() {
            reject(command);
        }
        self.drop_retries();
        self.jobs = JobTable::default();
        self.due.clear();
        *self.shared.index() = Index::default();
        self.shared.emit(|| Event::SchedulerShutdown);
        for waiter in waiters {
            let _ = waiter.send(Ok(abandoned.clone()));
        }
    }
}

impl Drop for Core {
    /// A core dropped before its shutdown finished (its runtime shut down, or it panicked)
    /// leaves handles that can no longer be answered: they must say so, not "running".
    fn drop(&mut self) {
        if !matches!(self.lifecycle, Lifecycle::ShutDown) {
            self.shared.publish(SchedulerState::Closed);
        }
        #[cfg(feature = "metrics")]
        self.shared.metrics.publish(0, &[]);
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
