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
use super::table::{Entry, Key};
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
    },
    Remove {
        key: Key,
    },
    RemoveAll {
        reply: oneshot::Sender<()>,
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
}

/// A change a caller asks of one job, answered with the job's new snapshot (`None`: the job
/// is gone).
pub(crate) enum JobChange {
    Modify(Modification),
    Reschedule(Trigger),
    Pause,
    Resume,
    RunNow,
}

/// What `modify_job` changes; what is `None` stays.
#[derive(Default)]
pub(crate) struct Modification {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) misfire_grace_time: Option<MisfireGrace>,
    pub(crate) coalesce: Option<bool>,
    pub(crate) max_instances: Option<u32>,
}

impl Modification {
    fn applied_to(&self, mut options: JobOptions) -> JobOptions {
        if let Some(grace) = self.misfire_grace_time {
            options = options.misfire_grace_time(grace);
        }
        if let Some(coalesce) = self.coalesce {
            options = options.coalesce(coalesce);
        }
        if let Some(max) = self.max_instances {
            options = options.max_instances(max);
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
            Command::Remove { key } => self.commit(key, Change::Remove(Removal::Removed)),
            Command::RemoveAll { reply } => {
                for key in self.jobs.keys() {
                    self.commit(key, Change::Remove(Removal::Cleared));
                }
                self.due.clear();
                self.shared.emit(|| Event::AllJobsRemoved);
                let _ = reply.send(());
            }
            Command::Get { key, reply } => {
                let _ = reply.send(self.jobs.get(key).map(|e| e.snapshot(self.shared.timezone)));
            }
            Command::GetAll { reply } => {
                let zone = self.shared.timezone;
                let mut jobs: Vec<(Key, &Entry)> = self.jobs.iter().collect();
                jobs.sort_by_key(|(key, e)| (e.next.is_none(), e.next.map(|n| n.at()), *key));
                let _ = reply.send(jobs.into_iter().map(|(_, e)| e.snapshot(zone)).collect());
            }
            Command::Change { key, change, reply } => {
                let _ = reply.send(self.change(key, change));
            }
            Command::Start { paused, reply } => {
                let _ = reply.send(self.start(paused));
            }
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

    fn add(&mut self, key: Key, entry: Entry, replaces: Option<Key>) {
        if let Some(old) = replaces {
            self.commit(old, Change::Remove(Removal::Replaced));
        }
        // Handles send commands in the order they change the index: if the id was removed or
        // replaced since, that command is queued behind this one and will undo it, as it would
        // had the core been quicker.
        self.commit(key, Change::Add(entry));
    }

    fn change(&mut self, key: Key, change: JobChange) -> Result<Option<Job>> {
        let now = self.shared.clock.now();
        let Some(entry) = self.jobs.get(key) else {
            return Ok(None);
        };
        match change {
            JobChange::Modify(modification) => {
                let options = modification.applied_to(entry.options.into());
                let name = modification.name;
                self.commit(key, Change::Modify { name, options });
            }
            JobChange::Reschedule(trigger) => {
                let first = trigger.next_fire_time(None, now)?;
                self.commit(key, Change::Reschedule { trigger, first });
            }
            JobChange::Pause => self.commit(key, Change::Next(None)),
            JobChange::Resume => {
                let Some(first) = entry.trigger.next_fire_time(None, now)? else {
                    self.commit(key, Change::Remove(Removal::Finished));
                    return Ok(None);
                };
                self.commit(key, Change::Next(Some(first)));
            }
            JobChange::RunNow => self.submit(key, now, None),
        }
        let job = self.jobs.get(key).map(|e| e.snapshot(self.shared.timezone));
        if let Some(job) = &job {
            self.shared.emit(|| Event::JobModified {
                job_id: job.id.clone(),
            });
        }
        Ok(job)
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
        // Dropping the reply sender makes the caller see `Error::Shutdown`.
        Command::Add { .. }
        | Command::Remove { .. }
        | Command::RemoveAll { .. }
        | Command::Get { .. }
        | Command::GetAll { .. } => {}
    }
}
