//! apsched
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, unreachable_pub)]

mod clock;
mod core;
mod error;
mod event;
mod job;
mod registry;
mod scheduler;
mod serde_util;
pub mod trigger;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;
mod zone;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::{Error, Result};
pub use event::{Event, EventStream};
pub use job::{marker, IntoTask, Job, JobContext, JobId, JobOptions, JobOutput, Task};
pub use registry::TaskRegistry;
pub use scheduler::{AddJob, ModifyJob, Scheduler, SchedulerBuilder, SchedulerState};
pub use zone::{Zone, ZoneOffset};
