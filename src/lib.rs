//! An async-first job scheduler for Tokio: the Rust counterpart of Python's
//! [APScheduler](https://apscheduler.readthedocs.io/).
//!
//! Add jobs (async or blocking closures and functions) with a trigger that says when they run:
//! once at a date, every interval, on a cron pattern, every N calendar units, or a combination.
//! Manage them at run time (pause, resume, modify, reschedule, remove, run now), follow what
//! happens through a stream of [`Event`]s, and shut down gracefully, waiting for running jobs.
//!
//! - **Correct across time zones and DST**: every trigger takes an IANA zone; cron and calendar
//!   triggers follow the wall clock (a time skipped by a DST change runs right after the gap, a
//!   repeated one runs once), intervals count real elapsed time.
//! - **Misfire rules as APScheduler**: `misfire_grace_time`, `coalesce`, `max_instances`, with
//!   any number of missed runs handled in constant time.
//! - **Wall clock decides when, the monotonic timer only how long to sleep**: clock steps and
//!   suspends are noticed within a bounded time ([`Event::ClockJumped`]).
//! - **Cheap at scale**: adding or removing a job does not wait for the scheduler's task.
//! - **Testable**: a [`TestClock`] moves with `tokio::time::pause`, so tests cover days of
//!   schedule in milliseconds.
//!
//! # Example
//!
//! ```
//! use apsched::trigger::{Cron, Date, Interval};
//! use apsched::Scheduler;
//!
//! async fn report() { /* ... */ }
//! fn cleanup() { /* blocking work runs on the blocking pool */ }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), apsched::Error> {
//! let scheduler = Scheduler::new();
//! scheduler.start().await?;
//!
//! // Every two seconds.
//! let job = scheduler
//!     .add_job(|| async { println!("Hello World") }, Interval::seconds(2))
//!     .await?;
//! // Every day at 06:30, and at 01:00 on weekdays.
//! scheduler.add_job(report, Cron::parse("30 6 * * *")?).id("daily-report").await?;
//! scheduler.add_job(cleanup, Cron::new().day_of_week("mon-fri").hour("1")).await?;
//! // Once.
//! let at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
//! scheduler.add_job(report, Date::at(at)).await?;
//!
//! scheduler.pause_job(&job.id).await?;
//! scheduler.resume_job(&job.id).await?;
//! for job in scheduler.get_jobs().await? {
//!     println!("{job}");
//! }
//! scheduler.remove_job(&job.id).await?;
//!
//! scheduler.shutdown().await // waits for running jobs
//! # }
//! ```
//!
//! # Modules
//!
//! | item | what it owns |
//! |---|---|
//! | [`Scheduler`] | the async scheduler handle (APScheduler's `AsyncIOScheduler`) |
//! | [`sync`] | [`BlockingScheduler`] and [`BackgroundScheduler`], for code without a runtime |
//! | [`trigger`] | when jobs run: [`Date`](trigger::Date), [`Interval`](trigger::Interval), [`Cron`](trigger::Cron), [`CalendarInterval`](trigger::CalendarInterval), and/or |
//! | [`Job`], [`JobOptions`], [`JobContext`] | what a job is, how its runs are admitted, what a run knows |
//! | [`Event`], [`EventStream`] | what happened |
//! | [`Zone`] | time zones (IANA or fixed offset) |
//! | [`Clock`], [`TestClock`] | where wall-clock time comes from |
//! | [`TaskRegistry`] | named tasks built from JSON arguments (what may be added over HTTP or kept in a durable store) |
//! | [`store`] | where jobs are kept: the memory store, or a durable [`JobStore`](store::JobStore) (SQLite, PostgreSQL) |
//! | `web` (feature `axum`) | a job-management REST router |
//! | `metrics` (feature `metrics`) | run counts, durations, lateness, jobs and store errors through the `metrics` facade |
//! | [`Error`] | everything that can go wrong, by field and value |
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `axum` | `apsched::web`: the job-management router for axum 0.8 |
//! | `sqlite` | `store::SqliteStore`: jobs and run history in an SQLite file |
//! | `postgres` | `store::PostgresStore`: jobs and run history in PostgreSQL |
//! | `metrics` | `apsched::metrics`: runs by outcome, run duration and lateness, jobs and runs in progress, store errors, through the [`metrics`](https://docs.rs/metrics) facade (any exporter) |
//!
//! Without `sqlite` or `postgres`, jobs live in memory (or in a [`JobStore`](store::JobStore) of
//! your own).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod cluster;
mod core;
mod error;
mod event;
mod job;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod registry;
mod scheduler;
mod serde_util;
pub mod store;
pub mod sync;
pub mod trigger;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;
mod zone;

pub use chrono_tz as tz;
pub use clock::{Clock, SystemClock, TestClock};
pub use error::{Cause, Error, Result};
pub use event::{Event, EventMask, EventStream};
pub use job::{
    marker, IntoTask, Job, JobContext, JobId, JobOptions, JobOutput, MisfireGrace, RetryPolicy,
    Task,
};
pub use registry::TaskRegistry;
pub use scheduler::{
    AbandonedRun, AddJob, AddJobFuture, ImportReport, ModifyJob, OnConflict, RunHandle, Scheduler,
    SchedulerBuilder, SchedulerState, MAX_PREVIEW,
};
pub use sync::{BackgroundScheduler, BlockingScheduler};
pub use zone::{IntoZone, Zone, ZoneOffset};
