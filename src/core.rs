//! The scheduler core: the one task that owns the job table and decides when jobs run.
//!
//! It keeps a min-heap of (wall-clock due time, job) and sleeps on Tokio's timer only until the
//! earliest due time or `max_sleep`, whichever is first; on every wake it reads the wall clock
//! again, so clock steps and suspends are noticed and far-off due times need no timer at all.
//! Due runs are spawned as their own tasks (a large due batch by a helper task, so spawning goes
//! on beside the core's next batch): the core never awaits a job, and a run's end comes back to
//! it over a lock-free queue (to keep `max_instances` counts and events exact). Heap items are never removed in place: each carries the due time it was queued for,
//! and one that no longer matches its entry's next run is dropped when it surfaces.
//!
//! The core must not panic or stop because of a job or a trigger: runs are isolated in their
//! own tasks with panics caught, and each command and each due job is handled under
//! `catch_unwind`, so a bug there costs that one job, not the scheduler.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::job::{JobContext, Name, RunResult, Task, TaskBody};
use crate::scheduler::{Index, Shared};
use crate::trigger::Trigger;
use crate::{
    AbandonedRun, Error, Event, Job, JobId, JobOptions, Result, Scheduler, SchedulerState,
};

/// How many due runs the core handles before it yields: callers are answered and the worker
/// runs some of the jobs just spawned even while thousands fall due at once.
const DUE_BATCH: usize = 256;
/// How many queued commands the core takes in one go.
const COMMAND_BATCH: usize = 1024;

pub(crate) struct Settings {
    pub(crate) max_blocking_jobs: usize,
    pub(crate) max_sleep: Duration,
    pub(crate) clock_jump_threshold: Duration,
}

/// A change to one job, answered with the job's new snapshot (`None`: the job is gone).
pub(crate) enum JobChange {
    Modify {
        name: Option<Arc<str>>,
        misfire_grace_time: Option<Option<Duration>>,
        coalesce: Option<bool>,
        max_instances: Option<u32>,
    },
    Reschedule(Trigger),
    Pause,
    Resume,
    RunNow,
}

pub(crate) enum Command {
    Start {
        paused: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Pause {
        reply: oneshot::Sender<Result<()>>,
    },
    Resume {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        timeout: Option<Duration>,
        reply: ShutdownReply,
    },
    Add {
        key: u64,
        entry: Entry,
        replaces: Option<u64>,
    },
    Remove {
        key: u64,
    },
    RemoveAll {
        reply: oneshot::Sender<()>,
    },
    Get {
        key: u64,
        reply: oneshot::Sender<Option<Job>>,
    },
    GetAll {
        reply: oneshot::Sender<Vec<Job>>,
    },
    Change {
        key: u64,
        change: JobChange,
        reply: oneshot::Sender<Result<Option<Job>>>,
    },
}

/// Who waits for a shutdown, and for what.
pub(crate) enum ShutdownReply {
    /// A caller outside the scheduler's runs: answered once the core has stopped, with the runs
    /// it gave up on.
    Stopped(oneshot::Sender<Result<Vec<AbandonedRun>>>),
    /// A run of this scheduler: answered as soon as the shutdown has begun, since waiting for
    /// running jobs would wait for itself.
    Begun(oneshot::Sender<Result<()>>),
}

/// How long cancelled runs get to end once a shutdown's timeout has passed, before the core
/// stops waiting for them and reports them abandoned (a run that never reaches an `.await`
/// cannot be stopped).
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// The next run of a job: the trigger's fire time, and the jitter added to it (in whole
/// milliseconds, so the pair fits in 16 bytes).
#[derive(Clone, Copy, Debug)]
struct NextRun {
    regular: DateTime<Utc>,
    jitter_ms: u32,
}

impl NextRun {
    fn new(regular: DateTime<Utc>, at: DateTime<Utc>) -> NextRun {
        let jitter_ms = (at - regular)
            .num_milliseconds()
            .clamp(0, i64::from(u32::MAX));
        NextRun {
            regular,
            jitter_ms: jitter_ms as u32,
        }
    }

    /// When it runs.
    fn at(self) -> DateTime<Utc> {
        self.regular
            .checked_add_signed(TimeDelta::milliseconds(i64::from(self.jitter_ms)))
            .unwrap_or(self.regular)
    }
}

/// One job as the core holds it. Kept small: a scheduler may hold a million.
pub(crate) struct Entry {
    id: JobId,
    /// A name given with `.name(..)`; otherwise the task's function name.
    name: Option<Arc<str>>,
    task: Box<dyn TaskBody>,
    trigger: Trigger,
    options: Admission,
    /// `None` exactly while paused (a job with no next run is removed). A heap item is current
    /// only while it matches `next.at()`.
    next: Option<NextRun>,
}

impl Entry {
    pub(crate) fn new(
        id: JobId,
        name: Option<Arc<str>>,
        task: Task,
        trigger: Trigger,
        options: JobOptions,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Entry {
        Entry {
            id,
            name,
            task: task.into_body(),
            trigger,
            options: Admission::from(options),
            next: next.map(|(regular, at)| NextRun::new(regular, at)),
        }
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| self.task.name())
    }

