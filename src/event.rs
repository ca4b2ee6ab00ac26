//! Events: what happened in a scheduler, as a broadcast stream.
//!
//! The core sends every event to a `tokio::sync::broadcast` channel and never waits for a
//! listener: a subscriber that falls behind loses the oldest events (and is told how many in a
//! log line), it never slows the scheduler.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::ReusableBoxFuture;

use crate::JobId;

/// Something that happened in a scheduler (APScheduler's `EVENT_*` constants as one enum).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The scheduler started (or started paused).
    SchedulerStarted,
    /// The scheduler was paused: no job runs until it is resumed.
    SchedulerPaused,
    /// The scheduler was resumed.
    SchedulerResumed,
    /// The scheduler shut down; it is the last event.
    SchedulerShutdown,
    /// A job was added (or replaced one with the same id).
    JobAdded {
        /// The job.
        job_id: JobId,
    },
    /// A job was removed, by a call or because its trigger has no more fire times.
    JobRemoved {
        /// The job.
        job_id: JobId,
    },
    /// Every job was removed at once.
    AllJobsRemoved,
    /// A job was modified, rescheduled, paused or resumed.
    JobModified {
        /// The job.
        job_id: JobId,
    },
    /// A run was started.
    JobSubmitted {
        /// The job.
        job_id: JobId,
        /// The fire time the run stands for.
        scheduled_run_time: DateTime<Utc>,
    },
    /// A run finished without error.
    JobExecuted {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// How long it ran.
        #[cfg_attr(feature = "axum", schema(value_type = crate::web::openapi::DurationDoc))]
        duration: Duration,
    },
    /// A run returned an error, panicked, or was cancelled at shutdown.
    JobError {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// How long it ran.
        #[cfg_attr(feature = "axum", schema(value_type = crate::web::openapi::DurationDoc))]
        duration: Duration,
        /// The error's message, or the panic's.
        message: String,
    },
    /// A run passed its job's [`timeout`](crate::JobOptions::timeout): its token was
    /// cancelled, and it was stopped (an async run) or left to end on its own (a blocking one,
    /// which keeps its place under `max_instances` until it does). Retried only if the job's
    /// [`RetryPolicy`](crate::RetryPolicy) says so; else this is the run's outcome.
    JobTimedOut {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// How long it had run when it was reported.
        elapsed: Duration,
    },
    /// An attempt of a run failed (or timed out) and its job's
    /// [`RetryPolicy`](crate::RetryPolicy) tries it again, after `delay`.
    JobRetrying {
        /// The job.
        job_id: JobId,
        /// The fire time the run stands for (the same for every attempt).
        scheduled_run_time: DateTime<Utc>,
        /// The attempt to come (2 for the first retry).
        attempt: u32,
        /// How long until it starts.
        delay: Duration,
        /// Why the last attempt failed.
        message: String,
    },
    /// A run was skipped because it was later than the job's `misfire_grace_time`. Consecutive
    /// skipped runs of one job are reported by one event, naming the first.
    JobMissed {
        /// The job.
        job_id: JobId,
        /// The fire time that was missed (the first of them).
        scheduled_run_time: DateTime<Utc>,
    },
    /// A run was skipped because `max_instances` runs of the job were still going.
    JobMaxInstances {
        /// The job.
        job_id: JobId,
        /// The fire time that was skipped.
        scheduled_run_time: DateTime<Utc>,
    },
    /// The wall clock moved against the monotonic clock (an NTP step, a manual change, a
    /// suspend): by this much, positive forward.
    ClockJumped {
        /// How far the wall clock moved beyond the time that passed.
        #[cfg_attr(feature = "axum", schema(value_type = crate::web::openapi::TimeDeltaDoc))]
        by: TimeDelta,
    },
    /// A durable store failed: the scheduler keeps running the jobs it knows, retries its own
    /// writes, and fails callers' changes to that store at once until it is back
    /// ([`StoreRecovered`](Event::StoreRecovered)).
    StoreError {
        /// The store's name.
        store: String,
        /// What it was doing (`write`, ...).
        operation: String,
        /// The error, with its causes.
        message: String,
    },
    /// A durable store that failed takes writes again.
    StoreRecovered {
        /// The store's name.
        store: String,
    },
    /// A job in a durable store could not be loaded at start (its row does not decode, or its
    /// task is not registered): it does not run, and its row is left as it is.
    JobNotLoaded {
        /// The store's name.
        store: String,
        /// The job's id, if the row gave that much.
        job_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// In a [cluster](crate::cluster): a run of this node ended after the cluster had taken
    /// it away (its node's lease expired meanwhile and another node reaped it), so its outcome
    /// was dropped, not written: the run's row keeps what the reaping node wrote.
    RunFenced {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// This node.
        node: String,
    },
    /// In a [cluster](crate::cluster): this node reaped a run whose node died (its lease
    /// expired) while the run was going: reported abandoned, or put back to run again for a
    /// job with `retry_abandoned`.
    RunAbandoned {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// The node that died.
        node: String,
        /// Whether it was put back to run again.
        retried: bool,
    },
    /// In a [cluster](crate::cluster): this node could not renew its lease in time, so it
    /// stopped claiming runs and cancelled its runs' tokens; it rejoins once the database
    /// answers.
    NodeLeaseLost {
        /// This node.
        node: String,
    },
}

