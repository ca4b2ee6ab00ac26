//! Data analysis and reports (APScheduler's use case 2): `collect_data` every 6 hours,
//! `analyze_data` every day at midnight, passing samples between them through shared state.
//!
//! ```text
//! cargo run --example reports                        # real time, until Ctrl-C
//! cargo run --example reports -- --demo              # three simulated days in a moment
//! cargo run --example reports -- --demo --runs 7     # a simulated week
//! ```
//!
//! `--demo` runs the scheduler on a Tokio runtime started paused, with a
//! [`TestClock`](apsched::TestClock): whenever the scheduler has nothing to do, its runtime
//! jumps to the next timer, so six hours pass in no time and the triggers fire exactly as they
//! would on the wall clock. (A paused runtime needs Tokio's `test-util` feature, which this
//! crate's examples have through its dev-dependencies.) `--runs N` stops after N reports.

use std::sync::{Arc, Mutex};

use apsched::trigger::{Cron, Interval};
use apsched::{BackgroundScheduler, Event, JobContext, TestClock, Zone};
use chrono::{TimeZone, Utc};

const TIME: &str = "%Y-%m-%d %H:%M";

/// One reading, taken by `collect_data`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: chrono::DateTime<Utc>,
    value: f64,
}

/// What the two jobs share: samples collected since the last report.
type Samples = Arc<Mutex<Vec<Sample>>>;

fn collect_data(samples: &Samples, ctx: &JobContext) {
    let at = ctx.scheduled_run_time().format(TIME);
    // Stands in for a query or an HTTP call.
    let when = ctx.scheduled_run_time();
    let value = 100.0 + 10.0 * (when.timestamp() as f64 / 21_600.0).sin();
    samples.lock().unwrap().push(Sample { at: when, value });
    println!("{at}  collect_data: {value:.1}");
}

fn analyze_data(samples: &Samples, ctx: &JobContext) {
    let batch = std::mem::take(&mut *samples.lock().unwrap());
    let at = ctx.scheduled_run_time().format(TIME);
    if batch.is_empty() {
        println!("{at}  analyze_data: no samples yet");
        return;
    }
    let mean = batch.iter().map(|s| s.value).sum::<f64>() / batch.len() as f64;
    let (first, last) = (
        batch[0].at.format(TIME),
        batch[batch.len() - 1].at.format(TIME),
    );
    println!(
        "{at}  analyze_data: report over {} samples ({first} .. {last}): mean {mean:.2}",
        batch.len()
    );
}

fn main() -> Result<(), apsched::Error> {
    let demo = std::env::args().any(|a| a == "--demo");
    let runs = flag_value("--runs").or(demo.then_some(3));

    let mut builder = BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .handle_signals(true);
    if demo {
        let mut runtime = tokio::runtime::Builder::new_current_thread();
        runtime.start_paused(true);
        builder = builder.runtime(runtime).clock(TestClock::new(
            Utc.with_ymd_and_hms(2024, 5, 1, 9, 0, 0).unwrap(),
        ));
    }
    let scheduler = builder.build()?;

    let samples = Samples::default();
    let s = Arc::clone(&samples);
    scheduler
        .add_job(
            move |ctx: JobContext| collect_data(&s, &ctx),
            Interval::hours(6),
        )
        .id("collect_data")
        .name("collect_data")
        .add()?;
    let s = Arc::clone(&samples);
    scheduler
        .add_job(
            move |ctx: JobContext| analyze_data(&s, &ctx),
            Cron::new().hour("0"),
        )
        .id("analyze_data")
        .name("analyze_data")
        .add()?;

    let events = scheduler.events();
    scheduler.start()?;
    for job in scheduler.get_jobs()? {
        println!("scheduled: {job}");
    }
    if !demo {
        println!("press Ctrl-C to stop");
    }

    // Count the reports; stop after `--runs` of them (or when Ctrl-C shut the scheduler down).
    let mut reports = 0;
    for event in events {
        if let Event::JobExecuted { job_id, .. } = &event {
            if job_id == "analyze_data" {
                reports += 1;
                if Some(reports) == runs {
                    break;
                }
            }
        }
    }
    if scheduler.state() != apsched::SchedulerState::ShutDown {
        scheduler.shutdown()?;
    }
    println!("{reports} report(s); scheduler stopped");
    Ok(())
}

/// The number after `name` on the command line, if any.
fn flag_value(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    let value = args.get(at + 1).and_then(|v| v.parse().ok());
    if value.is_none() {
        eprintln!("{name} takes a number");
        std::process::exit(2);
    }
    value
}
