//! The commands handles send the core, and how the core applies them.
//!
//! Commands arrive in the order the handles changed the id index (handles send under the index
//! lock), so applying them in order keeps the index and the job table in agreement. Each is
//! applied as one step under `catch_unwind`: a bug costs that command, never the core.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::commit::{Change, Removal};
use super::run::panic_message;
use super::table::{Entry, Key, StoreIndex};
use super::{Core, Lifecycle};
use crate::trigger::Trigger;
use crate::{AbandonedRun, Error, Event, Job, JobOptions, MisfireGrace, Result};

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
        timeout: Option<std::time::Duration>,
        reply: ShutdownReply,
    },
    Add {
        key: Key,
        entry: Entry,
        /// The key the job's id named before (`replace_existing`).
        replaces: Option<Key>,
        /// Set for a durable job: answered once it is written.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Several jobs at once (`add_jobs`): each store's share is written in one transaction.
    AddMany {
        jobs: Vec<(Key, Entry, Option<Key>)>,
        reply: oneshot::Sender<Result<()>>,
    },
    Remove {
        key: Key,
        /// Set for a durable job: answered once the delete is written.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    RemoveAll {
        reply: oneshot::Sender<Result<()>>,
    },
    /// Answered once everything the core wrote to `store` before is written: a read of the
    /// store after it sees every run already reported.
    Synced {
        store: StoreIndex,
        reply: oneshot::Sender<()>,
    },
    /// The rows of a store's jobs, as a durable store would keep them (`export_jobs`).
    Export {
        store: StoreIndex,
        reply: oneshot::Sender<Vec<crate::store::StoredJob>>,
    },
    /// The recent runs of the memory store's job `id`.
    Runs {
        id: crate::JobId,
        limit: usize,
        reply: oneshot::Sender<Vec<crate::store::RunRecord>>,
    },
    Get {
        key: Key,
        reply: oneshot::Sender<Option<Job>>,
    },
    GetAll {
        reply: oneshot::Sender<Vec<Job>>,
    },
    Change {
        key: Key,
        change: JobChange,
        reply: oneshot::Sender<Result<Option<Job>>>,
    },
    /// A run a cluster node claimed, to start.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    ClusterRun(Box<super::run::ClusterRun>),
}

/// A change a caller asks of one job, answered with the job's new snapshot (`None`: the job
/// is gone).
pub(crate) enum JobChange {
    Modify(Modification),
    Reschedule(Trigger),
    Pause,
    Resume,
    /// With who waits for the run's outcome, if anyone.
    RunNow(Option<super::run::Waiter>),
}

/// What `modify_job` changes; what is `None` stays.
#[derive(Default)]
pub(crate) struct Modification {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) misfire_grace_time: Option<MisfireGrace>,
    pub(crate) coalesce: Option<bool>,
    pub(crate) max_instances: Option<u32>,
    pub(crate) timeout: Option<Option<std::time::Duration>>,
    pub(crate) retry: Option<Option<crate::RetryPolicy>>,
}