    pub(crate) fn snapshot(&self, default_zone: crate::Zone) -> Job {
        let zone = self.trigger.timezone().unwrap_or(default_zone);
        Job {
            id: self.id.clone(),
            name: self.name().to_string(),
            trigger: self.trigger.clone(),
            next_run_time: self.next.map(|n| n.at().with_timezone(&zone)),
            options: self.options.into(),
            paused: self.next.is_none(),
        }
    }
}

/// [`JobOptions`] in 16 bytes: the grace time in whole milliseconds (`u64::MAX`: none).
/// A scheduler may hold a million entries; this keeps each one a cache line smaller.
#[derive(Clone, Copy, Debug)]
struct Admission {
    grace_ms: u64,
    max_instances: u32,
    coalesce: bool,
}

impl Admission {
    fn grace_ms(grace: Option<Duration>) -> u64 {
        grace.map_or(u64::MAX, |g| {
            u64::try_from(g.as_millis()).unwrap_or(u64::MAX - 1)
        })
    }

    fn grace(self) -> Option<TimeDelta> {
        (self.grace_ms != u64::MAX).then(|| {
            i64::try_from(self.grace_ms)
                .ok()
                .and_then(TimeDelta::try_milliseconds)
                .unwrap_or(TimeDelta::MAX)
        })
    }
}

impl From<JobOptions> for Admission {
    fn from(options: JobOptions) -> Admission {
        Admission {
            grace_ms: Admission::grace_ms(options.misfire_grace_time),
            max_instances: options.max_instances,
            coalesce: options.coalesce,
        }
    }
}

impl From<Admission> for JobOptions {
    fn from(admission: Admission) -> JobOptions {
        JobOptions {
            misfire_grace_time: (admission.grace_ms != u64::MAX)
                .then(|| Duration::from_millis(admission.grace_ms)),
            coalesce: admission.coalesce,
            max_instances: admission.max_instances,
        }
    }
}

/// A heap item: the entry `key` is due at `at_us` (µs since the epoch), if its next run is
/// still that one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_us: i64,
    key: u64,
}

/// The job table: a slab of entries addressed by keys that the handles hand out from the
/// shared index (slot in the low 32 bits, generation in the high 32). A slab rather than a map:
/// no hashing, and entries sit in arrays instead of one allocation each. The arrays are
/// fixed-size chunks, never moved or regrown, so a growing table leaves no freed copies of
/// itself behind in the process's memory.
#[derive(Default)]
struct Jobs {
    chunks: Vec<Box<[Slot]>>,
    len: usize,
}

const CHUNK: usize = 1024;

/// The generation and the run count sit beside the entry, in what would be its padding.
#[derive(Default)]
struct Slot {
    entry: Option<Entry>,
    generation: u32,
    /// Runs of this slot's job under way, for `max_instances`.
    running: u32,
}

fn split_key(key: u64) -> (usize, u32) {
    ((key & u64::from(u32::MAX)) as usize, (key >> 32) as u32)
}

impl Jobs {
    fn slot(&self, index: usize) -> Option<&Slot> {
        self.chunks
            .get(index / CHUNK)
            .map(|chunk| &chunk[index % CHUNK])
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.chunks
            .get_mut(index / CHUNK)
            .map(|chunk| &mut chunk[index % CHUNK])
    }

    fn get(&self, key: u64) -> Option<&Entry> {
        let (index, generation) = split_key(key);
        let slot = self.slot(index)?;
        slot.entry
            .as_ref()
            .filter(|_| slot.generation == generation)
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        let (index, generation) = split_key(key);
        let slot = self.slot_mut(index)?;
        slot.entry
            .as_mut()
            .filter(|_| slot.generation == generation)
    }

    /// The entry and its count of runs under way.
    fn get_with_running(&mut self, key: u64) -> Option<(&mut Entry, &mut u32)> {
        let (index, generation) = split_key(key);
        let slot = self.slot_mut(index)?;
        match &mut slot.entry {
            Some(entry) if slot.generation == generation => Some((entry, &mut slot.running)),
            _ => None,
        }
    }

    fn insert(&mut self, key: u64, entry: Entry) {
        let (index, generation) = split_key(key);
        while self.chunks.len() <= index / CHUNK {
            self.chunks
                .push((0..CHUNK).map(|_| Slot::default()).collect());
        }
        let slot = &mut self.chunks[index / CHUNK][index % CHUNK];
        slot.generation = generation;
        slot.running = 0;
        if slot.entry.replace(entry).is_none() {
            self.len += 1;
        }
    }

    /// How many jobs the table holds.
    fn len(&self) -> usize {
        self.len
    }

    /// Whether a heap item for `key` at `at_us` is current: the job is there, and its next run
    /// is still that one.
    fn is_due_at(&self, key: u64, at_us: i64) -> bool {
        self.get(key)
            .and_then(|entry| entry.next)
            .is_some_and(|next| next.at().timestamp_micros() == at_us)
    }

    /// Drops the entry in place (it is large: moving it out costs) and returns its id.
    fn remove(&mut self, key: u64) -> Option<JobId> {
        let (index, generation) = split_key(key);
        let slot = self.slot_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let id = slot.entry.as_ref()?.id.clone();
        slot.entry = None;
        self.len -= 1;
        Some(id)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .enumerate()
            .filter_map(|(i, slot)| {
                let key = i as u64 | (u64::from(slot.generation) << 32);
                slot.entry.as_ref().map(|entry| (key, entry))
            })
    }

    fn keys(&self) -> Vec<u64> {
        self.iter().map(|(key, _)| key).collect()
    }
}

/// What a finished run reports: which run (its slot in the core's run table), how it went.
struct RunDone {
    run: u32,
    duration: Duration,
    result: RunResult,
}

/// A run under way, as the core tracks it from its start to the report of its end.
struct Running {
    key: u64,
    id: JobId,
    scheduled: DateTime<Utc>,
    /// Set for a run of a catch-up without coalescing: the later missed fire times it is to be
    /// followed by, one after another.
    catch_up: Option<Box<CatchUp>>,
}

