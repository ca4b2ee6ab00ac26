//! The commit point: the one place through which every change to a job passes.
//!
//! Adding, removing, modifying, rescheduling, pausing and resuming a job, and every advance of
//! its next run, are [`Change`]s. [`Core::commit`] hands a change to the job's store and
//! applies it; [`Core::apply_change`] applies one already written (a caller's change to a
//! durable job, applied when its write is acknowledged). Applying keeps the job table, the id
//! index, the due queue and the job events in step. A memory job's store takes nothing; a
//! durable job's change becomes a [`Write`] for its store's writer.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::table::{Entry, Key, NextRun};
use super::Core;
use crate::store::{StoredJob, Write};
use crate::trigger::Trigger;
use crate::{Error, Event, JobOptions};

/// A change to one job.
pub(super) enum Change {
    /// A new job.
    Add(Entry),
    /// The job leaves the table.
    Remove(Removal),
    /// Its next run is the trigger's fire time `regular` (plus jitter); `None`: paused.
    Next(Option<DateTime<Utc>>),
    /// A new name (if given) and options.
    Modify {
        name: Option<Arc<str>>,
        options: JobOptions,
    },
    /// A new trigger, and its first fire time (`None`: paused).
    Reschedule {
        trigger: Trigger,
        first: Option<DateTime<Utc>>,
    },
}

/// Why a job leaves the table.
pub(super) enum Removal {
    /// A call removed it.
    Removed,
    /// A job with its id replaced it (no event: the replacement reports itself as added).
    Replaced,
    /// Every job was removed at once (one `AllJobsRemoved` event stands for them all).
    Cleared,
    /// Its trigger has no fire time left.
    Finished,
    /// Its trigger failed.
    Failed(Error),
    /// The core could not go on with it.
    Broken(&'static str),
}

impl Core {
    /// Commits a change the core makes on its own (or a caller made to a memory job): the
    /// job's store is handed it, and it is applied. A change to a job that is gone does
    /// nothing.
    pub(super) fn commit(&mut self, key: Key, change: Change) {
        if self.is_durable(key) {
            if let Some(write) = self.write_for(key, &change) {
                self.outbox[usize::from(key.store())].push(write);
            }
        }
        self.apply_change(key, change);
    }

    /// Whether the job lives in a durable store.
    pub(super) fn is_durable(&self, key: Key) -> bool {
        self.writers
            .get(usize::from(key.store()))
            .is_some_and(Option::is_some)
    }

    /// The write that records `change` of the job `key` in its store, from the job as it is
    /// before the change.
    pub(super) fn write_for(&self, key: Key, change: &Change) -> Option<Write> {
        let entry = match change {
            Change::Add(entry) => return stored(entry).map(Write::Put),
            _ => self.jobs.get(key)?,
        };
        let id = entry.id.to_string();
        Some(match change {
            Change::Add(_) => return None,
            Change::Remove(_) => Write::Delete { id },
            Change::Next(regular) => Write::Next {
                id,
                next_run_time: *regular,
            },
            Change::Modify { name, options } => {
                let mut row = stored(entry)?;
                if let Some(name) = name {
                    row.name = Some(name.to_string());
                }
                row.options = serde_json::to_value(options).ok()?;
                Write::Put(row)
            }
            Change::Reschedule { trigger, first } => {
                let mut row = stored(entry)?;
                row.trigger = serde_json::to_value(trigger).ok()?;
                row.next_run_time = *first;
                Write::Put(row)
            }
        })
    }

    /// Applies one change to one job: the table, the index, the due queue and the events
    /// follow. A change to a job that is gone does nothing.
    pub(super) fn apply_change(&mut self, key: Key, change: Change) {
        match change {
            Change::Add(entry) => {
                let (id, next) = (entry.id.clone(), entry.next);
                self.jobs.insert(key, entry);
                if let Some(next) = next.filter(|_| self.lifecycle.is_started()) {
                    self.due.push(key, next);
                }
                self.shared.emit(|| Event::JobAdded { job_id: id });
            }
            Change::Remove(why) => {
                if let Some(entry) = self.jobs.get(key) {
                    match &why {
                        Removal::Failed(error) => {
                            tracing::error!(job.id = %entry.id, %error, "apsched: job removed, its trigger failed");
                        }
                        Removal::Broken(why) => {
                            tracing::error!(job.id = %entry.id, why, "apsched: job removed");
                        }
                        _ => {}
                    }
                }
                let Some(id) = self.jobs.remove(key) else {
                    return;
                };
                self.shared.index().release(key, &id);
                if !matches!(why, Removal::Replaced | Removal::Cleared) {
                    self.shared.emit(|| Event::JobRemoved { job_id: id });
                }
            }
            Change::Next(regular) => self.set_next(key, regular),
            Change::Modify { name, options } => {
                if let Some(entry) = self.jobs.get_mut(key) {
                    if let Some(name) = name {
                        entry.set_name(name);
                    }
                    entry.set_options(options);
                }
            }
            Change::Reschedule { trigger, first } => {
                if let Some(entry) = self.jobs.get_mut(key) {
                    entry.trigger = trigger;
                    self.set_next(key, first);
                }
            }
        }
    }

    /// Points a job at its next run (or none), queued if the scheduler is started.
    fn set_next(&mut self, key: Key, regular: Option<DateTime<Utc>>) {
        let started = self.lifecycle.is_started();
        let Some(entry) = self.jobs.get_mut(key) else {
            return;
        };
        entry.next = regular.map(|regular| NextRun::jittered(&entry.trigger, regular));
        if let Some(next) = entry.next.filter(|_| started) {
            self.due.push(key, next);
        }
    }
}

/// The row a durable store keeps for a job; `None` for a job whose task is not a registered
/// one (it cannot be in a durable store).
pub(crate) fn stored(entry: &Entry) -> Option<StoredJob> {
    let (task, args) = entry.task.registered()?;
    Some(StoredJob {
        id: entry.id.to_string(),
        name: entry.given_name().map(|name| name.to_string()),
        task: task.to_string(),
        args: args.clone(),
        trigger: serde_json::to_value(&entry.trigger).ok()?,
        options: serde_json::to_value(entry.options()).ok()?,
        next_run_time: entry.next.map(|next| next.regular),
    })
}
