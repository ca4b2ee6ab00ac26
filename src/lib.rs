//! apsched
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod clock;
mod error;
mod scheduler;
mod serde_util;
pub mod trigger;
mod zone;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::{Error, Result};
pub use scheduler::SchedulerState;
pub use zone::{Zone, ZoneOffset};
