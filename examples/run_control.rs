//! Run control: a flaky task retried with backoff, a hanging one stopped by its timeout, a
//! job's next ten fire times, and a run-now whose result is printed.
//!
//! ```text
//! cargo run --example run_control
//! ```
//!
//! It takes about a second: the retries' delays are drawn up to 400 ms, and the hanging task
//! has a 1 s timeout (then a 1 s grace, which it does not need: it stops when cancelled).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use apsched::trigger::{Cron, Interval};
use apsched::{Event, JobContext, RetryPolicy, Scheduler};

/// Fails its first two attempts of every run, like a service that needs a moment.
async fn fetch_prices(run: JobContext) -> Result<serde_json::Value, String> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    CALLS.fetch_add(1, Ordering::Relaxed);
    match run.attempt() {
        1 | 2 => Err(format!("attempt {}: upstream answered 503", run.attempt())),
        attempt => Ok(serde_json::json!({ "eur_usd": 1.08, "attempts": attempt })),
    }
}

/// Never ends on its own; stops when its token is cancelled (at its timeout).
async fn export_report(run: JobContext) -> Result<(), String> {
    run.cancellation_token().cancelled().await;
    Err("export stopped half-way".into())
}

/// Counts rows; its result goes into the run history.
async fn count_rows() -> u64 {
    1_204
}

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let scheduler = Scheduler::builder()
        .timeout_grace(Duration::from_secs(1))
        .build();
    let mut events = scheduler.subscribe();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::JobRetrying {
                    job_id,
                    attempt,
                    delay,
                    message,
                    ..
                } => println!("[event] {job_id}: {message}; attempt {attempt} in {delay:.0?}"),
                Event::JobTimedOut {
                    job_id, elapsed, ..
                } => println!("[event] {job_id}: timed out after {elapsed:.1?}"),
                _ => {}
            }
        }
    });
    scheduler.start().await?;

    // A flaky task: up to 4 attempts, after at most 100 ms, 200 ms, 400 ms (full jitter).
    scheduler
        .add_job(fetch_prices, Interval::hours(1))
        .id("prices")
        .retry(RetryPolicy::new(4).backoff(Duration::from_millis(100), Duration::from_millis(400)))
        .await?;
    let outcome = scheduler.run_job_now("prices").await?.outcome().await?;
    println!(
        "prices: {:?} after {} attempts, result {}",
        outcome.state,
        outcome.attempts,
        outcome.result.unwrap_or_default()
    );

    // A hanging task: cancelled at 1 s, dropped after the 1 s grace unless it stops first.
    scheduler
        .add_job(export_report, Interval::hours(1))
        .id("export")
        .timeout(Duration::from_secs(1))
        .await?;
    let outcome = scheduler.run_job_now("export").await?.outcome().await?;
    println!(
        "export: {:?} ({})",
        outcome.state,
        outcome.error.unwrap_or_default()
    );

    // The next ten fire times of a job, before trusting it: 02:30 on weekdays in Berlin.
    let nightly = Cron::parse("30 2 * * 1-5")?.timezone(apsched::Zone::parse("Europe/Berlin")?);
    scheduler.add_job(count_rows, nightly).id("nightly").await?;
    println!("nightly runs next at:");
    for time in scheduler.preview_job("nightly", 10).await? {
        println!("  {}", time.format("%a %Y-%m-%d %H:%M %Z"));
    }

    // Run it now, outside its schedule, and print what it returned.
    let outcome = scheduler.run_job_now("nightly").await?.outcome().await?;
    println!(
        "nightly now: {:?}, returned {}",
        outcome.state,
        outcome.result.unwrap_or_default()
    );

    scheduler.shutdown().await
}
