//! [`Events`]: a sync scheduler's events as a blocking iterator.

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::{Event, EventStream};

/// A blocking iterator over a sync scheduler's [`Event`]s from the moment of `events()`; ends
/// after [`Event::SchedulerShutdown`].
///
/// `next()` blocks the calling thread until the next event. A reader that falls more than the
/// scheduler's event capacity behind skips the oldest events (the core never waits for it).
pub struct Events {
    stream: EventStream,
    stopped: bool,
}

impl Events {
    /// `stopped`: the core had stopped before the stream subscribed, so no event will come.
    pub(crate) fn new(stream: EventStream, stopped: bool) -> Events {
        Events { stream, stopped }
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_next(&mut self) -> Option<Event> {
        self.stream.recv().now_or_never().flatten()
    }

    /// As `next`, but `None` as soon as `stop` is cancelled (a removed listener).
    pub(crate) fn next_unless(&mut self, stop: &CancellationToken) -> Option<Event> {
        if stop.is_cancelled() {
            return None;
        }
        if self.stopped {
            return self.try_next();
        }
        let stream = &mut self.stream;
        futures::executor::block_on(tokio::task::unconstrained(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => None,
                event = stream.recv() => event,
            }
        }))
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.stopped {
            return self.try_next();
        }
        futures::executor::block_on(tokio::task::unconstrained(self.stream.recv()))
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}