/// Missed fire times of one job, run one after another (APScheduler 3 runs them in one
/// submission): the trigger they come from and the last of them. The trigger is the one the
/// catch-up began with; a job rescheduled since ends its catch-up.
struct CatchUp {
    trigger: Trigger,
    until: DateTime<Utc>,
}

/// The runs under way, by slot. A slot is freed when its run's end is reported, so a report
/// always finds its run.
#[derive(Default)]
struct Runs {
    slots: Vec<Option<Running>>,
    free: Vec<u32>,
    len: usize,
}

impl Runs {
    fn insert(&mut self, running: Running) -> u32 {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(running);
                slot
            }
            None => {
                self.slots.push(Some(running));
                // More than four billion runs at once cannot fit in memory before this does.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn remove(&mut self, slot: u32) -> Option<Running> {
        let running = self.slots.get_mut(slot as usize)?.take()?;
        self.len -= 1;
        self.free.push(slot);
        Some(running)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn drain(&mut self) -> impl Iterator<Item = Running> + '_ {
        self.len = 0;
        self.free.clear();
        self.slots.drain(..).flatten()
    }
}

tokio::task_local! {
    /// Set while a run's future is polled: the scheduler it belongs to (its shared state's
    /// address), so a job calling `shutdown()` on its own scheduler does not wait for itself.
    static RUN_OF: usize;
}

thread_local! {
    /// The same for a blocking run's body, on its blocking thread.
    static BLOCKING_RUN_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether the caller is a run (async or blocking) of the scheduler `shared` belongs to.
pub(crate) fn in_run_of(shared: &Arc<Shared>) -> bool {
    let me = Arc::as_ptr(shared) as usize;
    RUN_OF.try_with(|of| *of == me).unwrap_or(false) || BLOCKING_RUN_OF.with(|of| of.get() == me)
}

/// What every run of one scheduler shares, behind one `Arc` cloned per run (a
/// `CancellationToken` clone takes a lock; an `Arc` clone does not).
pub(crate) struct RunEnv {
    shared: Arc<Shared>,
    /// To hand jobs a scheduler handle without keeping the core alive through itself.
    weak_tx: mpsc::WeakSender<Command>,
    /// Cancelled when shutdown stops waiting for runs.
    pub(crate) cancel: CancellationToken,
    blocking_permits: Arc<Semaphore>,
    /// Where runs report their end (a lock-free queue, drained by the core in batches).
    done: mpsc::UnboundedSender<RunDone>,
}

impl RunEnv {
    pub(crate) fn scheduler(&self) -> Option<Scheduler> {
        self.weak_tx.upgrade().map(|tx| Scheduler {
            tx,
            shared: Arc::clone(&self.shared),
        })
    }
}

/// Reports a run's end to the core when dropped, so every spawned run is accounted for even
/// if its task is dropped before it finishes.
struct Completion {
    env: Arc<RunEnv>,
    run: u32,
    started: Instant,
    result: Option<RunResult>,
}

impl Completion {
    fn finish(&mut self, result: RunResult) {
        self.result = Some(result);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err("the run was dropped before it ended".into()));
        // After the core has stopped nobody listens; that is not an error.
        let _ = self.env.done.send(RunDone {
            run: self.run,
            duration: self.started.elapsed(),
            result,
        });
    }
}

pub(crate) struct Core {
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    settings: Settings,
    jobs: Jobs,
    heap: BinaryHeap<Reverse<Due>>,
    env: Arc<RunEnv>,
    done: mpsc::UnboundedReceiver<RunDone>,
    /// The runs spawned and not yet reported done.
    runs: Runs,
    /// Runs ready to spawn, gathered while handling due jobs or commands.
    ready: Vec<RunTask>,
    state: SchedulerState,
    /// Set once shutdown began: who waits for it, and when to give up on running jobs.
    shutting_down: Option<ShutdownState>,
    /// The wall and monotonic clocks at the last wake, to tell a clock jump.
    last_wall: DateTime<Utc>,
    last_mono: Instant,
}

struct ShutdownState {
    waiters: Vec<oneshot::Sender<Result<Vec<AbandonedRun>>>>,
    /// When to stop waiting: first to cancel the runs, then (once cancelled) to abandon them.
    deadline: Option<Instant>,
    cancelled: bool,
}

/// Heap items that no longer match their job may pile up (every remove, pause or reschedule
/// leaves one until its old due time); the heap is compacted once they outnumber the jobs by
/// this many.
const HEAP_SLACK: usize = 1024;

