//! Runs: how the core starts a job's run, tracks it, and hears of its end.
//!
//! Each run is its own task: its whole future (the job, panic catching, cancellation, the log
//! line and the report of its end) is built in one monomorphized step and boxed once. A run
//! reports its end over a lock-free queue with a drop guard, so every run started is accounted
//! for exactly once, which keeps `max_instances` counts and events exact. The core never awaits
//! a run.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::command::Command;
use super::misfire::next_catch_up;
use super::table::Key;
use super::{Core, Shared};
use crate::job::{Claim, JobContext, Name, RunResult};
#[cfg(feature = "metrics")]
use crate::metrics::Outcome;
use crate::store::{RunRecord, RunState};
use crate::trigger::Trigger;
use crate::{Event, JobId, Scheduler};

/// What a run reports: which run (its slot in the core's run table), how it went.
pub(super) struct RunDone {
    run: u32,
    duration: Duration,
    end: End,
}

/// How an attempt of a run ended, as its task reports it.
pub(crate) enum End {
    /// It returned (or panicked, or a shutdown cancelled it).
    Returned(RunResult),
    /// It passed its timeout: its token was cancelled, and it was stopped after the grace
    /// (or ended within it).
    TimedOut,
    /// A blocking run passed its timeout and its grace, and cannot be stopped: it keeps its
    /// worker. Its real end follows as another report.
    StillGoing,
}

/// A run's attempt that has its outcome, before the core decides whether to try again.
struct Ended {
    record: RunRecord,
    duration: Duration,
    catch_up: Option<Box<CatchUp>>,
    waiter: Option<Waiter>,
}

fn timed_out_message(elapsed: Duration) -> String {
    format!("timed out after {elapsed:.1?}")
}

/// Who waits for a run's outcome (`run_job_now(..).outcome()`).
pub(crate) type Waiter = tokio::sync::oneshot::Sender<RunRecord>;

/// A run under way, as the core tracks it from its start to the report of its end.
pub(super) struct Running {
    /// The job's key in the table; `None` for a cluster run (its job lives in the database).
    pub(super) key: Option<Key>,
    pub(super) id: JobId,
    pub(super) scheduled: DateTime<Utc>,
    /// When this attempt started, by the scheduler's clock.
    pub(super) started_at: DateTime<Utc>,
    /// The attempt under way: 1, then 2 for the first retry, ...
    attempt: u32,
    /// Set once a blocking run was reported timed out while still going: its real end only
    /// frees its place.
    timed_out: bool,
    /// Set for a run of a catch-up without coalescing: the later missed fire times it is to be
    /// followed by, one after another.
    catch_up: Option<Box<CatchUp>>,
    /// Set for a run a cluster node claimed: where its end is reported.
    cluster: Option<Box<ClusterTicket>>,
    waiter: Option<Waiter>,
    /// Its `job` metric label, taken at its start: a one-shot job is gone by its end.
    #[cfg(feature = "metrics")]
    pub(super) job: crate::metrics::JobLabel,
}

impl Running {
    /// Tells whoever waits for the run's outcome that it is `record`.
    pub(super) fn answer(&mut self, record: &RunRecord) {
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.send(record.clone());
        }
    }
}

/// A run waiting for its next attempt: it keeps its place under `max_instances`.
pub(super) struct Retry {
    key: Key,
    id: JobId,
    scheduled: DateTime<Utc>,
    /// The attempt to come.
    attempt: u32,
    /// When it is due, in microseconds since the epoch.
    at_us: i64,
    /// Why the last attempt failed: the run's outcome should this one not happen.
    error: String,
    catch_up: Option<Box<CatchUp>>,
    waiter: Option<Waiter>,
}

/// The runs waiting for a retry, soonest first: a min-heap on the due time, so a burst of
/// failures (a database down under a hundred thousand jobs) costs the core `log n` each.
#[derive(Default)]
pub(super) struct Retries(std::collections::BinaryHeap<std::cmp::Reverse<Retry>>);

impl PartialEq for Retry {
    fn eq(&self, other: &Retry) -> bool {
        self.at_us == other.at_us
    }
}

impl Eq for Retry {}

