//! The commit point: the one function through which every change to a job passes.
//!
//! Adding, removing, modifying, rescheduling, pausing and resuming a job, and every advance of
//! its next run, are [`Change`]s given to [`Core::commit`], which keeps the job table, the id
//! index, the due queue and the job events in step. This is where a job's store will be handed
//! each change; today the only store is memory, so nothing is awaited here.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::table::{Entry, Key, NextRun};
use super::Core;
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
    /// Applies one change to one job: the table, the index, the due queue and the events
    /// follow. A change to a job that is gone does nothing.
    pub(super) fn commit(&mut self, key: Key, change: Change) {
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
                    if name.is_some() {
                        entry.name = name;
                    }
                    entry.options = options.into();
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
