//! One node of a cluster: its lease, the loop that materializes fire times and claims runs,
//! the completion of its runs, and its wakeups.
//!
//! Three tasks per node: the **driver** (materialize, claim, complete, sleep), the **lease
//! keeper** (renew, reap dead nodes' runs) and the **listener** (`LISTEN`, a hint to wake).
//! The driver never waits on the lease keeper: it reads the time of the last renewal, so a
//! node that lost its lease stops claiming even while a query hangs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::Row;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, NodeInfo};
use crate::core::{decide, Admission, ClusterRun, ClusterRunDone, Command, NextRun, Shared};
use crate::store::postgres::{json_has_nul, truncated, Tx};
use crate::store::{PostgresStore, RunState};
use crate::trigger::Trigger;
use crate::{Error, Event, JobId, JobOptions};

/// How soon a node looks again at something due that another node's transaction held.
const DUE_BUT_TAKEN: Duration = Duration::from_millis(20);

/// The most fire times one catch-up (missed runs without `coalesce`) materializes at once.
const MAX_CATCH_UP: usize = 100;

/// A node of a cluster, shared by its scheduler's handles and its three tasks.
pub(crate) struct Node {
    /// The store's name in the scheduler.
    pub(crate) name: Arc<str>,
    /// Shared with every run's context.
    pub(crate) id: Arc<str>,
    pub(crate) store: PostgresStore,
    /// The node's own connections (the store's server and settings): their sessions end a
    /// transaction left idle longer than the lease (a frozen node's), releasing its locks.
    pool: sqlx::PgPool,
    pub(crate) sql: Statements,
    /// Whether jobs that name no store go here (`SchedulerBuilder::default_store`).
    pub(crate) is_default: bool,
    /// Why the settings were refused, reported by `start`.
    invalid: Option<Error>,
    lease: Duration,
    poll_interval: Duration,
    notify: bool,
    max_running: usize,
    batch: usize,
    /// Wakes the driver: a notification, a local change, a run's end, a stop.
    pub(crate) wake: Notify,
    lease_state: Mutex<LeaseState>,
    /// Runs sent to the core whose end the node has not heard yet.
    in_flight: AtomicUsize,
    stopping: AtomicBool,
    done_tx: mpsc::UnboundedSender<ClusterRunDone>,
    done_rx: Mutex<Option<mpsc::UnboundedReceiver<ClusterRunDone>>>,
    /// Set once the node has left the cluster (its row deleted).
    left: watch::Sender<bool>,
}

struct LeaseState {
    /// When the last renewal that succeeded was sent (monotonic).
    renewed: Instant,
    /// Cancelled when the lease is lost; a new one is made when the node rejoins.
    token: CancellationToken,
    lost: bool,
}

impl Node {
    pub(crate) fn new(name: Arc<str>, cluster: Cluster, is_default: bool) -> Node {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let sql = Statements::new(&cluster.store);
        let id = cluster.resolved_node_id();
        let idle_limit = format!("{}ms", cluster.lease.as_millis().max(1));
        let connect = (*cluster.store.pool().connect_options())
            .clone()
            .options([("idle_in_transaction_session_timeout", idle_limit)]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(connect);
        Node {
            pool,
            is_default,
            invalid: cluster.validate(&id).err(),
            name,
            id: Arc::from(id),
            sql,
            store: cluster.store,
            lease: cluster.lease,
            poll_interval: cluster.poll_interval,
            notify: cluster.notify,
            max_running: cluster.max_running,
            batch: cluster.batch,
            wake: Notify::new(),
            lease_state: Mutex::new(LeaseState {
                renewed: Instant::now(),
                token: CancellationToken::new(),
                lost: true,
            }),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            done_tx,
            done_rx: Mutex::new(Some(done_rx)),
            left: watch::Sender::new(false),
        }
    }

    fn lease_state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.lease_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long after its last renewal a node stops claiming: four fifths of the lease, so
    /// it stops before the database lets other nodes reap its runs.
    fn cutoff(&self) -> Duration {
        self.lease * 4 / 5
    }

    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Whether the node holds its lease now, by its own monotonic clock.
    fn holds_lease(&self) -> bool {
        let state = self.lease_state();
        !state.lost && state.renewed.elapsed() < self.cutoff()
    }

    pub(crate) fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    pub(crate) fn error(&self, operation: &'static str, error: sqlx::Error) -> Error {
        #[cfg(feature = "metrics")]
        crate::metrics::store_failed(&self.name, operation);
        Error::Store {
            store: self.name.to_string(),
            operation,
            source: crate::Cause::new(error),
        }
    }

    /// Joins the cluster (the node's row, with a fresh lease) and starts the node's tasks.
    ///
    /// # Errors
    /// [`Error::Store`] when the database cannot be reached.
    pub(crate) async fn start(
        self: &Arc<Self>,
        shared: Arc<Shared>,
        tx: mpsc::WeakSender<Command>,
    ) -> crate::Result<()> {
        if let Some(invalid) = &self.invalid {
            return Err(invalid.clone());
        }
        let Some(done_rx) = self
            .done_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(()); // started before
        };
        self.join(&shared)
            .await
            .map_err(|e| self.error("join", e))?;
        // The runs this id still has `running` are from before a restart: a dead node's. Its
        // renewed lease would keep every other node from reaping them, and they would hold
        // their jobs' `max_instances` (every later fire time skipped) while this node lives.
        self.reap(&shared, true)
            .await
            .map_err(|e| self.error("join", e))?;
        tokio::spawn(Arc::clone(self).keep_lease(Arc::clone(&shared)));
        if self.notify {
            tokio::spawn(Arc::clone(self).listen());
        }
        tokio::spawn(Arc::clone(self).drive(shared, tx, done_rx));
        Ok(())
    }

