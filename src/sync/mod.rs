//! Sync front ends for code without a Tokio runtime: [`BlockingScheduler`] and
//! [`BackgroundScheduler`], APScheduler's two thread-based schedulers.
//!
//! Both have the async [`Scheduler`](crate::Scheduler)'s method names, without `async`.
//! Neither schedules anything itself: each owns a thread that runs a Tokio runtime of its own,
//! builds an ordinary `Scheduler` inside it, and calls that scheduler's methods. So there is
//! one implementation of scheduling, and the sync schedulers only add threads, blocking waits
//! and listeners.
//!
//! # One type, two modes
//!
//! The two differ only in `start`: a [`BlockingScheduler`] blocks in it until shutdown (and
//! handles Ctrl-C / SIGTERM by default), a [`BackgroundScheduler`] returns at once. So both
//! are one type, [`SyncScheduler`], in one of two modes ([`Blocking`], [`Background`]):
//! `BlockingScheduler` is `SyncScheduler<Blocking>`, and its builder
//! `SyncSchedulerBuilder<Blocking>`. Every other method exists once, documented once on
//! [`SyncScheduler`], and code that takes either scheduler can take a `&SyncScheduler<M>`.
//!
//! # How a call waits
//!
//! A call never runs `Runtime::block_on` on the caller's runtime (which panics inside one). It
//! waits for the async scheduler's future with `futures::executor::block_on`, inside the
//! scheduler's runtime context (so the scheduler's clock is read there), which works on any
//! thread: a plain `main`, a job of this scheduler, or a task of another Tokio runtime. Inside
//! async code such a call briefly blocks its worker thread (a round trip to the core takes
//! microseconds; [`shutdown`](SyncScheduler::shutdown) waits for running jobs); async code
//! that wants to await instead uses the async handle from
//! [`scheduler()`](SyncScheduler::scheduler).
//!
//! # Calls from the scheduler's own jobs
//!
//! Jobs may call the sync scheduler (through a clone they captured): blocking jobs run on the
//! runtime's blocking pool, async ones on its workers (a call from an async job moves the
//! worker's other tasks away first, with `block_in_place`). `shutdown()` from a job or a
//! listener asks the core to stop and returns at once, since waiting for running jobs would
//! wait for itself.
//!
//! A job that holds a sync scheduler's handle keeps the scheduler alive until `shutdown()`
//! (the scheduler holds the job); such jobs can use
//! [`JobContext::scheduler`](crate::JobContext::scheduler) instead, which does not.

mod background;
mod blocking;
mod events;
mod facade;
mod host;
mod jobs;

pub use background::{Background, BackgroundScheduler, BackgroundSchedulerBuilder};
pub use blocking::{Blocking, BlockingScheduler, BlockingSchedulerBuilder};
pub use events::Events;
pub use facade::{ListenerId, RunHandle, SyncScheduler, SyncSchedulerBuilder};
pub use jobs::{AddJob, ModifyJob};

/// The mode of a [`SyncScheduler`]: [`Blocking`] or [`Background`]. Sealed: these two are all
/// there is.
pub trait Mode: sealed::Sealed {}

mod sealed {
    /// What a mode sets: its names and defaults.
    pub trait Sealed: Send + Sync + 'static {
        /// The scheduler's type name, for `Debug`.
        const TYPE_NAME: &'static str;
        /// The builder's type name, for `Debug`.
        const BUILDER_NAME: &'static str;
        /// The name of the scheduler's thread.
        const THREAD_NAME: &'static str;
        /// Whether `start` handles Ctrl-C / SIGTERM unless the builder says otherwise.
        const HANDLE_SIGNALS: bool;
    }
}