impl Core {
    pub(crate) fn new(
        rx: mpsc::Receiver<Command>,
        weak_tx: mpsc::WeakSender<Command>,
        shared: Arc<Shared>,
        settings: Settings,
    ) -> Core {
        let last_wall = shared.clock.now();
        let (done_tx, done) = mpsc::unbounded_channel();
        let env = Arc::new(RunEnv {
            shared: Arc::clone(&shared),
            weak_tx,
            cancel: CancellationToken::new(),
            blocking_permits: Arc::new(Semaphore::new(settings.max_blocking_jobs)),
            done: done_tx,
        });
        Core {
            rx,
            shared,
            settings,
            jobs: Jobs::default(),
            heap: BinaryHeap::new(),
            env,
            done,
            runs: Runs::default(),
            ready: Vec::new(),
            state: SchedulerState::Stopped,
            shutting_down: None,
            last_wall,
            last_mono: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut sleep: std::pin::Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(Duration::ZERO));
        // The heap top the timer is armed for; re-armed only when that changes or it fires.
        let mut armed: Option<Option<i64>> = None;
        let mut rx_open = true;
        loop {
            let now = self.wake();
            let mut backlog = false;
            if self.state == SchedulerState::Running && self.shutting_down.is_none() {
                backlog = self.run_due(now);
            }
            self.spawn_ready();
            self.compact_heap();
            if self.shutting_down.is_some() && self.runs.is_empty() {
                break;
            }
            if !backlog {
                let target = self.next_due_us();
                if armed != Some(target) {
                    sleep.as_mut().reset(self.deadline_for(target, now));
                    armed = Some(target);
                }
            }
            let shutdown_deadline = self.shutting_down.as_ref().and_then(|s| s.deadline);
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
                        if self.shutting_down.is_none() {
                            self.begin_shutdown(None);
                        }
                    }
                },
                Some(done) = self.done.recv() => {
                    self.finished(done);
                    while let Ok(done) = self.done.try_recv() {
                        self.finished(done);
                    }
                }
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
        self.finish_shutdown();
    }

    /// A shutdown's deadline passed: the first time, cancel what still runs and give the runs a
    /// moment to end at their next `.await`; the second time, stop waiting (returns `true`).
    fn give_up_waiting(&mut self) -> bool {
        let Some(shutdown) = self.shutting_down.as_mut() else {
            return false;
        };
        if shutdown.cancelled {
            return true;
        }
        self.env.cancel.cancel();
        shutdown.cancelled = true;
        shutdown.deadline = Instant::now().checked_add(CANCEL_GRACE);
        false
    }

    /// Reads both clocks, reports a wall-clock jump, and returns the wall-clock time.
    fn wake(&mut self) -> DateTime<Utc> {
        let wall = self.shared.clock.now();
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
        if self.state != SchedulerState::Running || self.shutting_down.is_some() {
            return None;
        }
        self.heap.peek().map(|Reverse(due)| due.at_us)
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

    /// Drops the heap items that no longer match their job, once they outnumber the jobs:
    /// without this, adding and removing a million hourly jobs would leave a million items
    /// behind until their hour came. Amortized O(1) per stale item.
    fn compact_heap(&mut self) {
        if self.heap.len() <= 2 * self.jobs.len() + HEAP_SLACK {
            return;
        }
        let jobs = &self.jobs;
        self.heap
            .retain(|Reverse(due)| jobs.is_due_at(due.key, due.at_us));
        self.heap.shrink_to(2 * self.heap.len() + HEAP_SLACK);
    }

    // ---- due runs ----

    /// Spawns the runs gathered so far. A few are spawned here; a batch is handed to a helper
    /// task that spawns them, so spawning (most of a run's cost to the core) goes on beside the
    /// core's next batch instead of in line with it.
    fn spawn_ready(&mut self) {
        const INLINE: usize = 8;
        if self.ready.len() <= INLINE {
            for task in self.ready.drain(..) {
                tokio::spawn(task);
            }
        } else {
            let batch = std::mem::take(&mut self.ready);
            tokio::spawn(async move {
                for task in batch {
                    tokio::spawn(task);
                }
            });
        }
    }

    /// Handles due jobs, at most one batch; returns whether more are due.
    fn run_due(&mut self, now: DateTime<Utc>) -> bool {
        let now_us = now.timestamp_micros();
        for _ in 0..DUE_BATCH {
            let Some(Reverse(due)) = self.heap.peek().copied() else {
                return false;
            };
            if due.at_us > now_us {
                return false;
            }
            self.heap.pop();
            if !self.jobs.is_due_at(due.key, due.at_us) {
                continue;
            }
            let fired = std::panic::catch_unwind(AssertUnwindSafe(|| self.fire(due.key, now)));
            if fired.is_err() {
                self.drop_broken(due.key, "panicked while computing its next run");
            }
        }
        self.heap
            .peek()
            .is_some_and(|Reverse(due)| due.at_us <= now_us)
    }

    /// Handles one due job: runs what the misfire rules say, and schedules the next.
    fn fire(&mut self, key: u64, now: DateTime<Utc>) {
        let Some(entry) = self.jobs.get_mut(key) else {
            return;
        };
        let Some(due) = entry.next.take() else {
            return;
        };
        let decision = decide(&entry.trigger, due, entry.options, now);
        let catch_up = decision.catch_up_until.map(|until| {
            Box::new(CatchUp {
                trigger: entry.trigger.clone(),
                until,
            })
        });
        let id = entry.id.clone();
        if let Some(scheduled) = decision.missed {
            self.missed(&id, scheduled);
        }
        if let Some(scheduled) = decision.run {
            self.submit(key, scheduled, catch_up);
        }
        match decision.next {
            Ok(Some(regular)) => self.schedule(key, regular),
            Ok(None) => self.remove_entry(key),
            Err(error) => self.drop_broken(key, &error.to_string()),
        }
    }

    fn missed(&self, id: &JobId, scheduled: DateTime<Utc>) {
        tracing::warn!(job.id = %id, %scheduled, "apsched: run missed by more than its grace time");
        self.shared.emit(|| Event::JobMissed {
            job_id: id.clone(),
            scheduled_run_time: scheduled,
        });
    }

    /// Sets the entry's next run at `regular` (plus jitter) and queues it.
    fn schedule(&mut self, key: u64, regular: DateTime<Utc>) {
        let Some(entry) = self.jobs.get_mut(key) else {
            return;
        };
        let next = NextRun::new(regular, entry.trigger.jittered(regular));
        entry.next = Some(next);
        self.heap.push(Reverse(Due {
            at_us: next.at().timestamp_micros(),
            key,
        }));
    }

    /// Starts one run of the job, unless `max_instances` runs are going already (then the run,
    /// and the rest of a catch-up it would begin, is skipped).
    fn submit(&mut self, key: u64, scheduled: DateTime<Utc>, catch_up: Option<Box<CatchUp>>) {
        let Some((entry, running)) = self.jobs.get_with_running(key) else {
            return;
        };
        if *running >= entry.options.max_instances {
            tracing::warn!(job.id = %entry.id, "apsched: run skipped, max_instances reached");
            self.shared.emit(|| Event::JobMaxInstances {
                job_id: entry.id.clone(),
                scheduled_run_time: scheduled,
            });
            return;
        }
        *running += 1;
        let run = self.runs.insert(Running {
            key,
            id: entry.id.clone(),
            scheduled,
            catch_up,
        });
        self.shared.running.store(self.runs.len, Ordering::Relaxed);
        let span = tracing::info_span!(
            "apsched.job",
            job.id = %entry.id,
            job.name = entry.name(),
            scheduled = %scheduled
        );
        self.shared.emit(|| Event::JobSubmitted {
            job_id: entry.id.clone(),
            scheduled_run_time: scheduled,
        });
        let launch = Launch {
            completion: Completion {
                env: Arc::clone(&self.env),
                run,
                started: Instant::now(),
                result: None,
            },
            id: entry.id.clone(),
            scheduled,
            span,
            name: entry.name.clone(),
            sink: &mut self.ready,
        };
        entry.task.start(launch);
    }

    fn finished(&mut self, done: RunDone) {
        // Every spawned run ends here exactly once, whatever its outcome.
        let Some(running) = self.runs.remove(done.run) else {
            return;
        };
        self.shared.running.store(self.runs.len, Ordering::Relaxed);
        if let Some((_, count)) = self.jobs.get_with_running(running.key) {
            *count = count.saturating_sub(1);
        }
        let Running {
            key,
            id,
            scheduled,
            catch_up,
        } = running;
        if let Err(message) = &done.result {
            tracing::error!(job.id = %id, error = %message, "apsched: job failed");
        }
        if let Some(catch_up) = catch_up {
            self.go_on_catching_up(key, &id, scheduled, catch_up);
        }
        self.shared.emit(|| match done.result {
            Ok(()) => Event::JobExecuted {
                job_id: id,
                scheduled_run_time: scheduled,
                duration: done.duration,
            },
            Err(message) => Event::JobError {
                job_id: id,
                scheduled_run_time: scheduled,
                duration: done.duration,
                message,
            },
        });
    }

    /// After a catch-up run: starts the next missed fire time of the catch-up, if it is still
    /// within the grace time (else reports it missed and skips to the first that is). A job
    /// paused, removed or rescheduled meanwhile ends its catch-up; so does a paused or
    /// stopping scheduler, reporting the rest missed.
    fn go_on_catching_up(
        &mut self,
        key: u64,
        id: &JobId,
        previous: DateTime<Utc>,
        catch_up: Box<CatchUp>,
    ) {
        let now = self.shared.clock.now();
        let Some(entry) = self.jobs.get(key) else {
            return;
        };
        if entry.next.is_none() || entry.trigger != catch_up.trigger {
            return;
        }
        let grace = entry.options.grace();
        let Ok(Some(mut next)) = catch_up.trigger.next_fire_time(Some(previous), now) else {
            return;
        };
        if next > catch_up.until {
            return;
        }
        if self.state != SchedulerState::Running || self.shutting_down.is_some() {
            self.missed(id, next);
            return;
        }
        if let Some(grace) = grace.filter(|g| now - next > *g) {
            self.missed(id, next);
            let cutoff = now.checked_sub_signed(grace).unwrap_or(now);
            match catch_up.trigger.fire_time_at_or_after(cutoff) {
                Ok(Some(in_grace)) if in_grace <= catch_up.until => next = in_grace,
                _ => return,
            }
        }
        self.submit(key, next, Some(catch_up));
    }

    /// Removes a job the core cannot go on scheduling, and says why.
    fn drop_broken(&mut self, key: u64, why: &str) {
        if let Some(entry) = self.jobs.get(key) {
            tracing::error!(job.id = %entry.id, why, "apsched: job removed, its trigger failed");
        }
        self.remove_entry(key);
    }

    /// Takes a job out of the table, and out of the index unless the id already names a
    /// newer job; its key's slot is free for reuse from then on.
    fn remove_entry(&mut self, key: u64) {
        if let Some(id) = self.jobs.remove(key) {
            self.shared.index().release(key, &id);
            self.shared.emit(|| Event::JobRemoved { job_id: id });
        }
    }

    // ---- commands ----

    fn handle(&mut self, command: Command) {
        // Commands queued behind a shutdown (even in the same batch) are refused.
        if self.shutting_down.is_some() {
            reject(command);
            return;
        }
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| self.apply(command))) {
            tracing::error!(panic = %panic_message(&*panic), "apsched: a command panicked in the core; it was dropped");
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Add {
                key,
                entry,
                replaces,
            } => self.add(key, entry, replaces),
            Command::Remove { key } => self.remove_entry(key),
            Command::RemoveAll { reply } => {
                let mut index = self.shared.index();
                for key in self.jobs.keys() {
                    if let Some(id) = self.jobs.remove(key) {
                        index.release(key, &id);
                    }
                }
                drop(index);
                self.heap.clear();
                self.shared.emit(|| Event::AllJobsRemoved);
                let _ = reply.send(());
            }
            Command::Get { key, reply } => {
                let zone = self.shared.timezone;
                let _ = reply.send(self.jobs.get(key).map(|e| e.snapshot(zone)));
            }
            Command::GetAll { reply } => {
                let zone = self.shared.timezone;
                let mut jobs: Vec<(u64, &Entry)> = self.jobs.iter().collect();
                jobs.sort_by_key(|(key, e)| (e.next.is_none(), e.next.map(|n| n.at()), *key));
                let _ = reply.send(jobs.into_iter().map(|(_, e)| e.snapshot(zone)).collect());
            }
            Command::Change { key, change, reply } => {
                let _ = reply.send(self.change(key, change));
            }
            Command::Start { paused, reply } => {
                let result = self.start(paused);
                let _ = reply.send(result);
            }
            Command::Pause { reply } => {
                let result = self.set_running(SchedulerState::Paused);
                let _ = reply.send(result);
            }
            Command::Resume { reply } => {
                let result = self.set_running(SchedulerState::Running);
                let _ = reply.send(result);
            }
            Command::Shutdown { timeout, reply } => {
                self.begin_shutdown(timeout);
                match reply {
                    ShutdownReply::Stopped(waiter) => {
                        if let Some(shutdown) = self.shutting_down.as_mut() {
                            shutdown.waiters.push(waiter);
                        }
                    }
                    ShutdownReply::Begun(waiter) => {
                        let _ = waiter.send(Ok(()));
                    }
                }
            }
        }
    }

    fn add(&mut self, key: u64, entry: Entry, replaces: Option<u64>) {
        let mut index = self.shared.index();
        // The job this one replaces goes first, whatever happens to this one.
        if let Some(old) = replaces {
            if let Some(old_id) = self.jobs.remove(old) {
                index.release(old, &old_id);
            }
        }
        // Handles send commands in the order they change the index, so an id that no longer
        // names this key was removed or replaced by a command queued behind this one: this
        // job would only be dropped again.
        if index.key_of(&entry.id) != Some(key) {
            index.release(key, &entry.id);
            return;
        }
        drop(index);
        if self.state != SchedulerState::Stopped {
            if let Some(next) = entry.next {
                self.heap.push(Reverse(Due {
                    at_us: next.at().timestamp_micros(),
                    key,
                }));
            }
        }
        let id = entry.id.clone();
        self.jobs.insert(key, entry);
        self.shared.emit(|| Event::JobAdded { job_id: id });
    }

    fn change(&mut self, key: u64, change: JobChange) -> Result<Option<Job>> {
        let now = self.shared.clock.now();
        let Some(entry) = self.jobs.get_mut(key) else {
            return Ok(None);
        };
        match change {
            JobChange::Modify {
                name,
                misfire_grace_time,
                coalesce,
                max_instances,
            } => {
                if let Some(name) = name {
                    entry.name = Some(name);
                }
                if let Some(grace) = misfire_grace_time {
                    entry.options.grace_ms = Admission::grace_ms(grace);
                }
                if let Some(coalesce) = coalesce {
                    entry.options.coalesce = coalesce;
                }
                if let Some(max) = max_instances {
                    entry.options.max_instances = max;
                }
            }
            JobChange::Reschedule(trigger) => {
                let first = trigger.next_fire_time(None, now)?;
                entry.trigger = trigger;
                self.set_next(key, first);
            }
            JobChange::Pause => entry.next = None,
            JobChange::Resume => {
                let first = entry.trigger.next_fire_time(None, now)?;
                if first.is_none() {
                    self.remove_entry(key);
                    return Ok(None);
                }
                self.set_next(key, first);
            }
            JobChange::RunNow => {
                self.submit(key, now, None);
            }
        }
        let entry = self.jobs.get(key).map(|e| e.snapshot(self.shared.timezone));
        if let Some(job) = &entry {
            self.shared.emit(|| Event::JobModified {
                job_id: job.id.clone(),
            });
        }
        Ok(entry)
    }

    /// Points a job at a new first run (or none) and queues it if the scheduler is started.
    fn set_next(&mut self, key: u64, first: Option<DateTime<Utc>>) {
        match first {
            Some(regular) if self.state != SchedulerState::Stopped => self.schedule(key, regular),
            Some(regular) => {
                if let Some(entry) = self.jobs.get_mut(key) {
                    entry.next = Some(NextRun::new(regular, entry.trigger.jittered(regular)));
                }
            }
            None => {
                if let Some(entry) = self.jobs.get_mut(key) {
                    entry.next = None;
                }
            }
        }
    }

    fn start(&mut self, paused: bool) -> Result<()> {
        if self.state != SchedulerState::Stopped {
            return Err(Error::InvalidState {
                state: self.state,
                action: "start",
            });
        }
        // Jobs added before start run from now on, as APScheduler: recompute their first run.
        let now = self.shared.clock.now();
        let keys: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.next.is_some())
            .map(|(k, _)| k)
            .collect();
        self.state = if paused {
            SchedulerState::Paused
        } else {
            SchedulerState::Running
        };
        for key in keys {
            let first = self
                .jobs
                .get(key)
                .map(|e| e.trigger.next_fire_time(None, now));
            match first {
                Some(Ok(Some(regular))) => self.schedule(key, regular),
                Some(Ok(None)) => self.remove_entry(key),
                Some(Err(error)) => self.drop_broken(key, &error.to_string()),
                None => {}
            }
        }
        self.shared.set_state(self.state);
        self.shared.emit(|| Event::SchedulerStarted);
        if paused {
            self.shared.emit(|| Event::SchedulerPaused);
        }
        Ok(())
    }

    fn set_running(&mut self, to: SchedulerState) -> Result<()> {
        let action = if to == SchedulerState::Paused {
            "pause"
        } else {
            "resume"
        };
        match self.state {
            SchedulerState::Running | SchedulerState::Paused => {
                if self.state != to {
                    self.state = to;
                    self.shared.set_state(to);
                    self.shared.emit(|| {
                        if to == SchedulerState::Paused {
                            Event::SchedulerPaused
                        } else {
                            Event::SchedulerResumed
                        }
                    });
                }
                Ok(())
            }
            state => Err(Error::InvalidState { state, action }),
        }
    }

    fn begin_shutdown(&mut self, timeout: Option<Duration>) {
        self.shared.set_state(SchedulerState::ShutDown);
        let state = self.shutting_down.get_or_insert_with(|| ShutdownState {
            waiters: Vec::new(),
            deadline: None,
            cancelled: false,
        });
        // A timeout past the end of `Instant` is no timeout.
        if let Some(deadline) = timeout.and_then(|t| Instant::now().checked_add(t)) {
            if !state.cancelled {
                state.deadline = Some(state.deadline.map_or(deadline, |d| d.min(deadline)));
            }
        }
    }

    fn finish_shutdown(&mut self) {
        self.state = SchedulerState::ShutDown;
        self.shared.set_state(SchedulerState::ShutDown);
        // Runs still going were cancelled and had their grace: stop tracking them.
        let abandoned: Vec<AbandonedRun> = self
            .runs
            .drain()
            .map(|run| {
                tracing::warn!(job.id = %run.id, scheduled = %run.scheduled, "apsched: run abandoned at shutdown (still going after its cancellation)");
                AbandonedRun {
                    job_id: run.id,
                    scheduled_run_time: run.scheduled,
                }
            })
            .collect();
        self.shared.running.store(0, Ordering::Relaxed);
        self.rx.close();
        while let Ok(command) = self.rx.try_recv() {
            reject(command);
        }
        self.jobs = Jobs::default();
        self.heap.clear();
        *self.shared.index() = Index::default();
        self.shared.emit(|| Event::SchedulerShutdown);
        if let Some(state) = self.shutting_down.take() {
            for waiter in state.waiters {
                let _ = waiter.send(Ok(abandoned.clone()));
            }
        }
    }
}