impl PartialOrd for Retry {
    fn partial_cmp(&self, other: &Retry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Retry {
    fn cmp(&self, other: &Retry) -> std::cmp::Ordering {
        self.at_us.cmp(&other.at_us)
    }
}

impl Retries {
    fn push(&mut self, retry: Retry) {
        self.0.push(std::cmp::Reverse(retry));
    }

    pub(super) fn first_us(&self) -> Option<i64> {
        self.0.peek().map(|r| r.0.at_us)
    }

    fn pop_due(&mut self, now_us: i64) -> Option<Retry> {
        (self.first_us()? <= now_us)
            .then(|| self.0.pop().map(|r| r.0))
            .flatten()
    }

    /// The runs of memory-store job `id` waiting for a retry, as history records.
    pub(super) fn waiting_of<'a>(&'a self, id: &'a JobId) -> impl Iterator<Item = RunRecord> + 'a {
        self.0
            .iter()
            .map(|r| &r.0)
            .filter(move |r| r.id == *id)
            .map(|r| {
                let mut record = RunRecord::new(&r.id, r.scheduled, RunState::Retrying);
                record.attempts = r.attempt - 1;
                record.error = Some(r.error.clone());
                record.due_at = DateTime::from_timestamp_micros(r.at_us);
                record
            })
    }
}

/// A cluster run's way back to its node.
pub(super) struct ClusterTicket {
    run_id: i64,
    fence: u64,
    done: mpsc::UnboundedSender<ClusterRunDone>,
}

/// A run a cluster node claimed, for the core to start like any run.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct ClusterRun {
    /// The run's row.
    pub(crate) run_id: i64,
    pub(crate) fence: u64,
    pub(crate) id: JobId,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) task: crate::Task,
    pub(crate) scheduled: DateTime<Utc>,
    /// Cancelled when the node loses its lease.
    pub(crate) token: CancellationToken,
    /// The job's timeout (retries are not run in a cluster).
    pub(crate) timeout: Option<Duration>,
    pub(crate) node: Arc<str>,
    pub(crate) done: mpsc::UnboundedSender<ClusterRunDone>,
}

impl ClusterRun {
    /// Tells the node that the run did not start, so it hands the claim back.
    pub(super) fn hand_back(self) {
        let _ = self.done.send(ClusterRunDone {
            run_id: self.run_id,
            fence: self.fence,
            id: self.id,
            scheduled: self.scheduled,
            result: None,
            timed_out: false,
        });
    }
}

/// A cluster run's end (or that it never started), as the core reports it to its node.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct ClusterRunDone {
    pub(crate) run_id: i64,
    pub(crate) fence: u64,
    pub(crate) id: JobId,
    pub(crate) scheduled: DateTime<Utc>,
    /// `None`: the run did not start (the scheduler is stopping), so the node hands it back.
    pub(crate) result: Option<RunResult>,
    /// Whether it passed its timeout (its result is then the error saying so).
    pub(crate) timed_out: bool,
}

/// Missed fire times of one job, run one after another (APScheduler 3 runs them in one
/// submission): the trigger they come from and the last of them. The trigger is the one the
/// catch-up began with; a job rescheduled since ends its catch-up.
pub(super) struct CatchUp {
    pub(super) trigger: Trigger,
    pub(super) until: DateTime<Utc>,
}

/// The runs under way, by slot. A slot is freed when its run's end is reported, so a report
/// always finds its run.
#[derive(Default)]
pub(super) struct Runs {
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

