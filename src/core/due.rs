//! When jobs are due: a min-heap of wall-clock due times, and the handling of due jobs.
//!
//! Items are never removed in place: each carries the due time it was queued for, and one that
//! no longer matches its job's next run (the job was removed, paused or rescheduled since) is
//! dropped when it surfaces, or when such stale items outnumber the jobs and the heap is
//! compacted. So removing or rescheduling a job is O(1) and costs no search.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};

use super::commit::{Change, Removal};
use super::misfire::decide;
use super::run::CatchUp;
use super::table::{JobTable, Key, NextRun};
use super::Core;

/// How many due runs the core handles before it yields: callers are answered and the worker
/// runs some of the jobs just spawned even while thousands fall due at once.
pub(super) const DUE_BATCH: usize = 256;

/// Stale items may pile up (every remove, pause or reschedule leaves one until its old due
/// time); the heap is compacted once they outnumber the jobs by this many.
const SLACK: usize = 1024;

/// A heap item: the job `key` is due at `at_us` (µs since the epoch), if its next run is
/// still that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_us: i64,
    key: Key,
}

/// The jobs' next runs, soonest first.
#[derive(Default)]
pub(super) struct DueQueue {
    heap: BinaryHeap<Reverse<Due>>,
}

impl DueQueue {
    pub(super) fn push(&mut self, key: Key, next: NextRun) {
        self.heap.push(Reverse(Due {
            at_us: next.at().timestamp_micros(),
            key,
        }));
    }

    /// The earliest due time queued (maybe stale).
    pub(super) fn first_us(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse(due)| due.at_us)
    }

    /// The next job due at or before `now_us` whose item is current; stale items on the way
    /// are dropped.
    fn pop_due(&mut self, jobs: &JobTable, now_us: i64) -> Option<Key> {
        while let Some(Reverse(due)) = self.heap.peek().copied() {
            if due.at_us > now_us {
                return None;
            }
            self.heap.pop();
            if jobs.is_due_at(due.key, due.at_us) {
                return Some(due.key);
            }
        }
        None
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }

    /// Drops the items that no longer match their job, once they outnumber the jobs: without
    /// this, adding and removing a million hourly jobs would leave a million items behind
    /// until their hour came. Amortized O(1) per stale item.
    pub(super) fn compact(&mut self, jobs: &JobTable) {
        if self.heap.len() <= 2 * jobs.len() + SLACK {
            return;
        }
        self.heap
            .retain(|Reverse(due)| jobs.is_due_at(due.key, due.at_us));
        self.heap.shrink_to(2 * self.heap.len() + SLACK);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

impl Core {
    /// Handles due jobs, at most one batch; returns whether more are due.
    pub(super) fn run_due(&mut self, now: DateTime<Utc>) -> bool {
        let now_us = now.timestamp_micros();
        for _ in 0..DUE_BATCH {
            let Some(key) = self.due.pop_due(&self.jobs, now_us) else {
                return false;
            };
            let fired = std::panic::catch_unwind(AssertUnwindSafe(|| self.fire(key, now)));
            if fired.is_err() {
                self.commit(
                    key,
                    Change::Remove(Removal::Broken("panicked while computing its next run")),
                );
            }
        }
        self.due.first_us().is_some_and(|at_us| at_us <= now_us)
    }

    /// Handles one due job: runs what the misfire rules say, and schedules the next.
    fn fire(&mut self, key: Key, now: DateTime<Utc>) {
        let Some(entry) = self.jobs.get(key) else {
            return;
        };
        let Some(due) = entry.next else {
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
            self.missed(key, &id, scheduled);
        }
        if let Some(scheduled) = decision.run {
            self.submit(key, scheduled, catch_up, None);
        }
        match decision.next {
            Ok(Some(regular)) => self.commit(key, Change::Next(Some(regular))),
            Ok(None) if self.retries_may_follow(key) => {
                // Kept, with no next run, until its run's last attempt has ended.
                self.commit(key, Change::Next(None));
                if let Some(entry) = self.jobs.get_mut(key) {
                    entry.finish_after_run();
                }
            }
            Ok(None) => self.commit(key, Change::Remove(Removal::Finished)),
            Err(error) => self.commit(key, Change::Remove(Removal::Failed(error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::table::{Entry, Index};
    use crate::trigger::Interval;
    use crate::{JobId, JobOptions};
    use chrono::TimeZone;

    #[test]
    fn stale_items_are_compacted_once_they_outnumber_the_jobs() {
        let (mut index, mut jobs, mut due) =
            (Index::default(), JobTable::default(), DueQueue::default());
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let next = NextRun::new(at, at);
        let mut kept = Vec::new();
        for i in 0..100_000 {
            let id = JobId::new(&i.to_string());
            let (key, _) = index.enter(id.clone(), 0, false).unwrap();
            let entry = Entry::new(
                id.clone(),
                None,
                crate::IntoTask::into_task(|| async {}),
                Interval::hours(1).into(),
                JobOptions::default(),
                Some(next),
            );
            jobs.insert(key, entry);
            due.push(key, next);
            if i % 100 == 0 {
                kept.push(key);
            } else {
                jobs.remove(key);
                index.release(key, &id);
            }
            due.compact(&jobs);
        }
        assert_eq!(jobs.len(), 1000);
        assert!(due.len() <= 2 * jobs.len() + SLACK, "{} items", due.len());
        // The current items all survive.
        let later = at.timestamp_micros();
        let mut surfaced = Vec::new();
        while let Some(key) = due.pop_due(&jobs, later) {
            surfaced.push(key);
        }
        surfaced.sort();
        kept.sort();
        assert_eq!(surfaced, kept);
    }
}