impl Drop for Core {
    /// A core dropped without finishing its shutdown (its runtime shut down, or it panicked)
    /// leaves handles that can no longer be answered: they must say so, not "running".
    fn drop(&mut self) {
        if self.state != SchedulerState::ShutDown {
            self.shared.set_state(SchedulerState::Closed);
        }
    }
}

/// Answers a command that arrived after shutdown began.
fn reject(command: Command) {
    match command {
        Command::Start { reply, .. } | Command::Pause { reply } | Command::Resume { reply } => {
            let _ = reply.send(Err(Error::Shutdown));
        }
        Command::Shutdown { reply, .. } => match reply {
            ShutdownReply::Stopped(reply) => {
                let _ = reply.send(Err(Error::Shutdown));
            }
            ShutdownReply::Begun(reply) => {
                let _ = reply.send(Err(Error::Shutdown));
            }
        },
        Command::Change { reply, .. } => {
            let _ = reply.send(Err(Error::Shutdown));
        }
        // Dropping the reply sender makes the caller see `Error::Shutdown`.
        Command::Add { .. }
        | Command::Remove { .. }
        | Command::RemoveAll { .. }
        | Command::Get { .. }
        | Command::GetAll { .. } => {}
    }
}

/// What to do with a job whose next run is due, by APScheduler's misfire rules.
#[derive(Debug)]
struct Decision {
    /// Start a run standing for this fire time.
    run: Option<DateTime<Utc>>,
    /// Report this fire time, the first of a stretch, as missed.
    missed: Option<DateTime<Utc>>,
    /// After the run, run the later missed fire times up to this instant, one after another.
    catch_up_until: Option<DateTime<Utc>>,
    /// The next regular fire time to schedule (`Ok(None)`: the trigger is finished).
    next: Result<Option<DateTime<Utc>>>,
}