impl Event {
    /// The job the event is about, if any.
    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            Event::JobAdded { job_id }
            | Event::JobRemoved { job_id }
            | Event::JobModified { job_id }
            | Event::JobSubmitted { job_id, .. }
            | Event::JobExecuted { job_id, .. }
            | Event::JobError { job_id, .. }
            | Event::JobMissed { job_id, .. }
            | Event::JobMaxInstances { job_id, .. }
            | Event::JobTimedOut { job_id, .. }
            | Event::JobRetrying { job_id, .. }
            | Event::RunFenced { job_id, .. }
            | Event::RunAbandoned { job_id, .. } => Some(job_id),
            _ => None,
        }
    }

    /// The event's kind as a one-bit [`EventMask`], to test against a listener's mask.
    ///
    /// ```
    /// use apsched::{Event, EventMask};
    ///
    /// let wanted = EventMask::JOB_EXECUTED | EventMask::JOB_ERROR;
    /// assert!(!wanted.matches(&Event::AllJobsRemoved));
    /// assert_eq!(Event::SchedulerStarted.mask(), EventMask::SCHEDULER_STARTED);
    /// ```
    pub fn mask(&self) -> EventMask {
        match self {
            Event::SchedulerStarted => EventMask::SCHEDULER_STARTED,
            Event::SchedulerPaused => EventMask::SCHEDULER_PAUSED,
            Event::SchedulerResumed => EventMask::SCHEDULER_RESUMED,
            Event::SchedulerShutdown => EventMask::SCHEDULER_SHUTDOWN,
            Event::JobAdded { .. } => EventMask::JOB_ADDED,
            Event::JobRemoved { .. } => EventMask::JOB_REMOVED,
            Event::AllJobsRemoved => EventMask::ALL_JOBS_REMOVED,
            Event::JobModified { .. } => EventMask::JOB_MODIFIED,
            Event::JobSubmitted { .. } => EventMask::JOB_SUBMITTED,
            Event::JobExecuted { .. } => EventMask::JOB_EXECUTED,
            Event::JobError { .. } => EventMask::JOB_ERROR,
            Event::JobMissed { .. } => EventMask::JOB_MISSED,
            Event::JobMaxInstances { .. } => EventMask::JOB_MAX_INSTANCES,
            Event::ClockJumped { .. } => EventMask::CLOCK_JUMPED,
            Event::StoreError { .. } => EventMask::STORE_ERROR,
            Event::StoreRecovered { .. } => EventMask::STORE_RECOVERED,
            Event::JobNotLoaded { .. } => EventMask::JOB_NOT_LOADED,
            Event::RunFenced { .. } => EventMask::RUN_FENCED,
            Event::RunAbandoned { .. } => EventMask::RUN_ABANDONED,
            Event::NodeLeaseLost { .. } => EventMask::NODE_LEASE_LOST,
            Event::JobTimedOut { .. } => EventMask::JOB_TIMED_OUT,
            Event::JobRetrying { .. } => EventMask::JOB_RETRYING,
        }
    }
}

/// A set of [`Event`] kinds, as bit flags: APScheduler's `EVENT_*` masks
/// (`EVENT_JOB_EXECUTED | EVENT_JOB_ERROR`).
///
/// Combine kinds with `|`, test an event with [`matches`](EventMask::matches). Listeners of the
/// sync schedulers take one (`add_listener(EventMask::JOB_ERROR, ..)`); async code can filter an
/// [`EventStream`] with it.
///
/// ```
/// use apsched::{Event, EventMask};
///
/// let finished = EventMask::JOB_EXECUTED | EventMask::JOB_ERROR;
/// assert!(finished.contains(EventMask::JOB_ERROR));
/// assert!(!finished.matches(&Event::SchedulerStarted));
/// assert!(EventMask::ALL.matches(&Event::SchedulerStarted));
/// assert!(EventMask::NONE.is_empty());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventMask(u32);

