//! The crate's one error type.
//!
//! Every fallible call returns [`Result`]. Messages name the field and the value at fault, so a
//! log line is enough to fix the input.

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
    /// The runtime the scheduler needs could not be built (sync facades only).
    #[error("could not start the scheduler's runtime: {0}")]
    Runtime(String),
}