/// The misfire rules, as a pure function of the trigger, the due run, the job's options and
/// the time.
///
/// - On time (no later fire time is due yet): the run runs if it is within the grace time,
///   else it is missed.
/// - Behind (later fire times are due too), with `coalesce`: one run stands for all of them,
///   the latest, if that one is within the grace time; else they are missed.
/// - Behind, without `coalesce`: the fire times older than the grace time are missed (one
///   report for the stretch), and the rest run one after another, the first now.
///
/// However far behind, this costs a few dozen trigger calls.
fn decide(trigger: &Trigger, due: NextRun, options: Admission, now: DateTime<Utc>) -> Decision {
    let (regular, at) = (due.regular, due.at());
    let grace = options.grace();
    let in_grace = |fire_time: DateTime<Utc>| grace.is_none_or(|g| now - fire_time <= g);
    let after = trigger.next_fire_time(Some(regular), now);
    let behind = matches!(after, Ok(Some(n)) if n <= now);
    if !behind {
        let on_time = in_grace(at);
        return Decision {
            run: on_time.then_some(regular),
            missed: (!on_time).then_some(regular),
            catch_up_until: None,
            next: after,
        };
    }
    if options.coalesce {
        let latest = latest_fire_at_or_before(trigger, regular, now);
        let on_time = in_grace(latest);
        return Decision {
            run: on_time.then_some(latest),
            missed: (!on_time).then_some(regular),
            catch_up_until: None,
            next: trigger.next_fire_time(Some(latest), now),
        };
    }
    let first = if in_grace(at) {
        Some(regular)
    } else {
        let cutoff = grace.and_then(|g| now.checked_sub_signed(g)).unwrap_or(now);
        match trigger.fire_time_at_or_after(cutoff) {
            Ok(Some(first)) if first <= now => Some(first),
            _ => None,
        }
    };
    // Strictly after now: what is due now belongs to the catch-up.
    let next = match now.checked_add_signed(TimeDelta::nanoseconds(1)) {
        Some(after_now) => trigger.fire_time_at_or_after(after_now),
        None => Ok(None),
    };
    Decision {
        run: first,
        missed: (first != Some(regular)).then_some(regular),
        catch_up_until: first.map(|_| now),
        next,
    }
}

