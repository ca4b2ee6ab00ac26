//! [`BlockingScheduler`]: a scheduler whose `start()` blocks, for scripts and command-line
//! programs (APScheduler's `BlockingScheduler`).

use super::{sealed, Mode, SyncScheduler, SyncSchedulerBuilder};
use crate::Result;

/// The mode of a [`BlockingScheduler`]: `start` blocks until shutdown, and Ctrl-C / SIGTERM
/// are handled by default.
#[derive(Debug)]
pub enum Blocking {}

impl sealed::Sealed for Blocking {
    const TYPE_NAME: &'static str = "BlockingScheduler";
    const BUILDER_NAME: &'static str = "BlockingSchedulerBuilder";
    const THREAD_NAME: &'static str = "apsched-blocking";
    const HANDLE_SIGNALS: bool = true;
}

impl Mode for Blocking {}

/// A scheduler whose [`start`](SyncScheduler::<Blocking>::start) blocks the calling thread
/// until the scheduler is shut down: APScheduler's `BlockingScheduler`, for scripts and
/// command-line programs without a runtime.
///
/// Shut it down with [`shutdown`](SyncScheduler::shutdown) from a job, another thread or a
/// listener, or with Ctrl-C (SIGINT) / SIGTERM, which it handles by default (waiting for
/// running jobs; turn off with [`handle_signals(false)`](SyncSchedulerBuilder::handle_signals)).
///
/// Like the [`BackgroundScheduler`](crate::BackgroundScheduler) (it is the same
/// [`SyncScheduler`] type, in another mode) it runs its core on a thread and Tokio runtime of
/// its own, so it is a cheap `Clone` handle whose methods work from any thread while `start()`
/// blocks; dropping the last handle shuts it down. Plain `fn`s and closures run on a pool of
/// [`max_blocking_jobs`](SyncSchedulerBuilder::max_blocking_jobs) threads (default 10); async
/// ones on the scheduler's runtime.
///
/// ```no_run
/// use apsched::{trigger::Interval, BlockingScheduler};
///
/// fn job_function() {
///     println!("Hello World {}", chrono::Local::now());
/// }
///
/// fn main() -> Result<(), apsched::Error> {
///     let sched = BlockingScheduler::new()?;
///     // Schedule job_function to be called every two seconds.
///     sched.add_job(job_function, Interval::seconds(2)).add()?;
///     sched.start() // returns after Ctrl-C, once running jobs are done
/// }
/// ```
///
/// A job can stop it (here after its third run):
///
/// ```
/// use apsched::{trigger::Interval, BlockingScheduler};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// # fn main() -> Result<(), apsched::Error> {
/// let sched = BlockingScheduler::builder().handle_signals(false).build()?;
/// let handle = sched.clone();
/// let runs = AtomicU32::new(0);
/// sched.add_job(move || {
///     if runs.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
///         handle.shutdown().unwrap(); // from a job: asks, does not wait for itself
///     }
/// }, Interval::every(std::time::Duration::from_millis(10))).add()?;
/// sched.start()?; // returns once the third run has ended
/// assert_eq!(sched.state(), apsched::SchedulerState::ShutDown);
/// # Ok(()) }
/// ```
pub type BlockingScheduler = SyncScheduler<Blocking>;

/// Settings for a [`BlockingScheduler`]; start from `BlockingScheduler::builder()`. Signals
/// are handled unless [`handle_signals(false)`](SyncSchedulerBuilder::handle_signals).
pub type BlockingSchedulerBuilder = SyncSchedulerBuilder<Blocking>;

impl SyncScheduler<Blocking> {
    /// Starts running jobs and blocks until the scheduler has shut down (by
    /// [`shutdown`](SyncScheduler::shutdown), [`shutdown_timeout`](SyncScheduler::shutdown_timeout)
    /// or a signal), its running jobs have finished (or been abandoned at a
    /// `shutdown_timeout`'s deadline) and its thread has been joined.
    ///
    /// # Errors
    /// At once: [`Error::InvalidState`](crate::Error::InvalidState) if already started,
    /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
    pub fn start(&self) -> Result<()> {
        self.host.start(false)?;
        self.host.wait_stopped();
        Ok(())
    }

    /// As [`start`](SyncScheduler::<Blocking>::start), but paused: jobs are scheduled and none
    /// runs until [`resume`](SyncScheduler::resume) is called (from another thread).
    ///
    /// # Errors
    /// As [`start`](SyncScheduler::<Blocking>::start).
    pub fn start_paused(&self) -> Result<()> {
        self.host.start(true)?;
        self.host.wait_stopped();
        Ok(())
    }
}