    fn get_mut(&mut self, slot: u32) -> Option<&mut Running> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn remove(&mut self, slot: u32) -> Option<Running> {
        let running = self.slots.get_mut(slot as usize)?.take()?;
        self.len -= 1;
        self.free.push(slot);
        Some(running)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs of job `id` under way, as history records (memory-store jobs only: a cluster
    /// run's row is in its database).
    pub(super) fn running_of<'a>(&'a self, id: &'a JobId) -> impl Iterator<Item = RunRecord> + 'a {
        self.slots
            .iter()
            .flatten()
            .filter(move |r| r.id == *id && r.cluster.is_none() && !r.timed_out)
            .map(|r| {
                let mut record = RunRecord::new(&r.id, r.scheduled, RunState::Running);
                record.started_at = Some(r.started_at);
                record.attempts = r.attempt;
                record
            })
    }

    /// Forgets every run: the core stops tracking them (at the end of a shutdown).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Running> + '_ {
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
    blocking_permits: Arc<Semaphore>,
    /// Where runs report their end (a lock-free queue, drained by the core in batches).
    done: mpsc::UnboundedSender<RunDone>,
    /// The level of the line a failed run logs (`None`: no line).
    failure_level: Option<tracing::Level>,
    /// How long a run past its timeout has to end once cancelled, before it is dropped.
    timeout_grace: Duration,
}

impl RunEnv {
    pub(super) fn new(
        shared: Arc<Shared>,
        weak_tx: mpsc::WeakSender<Command>,
        max_blocking_jobs: usize,
        failure_level: Option<tracing::Level>,
        timeout_grace: Duration,
    ) -> (Arc<RunEnv>, mpsc::UnboundedReceiver<RunDone>) {
        let (done, reports) = mpsc::unbounded_channel();
        let env = RunEnv {
            shared,
            weak_tx,
            blocking_permits: Arc::new(Semaphore::new(max_blocking_jobs)),
            done,
            failure_level,
            timeout_grace,
        };
        (Arc::new(env), reports)
    }

    /// A handle to the scheduler, while one outside the runs lives.
    pub(crate) fn scheduler(&self) -> Option<Scheduler> {
        let tx = self.weak_tx.upgrade()?;
        Some(Scheduler::from_parts(tx, Arc::clone(&self.shared)))
    }

    pub(crate) fn cancellation_token(&self) -> &CancellationToken {
        &self.shared.runs_cancel
    }

    /// Cancels every run's token (a shutdown stopped waiting for them).
    pub(super) fn cancel_runs(&self) {
        self.shared.runs_cancel.cancel();
    }
}

/// Reports a run's end to the core when dropped, so every spawned run is accounted for even
/// if its task is dropped before it finishes.
struct Completion {
    env: Arc<RunEnv>,
    run: u32,
    started: Instant,
    end: Option<End>,
}

impl Completion {
    fn finish(&mut self, end: End) {
        self.end = Some(end);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let end = self
            .end
            .take()
            .unwrap_or_else(|| End::Returned(Err("the run was dropped before it ended".into())));
        report(&self.env, self.run, self.started, end);
    }
}

fn report(env: &RunEnv, run: u32, started: Instant, end: End) {
    // After the core has stopped nobody listens; that is not an error.
    let _ = env.done.send(RunDone {
        run,
        duration: started.elapsed(),
        end,
    });
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
    /// Set for a cluster run.
    claim: Option<Arc<Claim>>,
    /// The attempt (1 unless retried).
    attempt: u32,
    /// Set for a run with a timeout: how long it may take, and its own token (a child of the
    /// scheduler's or its claim's), cancelled when it passes it.
    timeout: Option<(Duration, CancellationToken)>,
}

const CANCELLED: &str = "cancelled: the scheduler shut down before the run ended";

/// A run, ready to spawn.
pub(super) type RunTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl Launch<'_> {
    /// The run's context, built only for tasks that take one.
    pub(crate) fn context(&self, default_name: Option<&'static str>) -> JobContext {
        let name = match (&self.name, default_name) {
            (Some(name), _) => Name::Shared(Arc::clone(name)),
            (None, Some(name)) => Name::Static(name),
            (None, None) => Name::Shared(self.id.shared()),
        };
        JobContext::new(
            self.id.clone(),
            name,
            self.scheduled,
            Arc::clone(&self.completion.env),
            self.claim.clone(),
            self.attempt,
            self.timeout.as_ref().map(|(_, token)| token.clone()),
        )
    }

    /// Readies an async run to be spawned as its own task, catching a panic as an error. It is
    /// dropped at its next `.await` once a shutdown cancels the runs, or its timeout's grace
    /// has passed.
    pub(crate) fn spawn(mut self, run: impl Future<Output = RunResult> + Send + 'static) {
        let run = AssertUnwindSafe(run).catch_unwind().map(|caught| {
            caught.unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))))
        });
        match self.timeout.take() {
            None => self.ready(run.map(End::Returned), true),
            Some((limit, token)) => {
                let grace = self.completion.env.timeout_grace;
                self.ready(within(run, limit, grace, token), true);
            }
        }
    }

    fn ready(self, attempt: impl Future<Output = End> + Send + 'static, cancellable: bool) {
        let Launch {
            mut completion,
            span,
            sink,
            claim,
            ..
        } = self;
        let scheduler = Arc::as_ptr(&completion.env.shared) as usize;
        let task = async move {
            let env = Arc::clone(&completion.env);
            let cancelled = async {
                match (cancellable, &claim) {
                    // A claim's token is a child of the scheduler's: cancelled by either.
                    (true, Some(claim)) => claim.token.cancelled().await,
                    (true, None) => env.shared.runs_cancel.cancelled().await,
                    (false, _) => std::future::pending::<()>().await,
                }
            };
            let end = tokio::select! {
                // The run first: a run that ends at once never registers with the token.
                biased;
                end = attempt => end,
                () = cancelled => End::Returned(Err(CANCELLED.to_string())),
            };
            record_outcome(&end, completion.started.elapsed(), env.failure_level);
            completion.finish(end);
        };
        sink.push(Box::pin(RUN_OF.scope(scheduler, task.instrument(span))));
    }

    /// Readies a blocking run: it waits for one of the `max_blocking_jobs` permits, then runs
    /// on the blocking pool. A blocking body cannot be stopped: a shutdown that stops waiting
    /// for it reports it abandoned, a timeout reports it timed out, and it finishes on its own,
    /// holding its permit (and its place under `max_instances`) until then.
    pub(crate) fn spawn_blocking(mut self, body: impl FnOnce() -> RunResult + Send + 'static) {
        let permits = Arc::clone(&self.completion.env.blocking_permits);
        let scheduler = Arc::as_ptr(&self.completion.env.shared) as usize;
        let timeout = self.timeout.take();
        let (env, run) = (Arc::clone(&self.completion.env), self.completion.run);
        let started = self.completion.started;
        self.ready(
            async move {
                let deadline = timeout.as_ref().map(|(limit, _)| started + *limit);
                let mut until = std::pin::pin!(super::sleep_until_opt(deadline));
                // The permit is held on the blocking thread and released when the body ends.
                let permit = tokio::select! {
                    biased;
                    permit = permits.acquire_owned() => permit,
                    () = &mut until => return End::TimedOut,
                };
                let Ok(permit) = permit else {
                    return End::Returned(Err("the blocking pool is closed".to_string()));
                };
                let span = tracing::Span::current();
                let mut joined = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let _entered = span.enter();
                    BLOCKING_RUN_OF.with(|of| of.set(scheduler));
                    let result = std::panic::catch_unwind(AssertUnwindSafe(body));
                    BLOCKING_RUN_OF.with(|of| of.set(0));
                    result
                });
                let joined = tokio::select! {
                    biased;
                    joined = &mut joined => joined,
                    () = &mut until => {
                        let (Some((_, token)), Some(deadline)) = (timeout, deadline) else {
                            return End::TimedOut;
                        };
                        token.cancel();
                        let grace = tokio::time::sleep_until(deadline + env.timeout_grace);
                        tokio::select! {
                            biased;
                            _ = &mut joined => return End::TimedOut,
                            () = grace => {}
                        }
                        report(&env, run, started, End::StillGoing);
                        let _ = joined.await;
                        return End::TimedOut;
                    }
                };
                End::Returned(match joined {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(format!("panicked: {}", panic_message(&*panic))),
                    Err(error) => Err(format!("the blocking run failed: {error}")),
                })
            },
            false,
        );
    }
}

