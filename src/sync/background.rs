//! [`BackgroundScheduler`]: a scheduler on its own thread, for programs that go on doing their
//! own work (APScheduler's `BackgroundScheduler`).

use super::{sealed, Mode, SyncScheduler, SyncSchedulerBuilder};
use crate::Result;

/// The mode of a [`BackgroundScheduler`]: `start` returns at once, and signals are left to the
/// program by default.
#[derive(Debug)]
pub enum Background {}

impl sealed::Sealed for Background {
    const TYPE_NAME: &'static str = "BackgroundScheduler";
    const BUILDER_NAME: &'static str = "BackgroundSchedulerBuilder";
    const THREAD_NAME: &'static str = "apsched-background";
    const HANDLE_SIGNALS: bool = false;
}

impl Mode for Background {}

/// A scheduler that runs on a thread of its own, with its own Tokio runtime: APScheduler's
/// `BackgroundScheduler`, for programs without a runtime (or with one they want kept apart).
///
/// [`start`](SyncScheduler::<Background>::start) returns at once. It is a cheap `Clone` handle
/// (`Send + Sync`); every method can be called from any thread, with or without a Tokio
/// runtime (see the [module docs](crate::sync) for how calls wait). Dropping the last handle
/// shuts the scheduler down as [`shutdown`](SyncScheduler::shutdown) does: it waits for
/// running jobs and joins the thread.
///
/// Plain `fn`s and closures run on a pool of
/// [`max_blocking_jobs`](SyncSchedulerBuilder::max_blocking_jobs) threads (default 10), so a
/// slow job never delays the schedule or other jobs; async ones run on the scheduler's runtime.
///
/// ```
/// use apsched::{trigger::Interval, BackgroundScheduler, EventMask};
/// use std::sync::mpsc;
///
/// # fn main() -> Result<(), apsched::Error> {
/// let scheduler = BackgroundScheduler::new()?;
/// let (tx, rx) = mpsc::channel();
/// scheduler.add_job(|| println!("tick"), Interval::seconds(10)).id("tick").add()?;
/// scheduler.add_listener(EventMask::JOB_EXECUTED, move |event| {
///     let _ = tx.send(event.clone());
/// })?;
/// scheduler.start()?;
/// scheduler.run_job_now("tick")?;
/// assert!(matches!(rx.recv().unwrap(), apsched::Event::JobExecuted { .. }));
/// scheduler.shutdown() // or drop it: waits for running jobs, joins the thread
/// # }
/// ```
pub type BackgroundScheduler = SyncScheduler<Background>;

/// Settings for a [`BackgroundScheduler`]; start from `BackgroundScheduler::builder()`.
/// Signals are left alone unless [`handle_signals(true)`](SyncSchedulerBuilder::handle_signals).
pub type BackgroundSchedulerBuilder = SyncSchedulerBuilder<Background>;

impl SyncScheduler<Background> {
    /// Starts running jobs and returns; jobs added before are scheduled from now.
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) if already started,
    /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
    pub fn start(&self) -> Result<()> {
        self.host.start(false)
    }

    /// Starts in the paused state: jobs are scheduled but none runs until
    /// [`resume`](SyncScheduler::resume).
    ///
    /// # Errors
    /// As [`start`](SyncScheduler::<Background>::start).
    pub fn start_paused(&self) -> Result<()> {
        self.host.start(true)
    }
}
