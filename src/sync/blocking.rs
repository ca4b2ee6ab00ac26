//! [`BlockingScheduler`]: a scheduler whose `start()` blocks, for scripts and command-line
//! programs (APScheduler's `BlockingScheduler`).

use std::sync::Arc;

use super::{Config, Host};
use crate::{Result, SchedulerBuilder};

/// A scheduler whose [`start`](Self::start) blocks the calling thread until the scheduler is
/// shut down: APScheduler's `BlockingScheduler`, for scripts and command-line programs without
/// a runtime.
///
/// Shut it down with [`shutdown`](Self::shutdown) from a job, another thread or a listener, or
/// with Ctrl-C (SIGINT) / SIGTERM, which it handles by default (waiting for running jobs; turn
/// off with [`handle_signals(false)`](BlockingSchedulerBuilder::handle_signals)).
///
/// Like the [`BackgroundScheduler`](crate::BackgroundScheduler) it runs its core on a thread
/// and Tokio runtime of its own, so it is a cheap `Clone` handle whose methods work from any
/// thread while `start()` blocks; dropping the last handle shuts it down. Plain `fn`s and
/// closures run on a pool of [`max_blocking_jobs`](BlockingSchedulerBuilder::max_blocking_jobs)
/// threads (default 10); async ones on the scheduler's runtime.
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
#[derive(Clone)]
pub struct BlockingScheduler {
    host: Arc<Host>,
}

impl std::fmt::Debug for BlockingScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingScheduler")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl BlockingScheduler {
    /// A scheduler with default settings (see [`BlockingSchedulerBuilder`]), stopped; jobs can
    /// be added before [`start`](Self::start).
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn new() -> Result<BlockingScheduler> {
        BlockingScheduler::builder().build()
    }

    /// Settings for a new scheduler.
    pub fn builder() -> BlockingSchedulerBuilder {
        BlockingSchedulerBuilder {
            config: Config {
                scheduler: SchedulerBuilder::default(),
                runtime: None,
                handle_signals: true,
                thread_name: "apsched-blocking",
            },
        }
    }

    /// Starts running jobs and blocks until the scheduler has shut down (by
    /// [`shutdown`](Self::shutdown) or a signal), its running jobs have finished and its thread
    /// has been joined.
    ///
    /// # Errors
    /// At once: [`Error::InvalidState`](crate::Error::InvalidState) if already started,
    /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
    pub fn start(&self) -> Result<()> {
        self.host.start(false)?;
        self.host.wait_stopped();
        Ok(())
    }

    /// As [`start`](Self::start), but paused: jobs are scheduled and none runs until
    /// [`resume`](Self::resume) is called (from another thread).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_paused(&self) -> Result<()> {
        self.host.start(true)?;
        self.host.wait_stopped();
        Ok(())
    }

    super::facade_methods!();
}

/// Settings for a [`BlockingScheduler`]; start from [`BlockingScheduler::builder`].
#[must_use]
#[derive(Debug)]
pub struct BlockingSchedulerBuilder {
    config: Config,
}

impl BlockingSchedulerBuilder {
    super::builder_setters!();

    /// Whether Ctrl-C (SIGINT) and SIGTERM shut the scheduler down gracefully (waiting for
    /// running jobs), so [`start`](BlockingScheduler::start) returns. Default `true`.
    ///
    /// Once Tokio listens for a signal, the process keeps listening for it: after the
    /// scheduler stops, Ctrl-C no longer ends the program by itself.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.config.handle_signals = handle;
        self
    }

    /// Starts the scheduler's thread and runtime, and builds the scheduler (stopped).
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn build(self) -> Result<BlockingScheduler> {
        Ok(BlockingScheduler {
            host: Host::spawn(self.config)?,
        })
    }
}