/// Runs `run` under a timeout: at `limit` its `token` is cancelled, and `grace` later it is
/// dropped. One timer entry: the grace reuses the timeout's.
async fn within(
    run: impl Future<Output = RunResult>,
    limit: Duration,
    grace: Duration,
    token: CancellationToken,
) -> End {
    let mut run = std::pin::pin!(run);
    let mut timer = std::pin::pin!(tokio::time::sleep(limit));
    tokio::select! {
        biased;
        result = &mut run => return End::Returned(result),
        () = &mut timer => {}
    }
    token.cancel();
    let deadline = timer.deadline() + grace;
    timer.as_mut().reset(deadline);
    tokio::select! {
        biased;
        _ = run => {}
        () = timer => {}
    }
    End::TimedOut
}

/// Records a run's outcome and duration on its span, and logs a failure inside it: a user
/// who logs `JobError` events too can turn the crate's line off.
fn record_outcome(end: &End, duration: Duration, failure_level: Option<tracing::Level>) {
    let span = tracing::Span::current();
    let (outcome, message) = match end {
        End::Returned(Ok(_)) => ("succeeded", None),
        End::Returned(Err(message)) => ("failed", Some(message.as_str())),
        End::TimedOut | End::StillGoing => ("timed_out", Some("timed out")),
    };
    span.record("outcome", outcome);
    span.record("duration_ms", duration.as_secs_f64() * 1e3);
    let (Some(message), Some(level)) = (message, failure_level) else {
        return;
    };
    match level {
        tracing::Level::ERROR => tracing::error!(error = %message, "apsched: job failed"),
        tracing::Level::WARN => tracing::warn!(error = %message, "apsched: job failed"),
        tracing::Level::INFO => tracing::info!(error = %message, "apsched: job failed"),
        tracing::Level::DEBUG => tracing::debug!(error = %message, "apsched: job failed"),
        tracing::Level::TRACE => tracing::trace!(error = %message, "apsched: job failed"),
    }
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".into()
    }
}