    /// Stops claiming; the driver leaves once the runs it started have ended.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Resolves once the node has left the cluster.
    pub(crate) async fn left(&self) {
        let mut left = self.left.subscribe();
        let _ = left.wait_for(|left| *left).await;
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Wakes the other nodes (a hint: they poll anyway), inside `tx` so it is sent on commit.
    pub(crate) async fn notify_peers(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        if self.notify {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&self.sql.channel)
                .execute(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// Whether a fire time this soon should wake the cluster: peers sleep at most a poll
    /// interval, so anything later they find on their own.
    pub(crate) fn is_soon(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let poll = TimeDelta::from_std(self.poll_interval).unwrap_or(TimeDelta::MAX);
        at - now < poll
    }

    /// Joins (or rejoins) with a fresh lease; runs claimed from now on get a new token, a child
    /// of the scheduler's, so a `shutdown_timeout` cancels them as it cancels any run.
    async fn join(&self, shared: &Shared) -> Result<(), sqlx::Error> {
        let sent = Instant::now();
        sqlx::query(&self.sql.join)
            .bind(&*self.id)
            .bind(self.lease.as_secs_f64())
            .execute(self.pool())
            .await?;
        let mut state = self.lease_state();
        state.renewed = sent;
        if state.lost {
            state.token = shared.runs_cancel.child_token();
            state.lost = false;
        }
        Ok(())
    }

    /// Loses the lease: no more claims, and this node's runs are told to stop.
    fn lose_lease(&self, shared: &Shared) {
        let mut state = self.lease_state();
        if state.lost {
            return;
        }
        state.lost = true;
        state.token.cancel();
        drop(state);
        tracing::warn!(node = %self.id, "apsched: cluster lease lost; claiming stops until the node rejoins");
        shared.emit(|| Event::NodeLeaseLost {
            node: self.id.to_string(),
        });
    }

    /// The lease keeper: renews every third of the lease, rejoins a cluster that presumed the
    /// node dead, and reaps the runs of nodes whose lease has expired.
    async fn keep_lease(self: Arc<Self>, shared: Arc<Shared>) {
        let mut left = self.left.subscribe();
        let mut retry_at = Instant::now();
        loop {
            // After a failed renewal, the next try waits a quarter of the renewal period.
            let next = (self.lease_state().renewed + self.renew_every()).max(retry_at);
            tokio::select! {
                () = tokio::time::sleep_until(next.max(Instant::now())) => {}
                _ = left.wait_for(|left| *left) => return,
            }
            if !self.holds_lease() {
                self.lose_lease(&shared);
            }
            let held = self.holds_lease();
            let sent = Instant::now();
            retry_at = sent + self.renew_every() / 4;
            let running = i32::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(i32::MAX);
            let renewal = sqlx::query(&self.sql.renew)
                .bind(&*self.id)
                .bind(self.lease.as_secs_f64())
                .bind(running)
                .execute(self.pool());
            match tokio::time::timeout(self.renew_every(), renewal).await {
                Ok(Ok(done)) if done.rows_affected() == 1 => {
                    let lost = {
                        let mut state = self.lease_state();
                        if !state.lost {
                            state.renewed = sent;
                        }
                        state.lost
                    };
                    if lost {
                        // The lease ran out while the node was away; its row may still be
                        // there. Rejoin with a fresh token.
                        let _ = self.join(&shared).await;
                    }
                }
                Ok(Ok(_)) => {
                    // The row is gone or expired: the cluster presumed this node dead.
                    self.lose_lease(&shared);
                    if self.join(&shared).await.is_ok() {
                        tracing::info!(node = %self.id, "apsched: rejoined the cluster");
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(node = %self.id, %error, "apsched: cluster lease renewal failed")
                }
                Err(_) => {
                    tracing::warn!(node = %self.id, "apsched: cluster lease renewal timed out")
                }
            }
            if self.holds_lease() {
                if let Err(error) = self.reap(&shared, false).await {
                    tracing::warn!(node = %self.id, %error, "apsched: reaping dead nodes' runs failed");
                }
            } else {
                self.lose_lease(&shared);
            }
            // A node that holds its lease again claims at once (reaping wakes it on its own
            // when it made runs pending). Waking it after every renewal made an idle node
            // run a materialization and a claim for nothing.
            if !held && self.holds_lease() {
                self.wake.notify_one();
            }
        }
    }

    /// Marks the runs of dead nodes abandoned (or pending again, for `retry_abandoned` jobs),
    /// and deletes the dead nodes' rows. With `own_too`, this node's runs as well: at its start,
    /// when any it has are its previous life's.
    async fn reap(&self, shared: &Shared, own_too: bool) -> Result<(), sqlx::Error> {
        let rows = sqlx::query(&self.sql.reap)
            .bind(own_too.then_some(&*self.id))
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            let job_id: String = row.try_get(0)?;
            let fire_time: DateTime<Utc> = row.try_get(1)?;
            let state: String = row.try_get(2)?;
            let owner: Option<String> = row.try_get(3)?;
            let retried = state == RunState::Pending.as_str();
            let node = owner.unwrap_or_default();
            tracing::warn!(job.id = %job_id, scheduled = %fire_time, node = %node, retried, "apsched: reaped a run of a dead node");
            shared.emit(|| Event::RunAbandoned {
                job_id: JobId::new(&job_id),
                scheduled_run_time: fire_time,
                node,
                retried,
            });
        }
        sqlx::query(&self.sql.forget_dead)
            .execute(self.pool())
            .await?;
        if rows
            .iter()
            .any(|row| row.try_get::<String, _>(2).ok().as_deref() == Some("pending"))
        {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The listener: wakes the driver on every notification, and when its connection was
    /// lost (notifications may have been missed meanwhile).
    async fn listen(self: Arc<Self>) {
        let mut left = self.left.subscribe();
        loop {
            let connected = async {
                let mut listener = PgListener::connect_with(self.pool()).await?;
                listener.listen(&self.sql.channel).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let connected = tokio::select! {
                connected = connected => connected,
                _ = left.wait_for(|left| *left) => return,
            };
            let mut listener = match connected {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::debug!(node = %self.id, %error, "apsched: cluster listener cannot connect");
                    tokio::select! {
                        () = tokio::time::sleep(self.poll_interval) => continue,
                        _ = left.wait_for(|left| *left) => return,
                    }
                }
            };
            // Listening from now on: what was notified before may be missed, so look now.
            self.wake.notify_one();
            loop {
                tokio::select! {
                    received = listener.try_recv() => match received {
                        Ok(Some(_)) => self.wake.notify_one(),
                        // The connection was lost; `try_recv` reconnects on its next call.
                        Ok(None) => self.wake.notify_one(),
                        Err(_) => break,
                    },
                    _ = left.wait_for(|left| *left) => return,
                }
            }
        }
    }

    /// The driver: writes runs' ends, materializes due fire times, claims pending runs, and
    /// sleeps until the next due time (at most the poll interval) or a wakeup.
    async fn drive(
        self: Arc<Self>,
        shared: Arc<Shared>,
        tx: mpsc::WeakSender<Command>,
        mut done_rx: mpsc::UnboundedReceiver<ClusterRunDone>,
    ) {
        let mut ended: Vec<ClusterRunDone> = Vec::new();
        let mut failures = 0u32;
        // Set when the node slept a whole poll interval: nothing was due when it went to sleep.
        let mut look_first = false;
        loop {
            // Whether the core has ended: its shutdown finished (its channel closed), every
            // handle dropped, or it is gone. Not its published state: that reads `ShutDown` as
            // soon as a shutdown begins, while the core still waits for the runs going. Read
            // before draining the ends, so that once the core has ended, every end it sent is
            // drained below.
            let core_gone = shared.state() == crate::SchedulerState::Closed
                || tx.upgrade().is_none_or(|core| core.is_closed());
            while let Ok(done) = done_rx.try_recv() {
                ended.push(done);
            }
            let mut outcome = Ok(false);
            if !ended.is_empty() {
                outcome = self.complete(&shared, &mut ended).await.map(|()| false);
            }
            // A scheduler dropped without a shutdown stops its node too.
            let stopping = self.is_stopping() || core_gone;
            if stopping
                && ended.is_empty()
                && (self.in_flight.load(Ordering::Acquire) == 0 || core_gone)
            {
                break;
            }
            let claiming =
                !stopping && shared.state() == crate::SchedulerState::Running && self.holds_lease();
            let mut busy = false;
            // An idle node's poll is one query (when is something due?), not the two
            // transactions of a materialization and a claim that find nothing.
            let mut idle_wait = None;
            if claiming && outcome.is_ok() && std::mem::take(&mut look_first) {
                match self.seconds_until_due(&shared).await {
                    Ok(Some(s)) if s > 0.0 => idle_wait = Some(self.up_to_poll(s)),
                    Ok(None) => idle_wait = Some(self.poll_interval),
                    Ok(Some(_)) => {} // due now
                    Err(error) => outcome = Err(error),
                }
            }
            if claiming && outcome.is_ok() && idle_wait.is_none() {
                outcome = async {
                    let mut busy = self.materialize(&shared).await?;
                    let room = self
                        .max_running
                        .saturating_sub(self.in_flight.load(Ordering::Acquire));
                    if room > 0 {
                        busy |= self.claim(&shared, &tx, room).await?;
                    }
                    Ok::<_, sqlx::Error>(busy)
                }
                .await;
            }
            let wait = match outcome {
                Ok(true) => {
                    busy = true;
                    failures = 0;
                    Duration::ZERO
                }
                Ok(false) => {
                    failures = 0;
                    if let Some(wait) = idle_wait {
                        wait
                    } else if claiming {
                        self.until_due(&shared).await.unwrap_or(self.poll_interval)
                    } else {
                        self.poll_interval
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(node = %self.id, %error, "apsched: cluster node cannot reach its database; retrying");
                    // 50 ms, doubling, at most the poll interval.
                    Duration::from_millis(50)
                        .saturating_mul(1 << failures.min(8))
                        .min(self.poll_interval)
                }
            };
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => look_first = wait >= self.poll_interval,
                () = self.wake.notified() => {}
                Some(done) = done_rx.recv() => ended.push(done),
            }
        }
        self.leave(&shared).await;
    }

    /// How long until something is due (a job's next run, a pending run of a task this node
    /// has, while it has room for one), at most the poll interval. Something due already that
    /// this node did not take is another node's, in a transaction under way (it materializes
    /// or claims it, so `SKIP LOCKED` passed it over): look again soon. Sleeping the whole
    /// poll interval instead, as every node may, left the run waiting for it.
    async fn until_due(&self, shared: &Shared) -> Result<Duration, sqlx::Error> {
        Ok(match self.seconds_until_due(shared).await? {
            Some(s) if s > 0.0 => self.up_to_poll(s),
            Some(_) => DUE_BUT_TAKEN.min(self.poll_interval),
            None => self.poll_interval,
        })
    }

    /// Seconds until something is due (a job's next run, a pending run; zero or less: due
    /// now), `None` when nothing is scheduled.
    async fn seconds_until_due(&self, shared: &Shared) -> Result<Option<f64>, sqlx::Error> {
        let room = self.in_flight.load(Ordering::Acquire) < self.max_running;
        let tasks: Vec<&str> = if room {
            shared.tasks.names().collect()
        } else {
            Vec::new() // it takes no run now: a run's end wakes it
        };
        sqlx::query_scalar(&self.sql.until_due)
            .bind(&tasks)
            .fetch_one(self.pool())
            .await
    }

    fn up_to_poll(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds.min(86_400.0)).min(self.poll_interval)
    }

    /// Deletes the finished jobs among `ids` that have no run left to claim; returns their ids.
    async fn delete_finished(&self, tx: &mut Tx, ids: &[&str]) -> Result<Vec<String>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(&self.sql.delete_finished)
            .bind(ids)
            .fetch_all(tx.conn())
            .await
    }

    /// Materializes one batch of due jobs, in one transaction; returns whether the batch was
    /// full (more may be due).
    async fn materialize(&self, shared: &Shared) -> Result<bool, sqlx::Error> {
        let mut tx = Tx::begin(self.pool()).await?;
        let rows = sqlx::query(&self.sql.due_jobs)
            .bind(i64::try_from(self.batch).unwrap_or(i64::MAX))
            .fetch_all(tx.conn())
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(false);
        }
        let mut plan = Materialized::default();
        for row in &rows {
            self.plan_job(shared, row, &mut plan)?;
        }
        sqlx::query(&self.sql.insert_runs)
            .bind(&plan.run_jobs)
            .bind(&plan.run_fire_times)
            .bind(&plan.run_due)
            .bind(&plan.run_states)
            .execute(tx.conn())
            .await?;
        sqlx::query(&self.sql.advance)
            .bind(&plan.next_ids)
            .bind(&plan.next_times)
            .bind(&plan.next_revisions)
            .bind(&plan.next_finished)
            .execute(tx.conn())
            .await?;
        // A finished job without a run to come goes now (one with a pending run goes when
        // that run is claimed).
        let finished: Vec<&str> = plan
            .next_ids
            .iter()
            .zip(&plan.next_finished)
            .filter(|(_, finished)| **finished)
            .map(|(id, _)| id.as_str())
            .collect();
        let removed = self.delete_finished(&mut tx, &finished).await?;
        if !plan.unreadable.is_empty() {
            sqlx::query(&self.sql.set_aside)
                .bind(
                    plan.unreadable
                        .iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>(),
                )
                .execute(tx.conn())
                .await?;
        }
        let now = rows
            .first()
            .map(|row| row.try_get::<DateTime<Utc>, _>(6))
            .transpose()?;
        let soon = now.is_some_and(|now| plan.run_due.iter().any(|due| self.is_soon(*due, now)));
        if soon {
            self.notify_peers(&mut tx).await?;
        }
        tx.commit().await?;
        for (job_id, fire_time) in plan.missed {
            tracing::warn!(job.id = %job_id, scheduled = %fire_time, "apsched: run missed by more than its grace time");
            #[cfg(feature = "metrics")]
            shared
                .metrics
                .run_skipped_named(crate::metrics::Outcome::Missed, &job_id);
            shared.emit(|| Event::JobMissed {
                job_id: JobId::new(&job_id),
                scheduled_run_time: fire_time,
            });
        }
        for id in removed {
            shared.emit(|| Event::JobRemoved {
                job_id: JobId::new(&id),
            });
        }
        for (job_id, reason) in plan.unreadable {
            tracing::error!(job.id = %job_id, %reason, "apsched: a cluster job cannot be scheduled; it was paused");
            shared.emit(|| Event::JobNotLoaded {
                store: self.name.to_string(),
                job_id: Some(job_id.clone()),
                reason: reason.clone(),
            });
        }
        Ok(rows.len() >= self.batch)
    }

    /// What the misfire rules make of one due job.
    fn plan_job(
        &self,
        shared: &Shared,
        row: &PgRow,
        plan: &mut Materialized,
    ) -> Result<(), sqlx::Error> {
        let id: String = row.try_get(0)?;
        let trigger: serde_json::Value = row.try_get(1)?;
        let options: serde_json::Value = row.try_get(2)?;
        let regular: DateTime<Utc> = row.try_get(3)?;
        let revision: i64 = row.try_get(4)?;
        let now: DateTime<Utc> = row.try_get(6)?;
        let decoded = serde_json::from_value::<Trigger>(trigger)
            .map_err(|e| format!("its trigger does not decode: {e}"))
            .and_then(|mut trigger| {
                trigger
                    .prepare(shared.timezone, now)
                    .map_err(|e| format!("its trigger is invalid: {e}"))?;
                let options: JobOptions = serde_json::from_value(options)
                    .map_err(|e| format!("its options do not decode: {e}"))?;
                Ok((trigger, Admission::from(options)))
            });
        let (trigger, admission) = match decoded {
            Ok(decoded) => decoded,
            Err(reason) => {
                plan.unreadable.push((id, reason));
                return Ok(());
            }
        };
        let decision = decide(&trigger, NextRun::new(regular, regular), admission, now);
        let mut run = |fire_time: DateTime<Utc>, state: RunState| {
            plan.run_jobs.push(id.clone());
            plan.run_fire_times.push(truncated(fire_time));
            let due = if state == RunState::Pending {
                trigger.jittered(fire_time).max(fire_time)
            } else {
                fire_time
            };
            plan.run_due.push(truncated(due));
            plan.run_states.push(state.as_str());
        };
        if let Some(missed) = decision.missed {
            run(missed, RunState::Missed);
            plan.missed.push((id.clone(), missed));
        }
        if let Some(first) = decision.run {
            run(first, RunState::Pending);
            // Without coalescing, the later missed fire times within the grace time run too.
            if let Some(until) = decision.catch_up_until {
                let mut previous = first;
                for _ in 1..MAX_CATCH_UP {
                    match trigger.next_fire_time(Some(previous), now) {
                        Ok(Some(next)) if next <= until => {
                            run(next, RunState::Pending);
                            previous = next;
                        }
                        _ => break,
                    }
                }
            }
        }
        // A trigger that fails, or has no fire time left, is finished: its row goes once its
        // last run is claimed.
        let next = decision.next.ok().flatten();
        plan.next_ids.push(id);
        plan.next_times.push(next.map(truncated));
        plan.next_revisions.push(revision);
        plan.next_finished.push(next.is_none());
        Ok(())
    }

    /// Claims up to `room` pending runs (a batch at most) in one transaction, admitting each
    /// by its job's `max_instances` against the running rows, and hands them to the core.
    /// Returns whether the batch was full.
    async fn claim(
        &self,
        shared: &Arc<Shared>,
        core: &mpsc::WeakSender<Command>,
        room: usize,
    ) -> Result<bool, sqlx::Error> {
        let limit = room.min(self.batch);
        let tasks: Vec<&str> = shared.tasks.names().collect();
        let mut tx = Tx::begin(self.pool()).await?;
        let rows = sqlx::query(&self.sql.pending)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(&tasks)
            .fetch_all(tx.conn())
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(false);
        }
        let mut candidates = Vec::with_capacity(rows.len());
        for row in &rows {
            candidates.push(Candidate::read(row)?);
        }
        let mut job_ids: Vec<&str> = candidates.iter().map(|c| c.job_id.as_str()).collect();
        job_ids.sort_unstable();
        job_ids.dedup();
        let counts: Vec<(String, i64)> = sqlx::query_as(&self.sql.running_counts)
            .bind(&job_ids)
            .fetch_all(tx.conn())
            .await?;
        let mut running: std::collections::HashMap<String, i64> = counts.into_iter().collect();
        let (mut admitted, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for candidate in candidates {
            let count = running.entry(candidate.job_id.clone()).or_insert(0);
            if *count >= i64::from(candidate.max_instances) {
                skipped.push(candidate);
                continue;
            }
            match shared.tasks.task(&candidate.task, candidate.args.clone()) {
                Ok(task) => {
                    *count += 1;
                    admitted.push((candidate, task));
                }
                Err(error) => failed.push((candidate, error.to_string())),
            }
        }
        let fences: Vec<(i64, i64)> = sqlx::query_as(&self.sql.claim)
            .bind(&*self.id)
            .bind(admitted.iter().map(|(c, _)| c.run_id).collect::<Vec<_>>())
            .fetch_all(tx.conn())
            .await?;
        if !skipped.is_empty() || !failed.is_empty() {
            let ids: Vec<i64> = skipped
                .iter()
                .map(|c| c.run_id)
                .chain(failed.iter().map(|(c, _)| c.run_id))
                .collect();
            let states: Vec<&str> = skipped
                .iter()
                .map(|_| RunState::Skipped.as_str())
                .chain(failed.iter().map(|_| RunState::Failed.as_str()))
                .collect();
            let errors: Vec<Option<&str>> = skipped
                .iter()
                .map(|_| None)
                .chain(failed.iter().map(|(_, e)| Some(e.as_str())))
                .collect();
            sqlx::query(&self.sql.set_aside_runs)
                .bind(&ids)
                .bind(&states)
                .bind(&errors)
                .execute(tx.conn())
                .await?;
        }
        // Finished jobs whose last run this was go now.
        let finished: Vec<&str> = rows
            .iter()
            .filter(|row| row.try_get::<bool, _>(8).unwrap_or(false))
            .filter_map(|row| row.try_get::<&str, _>(1).ok())
            .collect();
        let removed = self.delete_finished(&mut tx, &finished).await?;
        tx.commit().await?;
        for candidate in &skipped {
            tracing::warn!(job.id = %candidate.job_id, "apsched: run skipped, max_instances reached across the cluster");
            #[cfg(feature = "metrics")]
            shared.metrics.run_skipped_named(
                crate::metrics::Outcome::MaxInstances,
                candidate.name.as_deref().unwrap_or(&candidate.job_id),
            );
            shared.emit(|| Event::JobMaxInstances {
                job_id: JobId::new(&candidate.job_id),
                scheduled_run_time: candidate.fire_time,
            });
        }
        for (candidate, error) in &failed {
            tracing::error!(job.id = %candidate.job_id, %error, "apsched: a cluster run cannot be built from its task");
        }
        for id in removed {
            shared.emit(|| Event::JobRemoved {
                job_id: JobId::new(&id),
            });
        }
        let fences: std::collections::HashMap<i64, i64> = fences.into_iter().collect();
        let token = self.lease_state().token.clone();
        for (candidate, task) in admitted {
            let Some(&fence) = fences.get(&candidate.run_id) else {
                continue;
            };
            let run = ClusterRun {
                run_id: candidate.run_id,
                fence: u64::try_from(fence).unwrap_or(0),
                id: JobId::new(&candidate.job_id),
                name: candidate.name.as_deref().map(Arc::from),
                task,
                scheduled: candidate.fire_time,
                token: token.child_token(),
                timeout: candidate.timeout,
                node: Arc::clone(&self.id),
                done: self.done_tx.clone(),
            };
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let sent = match core.upgrade() {
                Some(core) => core
                    .send(Command::ClusterRun(Box::new(run)))
                    .await
                    .map_err(|e| e.0),
                None => Err(Command::ClusterRun(Box::new(run))),
            };
            if let Err(Command::ClusterRun(run)) = sent {
                run.hand_back_to(&self.done_tx);
            }
        }
        Ok(rows.len() >= limit)
    }

    /// Writes the ends of runs (and hands back runs that did not start), in one statement.
    /// An end whose run was taken away meanwhile is dropped and reported.
    async fn complete(
        &self,
        shared: &Shared,
        ended: &mut Vec<ClusterRunDone>,
    ) -> Result<(), sqlx::Error> {
        let mut ids = Vec::with_capacity(ended.len());
        let mut fences = Vec::with_capacity(ended.len());
        let mut states = Vec::with_capacity(ended.len());
        let mut results = Vec::with_capacity(ended.len());
        let mut errors = Vec::with_capacity(ended.len());
        for done in ended.iter() {
            ids.push(done.run_id);
            fences.push(i64::try_from(done.fence).unwrap_or(i64::MAX));
            let (state, result, error) = match &done.result {
                None => (RunState::Pending, None, None),
                Some(Ok(value)) => (
                    RunState::Succeeded,
                    value
                        .as_ref()
                        .filter(|v| !json_has_nul(v))
                        .map(|v| v.to_string()),
                    None,
                ),
                Some(Err(message)) => (
                    if done.timed_out {
                        RunState::TimedOut
                    } else {
                        RunState::Failed
                    },
                    None,
                    Some(message.replace('\0', "\u{FFFD}")),
                ),
            };
            states.push(state.as_str());
            results.push(result);
            errors.push(error);
        }
        // Planned with its arrays each time: a cached generic plan guesses 10 rows for the
        // UNNEST and few `running` rows, and joins them by a nested loop that rescans the
        // UNNEST once per running row, quadratic in the batch (60 ms for 500 runs).
        let written: Vec<i64> = sqlx::query_scalar(&self.sql.complete)
            .persistent(false)
            .bind(&*self.id)
            .bind(&ids)
            .bind(&fences)
            .bind(&states)
            .bind(&results)
            .bind(&errors)
            .fetch_all(self.pool())
            .await?;
        let written: std::collections::HashSet<i64> = written.into_iter().collect();
        let handed_back = ended.iter().any(|done| done.result.is_none());
        for done in ended.drain(..) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if !written.contains(&done.run_id) && done.result.is_some() {
                tracing::warn!(job.id = %done.id, scheduled = %done.scheduled, fence = done.fence, "apsched: a run's outcome was fenced off: the cluster reaped the run while it was going");
                #[cfg(feature = "metrics")]
                shared.metrics.run_fenced();
                shared.emit(|| Event::RunFenced {
                    job_id: done.id.clone(),
                    scheduled_run_time: done.scheduled,
                    node: self.id.to_string(),
                });
            }
        }
        if handed_back {
            // Another node may take them at once.
            let mut tx = Tx::begin(self.pool()).await?;
            self.notify_peers(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Leaves the cluster: runs this node still owns (abandoned by a shutdown that stopped
    /// waiting for them) are reported abandoned, and the node's row is deleted.
    async fn leave(&self, shared: &Shared) {
        let left = async {
            let mut tx = Tx::begin(self.pool()).await?;
            let abandoned: Vec<(String, DateTime<Utc>)> = sqlx::query_as(&self.sql.abandon_own)
                .bind(&*self.id)
                .fetch_all(tx.conn())
                .await?;
            sqlx::query(&self.sql.leave)
                .bind(&*self.id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(abandoned)
        };
        match tokio::time::timeout(Duration::from_secs(10), left).await {
            Ok(Ok(abandoned)) => {
                for (job_id, fire_time) in abandoned {
                    shared.emit(|| Event::RunAbandoned {
                        job_id: JobId::new(&job_id),
                        scheduled_run_time: fire_time,
                        node: self.id.to_string(),
                        retried: false,
                    });
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(node = %self.id, %error, "apsched: leaving the cluster failed; other nodes reap this node's runs when its lease expires")
            }
            Err(_) => tracing::warn!(node = %self.id, "apsched: leaving the cluster timed out"),
        }
        self.lease_state().token.cancel();
        self.left.send_replace(true);
    }

    /// The live nodes.
    pub(crate) async fn nodes(&self) -> crate::Result<Vec<NodeInfo>> {
        let rows: Vec<NodeRow> = sqlx::query_as(&self.sql.nodes)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.error("read nodes", e))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, started_at, renewed_at, lease_until, running)| NodeInfo {
                    id,
                    started_at,
                    renewed_at,
                    lease_until,
                    running: u64::try_from(running).unwrap_or(0),
                },
            )
            .collect())
    }
}

impl ClusterRun {
    /// Hands a run the core never took back to its node.
    fn hand_back_to(self, done: &mpsc::UnboundedSender<ClusterRunDone>) {
        let _ = done.send(ClusterRunDone {
            run_id: self.run_id,
            fence: self.fence,
            id: self.id,
            scheduled: self.scheduled,
            result: None,
            timed_out: false,
        });
    }
}

/// A row of the live nodes: id, started_at, renewed_at, lease_until, runs going.
type NodeRow = (String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>, i64);

/// One batch's materialization, as arrays for `UNNEST`.
#[derive(Default)]
struct Materialized {
    run_jobs: Vec<String>,
    run_fire_times: Vec<DateTime<Utc>>,
    run_due: Vec<DateTime<Utc>>,
    run_states: Vec<&'static str>,
    next_ids: Vec<String>,
    next_times: Vec<Option<DateTime<Utc>>>,
    next_revisions: Vec<i64>,
    next_finished: Vec<bool>,
    missed: Vec<(String, DateTime<Utc>)>,
    unreadable: Vec<(String, String)>,
}

/// A pending run, as the claim reads it with its job.
struct Candidate {
    run_id: i64,
    job_id: String,
    fire_time: DateTime<Utc>,
    name: Option<String>,
    task: String,
    args: serde_json::Value,
    max_instances: u32,
    timeout: Option<std::time::Duration>,
}

impl Candidate {
    fn read(row: &PgRow) -> Result<Candidate, sqlx::Error> {
        // Options that do not decode were set aside when the job was materialized; a row
        // changed behind the cluster's back since gets the defaults.
        let options: serde_json::Value = row.try_get(6)?;
        let options = serde_json::from_value::<JobOptions>(options).unwrap_or_default();
        let (max_instances, timeout) = (options.max_instances.max(1), options.timeout);
        Ok(Candidate {
            run_id: row.try_get(0)?,
            job_id: row.try_get(1)?,
            fire_time: row.try_get(2)?,
            name: row.try_get(3)?,
            task: row.try_get(4)?,
            args: row.try_get(5)?,
            max_instances,
            timeout,
        })
    }
}

/// Cluster mode's statements, with the store's table names in them.
pub(crate) struct Statements {
    pub(crate) channel: String,
    /// The statements of callers' job changes (`jobs.rs`).
    pub(crate) job: super::jobs::JobStatements,
    join: String,
    renew: String,
    reap: String,
    forget_dead: String,
    until_due: String,
    due_jobs: String,
    insert_runs: String,
    advance: String,
    set_aside: String,
    pending: String,
    running_counts: String,
    claim: String,
    set_aside_runs: String,
    delete_finished: String,
    complete: String,
    abandon_own: String,
    leave: String,
    nodes: String,
}

impl Statements {
    fn new(store: &PostgresStore) -> Statements {
        let jobs = store.table("jobs");
        let runs = store.table("runs");
        let nodes = store.table("nodes");
        let lease = "make_interval(secs => $2)";
        Statements {
            channel: store.channel(),
            join: format!(
                "INSERT INTO {nodes} (id, lease_until, started_at, renewed_at) \
                 VALUES ($1, now() + {lease}, now(), now()) \
                 ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until, \
                 started_at = now(), renewed_at = now(), running = 0"
            ),
            renew: format!(
                "UPDATE {nodes} SET lease_until = now() + {lease}, renewed_at = now(), running = $3 \
                 WHERE id = $1 AND lease_until > now()"
            ),
            // Runs whose owner holds no live lease (or is $1): abandoned, or pending again to
            // retry.
            reap: format!(
                "WITH lost AS ( \
                   SELECT r.id, COALESCE((j.options->>'retry_abandoned')::boolean, false) AS retry \
                   FROM {runs} r LEFT JOIN {jobs} j ON j.id = r.job_id \
                   WHERE r.state = 'running' AND (r.owner = $1 OR NOT EXISTS ( \
                     SELECT 1 FROM {nodes} n WHERE n.id = r.owner AND n.lease_until > now())) \
                   FOR UPDATE OF r SKIP LOCKED) \
                 UPDATE {runs} r SET \
                   state = CASE WHEN lost.retry THEN 'pending' ELSE 'abandoned' END, \
                   finished_at = CASE WHEN lost.retry THEN NULL ELSE now() END, \
                   due_at = now(), \
                   error = CASE WHEN lost.retry THEN NULL \
                     ELSE 'abandoned: its node (' || COALESCE(r.owner, '?') || ') stopped renewing its lease during the run' END \
                 FROM lost WHERE r.id = lost.id \
                 RETURNING r.job_id, r.fire_time, r.state, r.owner"
            ),
            forget_dead: format!("DELETE FROM {nodes} WHERE lease_until <= now()"),
            until_due: format!(
                "SELECT EXTRACT(EPOCH FROM (LEAST( \
                   (SELECT min(next_run_time) FROM {jobs} WHERE next_run_time IS NOT NULL), \
                   (SELECT min(r.due_at) FROM {runs} r JOIN {jobs} j ON j.id = r.job_id \
                    WHERE r.state = 'pending' AND j.task = ANY($1::text[]))) - now()))::float8"
            ),
            due_jobs: format!(
                "SELECT id, trigger, options, next_run_time, revision, name, now() FROM {jobs} \
                 WHERE next_run_time <= now() ORDER BY next_run_time LIMIT $1 \
                 FOR UPDATE SKIP LOCKED"
            ),
            insert_runs: format!(
                "INSERT INTO {runs} (job_id, fire_time, due_at, state, finished_at) \
                 SELECT job_id, fire_time, due_at, state, \
                   CASE WHEN state = 'pending' THEN NULL ELSE now() END \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[]) \
                   AS r(job_id, fire_time, due_at, state) \
                 ON CONFLICT (job_id, fire_time) DO NOTHING"
            ),
            // A compare-and-set on `revision`: the rows are locked, so it holds; it would
            // catch a change made outside the lock.
            advance: format!(
                "UPDATE {jobs} AS j SET next_run_time = v.next_run_time, finished = v.finished, \
                 revision = j.revision + 1, updated_at = now() \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::bool[]) \
                   AS v(id, next_run_time, revision, finished) \
                 WHERE j.id = v.id AND j.revision = v.revision"
            ),
            set_aside: format!(
                "UPDATE {jobs} SET next_run_time = NULL, revision = revision + 1, updated_at = now() \
                 WHERE id = ANY($1::text[])"
            ),
            pending: format!(
                "SELECT r.id, r.job_id, r.fire_time, j.name, j.task, j.args, j.options, r.fence, j.finished \
                 FROM {runs} r JOIN {jobs} j ON j.id = r.job_id \
                 WHERE r.state = 'pending' AND r.due_at <= now() AND j.task = ANY($2::text[]) \
                 ORDER BY r.due_at LIMIT $1 \
                 FOR UPDATE OF r, j SKIP LOCKED"
            ),
            running_counts: format!(
                "SELECT job_id, count(*) FROM {runs} \
                 WHERE state = 'running' AND job_id = ANY($1::text[]) GROUP BY job_id"
            ),
            claim: format!(
                "UPDATE {runs} SET state = 'running', owner = $1, fence = fence + 1, \
                 started_at = now(), finished_at = NULL, error = NULL \
                 WHERE id = ANY($2::bigint[]) RETURNING id, fence"
            ),
            set_aside_runs: format!(
                "UPDATE {runs} AS r SET state = v.state, finished_at = now(), error = v.error \
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS v(id, state, error) \
                 WHERE r.id = v.id"
            ),
            delete_finished: format!(
                "DELETE FROM {jobs} j WHERE j.finished AND j.id = ANY($1::text[]) \
                 AND NOT EXISTS (SELECT 1 FROM {runs} r WHERE r.job_id = j.id AND r.state = 'pending') \
                 RETURNING j.id"
            ),
            // Only while the fence is this claim's and the run still this node's and going.
            complete: format!(
                "UPDATE {runs} AS r SET state = v.state, \
                   finished_at = CASE WHEN v.state = 'pending' THEN NULL ELSE now() END, \
                   started_at = CASE WHEN v.state = 'pending' THEN NULL ELSE r.started_at END, \
                   owner = CASE WHEN v.state = 'pending' THEN NULL ELSE r.owner END, \
                   due_at = CASE WHEN v.state = 'pending' THEN now() ELSE r.due_at END, \
                   result = v.result::jsonb, error = v.error \
                 FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
                   AS v(id, fence, state, result, error) \
                 WHERE r.id = v.id AND r.fence = v.fence AND r.state = 'running' AND r.owner = $1 \
                 RETURNING r.id"
            ),
            abandon_own: format!(
                "UPDATE {runs} SET state = 'abandoned', finished_at = now(), \
                 error = 'abandoned: still going when its node shut down' \
                 WHERE owner = $1 AND state = 'running' RETURNING job_id, fire_time"
            ),
            leave: format!("DELETE FROM {nodes} WHERE id = $1"),
            nodes: format!(
                "SELECT n.id, n.started_at, n.renewed_at, n.lease_until, \
                   (SELECT count(*) FROM {runs} r WHERE r.state = 'running' AND r.owner = n.id) \
                 FROM {nodes} n WHERE n.lease_until > now() ORDER BY n.id"
            ),
            job: super::jobs::JobStatements::new(&jobs, &runs),
        }
    }
}