impl EventMask {
    /// No event.
    pub const NONE: EventMask = EventMask(0);
    /// [`Event::SchedulerStarted`].
    pub const SCHEDULER_STARTED: EventMask = EventMask(1 << 0);
    /// [`Event::SchedulerPaused`].
    pub const SCHEDULER_PAUSED: EventMask = EventMask(1 << 1);
    /// [`Event::SchedulerResumed`].
    pub const SCHEDULER_RESUMED: EventMask = EventMask(1 << 2);
    /// [`Event::SchedulerShutdown`].
    pub const SCHEDULER_SHUTDOWN: EventMask = EventMask(1 << 3);
    /// [`Event::JobAdded`].
    pub const JOB_ADDED: EventMask = EventMask(1 << 4);
    /// [`Event::JobRemoved`].
    pub const JOB_REMOVED: EventMask = EventMask(1 << 5);
    /// [`Event::AllJobsRemoved`].
    pub const ALL_JOBS_REMOVED: EventMask = EventMask(1 << 6);
    /// [`Event::JobModified`].
    pub const JOB_MODIFIED: EventMask = EventMask(1 << 7);
    /// [`Event::JobSubmitted`].
    pub const JOB_SUBMITTED: EventMask = EventMask(1 << 8);
    /// [`Event::JobExecuted`].
    pub const JOB_EXECUTED: EventMask = EventMask(1 << 9);
    /// [`Event::JobError`].
    pub const JOB_ERROR: EventMask = EventMask(1 << 10);
    /// [`Event::JobMissed`].
    pub const JOB_MISSED: EventMask = EventMask(1 << 11);
    /// [`Event::JobMaxInstances`].
    pub const JOB_MAX_INSTANCES: EventMask = EventMask(1 << 12);
    /// [`Event::ClockJumped`].
    pub const CLOCK_JUMPED: EventMask = EventMask(1 << 13);
    /// [`Event::StoreError`].
    pub const STORE_ERROR: EventMask = EventMask(1 << 14);
    /// [`Event::StoreRecovered`].
    pub const STORE_RECOVERED: EventMask = EventMask(1 << 15);
    /// [`Event::JobNotLoaded`].
    pub const JOB_NOT_LOADED: EventMask = EventMask(1 << 16);
    /// [`Event::RunFenced`].
    pub const RUN_FENCED: EventMask = EventMask(1 << 17);
    /// [`Event::RunAbandoned`].
    pub const RUN_ABANDONED: EventMask = EventMask(1 << 18);
    /// [`Event::NodeLeaseLost`].
    pub const NODE_LEASE_LOST: EventMask = EventMask(1 << 19);
    /// [`Event::JobTimedOut`].
    pub const JOB_TIMED_OUT: EventMask = EventMask(1 << 20);
    /// [`Event::JobRetrying`].
    pub const JOB_RETRYING: EventMask = EventMask(1 << 21);
    /// Every event kind.
    pub const ALL: EventMask = EventMask((1 << 22) - 1);

    /// Whether `event` is of a kind in this set.
    pub fn matches(self, event: &Event) -> bool {
        self.contains(event.mask())
    }

    /// Whether every kind in `other` is in this set.
    pub const fn contains(self, other: EventMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set has no kind.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in either set (also `|`).
    pub const fn union(self, other: EventMask) -> EventMask {
        EventMask(self.0 | other.0)
    }

    /// The kinds in both sets (also `&`).
    pub const fn intersection(self, other: EventMask) -> EventMask {
        EventMask(self.0 & other.0)
    }
}

impl std::ops::BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: EventMask) -> EventMask {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for EventMask {
    fn bitor_assign(&mut self, rhs: EventMask) {
        *self = self.union(rhs);
    }
}

impl std::ops::BitAnd for EventMask {
    type Output = EventMask;
    fn bitand(self, rhs: EventMask) -> EventMask {
        self.intersection(rhs)
    }
}

impl std::ops::Not for EventMask {
    type Output = EventMask;
    /// Every kind not in the set.
    fn not(self) -> EventMask {
        EventMask(!self.0 & EventMask::ALL.0)
    }
}

/// The kinds' names, bit by bit (lowercase, they are the events' `"event"` tags in JSON).
const NAMES: [&str; 22] = [
    "SCHEDULER_STARTED",
    "SCHEDULER_PAUSED",
    "SCHEDULER_RESUMED",
    "SCHEDULER_SHUTDOWN",
    "JOB_ADDED",
    "JOB_REMOVED",
    "ALL_JOBS_REMOVED",
    "JOB_MODIFIED",
    "JOB_SUBMITTED",
    "JOB_EXECUTED",
    "JOB_ERROR",
    "JOB_MISSED",
    "JOB_MAX_INSTANCES",
    "CLOCK_JUMPED",
    "STORE_ERROR",
    "STORE_RECOVERED",
    "JOB_NOT_LOADED",
    "RUN_FENCED",
    "RUN_ABANDONED",
    "NODE_LEASE_LOST",
    "JOB_TIMED_OUT",
    "JOB_RETRYING",
];

#[cfg(feature = "axum")]
impl EventMask {
    /// The one kind whose JSON tag is `kind` (`"job_executed"`), if any.
    pub(crate) fn from_kind(kind: &str) -> Option<EventMask> {
        NAMES
            .iter()
            .position(|name| {
                name.eq_ignore_ascii_case(kind) && kind.bytes().all(|b| !b.is_ascii_uppercase())
            })
            .map(|bit| EventMask(1 << bit))
    }