impl Core {
    /// Spawns the runs gathered so far. A few are spawned here; a batch is handed to a helper
    /// task that spawns them, so spawning (most of a run's cost to the core) goes on beside the
    /// core's next batch instead of in line with it.
    pub(super) fn spawn_ready(&mut self) {
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

    pub(super) fn missed(&mut self, key: Key, id: &JobId, scheduled: DateTime<Utc>) {
        tracing::warn!(job.id = %id, %scheduled, "apsched: run missed by more than its grace time");
        self.record_run(key, id, RunRecord::new(id, scheduled, RunState::Missed));
        #[cfg(feature = "metrics")]
        self.shared
            .metrics
            .run_skipped(crate::metrics::Outcome::Missed, self.jobs.get(key), id);
        self.shared.emit(|| Event::JobMissed {
            job_id: id.clone(),
            scheduled_run_time: scheduled,
        });
    }

    /// Starts one run of the job, unless `max_instances` runs are going already (then the run,
    /// and the rest of a catch-up it would begin, is skipped).
    pub(super) fn submit(
        &mut self,
        key: Key,
        scheduled: DateTime<Utc>,
        catch_up: Option<Box<CatchUp>>,
        waiter: Option<Waiter>,
    ) {
        let Some((entry, running)) = self.jobs.get_with_running(key) else {
            return;
        };
        if *running >= entry.options.max_instances {
            tracing::warn!(job.id = %entry.id, "apsched: run skipped, max_instances reached");
            #[cfg(feature = "metrics")]
            self.shared.metrics.run_skipped(
                crate::metrics::Outcome::MaxInstances,
                Some(entry),
                &entry.id,
            );
            let id = entry.id.clone();
            self.shared.emit(|| Event::JobMaxInstances {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
            });
            let record = RunRecord::new(&id, scheduled, RunState::Skipped);
            if let Some(waiter) = waiter {
                let _ = waiter.send(record.clone());
            }
            self.record_run(key, &id, record);
            return;
        }
        *running += 1;
        self.launch(key, scheduled, 1, catch_up, waiter);
    }

    /// Starts attempt `attempt` of a run the job's `max_instances` count holds already.
    fn launch(
        &mut self,
        key: Key,
        scheduled: DateTime<Utc>,
        attempt: u32,
        catch_up: Option<Box<CatchUp>>,
        waiter: Option<Waiter>,
    ) {
        let durable_history = self.is_durable(key) && !self.settings.history_retention.is_zero();
        let Some(entry) = self.jobs.get(key) else {
            return;
        };
        let started_at = self.shared.now();
        #[cfg(feature = "metrics")]
        let job = self
            .shared
            .metrics
            .run_started(entry, (attempt == 1).then(|| started_at - scheduled));
        let run = self.runs.insert(Running {
            key: Some(key),
            id: entry.id.clone(),
            scheduled,
            started_at,
            attempt,
            timed_out: false,
            catch_up,
            cluster: None,
            waiter,
            #[cfg(feature = "metrics")]
            job,
        });
        self.shared
            .running
            .store(self.runs.len(), Ordering::Relaxed);
        let span = tracing::info_span!(
            "apsched.job",
            job.id = %entry.id,
            job.name = entry.name(),
            scheduled = %scheduled,
            attempt,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        self.shared.emit(|| Event::JobSubmitted {
            job_id: entry.id.clone(),
            scheduled_run_time: scheduled,
        });
        if durable_history {
            let mut record = RunRecord::new(&entry.id, scheduled, RunState::Running);
            record.started_at = Some(started_at);
            record.attempts = attempt;
            self.outbox[usize::from(key.store())].push(crate::store::Write::Run(record));
        }
        let timeout = entry.run_control().and_then(|run| run.timeout);
        let launch = Launch {
            completion: Completion {
                env: Arc::clone(&self.env),
                run,
                started: Instant::now(),
                end: None,
            },
            id: entry.id.clone(),
            scheduled,
            span,
            name: entry.given_name().cloned(),
            sink: &mut self.ready,
            claim: None,
            attempt,
            timeout: timeout.map(|limit| (limit, self.shared.runs_cancel.child_token())),
        };
        entry.task.start(launch);
    }

    /// Starts a run a cluster node claimed. Its job is not in the table: the node admitted it
    /// (`max_instances` is counted cluster-wide, from the database), and its end goes back to
    /// the node, which writes it. A stopping scheduler does not start it: the node hands it
    /// back for another node to take.
    pub(super) fn start_cluster_run(&mut self, run: ClusterRun) {
        if !self.lifecycle.runs_jobs() {
            run.hand_back();
            return;
        }
        let ClusterRun {
            run_id,
            fence,
            id,
            name,
            task,
            scheduled,
            token,
            timeout,
            node,
            done,
        } = run;
        let timeout = timeout.map(|limit| (limit, token.child_token()));
        let started_at = self.shared.now();
        #[cfg(feature = "metrics")]
        let job = self.shared.metrics.cluster_run_started(
            name.as_ref(),
            task.name(),
            &id,
            started_at - scheduled,
        );
        let slot = self.runs.insert(Running {
            key: None,
            id: id.clone(),
            scheduled,
            started_at,
            attempt: 1,
            timed_out: false,
            catch_up: None,
            cluster: Some(Box::new(ClusterTicket {
                run_id,
                fence,
                done,
            })),
            waiter: None,
            #[cfg(feature = "metrics")]
            job,
        });
        self.shared
            .running
            .store(self.runs.len(), Ordering::Relaxed);
        let job_name = name.as_deref().or(task.name()).unwrap_or(id.as_str());
        let span = tracing::info_span!(
            "apsched.job",
            job.id = %id,
            job.name = job_name,
            scheduled = %scheduled,
            fence,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        self.shared.emit(|| Event::JobSubmitted {
            job_id: id.clone(),
            scheduled_run_time: scheduled,
        });
        let launch = Launch {
            completion: Completion {
                env: Arc::clone(&self.env),
                run: slot,
                started: Instant::now(),
                end: None,
            },
            id,
            scheduled,
            span,
            name,
            sink: &mut self.ready,
            claim: Some(Arc::new(Claim { fence, token, node })),
            attempt: 1,
            timeout,
        };
        task.into_body().start(launch);
    }

    pub(super) fn finished(&mut self, done: RunDone) {
        if let End::StillGoing = done.end {
            self.still_going(done.run, done.duration);
            return;
        }
        // Every spawned run ends here exactly once, whatever its outcome.
        let Some(running) = self.runs.remove(done.run) else {
            return;
        };
        self.shared
            .running
            .store(self.runs.len(), Ordering::Relaxed);
        let Running {
            key,
            id,
            scheduled,
            started_at,
            attempt,
            timed_out,
            catch_up,
            cluster,
            waiter,
            #[cfg(feature = "metrics")]
            job,
        } = running;
        let Some(key) = key else {
            #[cfg(feature = "metrics")]
            self.shared
                .metrics
                .run_ended(&job, Outcome::of_end(&done.end), done.duration);
            if let Some(ticket) = cluster {
                self.cluster_run_finished(*ticket, id, scheduled, done);
            }
            return;
        };
        let mut record = RunRecord::new(&id, scheduled, RunState::Succeeded);
        record.started_at = Some(started_at);
        record.finished_at = Some(self.shared.now());
        record.attempts = attempt;
        match done.end {
            // Reported when it passed its grace; now it has stopped, so its place is free.
            _ if timed_out => {}
            End::Returned(Ok(value)) => record.result = value,
            End::Returned(Err(message)) => {
                record.state = RunState::Failed;
                record.error = Some(message);
            }
            End::TimedOut | End::StillGoing => {
                record.state = RunState::TimedOut;
                record.error = Some(timed_out_message(done.duration));
                self.shared.emit(|| Event::JobTimedOut {
                    job_id: id.clone(),
                    scheduled_run_time: scheduled,
                    elapsed: done.duration,
                });
            }
        }
        if timed_out {
            self.run_over(key, &id, scheduled, catch_up);
            return;
        }
        let ended = Ended {
            record,
            duration: done.duration,
            catch_up,
            waiter,
        };
        let delay = self.retry_delay(key, &ended.record);
        #[cfg(feature = "metrics")]
        {
            let outcome = match delay {
                Some(_) => Outcome::Retrying,
                None => Outcome::of_state(ended.record.state),
            };
            self.shared.metrics.run_ended(&job, outcome, done.duration);
        }
        match delay {
            Some(delay) => self.retry(key, &id, ended, delay),
            None => self.run_ended(key, &id, ended),
        }
    }

    /// How long until a failed attempt is tried again, if the job's retry policy says it is.
    fn retry_delay(&self, key: Key, record: &RunRecord) -> Option<Duration> {
        // A success, most runs' end, is settled before the job is looked up again.
        if !matches!(record.state, RunState::Failed | RunState::TimedOut) {
            return None;
        }
        let policy = self.jobs.get(key)?.run_control()?.retry?;
        let retried = match record.state {
            RunState::Failed => record.error.as_deref() != Some(CANCELLED),
            _ => policy.retry_timeouts,
        };
        let more = record.attempts < policy.max_attempts && self.lifecycle.retries();
        (retried && more).then(|| policy.delay(record.attempts + 1))
    }

    /// Queues the run's next attempt after `delay`; the run keeps its place meanwhile.
    fn retry(&mut self, key: Key, id: &JobId, ended: Ended, delay: Duration) {
        let attempt = ended.record.attempts + 1;
        let now = self.shared.now();
        let due = chrono::TimeDelta::from_std(delay)
            .ok()
            .and_then(|delay| now.checked_add_signed(delay))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let error = ended.record.error.clone().unwrap_or_default();
        tracing::info!(job.id = %id, attempt, ?delay, error = %error, "apsched: run failed; retrying");
        self.shared.emit(|| Event::JobRetrying {
            job_id: id.clone(),
            scheduled_run_time: ended.record.fire_time,
            attempt,
            delay,
            message: error.clone(),
        });
        if self.is_durable(key) {
            // A pending retry is schedule, not history: written whatever the retention, so a
            // restarted scheduler carries it out.
            let mut record = ended.record.clone();
            record.state = RunState::Retrying;
            record.due_at = Some(due);
            self.outbox[usize::from(key.store())].push(crate::store::Write::Run(record));
        }
        self.retries.push(Retry {
            key,
            id: id.clone(),
            scheduled: ended.record.fire_time,
            attempt,
            at_us: due.timestamp_micros(),
            error,
            catch_up: ended.catch_up,
            waiter: ended.waiter,
        });
    }

    /// Starts the retries that are due, a batch at a time as due jobs are; returns whether
    /// more are due.
    pub(super) fn run_due_retries(&mut self, now: DateTime<Utc>) -> bool {
        let now_us = now.timestamp_micros();
        for _ in 0..super::due::DUE_BATCH {
            let Some(retry) = self.retries.pop_due(now_us) else {
                return false;
            };
            let Retry {
                key,
                id,
                scheduled,
                attempt,
                error,
                catch_up,
                waiter,
                ..
            } = retry;
            // A job removed meanwhile ends the run with its last error; a paused one does not
            // (the run had begun).
            if self.jobs.get(key).is_some() {
                self.launch(key, scheduled, attempt, catch_up, waiter);
                continue;
            }
            let mut record = RunRecord::new(&id, scheduled, RunState::Failed);
            record.attempts = attempt - 1;
            record.finished_at = Some(now);
            record.error = Some(error);
            let ended = Ended {
                record,
                duration: Duration::ZERO,
                catch_up,
                waiter,
            };
            self.run_ended(key, &id, ended);
        }
        self.retries.first_us().is_some_and(|at_us| at_us <= now_us)
    }

    /// Queues a durable job's retry as its store kept it (at start). A retry of a job that is
    /// not loaded waits in its store.
    pub(super) fn restore_retry(&mut self, run: RunRecord) {
        let Some(key) = self.shared.index().key_of(&run.job_id) else {
            return;
        };
        let now = self.shared.now();
        let Some((entry, running)) = self.jobs.get_with_running(key) else {
            return;
        };
        *running += 1;
        // A one-shot job whose run this was: it goes once the retry has ended.
        if entry.next.is_none()
            && entry.trigger.next_fire_time(Some(run.fire_time), now) == Ok(None)
        {
            entry.finish_after_run();
        }
        let id = entry.id.clone();
        tracing::info!(job.id = %id, fire_time = %run.fire_time, attempt = run.attempts + 1, "apsched: a stored retry is queued");
        self.retries.push(Retry {
            key,
            id,
            scheduled: run.fire_time,
            attempt: run.attempts + 1,
            at_us: run.due_at.unwrap_or(now).timestamp_micros(),
            error: run.error.unwrap_or_default(),
            catch_up: None,
            waiter: None,
        });
    }

    /// Ends the runs waiting for a retry at a shutdown: their waiters hear of the last error
    /// (a durable job's retry stays in its store, for the next start).
    pub(super) fn drop_retries(&mut self) {
        for std::cmp::Reverse(retry) in std::mem::take(&mut self.retries).0 {
            if let Some(waiter) = retry.waiter {
                let mut record = RunRecord::new(&retry.id, retry.scheduled, RunState::Failed);
                record.attempts = retry.attempt - 1;
                record.error = Some(retry.error);
                let _ = waiter.send(record);
            }
        }
    }

    /// A run has its outcome: recorded, reported, and its place given back.
    fn run_ended(&mut self, key: Key, id: &JobId, ended: Ended) {
        let Ended {
            record,
            duration,
            catch_up,
            waiter,
        } = ended;
        let scheduled = record.fire_time;
        let event = match record.state {
            RunState::Succeeded => Some(Event::JobExecuted {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
                duration,
            }),
            RunState::Failed => Some(Event::JobError {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
                duration,
                message: record.error.clone().unwrap_or_default(),
            }),
            // Reported as it timed out.
            _ => None,
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(record.clone());
        }
        let retried = record.attempts > 1;
        if self.is_durable(key) && self.settings.history_retention.is_zero() && retried {
            // Its pending retry was written: overwrite it, or the next start would retry it.
            self.outbox[usize::from(key.store())].push(crate::store::Write::Run(record));
        } else {
            self.record_run(key, id, record);
        }
        if let Some(event) = event {
            self.shared.emit(|| event);
        }
        self.run_over(key, id, scheduled, catch_up);
    }

    /// Whether a run of the job just started may be retried: it has a retry policy and a run
    /// under way (so a job whose trigger is done stays until that run's last attempt).
    pub(super) fn retries_may_follow(&mut self, key: Key) -> bool {
        self.jobs
            .get_with_running(key)
            .is_some_and(|(entry, running)| {
                *running > 0 && entry.run_control().is_some_and(|run| run.retry.is_some())
            })
    }

    /// Gives a run's place under `max_instances` back, and goes on with its catch-up; a job
    /// that waited only for this run goes.
    fn run_over(
        &mut self,
        key: Key,
        id: &JobId,
        scheduled: DateTime<Utc>,
        catch_up: Option<Box<CatchUp>>,
    ) {
        if let Some((entry, count)) = self.jobs.get_with_running(key) {
            *count = count.saturating_sub(1);
            if *count == 0 && entry.is_finished() {
                self.commit(
                    key,
                    super::commit::Change::Remove(super::commit::Removal::Finished),
                );
                return;
            }
        }
        if let Some(catch_up) = catch_up {
            self.go_on_catching_up(key, id, scheduled, catch_up);
        }
    }

    /// A blocking run passed its timeout and grace and goes on: it is reported timed out (its
    /// outcome), and keeps its place until it really ends.
    fn still_going(&mut self, run: u32, elapsed: Duration) {
        let Some(running) = self.runs.get_mut(run) else {
            return;
        };
        running.timed_out = true;
        let waiter = running.waiter.take();
        let (key, id, scheduled) = (running.key, running.id.clone(), running.scheduled);
        let mut record = RunRecord::new(&id, scheduled, RunState::TimedOut);
        record.started_at = Some(running.started_at);
        record.finished_at = Some(self.shared.now());
        record.attempts = running.attempt;
        record.error = Some(timed_out_message(elapsed));
        tracing::warn!(job.id = %id, %scheduled, "apsched: blocking run timed out; it goes on until it returns");
        #[cfg(feature = "metrics")]
        self.shared
            .metrics
            .run_ended(&running.job, Outcome::TimedOut, elapsed);
        self.shared.emit(|| Event::JobTimedOut {
            job_id: id.clone(),
            scheduled_run_time: scheduled,
            elapsed,
        });
        if let Some(waiter) = waiter {
            let _ = waiter.send(record.clone());
        }
        if let Some(key) = key {
            self.record_run(key, &id, record);
        }
    }
    /// A cluster run's end goes to its node, which writes it if the run is still its own.
    fn cluster_run_finished(
        &mut self,
        ticket: ClusterTicket,
        id: JobId,
        scheduled: DateTime<Utc>,
        done: RunDone,
    ) {
        let (result, timed_out) = match done.end {
            End::Returned(result) => (result, false),
            End::TimedOut | End::StillGoing => (Err(timed_out_message(done.duration)), true),
        };
        let event = match &result {
            _ if timed_out => Event::JobTimedOut {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
                elapsed: done.duration,
            },
            Ok(_) => Event::JobExecuted {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
                duration: done.duration,
            },
            Err(message) => Event::JobError {
                job_id: id.clone(),
                scheduled_run_time: scheduled,
                duration: done.duration,
                message: message.clone(),
            },
        };
        self.shared.emit(|| event);
        // A node that has stopped listening has left the cluster: its row will be reaped.
        let _ = ticket.done.send(ClusterRunDone {
            run_id: ticket.run_id,
            fence: ticket.fence,
            id,
            scheduled,
            result: Some(result),
            timed_out,
        });
    }

    /// After a catch-up run: starts the next missed fire time of the catch-up that is still
    /// within the grace time. A job paused, removed or rescheduled meanwhile ends its catch-up;
    /// so does a paused or stopping scheduler, reporting the rest missed.
    fn go_on_catching_up(
        &mut self,
        key: Key,
        id: &JobId,
        previous: DateTime<Utc>,
        catch_up: Box<CatchUp>,
    ) {
        let now = self.shared.now();
        let Some(entry) = self.jobs.get(key) else {
            return;
        };
        if entry.next.is_none() || entry.trigger != catch_up.trigger {
            return;
        }
        let grace = entry.options.grace();
        let (next, missed) = next_catch_up(&catch_up.trigger, previous, catch_up.until, grace, now);
        if !self.lifecycle.runs_jobs() {
            if let Some(first) = missed.or(next) {
                self.missed(key, id, first);
            }
            return;
        }
        if let Some(first) = missed {
            self.missed(key, id, first);
        }
        if let Some(next) = next {
            self.submit(key, next, Some(catch_up), None);
        }
    }
}
