//! The core's side of durable stores: one writer task per store, and the changes that wait for
//! their write.
//!
//! The core decides every change and never awaits a database. A change a caller asked for on a
//! durable job is written first and applied when its write is acknowledged (the caller hears
//! `Ok` only then); meanwhile the job takes no other change and does not fire, so memory and
//! database apply changes in one order. Changes the core makes on its own (next-run advances,
//! run rows) are applied at once and written batched, one transaction per loop of the core;
//! the writer retries them with capped exponential backoff while the database is away, and
//! callers' writes to that store fail fast with [`Error::Store`] until it is back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::commit::{stored, Change, Removal};
use super::table::{Entry, Key, StoreIndex};
use super::{Core, Shared};
use crate::store::{BackendError, JobStore, RunRecord, StoredJob, UnreadableRow, Write};
use crate::trigger::Trigger;
use crate::{Cause, Error, Event, Job, JobId, JobOptions, Result};

/// A store as the handles and the core know it.
pub(crate) struct StoreInfo {
    pub(crate) name: Arc<str>,
    /// `None` for the memory store.
    pub(crate) backend: Option<Arc<dyn JobStore>>,
    /// Set while the writer cannot write: the error callers' writes fail with at once.
    outage: Mutex<Option<Error>>,
}

impl StoreInfo {
    pub(crate) fn new(name: Arc<str>, backend: Option<Arc<dyn JobStore>>) -> StoreInfo {
        StoreInfo {
            name,
            backend,
            outage: Mutex::new(None),
        }
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.backend.is_some()
    }

    /// The error a caller's write fails with while the store is away.
    pub(crate) fn outage(&self) -> Option<Error> {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_outage(&self, outage: Option<Error>) {
        *self.outage.lock().unwrap_or_else(|e| e.into_inner()) = outage;
    }

    /// The error of a failed store operation (every one is made here, so it is also counted).
    pub(crate) fn error(&self, operation: &'static str, error: BackendError) -> Error {
        #[cfg(feature = "metrics")]
        crate::metrics::store_failed(&self.name, operation);
        Error::Store {
            store: self.name.to_string(),
            operation,
            source: Cause::new(error),
        }
    }
}

/// What the core asks of a store's writer.
pub(super) enum ToWriter {
    /// Writes, in order; `token` set when a caller waits for them.
    Write {
        writes: Vec<Write>,
        token: Option<u64>,
    },
    /// Read every job (the scheduler is starting).
    Load,
    /// Delete the run history past its retention (the writer's own timer).
    Prune,
    /// The scheduler is stopping: write what is left, answer, and end.
    Close(oneshot::Sender<()>),
    /// Answer once what came before is written (or failed).
    Synced(oneshot::Sender<()>),
}

/// What a writer tells the core.
pub(super) enum FromWriter {
    /// Callers' writes, acknowledged or failed, in the order they were sent.
    Written { done: Vec<(u64, Result<()>)> },
    /// The jobs read at start, and the runs waiting for a retry.
    Loaded {
        store: StoreIndex,
        rows: Result<Loaded>,
    },
}

/// A store's jobs as read at start, and its runs waiting for a retry.
pub(super) type Loaded = (
    Vec<std::result::Result<StoredJob, UnreadableRow>>,
    Vec<RunRecord>,
);

/// The longest a writer waits before retrying its own writes while the database is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many writes go into one transaction at most.
const MAX_BATCH: usize = 10_000;
/// How many of the core's own writes a writer keeps while the database is away; past that the
/// oldest run rows are dropped (and reported), never a job's change.
const MAX_BACKLOG: usize = 1_000_000;

/// Spawns the writer of store `index`.
pub(super) fn spawn_writer(
    shared: Arc<Shared>,
    index: StoreIndex,
    retention: Duration,
    to_core: mpsc::UnboundedSender<FromWriter>,
) -> mpsc::UnboundedSender<ToWriter> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(writer(shared, index, retention, rx, to_core));
    tx
}

