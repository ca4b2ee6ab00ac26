//! Events: what happened in a scheduler, as a broadcast stream.
//!
//! The core sends every event to a `tokio::sync::broadcast` channel and never waits for a
//! listener: a subscriber that falls behind loses the oldest events (and is told how many in a
//! log line), it never slows the scheduler.

use std::pin::Pin;
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
        duration: Duration,
    },
    /// A run returned an error, panicked, or was cancelled at shutdown.
    JobError {
        /// The job.
        job_id: JobId,
        /// The fire time the run stood for.
        scheduled_run_time: DateTime<Utc>,
        /// How long it ran.
        duration: Duration,
        /// The error's message, or the panic's.
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
        by: TimeDelta,
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
            | Event::JobMaxInstances { job_id, .. } => Some(job_id),
            _ => None,
        }
    }
}

/// A stream of a scheduler's [`Event`]s from the moment of [`subscribe`](crate::Scheduler::subscribe).
///
/// It ends after [`Event::SchedulerShutdown`]. A subscriber that falls more than the event
/// capacity behind skips the oldest events.
pub struct EventStream {
    inner: ReusableBoxFuture<'static, (RecvOutcome, broadcast::Receiver<Event>)>,
    ended: bool,
}

type RecvOutcome = Result<Event, broadcast::error::RecvError>;

async fn next(mut rx: broadcast::Receiver<Event>) -> (RecvOutcome, broadcast::Receiver<Event>) {
    let outcome = rx.recv().await;
    (outcome, rx)
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> EventStream {
        EventStream {
            inner: ReusableBoxFuture::new(next(rx)),
            ended: false,
        }
    }

    /// The next event, or `None` once the scheduler is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            let (outcome, rx) = std::task::ready!(self.inner.poll(cx));
            self.inner.set(next(rx));
            match outcome {
                Ok(event) => {
                    self.ended = event == Event::SchedulerShutdown;
                    return Poll::Ready(Some(event));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "apsched event subscriber lagged; events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return Poll::Ready(None),
            }
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}