impl Modification {
    pub(crate) fn applied_to(&self, mut options: JobOptions) -> JobOptions {
        if let Some(grace) = self.misfire_grace_time {
            options = options.misfire_grace_time(grace);
        }
        if let Some(coalesce) = self.coalesce {
            options = options.coalesce(coalesce);
        }
        if let Some(max) = self.max_instances {
            options = options.max_instances(max);
        }
        if let Some(timeout) = self.timeout {
            options = options.timeout(timeout);
        }
        if let Some(retry) = self.retry {
            options = options.retry(retry);
        }
        options
    }
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

impl Core {
    pub(super) fn handle(&mut self, command: Command) {
        // Commands queued behind a shutdown (even in the same batch) are refused.
        if matches!(self.lifecycle, Lifecycle::ShuttingDown(_)) {
            reject(command);
            return;
        }
        // A command for a job whose change is still being written waits behind it.
        if let Some(key) = command.keys().find(|key| self.pending.holds(*key)) {
            if let Some(waiting) = self.pending.keys.get_mut(&key) {
                waiting.push_back(command);
            }
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
                reply,
            } => match reply {
                Some(reply) if self.is_durable(key) => {
                    self.add_durable(key, entry, replaces, reply)
                }
                reply => {
                    self.add(key, entry, replaces, false);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
            },
            Command::AddMany { jobs, reply } => self.add_many(jobs, reply),
            Command::Remove { key, reply } => match reply {
                Some(reply) if self.is_durable(key) => self.remove_durable(key, Some(reply)),
                reply => {
                    self.commit(key, Change::Remove(Removal::Removed));
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
            },
            Command::RemoveAll { reply } => self.remove_all(reply),
            Command::ClusterRun(run) => {
                self.start_cluster_run(*run);
                self.spawn_ready();
            }
            Command::Synced { store, reply } => {
                self.flush_writes();
                match self.writers.get(usize::from(store)) {
                    Some(Some(writer)) => {
                        let _ = writer.send(super::store::ToWriter::Synced(reply));
                    }
                    _ => {
                        let _ = reply.send(());
                    }
                }
            }
            Command::Export { store, reply } => {
                let rows = self
                    .jobs
                    .iter()
                    .filter(|(key, _)| key.store() == store)
                    .filter_map(|(_, entry)| super::commit::stored(entry));
                let _ = reply.send(rows.collect());
            }
            Command::Runs { id, limit, reply } => {
                let _ = reply.send(self.memory_runs(&id, limit));
            }
            Command::Get { key, reply } => {
                let _ = reply.send(self.jobs.get(key).map(|e| self.snapshot(key, e)));
            }
            Command::GetAll { reply } => {
                let mut jobs: Vec<(Key, &Entry)> = self.jobs.iter().collect();
                jobs.sort_by_key(|(key, e)| (e.next.is_none(), e.next.map(|n| n.at()), *key));
                let jobs = jobs.into_iter().map(|(key, e)| self.snapshot(key, e));
                let _ = reply.send(jobs.collect());
            }
            Command::Change { key, change, reply } => self.change(key, change, reply),
            Command::Start { paused, reply } => self.begin_start(paused, reply),
            Command::Pause { reply } => {
                let _ = reply.send(self.set_paused(true));
            }
            Command::Resume { reply } => {
                let _ = reply.send(self.set_paused(false));
            }
            Command::Shutdown { timeout, reply } => {
                self.begin_shutdown(timeout);
                match reply {
                    ShutdownReply::Stopped(waiter) => {
                        if let Lifecycle::ShuttingDown(shutdown) = &mut self.lifecycle {
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

    /// Adds a job, replacing `replaces`. `written`: a durable job whose store has written it
    /// (the replaced job's row is gone with that write too); else a memory job, and a durable
    /// job it replaces is deleted from its store.
    pub(super) fn add(&mut self, key: Key, entry: Entry, replaces: Option<Key>, written: bool) {
        if let Some(old) = replaces {
            if written {
                self.apply_change(old, Change::Remove(Removal::Replaced));
            } else {
                self.commit(old, Change::Remove(Removal::Replaced));
            }
        }
        // Handles send commands in the order they change the index: if the id was removed or
        // replaced since, that command is queued behind this one and will undo it, as it would
        // had the core been quicker.
        self.apply_change(key, Change::Add(entry));
    }

    /// Applies a caller's change to a job: at once for a memory job, after its write for a
    /// durable one.
    fn change(&mut self, key: Key, change: JobChange, reply: oneshot::Sender<Result<Option<Job>>>) {
        let now = self.shared.now();
        let Some(entry) = self.jobs.get(key) else {
            let _ = reply.send(Ok(None));
            return;
        };
        let changes = match change {
            JobChange::Modify(modification) => {
                let options = modification.applied_to(entry.options());
                let name = modification.name;
                vec![Change::Modify { name, options }]
            }
            JobChange::Reschedule(trigger) => match trigger.next_fire_time(None, now) {
                Ok(first) => vec![Change::Reschedule { trigger, first }],
                Err(error) => {
                    let _ = reply.send(Err(error));
                    return;
                }
            },
            JobChange::Pause => vec![Change::Next(None)],
            JobChange::Resume => match entry.trigger.next_fire_time(None, now) {
                Ok(Some(first)) => vec![Change::Next(Some(first))],
                Ok(None) => vec![Change::Remove(Removal::Finished)],
                Err(error) => {
                    let _ = reply.send(Err(error));
                    return;
                }
            },
            JobChange::RunNow(waiter) => {
                self.submit(key, now, None, waiter);
                Vec::new()
            }
        };
        if self.is_durable(key) && !changes.is_empty() {
            self.change_durable(key, changes, reply);
            return;
        }
        for change in changes {
            self.apply_change(key, change);
        }
        let _ = reply.send(Ok(self.modified(key)));
    }

    /// The job's snapshot after a caller changed it, reported as modified.
    pub(super) fn modified(&self, key: Key) -> Option<Job> {
        let job = self.jobs.get(key).map(|e| self.snapshot(key, e));
        if let Some(job) = &job {
            self.shared.emit(|| Event::JobModified {
                job_id: job.id.clone(),
            });
        }
        job
    }

    /// Removes every job: memory jobs at once, durable ones once each store has written it.
    fn remove_all(&mut self, reply: oneshot::Sender<Result<()>>) {
        let durable: Vec<StoreIndex> = (0..self.writers.len())
            .filter(|i| self.writers[*i].is_some())
            .filter_map(|i| StoreIndex::try_from(i).ok())
            .collect();
        for key in self.jobs.keys() {
            if !self.is_durable(key) {
                self.apply_change(key, Change::Remove(Removal::Cleared));
            }
        }
        if durable.is_empty() {
            self.shared.emit(|| Event::AllJobsRemoved);
            let _ = reply.send(Ok(()));
            return;
        }
        self.clear_durable(durable, reply);
    }
}

impl Command {
    /// The jobs the command is about.
    fn keys(&self) -> impl Iterator<Item = Key> {
        let (first, second) = match self {
            Command::Add { key, replaces, .. } => (Some(*key), *replaces),
            Command::Remove { key, .. }
            | Command::Get { key, .. }
            | Command::Change { key, .. } => (Some(*key), None),
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }
}

/// Answers a command that arrived after shutdown began.
pub(super) fn reject(command: Command) {
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
        Command::RemoveAll { reply } | Command::AddMany { reply, .. } => {
            let _ = reply.send(Err(Error::Shutdown));
        }
        Command::ClusterRun(run) => run.hand_back(),
        // Dropping the reply sender makes the caller see `Error::Shutdown`.
        Command::Add { .. }
        | Command::Remove { .. }
        | Command::Runs { .. }
        | Command::Export { .. }
        | Command::Synced { .. }
        | Command::Get { .. }
        | Command::GetAll { .. } => {}
    }
}
