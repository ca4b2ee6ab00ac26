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
use crate::store::{RunRecord, RunState};
use crate::trigger::Trigger;
use crate::{Event, JobId, Scheduler};

/// What a finished run reports: which run (its slot in the core's run table), how it went.
pub(super) struct RunDone {
    run: u32,
    duration: Duration,
    result: RunResult,
}

/// A run under way, as the core tracks it from its start to the report of its end.
pub(super) struct Running {
    /// The job's key in the table; `None` for a cluster run (its job lives in the database).
    pub(super) key: Option<Key>,
    pub(super) id: JobId,
    pub(super) scheduled: DateTime<Utc>,
    /// When it started, by the scheduler's clock.
    pub(super) started_at: DateTime<Utc>,
    /// Set for a run of a catch-up without coalescing: the later missed fire times it is to be
    /// followed by, one after another.
    catch_up: Option<Box<CatchUp>>,
    /// Set for a run a cluster node claimed: where its end is reported.
    cluster: Option<Box<ClusterTicket>>,
    /// Its `job` metric label, taken at its start: a one-shot job is gone by its end.
    #[cfg(feature = "metrics")]
    pub(super) job: crate::metrics::JobLabel,
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
            .filter(move |r| r.id == *id && r.cluster.is_none())
            .map(|r| {
                let mut record = RunRecord::new(&r.id, r.scheduled, RunState::Running);
                record.started_at = Some(r.started_at);
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
}

impl RunEnv {
    pub(super) fn new(
        shared: Arc<Shared>,
        weak_tx: mpsc::WeakSender<Command>,
        max_blocking_jobs: usize,
        failure_level: Option<tracing::Level>,
    ) -> (Arc<RunEnv>, mpsc::UnboundedReceiver<RunDone>) {
        let (done, reports) = mpsc::unbounded_channel();
        let env = RunEnv {
            shared,
            weak_tx,
            blocking_permits: Arc::new(Semaphore::new(max_blocking_jobs)),
            done,
            failure_level,
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
        )
    }

    /// Readies an async run to be spawned as its own task, catching a panic as an error. It is
    /// dropped at its next `.await` once a shutdown cancels the runs.
    pub(crate) fn spawn(self, run: impl Future<Output = RunResult> + Send + 'static) {
        self.ready(run, true);
    }

    fn ready(self, run: impl Future<Output = RunResult> + Send + 'static, cancellable: bool) {
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
            let result = tokio::select! {
                // The run first: a run that ends at once never registers with the token.
                biased;
                result = AssertUnwindSafe(run).catch_unwind() => result
                    .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic)))),
                () = cancelled => Err(CANCELLED.to_string()),
            };
            record_outcome(&result, completion.started.elapsed(), env.failure_level);
            completion.finish(result);
        };
        sink.push(Box::pin(RUN_OF.scope(scheduler, task.instrument(span))));
    }

    /// Readies a blocking run: it waits for one of the `max_blocking_jobs` permits, then runs
    /// on the blocking pool. A blocking body cannot be stopped: a shutdown that stops waiting
    /// for it reports it abandoned, and it finishes on its own.
    pub(crate) fn spawn_blocking(self, body: impl FnOnce() -> RunResult + Send + 'static) {
        let permits = Arc::clone(&self.completion.env.blocking_permits);
        let scheduler = Arc::as_ptr(&self.completion.env.shared) as usize;
        self.ready(
            async move {
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
            },
            false,
        );
    }
}

/// Records a run's outcome and duration on its span, and logs a failure inside it: a user
/// who logs `JobError` events too can turn the crate's line off.
fn record_outcome(result: &RunResult, duration: Duration, failure_level: Option<tracing::Level>) {
    let span = tracing::Span::current();
    span.record(
        "outcome",
        if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
    );
    span.record("duration_ms", duration.as_secs_f64() * 1e3);
    let (Err(message), Some(level)) = (result, failure_level) else {
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
    ) {
        let durable_history = self.is_durable(key) && !self.settings.history_retention.is_zero();
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
            self.record_run(key, &id, RunRecord::new(&id, scheduled, RunState::Skipped));
            return;
        }
        *running += 1;
        let started_at = self.shared.now();
        #[cfg(feature = "metrics")]
        let job = self
            .shared
            .metrics
            .run_started(entry, started_at - scheduled);
        let run = self.runs.insert(Running {
            key: Some(key),
            id: entry.id.clone(),
            scheduled,
            started_at,
            catch_up,
            cluster: None,
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
            self.outbox[usize::from(key.store())].push(crate::store::Write::Run(record));
        }
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
            claim: None,
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
            node,
            done,
        } = run;
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
            catch_up: None,
            cluster: Some(Box::new(ClusterTicket {
                run_id,
                fence,
                done,
            })),
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
                result: None,
            },
            id,
            scheduled,
            span,
            name,
            sink: &mut self.ready,
            claim: Some(Arc::new(Claim { fence, token, node })),
        };
        task.into_body().start(launch);
    }

    pub(super) fn finished(&mut self, done: RunDone) {
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
            catch_up,
            cluster,
            #[cfg(feature = "metrics")]
            job,
        } = running;
        #[cfg(feature = "metrics")]
        let outcome = crate::metrics::Outcome::of(&done.result);
        #[cfg(feature = "metrics")]
        self.shared.metrics.run_ended(&job, outcome, done.duration);
        let Some(key) = key else {
            if let Some(ticket) = cluster {
                self.cluster_run_finished(*ticket, id, scheduled, done);
            }
            return;
        };
        if let Some((_, count)) = self.jobs.get_with_running(key) {
            *count = count.saturating_sub(1);
        }
        if let Some(catch_up) = catch_up {
            self.go_on_catching_up(key, &id, scheduled, catch_up);
        }
        let (state, result, error) = match &done.result {
            Ok(value) => (RunState::Succeeded, value.clone(), None),
            Err(message) => (RunState::Failed, None, Some(message.clone())),
        };
        let mut record = RunRecord::new(&id, scheduled, state);
        record.started_at = Some(started_at);
        record.finished_at = Some(self.shared.now());
        record.result = result;
        record.error = error;
        self.record_run(key, &id, record);
        self.shared.emit(|| match done.result {
            Ok(_) => Event::JobExecuted {
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

    /// A cluster run's end goes to its node, which writes it if the run is still its own.
    fn cluster_run_finished(
        &mut self,
        ticket: ClusterTicket,
        id: JobId,
        scheduled: DateTime<Utc>,
        done: RunDone,
    ) {
        let event = match &done.result {
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
            result: Some(done.result),
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
            self.submit(key, next, Some(catch_up));
        }
    }
}