    /// Every kind's JSON tag (`"scheduler_started"`, ...), in bit order.
    pub(crate) fn kinds() -> impl Iterator<Item = String> {
        NAMES.iter().map(|name| name.to_ascii_lowercase())
    }
}

impl std::fmt::Debug for EventMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == EventMask::ALL {
            return f.write_str("EventMask(ALL)");
        }
        let names: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect();
        write!(
            f,
            "EventMask({})",
            if names.is_empty() {
                "NONE".to_string()
            } else {
                names.join(" | ")
            }
        )
    }
}

/// A stream of a scheduler's [`Event`]s from the moment of [`subscribe`](crate::Scheduler::subscribe).
///
/// It ends after [`Event::SchedulerShutdown`]. A subscriber that falls more than the event
/// capacity behind skips the oldest events.
pub struct EventStream {
    inner: ReusableBoxFuture<'static, (RecvOutcome, broadcast::Receiver<Event>)>,
    ended: bool,
    /// The scheduler's count of live streams: it builds events only while one exists.
    subscribers: Arc<AtomicUsize>,
}

type RecvOutcome = Result<Event, broadcast::error::RecvError>;

async fn next(mut rx: broadcast::Receiver<Event>) -> (RecvOutcome, broadcast::Receiver<Event>) {
    let outcome = rx.recv().await;
    (outcome, rx)
}

impl EventStream {
    pub(crate) fn new(
        rx: broadcast::Receiver<Event>,
        subscribers: Arc<AtomicUsize>,
    ) -> EventStream {
        subscribers.fetch_add(1, Ordering::Relaxed);
        EventStream {
            inner: ReusableBoxFuture::new(next(rx)),
            ended: false,
            subscribers,
        }
    }

    /// The next event, or `None` once the scheduler is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventStream {
    /// The next event, or how many events this stream skipped because it fell behind; `None`
    /// once the scheduler is gone (or after [`Event::SchedulerShutdown`]).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, u64>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let (outcome, rx) = std::task::ready!(self.inner.poll(cx));
        self.inner.set(next(rx));
        Poll::Ready(match outcome {
            Ok(event) => {
                self.ended = event == Event::SchedulerShutdown;
                Some(Ok(event))
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Err(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        })
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match std::task::ready!(self.poll_recv(cx)) {
                Some(Ok(event)) => return Poll::Ready(Some(event)),
                Some(Err(missed)) => {
                    tracing::warn!(missed, "apsched event subscriber lagged; events skipped");
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_distinct_bits_and_debug_names_them() {
        let all = [
            Event::SchedulerStarted,
            Event::SchedulerPaused,
            Event::SchedulerResumed,
            Event::SchedulerShutdown,
            Event::AllJobsRemoved,
            Event::ClockJumped {
                by: TimeDelta::seconds(5),
            },
        ];
        let mut seen = EventMask::NONE;
        for event in &all {
            assert_eq!(event.mask().0.count_ones(), 1);
            assert!((seen & event.mask()).is_empty());
            seen |= event.mask();
            assert!(EventMask::ALL.matches(event));
        }
        assert!(!(!EventMask::JOB_ERROR).contains(EventMask::JOB_ERROR));
        assert_eq!(
            format!("{:?}", EventMask::JOB_EXECUTED | EventMask::JOB_ERROR),
            "EventMask(JOB_EXECUTED | JOB_ERROR)"
        );
        assert_eq!(format!("{:?}", EventMask::ALL), "EventMask(ALL)");
    }

    #[cfg(feature = "axum")]
    #[test]
    fn kind_names_are_the_json_tags() {
        let events = [
            Event::SchedulerStarted,
            Event::AllJobsRemoved,
            Event::JobMaxInstances {
                job_id: JobId::new("a"),
                scheduled_run_time: Utc::now(),
            },
            Event::ClockJumped {
                by: TimeDelta::seconds(5),
            },
        ];
        for event in events {
            let tag = serde_json::to_value(&event).unwrap()["event"].clone();
            let tag = tag.as_str().unwrap();
            assert_eq!(EventMask::from_kind(tag), Some(event.mask()), "{tag}");
        }
        assert_eq!(EventMask::kinds().count(), 22);
        assert_eq!(EventMask::from_kind("JOB_ERROR"), None);
        assert_eq!(EventMask::from_kind("job_exploded"), None);
    }
}
