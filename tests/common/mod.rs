//! Helpers shared by the integration tests: a scheduler on a test clock, event collection, and
//! a durable store kept in memory (`store`).
#![allow(dead_code, unreachable_pub)]

pub mod pg;
pub mod store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::{Event, EventStream, JobContext, Scheduler, TestClock, Zone};
use chrono::{DateTime, TimeZone, Utc};

/// 2024-01-01 00:00:00 UTC, a Monday.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// A started scheduler in UTC on a test clock reading `start`.
pub async fn scheduler_at(start: DateTime<Utc>) -> (Scheduler, TestClock) {
    let clock = TestClock::new(start);
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .build();
    scheduler.start().await.unwrap();
    (scheduler, clock)
}

/// Lets tokio's paused clock run forward by `span`, firing everything due on the way.
pub async fn advance(span: Duration) {
    tokio::time::sleep(span).await;
}

/// A counter a job bumps, and the wall-clock instants it saw.
#[derive(Clone, Default)]
pub struct Runs {
    count: Arc<AtomicUsize>,
    at: Arc<Mutex<Vec<DateTime<Utc>>>>,
}

impl Runs {
    pub fn record(&self, at: DateTime<Utc>) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.at.lock().unwrap().push(at);
    }
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    pub fn times(&self) -> Vec<DateTime<Utc>> {
        self.at.lock().unwrap().clone()
    }
}

/// A job that records the wall-clock time of each run.
pub fn record_now(
    runs: &Runs,
) -> impl Fn(JobContext) -> std::future::Ready<()> + Send + Sync + 'static {
    let runs = runs.clone();
    move |ctx: JobContext| {
        runs.record(ctx.scheduler().expect("scheduler alive").now());
        std::future::ready(())
    }
}

/// A job that records the scheduled run time each run stands for.
pub fn record_scheduled(
    runs: &Runs,
) -> impl Fn(JobContext) -> std::future::Ready<()> + Send + Sync + 'static {
    let runs = runs.clone();
    move |ctx: JobContext| {
        runs.record(ctx.scheduled_run_time());
        std::future::ready(())
    }
}

/// Every event received so far, without waiting (and without Tokio's cooperative budget,
/// which would end the drain after 128 events).
pub fn drain(events: &mut EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(event)) =
        futures::FutureExt::now_or_never(tokio::task::unconstrained(events.recv()))
    {
        out.push(event);
    }
    out
}
