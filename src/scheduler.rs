//! The scheduler handle.

use serde::{Deserialize, Serialize};

/// Where a scheduler is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerState {
    /// Built but not started: jobs can be added and are scheduled at start.
    Stopped,
    /// Running jobs as they fall due.
    Running,
    /// Started, but not running jobs until resumed.
    Paused,
    /// Shut down: every call returns [`Error::Shutdown`](crate::Error::Shutdown).
    ShutDown,
}

impl std::fmt::Display for SchedulerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchedulerState::Stopped => "stopped",
            SchedulerState::Running => "running",
            SchedulerState::Paused => "paused",
            SchedulerState::ShutDown => "shut down",
        })
    }
}
