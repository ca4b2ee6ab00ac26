//! The crate's one error type.
//!
//! Every fallible call returns [`Result`]. Messages name the field and the value at fault, so a
//! log line is enough to fix the input; an error from outside apsched (a database's, the
//! operating system's) is kept as the [`Cause`] of the error that reports it, and its whole
//! chain of causes is in the message.

use std::sync::Arc;

/// A `Result` whose error is apsched's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when scheduling.
///
/// A call that returns an error has changed nothing: the job table, the triggers and the
/// scheduler's state are as they were before the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cron field (crontab string or APScheduler-style field) does not parse or is out of range.
    #[error("invalid cron field '{field}': value '{value}' {reason}")]
    InvalidCronField {
        /// The field's name: `second`, `minute`, `hour`, `day`, `month`, `day_of_week`, `week`,
        /// `year`, or `expression` for a whole crontab string.
        field: &'static str,
        /// The text that was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A trigger's settings contradict each other or are out of range.
    #[error("invalid trigger: '{field}' = {value}: {reason}")]
    InvalidTrigger {
        /// The setting at fault, e.g. `interval`, `end_date`, `threshold`.
        field: &'static str,
        /// The value that was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The trigger will never fire from now on (its end bound is past, or its pattern matches no
    /// date), so the job would never run.
    #[error("trigger {trigger} will never fire: {reason}")]
    TriggerNeverFires {
        /// The trigger's description.
        trigger: String,
        /// Why no fire time exists.
        reason: String,
    },
    /// A time zone name that the IANA database does not know.
    #[error("unknown time zone '{0}': expected an IANA name such as 'Europe/Berlin' or a fixed offset such as '+08:00'")]
    UnknownTimeZone(String),
    /// A job option is out of range.
    #[error("invalid job option '{option}': {value}: {reason}")]
    InvalidOption {
        /// The option's name, e.g. `max_instances`.
        option: &'static str,
        /// The value that was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// No job has this id.
    #[error("no job with id '{0}'")]
    JobNotFound(String),
    /// A job with this id exists already and `replace_existing` was not set.
    #[error("a job with id '{0}' exists already (use replace_existing to replace it)")]
    ConflictingId(String),
    /// No task is registered under this name.
    #[error("no task registered under the name '{0}'")]
    TaskNotFound(String),
    /// A registered task's JSON arguments do not fit its argument type.
    #[error("invalid arguments for task '{task}': at '{field}': {reason}")]
    InvalidTaskArgs {
        /// The task's registered name.
        task: String,
        /// Where in the arguments the fault is, e.g. `retries` or `to[1]`; `.` for the whole
        /// value.
        field: String,
        /// Why they were refused, e.g. `invalid type: string "x", expected u32`.
        reason: String,
    },
    /// The scheduler was shut down (or its core stopped because every handle was dropped).
    #[error("the scheduler is shut down")]
    Shutdown,
    /// The scheduler's core task ended without a shutdown: its Tokio runtime shut down or was
    /// dropped while a handle lived on (or it panicked). Nothing runs any more; start a new
    /// scheduler.
    #[error("the scheduler's core task stopped without a shutdown (its Tokio runtime shut down or it panicked)")]
    Closed,
    /// The call does not fit the scheduler's state, e.g. starting it twice.
    #[error("the scheduler is {state}: cannot {action}")]
    InvalidState {
        /// The state the scheduler is in.
        state: crate::SchedulerState,
        /// What was asked.
        action: &'static str,
    },
    /// A job store failed: its database is unreachable, refused a write, or holds what apsched
    /// cannot read. `source()` is the backend's error.
    #[error("store '{store}' could not {operation}: {}", source.chain())]
    Store {
        /// The store's name (or, before it has one, where it is: `sqlite:/var/lib/jobs.db`).
        store: String,
        /// What it was doing: `open`, `load jobs`, `write`, `read runs`, ...
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: Cause,
    },
    /// A store's schema is newer than this apsched: refused rather than misread.
    #[error("store '{store}' has schema version {found}, newer than the {supported} this apsched knows: upgrade apsched to use it")]
    StoreSchema {
        /// Where the store is.
        store: String,
        /// The version found.
        found: i64,
        /// The newest version this apsched reads and writes.
        supported: i64,
    },
    /// A job for a durable store must be a task registered in the scheduler's
    /// [`TaskRegistry`](crate::TaskRegistry) (a closure cannot be written to a database).
    #[error("a job in the durable store '{store}' must be a registered task (TaskRegistry::task), not a closure")]
    NotDurable {
        /// The store the job was sent to.
        store: String,
    },
    /// No store has this name.
    #[error("no job store named '{0}' (add it with SchedulerBuilder::store)")]
    UnknownStore(String),
    /// The thread or the Tokio runtime a sync scheduler needs could not be started.
    /// `source()` is the operating system's error.
    #[error("could not start the scheduler's thread or runtime: {}", source.chain())]
    Runtime {
        /// Why.
        #[source]
        source: Cause,
    },
}

/// An error from outside apsched, kept as the `source()` of the [`Error`] that reports it.
///
/// It is shared, so [`Error`] stays `Clone`; two causes are equal when their messages are. Reach
/// the backend's own error type with [`get_ref`](Cause::get_ref) and `downcast_ref`.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps an error (or a message).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
        Cause(Arc::from(error.into()))
    }

    /// The error itself, e.g. to `downcast_ref::<sqlx::Error>()`.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The message with every cause behind it: `outer: inner: root`.
    pub fn chain(&self) -> String {
        crate::job::error_chain(&*self.0)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    /// The wrapped error's own source: a `Cause` stands for the error it wraps.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the disk is full")]
    struct Disk;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write the journal")]
    struct Journal(#[source] Disk);

    #[test]
    fn a_store_error_says_its_whole_cause_and_keeps_it_as_source() {
        let error = Error::Store {
            store: "durable".into(),
            operation: "write",
            source: Cause::new(Journal(Disk)),
        };
        assert_eq!(
            error.to_string(),
            "store 'durable' could not write: cannot write the journal: the disk is full"
        );
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(source.to_string(), "cannot write the journal");
        match &error {
            Error::Store { source, .. } => {
                assert!(source.get_ref().downcast_ref::<Journal>().is_some())
            }
            _ => unreachable!(),
        }
        assert_eq!(error.clone(), error);
    }
}