/// How a run is spawned: its task reports its end through `completion` and runs in `span`.
pub(crate) struct Launch<'a> {
    completion: Completion,
    id: JobId,
    scheduled: DateTime<Utc>,
    span: tracing::Span,
    /// Where the ready run goes: the core spawns a due batch's runs from a helper task.
    sink: &'a mut Vec<RunTask>,
    /// The job's name if one was given (tasks know their default name).
    name: Option<Arc<str>>,
}

const CANCELLED: &str = "cancelled: the scheduler shut down before the run ended";

/// A run, ready to spawn.
type RunTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl Launch<'_> {
    /// The run's context, built only for tasks that take one.
    pub(crate) fn context(&self, default_name: &'static str) -> JobContext {
        JobContext {
            id: self.id.clone(),
            name: match &self.name {
                Some(name) => Name::Shared(Arc::clone(name)),
                None => Name::Static(default_name),
            },
            scheduled_run_time: self.scheduled,
            env: Arc::clone(&self.completion.env),
        }
    }

    /// Readies an async run to be spawned as its own task, catching a panic as an error.
    pub(crate) fn spawn(self, run: impl Future<Output = RunResult> + Send + 'static) {
        let Launch {
            mut completion,
            span,
            sink,
            ..
        } = self;
        let scheduler = Arc::as_ptr(&completion.env.shared) as usize;
        let task = async move {
            let cancel = &completion.env.cancel;
            let result = tokio::select! {
                // The run first: a run that ends at once never registers with the token.
                biased;
                result = AssertUnwindSafe(run).catch_unwind() => result
                    .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic)))),
                // An async run is dropped at its next await; a blocking body cannot be
                // stopped, so it is abandoned to finish on its own.
                () = cancel.cancelled() => Err(CANCELLED.to_string()),
            };
            completion.finish(result);
        };
        sink.push(Box::pin(RUN_OF.scope(scheduler, task.instrument(span))));
    }

    /// Readies a blocking run: it waits for one of the `max_blocking_jobs` permits, then runs
    /// on the blocking pool.
    pub(crate) fn spawn_blocking(self, body: impl FnOnce() -> RunResult + Send + 'static) {
        let permits = Arc::clone(&self.completion.env.blocking_permits);
        let scheduler = Arc::as_ptr(&self.completion.env.shared) as usize;
        self.spawn(async move {
            // The permit is held on the blocking thread and released when the body ends.
            let Ok(permit) = permits.acquire_owned().await else {
                return Err("the blocking pool is closed".to_string());
            };
            let span = tracing::Span::current();
            let joined = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _entered = span.enter();
                BLOCKING_RUN_OF.with(|of| of.set(scheduler));
                let result = std::panic::catch_unwind(AssertUnwindSafe(body));
                BLOCKING_RUN_OF.with(|of| of.set(0));
                result
            })
            .await;
            match joined {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => Err(format!("panicked: {}", panic_message(&*panic))),
                Err(error) => Err(format!("the blocking run failed: {error}")),
            }
        });
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".into()
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The latest fire time at or before `now`, given `known`, a fire time at or before `now`.
///
/// Whether a probe instant has a fire time in `[probe, now]` is true up to the latest fire
/// time and false after it, so the latest is found by searching for where that changes:
/// backwards from `now` in doubling steps, then by bisection down to a millisecond, then
/// forward over the few fire times left. A clock that jumped ten years costs about a hundred
/// trigger calls, not five million.
fn latest_fire_at_or_before(
    trigger: &Trigger,
    known: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let fires_by_now = |probe: DateTime<Utc>| -> Option<DateTime<Utc>> {
        match trigger.fire_time_at_or_after(probe) {
            Ok(Some(found)) if found <= now => Some(found),
            _ => None,
        }
    };
    // `lo` has a fire time in [lo, now]; `hi` has none in [hi, now].
    let (mut lo, mut hi) = (known, now);
    if let Some(at_now) = fires_by_now(now) {
        return at_now;
    }
    let mut step = TimeDelta::milliseconds(1);
    while let Some(probe) = now.checked_sub_signed(step) {
        if probe <= known {
            break;
        }
        if fires_by_now(probe).is_some() {
            lo = probe;
            break;
        }
        hi = probe;
        let Some(doubled) = step.checked_mul(2) else {
            break;
        };
        step = doubled;
    }
    while hi - lo > TimeDelta::milliseconds(1) {
        let mid = lo + (hi - lo) / 2;
        if fires_by_now(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut latest = fires_by_now(lo).unwrap_or(known).max(known);
    // At most a few fire times lie within the last millisecond (an interval is at least 1 ms;
    // the bound covers combinations).
    for _ in 0..64 {
        match trigger.next_fire_time(Some(latest), now) {
            Ok(Some(next)) if next <= now => latest = next,
            _ => break,
        }
    }
    latest
}
#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    /// The per-job memory goal (300 bytes of RSS a job at 100,000 jobs) leaves the job table
    /// 136 bytes a slot: a field added here must pay for itself elsewhere.
    #[test]
    fn a_job_slot_stays_within_its_budget() {
        assert!(std::mem::size_of::<super::Slot>() <= 136);
        assert!(std::mem::size_of::<crate::trigger::Trigger>() <= 48);
    }
}
