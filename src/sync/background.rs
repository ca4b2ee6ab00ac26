//! [`BackgroundScheduler`]: a scheduler on its own thread, for programs that go on doing their
//! own work (APScheduler's `BackgroundScheduler`).

use std::sync::Arc;

use super::{Config, Host};
use crate::{Result, SchedulerBuilder};

/// A scheduler that runs on a thread of its own, with its own Tokio runtime: APScheduler's
/// `BackgroundScheduler`, for programs without a runtime (or with one they want kept apart).
///
/// [`start`](Self::start) returns at once. It is a cheap `Clone` handle (`Send + Sync`); every
/// method can be called from any thread, with or without a Tokio runtime (see the
/// [module docs](crate::sync) for how calls wait). Dropping the last handle shuts the scheduler
/// down as [`shutdown`](Self::shutdown) does: it waits for running jobs and joins the thread.
///
/// Plain `fn`s and closures run on a pool of [`max_blocking_jobs`](BackgroundSchedulerBuilder::max_blocking_jobs)
/// threads (default 10), so a slow job never delays the schedule or other jobs; async ones run
/// on the scheduler's runtime.
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
#[derive(Clone)]
pub struct BackgroundScheduler {
    host: Arc<Host>,
}

impl std::fmt::Debug for BackgroundScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundScheduler")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl BackgroundScheduler {
    /// A scheduler with default settings (see [`BackgroundSchedulerBuilder`]), stopped: its
    /// thread and runtime are up, and jobs can be added before [`start`](Self::start).
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn new() -> Result<BackgroundScheduler> {
        BackgroundScheduler::builder().build()
    }

    /// Settings for a new scheduler.
    pub fn builder() -> BackgroundSchedulerBuilder {
        BackgroundSchedulerBuilder {
            config: Config {
                scheduler: SchedulerBuilder::default(),
                runtime: None,
                handle_signals: false,
                thread_name: "apsched-background",
            },
        }
    }

    /// Starts running jobs and returns; jobs added before are scheduled from now.
    ///
    /// # Errors
    /// [`Error::InvalidState`](crate::Error::InvalidState) if already started,
    /// [`Error::Shutdown`](crate::Error::Shutdown) after shutdown.
    pub fn start(&self) -> Result<()> {
        self.host.start(false)
    }

    /// Starts in the paused state: jobs are scheduled but none runs until
    /// [`resume`](Self::resume).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_paused(&self) -> Result<()> {
        self.host.start(true)
    }

    super::facade_methods!();
}

/// Settings for a [`BackgroundScheduler`]; start from [`BackgroundScheduler::builder`].
#[must_use]
#[derive(Debug)]
pub struct BackgroundSchedulerBuilder {
    config: Config,
}

impl BackgroundSchedulerBuilder {
    super::builder_setters!();

    /// Whether Ctrl-C (SIGINT) and SIGTERM shut the scheduler down (waiting for running jobs).
    /// Default `false`: a background scheduler leaves signals to its program.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.config.handle_signals = handle;
        self
    }

    /// Starts the scheduler's thread and runtime, and builds the scheduler (stopped).
    ///
    /// # Errors
    /// [`Error::Runtime`](crate::Error::Runtime) if the thread or the runtime cannot be started.
    pub fn build(self) -> Result<BackgroundScheduler> {
        Ok(BackgroundScheduler {
            host: Host::spawn(self.config)?,
        })
    }
}