/// How often a writer deletes run history past its retention, and how many runs one delete
/// takes (so no transaction holds the table for long).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 10_000;

/// A store's writer: takes what is queued, writes it in one transaction, tells the core.
async fn writer(
    shared: Arc<Shared>,
    index: StoreIndex,
    retention: Duration,
    mut rx: mpsc::UnboundedReceiver<ToWriter>,
    to_core: mpsc::UnboundedSender<FromWriter>,
) {
    let info = &shared.stores[usize::from(index)];
    let Some(backend) = info.backend.clone() else {
        return;
    };
    // The core's own writes not yet written, in order, kept across failures.
    let mut backlog: Vec<Write> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    let prune = !retention.is_zero();
    let mut prune_at = tokio::time::Instant::now() + PRUNE_EVERY;
    loop {
        let retrying = !backlog.is_empty() || info.outage().is_some();
        let first = tokio::select! {
            message = rx.recv() => message,
            // Time to try again (an empty batch probes whether the store is back).
            () = tokio::time::sleep(backoff), if retrying => {
                Some(ToWriter::Write { writes: Vec::new(), token: None })
            }
            () = tokio::time::sleep_until(prune_at), if prune => {
                prune_at = tokio::time::Instant::now() + PRUNE_EVERY;
                Some(ToWriter::Prune)
            }
        };
        let Some(first) = first else {
            // The core has stopped: one last try for what is left.
            if !backlog.is_empty() && write(&*backend, &backlog).await.is_err() {
                tracing::error!(store = %info.name, writes = backlog.len(), "apsched: scheduler stopped with store writes unwritten");
            }
            return;
        };
        let mut callers: Vec<(u64, Vec<Write>)> = Vec::new();
        let mut load = false;
        let mut synced = Vec::new();
        let mut message = Some(first);
        while let Some(next) = message.take() {
            match next {
                ToWriter::Write {
                    writes,
                    token: Some(token),
                } => callers.push((token, writes)),
                ToWriter::Write {
                    writes,
                    token: None,
                } => backlog.extend(writes),
                // Writes before a load are in what it reads: write them first.
                ToWriter::Load => load = true,
                ToWriter::Prune => {
                    prune_history(&*backend, &shared, info, retention).await;
                }
                ToWriter::Synced(reply) => synced.push(reply),
                ToWriter::Close(done) => {
                    if !backlog.is_empty() && write(&*backend, &backlog).await.is_err() {
                        tracing::error!(store = %info.name, writes = backlog.len(), "apsched: scheduler stopped with store writes unwritten");
                    }
                    let _ = done.send(());
                    return;
                }
            }
            if !load && synced.is_empty() && backlog.len() + callers.len() < MAX_BATCH {
                message = rx.try_recv().ok();
            }
        }
        trim(&mut backlog, &shared, info);
        let mut batch = backlog.clone();
        batch.extend(
            callers
                .iter()
                .flat_map(|(_, writes)| writes.iter().cloned()),
        );
        // Nothing to write and no outage to probe: nothing to do.
        let outcome = if batch.is_empty() && info.outage().is_none() {
            Ok(())
        } else {
            match attempt(&*backend, &batch).await {
                Ok(()) => Ok(()),
                // A caller's bad write fails the transaction for all in it: try the core's own
                // writes again alone (an empty batch when there are none), which also tells a bad
                // write from a store that is away.
                Err(error) if !callers.is_empty() => {
                    let failed = info.error("write", error);
                    let done = callers
                        .iter()
                        .map(|(token, _)| (*token, Err(failed.clone())));
                    let _ = to_core.send(FromWriter::Written {
                        done: done.collect(),
                    });
                    callers.clear();
                    attempt(&*backend, &backlog).await
                }
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(()) => {
                backlog.clear();
                backoff = Duration::from_millis(100);
                if info.outage().is_some() {
                    info.set_outage(None);
                    tracing::info!(store = %info.name, "apsched: store is back");
                    shared.emit(|| Event::StoreRecovered {
                        store: info.name.to_string(),
                    });
                }
                if !callers.is_empty() {
                    let done = callers.iter().map(|(token, _)| (*token, Ok(())));
                    let _ = to_core.send(FromWriter::Written {
                        done: done.collect(),
                    });
                }
            }
            Err(error) => {
                let error = info.error("write", error);
                let done = callers
                    .iter()
                    .map(|(token, _)| (*token, Err(error.clone())));
                let done: Vec<_> = done.collect();
                if !done.is_empty() {
                    let _ = to_core.send(FromWriter::Written { done });
                }
                if info.outage().is_none() {
                    tracing::warn!(store = %info.name, %error, "apsched: store write failed; retrying");
                    shared.emit(|| Event::StoreError {
                        store: info.name.to_string(),
                        operation: "write".into(),
                        message: error.to_string(),
                    });
                }
                info.set_outage(Some(error));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        for reply in synced {
            let _ = reply.send(());
        }
        if load {
            let rows = match backend.load().await {
                Ok(rows) => backend
                    .retries()
                    .await
                    .map(|retries| (rows, retries))
                    .map_err(|error| info.error("load retries", error)),
                Err(error) => Err(info.error("load jobs", error)),
            };
            let _ = to_core.send(FromWriter::Loaded { store: index, rows });
        }
    }
}

/// Deletes the runs older than `retention`, a batch at a time.
async fn prune_history(
    backend: &dyn JobStore,
    shared: &Shared,
    info: &StoreInfo,
    retention: Duration,
) {
    let Some(before) = chrono::TimeDelta::from_std(retention)
        .ok()
        .and_then(|retention| shared.now().checked_sub_signed(retention))
    else {
        return;
    };
    loop {
        match backend.prune_runs(before, PRUNE_BATCH).await {
            Ok(deleted) if deleted >= u64::from(PRUNE_BATCH) => continue,
            Ok(_) => return,
            Err(error) => {
                let error = info.error("delete old runs", error);
                tracing::warn!(store = %info.name, %error, "apsched: could not delete old runs");
                shared.emit(|| Event::StoreError {
                    store: info.name.to_string(),
                    operation: "delete old runs".into(),
                    message: error.to_string(),
                });
                return;
            }
        }
    }
}

async fn write(backend: &dyn JobStore, writes: &[Write]) -> std::result::Result<(), BackendError> {
    backend.write(writes).await
}

/// Writes `writes`; with none, asks whether the store can be reached at all.
async fn attempt(
    backend: &dyn JobStore,
    writes: &[Write],
) -> std::result::Result<(), BackendError> {
    if writes.is_empty() {
        backend.ping().await
    } else {
        backend.write(writes).await
    }
}

/// Keeps the backlog bounded while the database is away: the oldest run rows go first.
fn trim(backlog: &mut Vec<Write>, shared: &Shared, info: &StoreInfo) {
    if backlog.len() <= MAX_BACKLOG {
        return;
    }
    let excess = backlog.len() - MAX_BACKLOG;
    let mut dropped = 0;
    backlog.retain(|write| {
        if dropped < excess && matches!(write, Write::Run(_)) {
            dropped += 1;
            false
        } else {
            true
        }
    });
    if dropped > 0 {
        tracing::error!(store = %info.name, dropped, "apsched: store away too long; oldest run records dropped");
        shared.emit(|| Event::StoreError {
            store: info.name.to_string(),
            operation: "keep run records".into(),
            message: format!("{dropped} run records dropped while the store was away"),
        });
    }
}

/// The core's bookkeeping for changes waiting for their write.
#[derive(Default)]
pub(super) struct Pending {
    next_token: u64,
    /// What each token stands for.
    pub(super) writes: HashMap<u64, PendingWrite>,
    /// The jobs with a change in flight, and the commands that came for them meanwhile (in
    /// order).
    pub(super) keys: HashMap<Key, VecDeque<Command>>,
}

/// A caller's change, written and not yet acknowledged.
pub(super) struct PendingWrite {
    /// The jobs it holds.
    pub(super) keys: Vec<Key>,
    pub(super) change: PendingChange,
}

/// What to apply once the write is acknowledged, and whom to answer.
pub(super) enum PendingChange {
    Add {
        key: Key,
        entry: Box<Entry>,
        replaces: Option<Key>,
        reply: oneshot::Sender<Result<()>>,
    },
    Remove {
        key: Key,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Change {
        key: Key,
        changes: Vec<Change>,
        reply: oneshot::Sender<Result<Option<Job>>>,
    },
    Clear {
        store: StoreIndex,
        join: Arc<Mutex<ClearJoin>>,
    },
    AddMany {
        jobs: Vec<(Key, Entry, Option<Key>)>,
        join: Arc<Mutex<ClearJoin>>,
    },
}

impl PendingChange {
    /// The write was acknowledged: apply the change and answer.
    fn apply(self, core: &mut Core) {
        match self {
            PendingChange::Add {
                key,
                entry,
                replaces,
                reply,
            } => {
                core.add(key, *entry, replaces, true);
                let _ = reply.send(Ok(()));
            }
            PendingChange::Remove { key, reply } => {
                core.apply_change(key, Change::Remove(Removal::Removed));
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            PendingChange::Change {
                key,
                changes,
                reply,
            } => {
                for change in changes {
                    core.apply_change(key, change);
                }
                let _ = reply.send(Ok(core.modified(key)));
            }
            PendingChange::Clear { store, join } => {
                for key in core.jobs.keys() {
                    if key.store() == store {
                        core.apply_change(key, Change::Remove(Removal::Cleared));
                    }
                }
                if join_done(&join, None) {
                    core.shared.emit(|| Event::AllJobsRemoved);
                }
            }
            PendingChange::AddMany { jobs, join } => {
                for (key, entry, replaces) in jobs {
                    core.add(key, entry, replaces, true);
                }
                join_done(&join, None);
            }
        }
    }

    /// The write failed: nothing changes; the caller hears why, and ids a failed add entered
    /// go back to what they named.
    fn fail(self, error: Error, core: &mut Core) {
        let unenter = |core: &mut Core, key: Key, id: &JobId, replaces: Option<Key>| {
            let mut index = core.shared.index();
            index.release(key, id);
            if let Some(old) = replaces.filter(|old| core.jobs.get(*old).is_some()) {
                index.restore(id.clone(), old);
            }
        };
        match self {
            PendingChange::Add {
                key,
                entry,
                replaces,
                reply,
            } => {
                unenter(core, key, &entry.id, replaces);
                let _ = reply.send(Err(error));
            }
            PendingChange::Remove { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
            }
            PendingChange::Change { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            PendingChange::Clear { join, .. } => {
                join_done(&join, Some(error));
            }
            PendingChange::AddMany { jobs, join } => {
                for (key, entry, replaces) in jobs {
                    unenter(core, key, &entry.id, replaces);
                }
                join_done(&join, Some(error));
            }
        }
    }
}

/// One store of a several-store change is done: answers once all are. Returns whether all
/// succeeded and this was the last.
fn join_done(join: &Mutex<ClearJoin>, error: Option<Error>) -> bool {
    let mut join = join.lock().unwrap_or_else(|e| e.into_inner());
    join.remaining = join.remaining.saturating_sub(1);
    if let Some(error) = error {
        join.error.get_or_insert(error);
    }
    if join.remaining > 0 {
        return false;
    }
    let result = join.error.take().map_or(Ok(()), Err);
    let ok = result.is_ok();
    if let Some(reply) = join.reply.take() {
        let _ = reply.send(result);
    }
    ok
}

/// `remove_all_jobs` over several durable stores: answered when the last one has written.
pub(super) struct ClearJoin {
    pub(super) remaining: usize,
    pub(super) error: Option<Error>,
    pub(super) reply: Option<oneshot::Sender<Result<()>>>,
}

impl Pending {
    pub(super) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    pub(super) fn holds(&self, key: Key) -> bool {
        !self.keys.is_empty() && self.keys.contains_key(&key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Why a stored job was not loaded: its id (if known) and the reason.
type NotLoaded = (Option<String>, String);

/// A start waiting for the durable stores' jobs.
pub(super) struct Starting {
    paused: bool,
    reply: oneshot::Sender<Result<()>>,
    waiting: usize,
    rows: Vec<(StoreIndex, Loaded)>,
    error: Option<Error>,
}

/// The recent runs of memory-store jobs, oldest first, at most `cap`.
pub(super) struct History {
    runs: VecDeque<(JobId, RunRecord)>,
    cap: usize,
}

impl History {
    pub(super) fn new(cap: usize) -> History {
        History {
            runs: VecDeque::new(),
            cap,
        }
    }

    fn push(&mut self, id: &JobId, record: RunRecord) {
        if self.cap == 0 {
            return;
        }
        if self.runs.len() == self.cap {
            self.runs.pop_front();
        }
        self.runs.push_back((id.clone(), record));
    }
}

/// How long a stopping scheduler waits for its stores to write what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Core {
    /// Hands each writer what is left and waits (bounded) until it is written, so that a
    /// process that exits after `shutdown()` loses no next-run advance or run record.
    pub(super) async fn drain_writers(&mut self) {
        self.flush_writes();
        let mut closed = Vec::new();
        for writer in self.writers.iter_mut().filter_map(Option::take) {
            let (done, wait) = oneshot::channel();
            if writer.send(ToWriter::Close(done)).is_ok() {
                closed.push(wait);
            }
        }
        let all = futures::future::join_all(closed);
        if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
            tracing::error!("apsched: a store did not finish its writes within 10 s of shutdown");
        }
    }

    pub(super) fn snapshot(&self, key: Key, entry: &Entry) -> Job {
        entry.snapshot(self.shared.timezone, &self.shared.store(key.store()).name)
    }

    /// Hands each durable store the writes the core made on its own since the last flush: one
    /// transaction per loop of the core (a due batch, a batch of commands).
    pub(super) fn flush_writes(&mut self) {
        for (writer, outbox) in self.writers.iter().zip(self.outbox.iter_mut()) {
            if let (Some(writer), false) = (writer, outbox.is_empty()) {
                let writes = std::mem::take(outbox);
                let _ = writer.send(ToWriter::Write {
                    writes,
                    token: None,
                });
            }
        }
    }

    /// Records what became of a run: in the job's store if it is durable, else in memory.
    pub(super) fn record_run(&mut self, key: Key, id: &JobId, record: RunRecord) {
        if self.is_durable(key) {
            if !self.settings.history_retention.is_zero() {
                self.outbox[usize::from(key.store())].push(Write::Run(record));
            }
        } else {
            self.history.push(id, record);
        }
    }

    /// The recent runs of a memory-store job, newest first (those under way included).
    pub(super) fn memory_runs(&self, id: &JobId, limit: usize) -> Vec<RunRecord> {
        let mut runs: Vec<RunRecord> = self
            .history
            .runs
            .iter()
            .filter(|(job, _)| job == id)
            .map(|(_, record)| record.clone())
            .collect();
        runs.extend(self.runs.running_of(id));
        runs.extend(self.retries.waiting_of(id));
        runs.sort_by_key(|run| std::cmp::Reverse(run.fire_time));
        runs.truncate(limit);
        runs
    }

    /// Sends a caller's writes to a durable store, holding `keys` until they are written.
    /// Fails at once (answering through `fail`) while the store is away.
    fn write_first(
        &mut self,
        store: StoreIndex,
        writes: Vec<Write>,
        keys: Vec<Key>,
        change: PendingChange,
    ) {
        if let Some(error) = self.shared.store(store).outage() {
            change.fail(error, self);
            return;
        }
        let Some(Some(writer)) = self.writers.get(usize::from(store)) else {
            return;
        };
        // The core's own writes for this store go first: the caller's come after them.
        let mut all = std::mem::take(&mut self.outbox[usize::from(store)]);
        if !all.is_empty() {
            let _ = writer.send(ToWriter::Write {
                writes: std::mem::take(&mut all),
                token: None,
            });
        }
        let token = self.pending.token();
        let _ = writer.send(ToWriter::Write {
            writes,
            token: Some(token),
        });
        for key in &keys {
            self.pending.keys.entry(*key).or_default();
        }
        self.pending
            .writes
            .insert(token, PendingWrite { keys, change });
    }

    pub(super) fn add_durable(
        &mut self,
        key: Key,
        entry: Entry,
        replaces: Option<Key>,
        reply: oneshot::Sender<Result<()>>,
    ) {
        let mut writes = Vec::new();
        // A job of the same id in another durable store leaves that store too.
        if let Some(old) = replaces.filter(|old| old.store() != key.store()) {
            if self.is_durable(old) {
                if let Some(write) = self.write_for(old, &Change::Remove(Removal::Replaced)) {
                    self.write_elsewhere(old, write);
                }
            }
        }
        let Some(put) = stored(&entry).map(Write::Put) else {
            return;
        };
        writes.push(put);
        let keys = std::iter::once(key).chain(replaces).collect();
        let change = PendingChange::Add {
            key,
            entry: Box::new(entry),
            replaces,
            reply,
        };
        self.write_first(key.store(), writes, keys, change);
    }

    /// A write to another store than the one a caller's change waits for (a replaced job's
    /// delete): written with the core's own.
    fn write_elsewhere(&mut self, key: Key, write: Write) {
        self.outbox[usize::from(key.store())].push(write);
    }

    pub(super) fn remove_durable(&mut self, key: Key, reply: Option<oneshot::Sender<Result<()>>>) {
        let Some(write) = self.write_for(key, &Change::Remove(Removal::Removed)) else {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        };
        self.write_first(
            key.store(),
            vec![write],
            vec![key],
            PendingChange::Remove { key, reply },
        );
    }

    pub(super) fn change_durable(
        &mut self,
        key: Key,
        changes: Vec<Change>,
        reply: oneshot::Sender<Result<Option<Job>>>,
    ) {
        let writes: Vec<Write> = changes
            .iter()
            .filter_map(|change| self.write_for(key, change))
            .collect();
        self.write_first(
            key.store(),
            writes,
            vec![key],
            PendingChange::Change {
                key,
                changes,
                reply,
            },
        );
    }

    pub(super) fn clear_durable(
        &mut self,
        stores: Vec<StoreIndex>,
        reply: oneshot::Sender<Result<()>>,
    ) {
        let join = Arc::new(Mutex::new(ClearJoin {
            remaining: stores.len(),
            error: None,
            reply: Some(reply),
        }));
        for store in stores {
            let change = PendingChange::Clear {
                store,
                join: Arc::clone(&join),
            };
            self.write_first(store, vec![Write::DeleteAll], Vec::new(), change);
        }
    }

    /// `add_jobs`: memory jobs at once, each durable store's jobs in one write.
    pub(super) fn add_many(
        &mut self,
        jobs: Vec<(Key, Entry, Option<Key>)>,
        reply: oneshot::Sender<Result<()>>,
    ) {
        let mut by_store: HashMap<StoreIndex, Vec<(Key, Entry, Option<Key>)>> = HashMap::new();
        for (key, entry, replaces) in jobs {
            if self.is_durable(key) {
                by_store
                    .entry(key.store())
                    .or_default()
                    .push((key, entry, replaces));
            } else {
                self.add(key, entry, replaces, false);
            }
        }
        if by_store.is_empty() {
            let _ = reply.send(Ok(()));
            return;
        }
        let join = Arc::new(Mutex::new(ClearJoin {
            remaining: by_store.len(),
            error: None,
            reply: Some(reply),
        }));
        for (store, jobs) in by_store {
            let writes: Vec<Write> = jobs
                .iter()
                .filter_map(|(_, entry, _)| stored(entry).map(Write::Put))
                .collect();
            let keys = jobs
                .iter()
                .flat_map(|(key, _, replaces)| std::iter::once(*key).chain(*replaces))
                .collect();
            let change = PendingChange::AddMany {
                jobs,
                join: Arc::clone(&join),
            };
            self.write_first(store, writes, keys, change);
        }
    }

    pub(super) fn heard_from_writer(&mut self, message: FromWriter) {
        match message {
            FromWriter::Written { done } => {
                for (token, result) in done {
                    self.written(token, result);
                }
            }
            FromWriter::Loaded { store, rows } => self.loaded(store, rows),
        }
    }

    /// A caller's write was acknowledged (or failed): apply it (or not), answer, and take up
    /// the commands that waited for its jobs.
    fn written(&mut self, token: u64, result: Result<()>) {
        let Some(PendingWrite { keys, change }) = self.pending.writes.remove(&token) else {
            return;
        };
        let mut waiting = Vec::new();
        for key in &keys {
            if let Some(commands) = self.pending.keys.remove(key) {
                waiting.extend(commands);
            }
        }
        match result {
            Ok(()) => change.apply(self),
            Err(error) => change.fail(error, self),
        }
        for key in keys {
            // Due while held: it is due now.
            if let Some(next) = self.jobs.get(key).and_then(|e| e.next) {
                if self.lifecycle.is_started() {
                    self.due.push(key, next);
                }
            }
        }
        for command in waiting {
            self.handle(command);
        }
    }

    /// Starts the scheduler: at once without durable stores, else once their jobs are read.
    pub(super) fn begin_start(&mut self, paused: bool, reply: oneshot::Sender<Result<()>>) {
        let durable: Vec<usize> = (0..self.writers.len())
            .filter(|i| self.writers[*i].is_some())
            .collect();
        if durable.is_empty() || !matches!(self.lifecycle, super::Lifecycle::Stopped) {
            let _ = reply.send(self.start(paused));
            return;
        }
        if self.starting.is_some() {
            let _ = reply.send(Err(Error::InvalidState {
                state: crate::SchedulerState::Stopped,
                action: "start (a start is under way)",
            }));
            return;
        }
        for &i in &durable {
            if let Some(writer) = &self.writers[i] {
                let _ = writer.send(ToWriter::Load);
            }
        }
        self.starting = Some(Starting {
            paused,
            reply,
            waiting: durable.len(),
            rows: Vec::new(),
            error: None,
        });
    }

    fn loaded(&mut self, store: StoreIndex, rows: Result<Loaded>) {
        let Some(starting) = self.starting.as_mut() else {
            return;
        };
        starting.waiting -= 1;
        match rows {
            Ok(rows) => starting.rows.push((store, rows)),
            Err(error) => {
                starting.error.get_or_insert(error);
            }
        }
        if starting.waiting > 0 {
            return;
        }
        let Some(Starting {
            paused,
            reply,
            rows,
            error,
            ..
        }) = self.starting.take()
        else {
            return;
        };
        if let Some(error) = error {
            let _ = reply.send(Err(error));
            return;
        }
        let started = self.start(paused);
        if started.is_ok() {
            let restored: usize = rows
                .into_iter()
                .map(|(store, (rows, retries))| {
                    let restored = self.restore(store, rows);
                    for run in retries {
                        self.restore_retry(run);
                    }
                    restored
                })
                .sum();
            tracing::info!(
                jobs = restored,
                "apsched: jobs restored from the durable stores"
            );
        }
        let _ = reply.send(started);
    }

    /// Puts a store's rows in the table with their stored next runs: runs missed while the
    /// process was down are due at once and follow the misfire rules. Rows that cannot be
    /// rebuilt are reported and left in the store. Returns how many jobs were restored.
    fn restore(
        &mut self,
        store: StoreIndex,
        rows: Vec<std::result::Result<StoredJob, UnreadableRow>>,
    ) -> usize {
        let mut restored = 0;
        for row in rows {
            let built = row
                .map_err(|unreadable| (unreadable.id, unreadable.reason))
                .and_then(|row| self.rebuild(store, row));
            match built {
                Ok(Some((key, entry))) => {
                    let next = entry.next;
                    self.jobs.insert(key, entry);
                    if let Some(next) = next {
                        self.due.push(key, next);
                    }
                    restored += 1;
                }
                // Added in this process before the start: already here.
                Ok(None) => {}
                Err((id, reason)) => {
                    let name = self.shared.store(store).name.to_string();
                    tracing::warn!(store = %name, job.id = ?id, %reason, "apsched: a stored job was not loaded; its row is left as it is");
                    self.shared.emit(|| Event::JobNotLoaded {
                        store: name,
                        job_id: id,
                        reason,
                    });
                }
            }
        }
        restored
    }

    /// A job from its row, under a new key in the index (`Ok(None)`: the job is here already,
    /// added before the start).
    fn rebuild(
        &mut self,
        store: StoreIndex,
        row: StoredJob,
    ) -> std::result::Result<Option<(Key, Entry)>, NotLoaded> {
        let id = row.id.clone();
        let entry =
            entry_from_row(&self.shared, row).map_err(|reason| (Some(id.clone()), reason))?;
        let mut index = self.shared.index();
        if let Some(existing) = index.key_of(&entry.id) {
            if existing.store() == store && self.jobs.get(existing).is_some() {
                return Ok(None);
            }
            return Err((Some(id), "another job has its id".into()));
        }
        let Some((key, _)) = index.enter(entry.id.clone(), store, false) else {
            return Err((Some(id), "another job has its id".into()));
        };
        Ok(Some((key, entry)))
    }
}

/// A job rebuilt from its row (at start, or for an import): its trigger and options decoded,
/// its task built from the scheduler's registry, its next run the row's (jitter drawn anew).
/// The error says why it cannot be.
pub(crate) fn entry_from_row(
    shared: &Shared,
    row: StoredJob,
) -> std::result::Result<Entry, String> {
    let mut trigger: Trigger = serde_json::from_value(row.trigger)
        .map_err(|e| format!("its trigger does not decode: {e}"))?;
    trigger
        .prepare(shared.timezone, shared.now())
        .map_err(|e| format!("its trigger is invalid: {e}"))?;
    let options: JobOptions = serde_json::from_value(row.options)
        .map_err(|e| format!("its options do not decode: {e}"))?;
    options.validate().map_err(|e| e.to_string())?;
    let task = match shared.tasks.task(&row.task, row.args) {
        Ok(task) => task,
        Err(Error::TaskNotFound(name)) => {
            return Err(format!(
                "its task '{name}' is not registered with this scheduler (SchedulerBuilder::tasks)"
            ))
        }
        Err(error) => return Err(error.to_string()),
    };
    if row.id.is_empty() {
        return Err("its id is empty".into());
    }
    let next = row
        .next_run_time
        .map(|regular| super::table::NextRun::jittered(&trigger, regular));
    let name = row.name.map(|n| Arc::<str>::from(n.as_str()));
    Ok(Entry::new(
        JobId::new(&row.id),
        name,
        task,
        trigger,
        options,
        next,
    ))
}
