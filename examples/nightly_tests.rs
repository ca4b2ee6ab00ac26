//! Test automation (APScheduler's use case 3): run the test suite at 01:00 on weekdays, and
//! report each run's exit status and duration through the scheduler's events.
//!
//! ```text
//! cargo run --example nightly_tests                  # wait for 01:00 mon-fri, until Ctrl-C
//! cargo run --example nightly_tests -- --now         # run once now, report, exit
//! ```
//!
//! The job is async: it starts the command with `tokio::process::Command` on the scheduler's
//! own runtime and fails (a `JobError` event) when the command exits unsuccessfully. The command
//! here is `cargo --version`, a stand-in for `cargo test` that finishes in a moment.

use std::process::Stdio;

use apsched::trigger::Cron;
use apsched::{BackgroundScheduler, Event, EventMask};

async fn run_tests() -> Result<(), String> {
    let output = tokio::process::Command::new("cargo")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("tests failed: {}", output.status))
    }
}

fn main() -> Result<(), apsched::Error> {
    let now = std::env::args().any(|a| a == "--now");
    let scheduler = BackgroundScheduler::builder()
        .handle_signals(true)
        .build()?;
    let job = scheduler
        .add_job(run_tests, Cron::new().day_of_week("mon-fri").hour("1"))
        .id("nightly-tests")
        .add()?;
    println!("scheduled: {job}");

    // Report every run's outcome, as APScheduler's EVENT_JOB_EXECUTED | EVENT_JOB_ERROR listener.
    scheduler.add_listener(
        EventMask::JOB_EXECUTED | EventMask::JOB_ERROR,
        |event| match event {
            Event::JobExecuted {
                job_id, duration, ..
            } => {
                println!("{job_id}: passed in {duration:.2?}");
            }
            Event::JobError {
                job_id,
                duration,
                message,
                ..
            } => println!("{job_id}: FAILED after {duration:.2?}: {message}"),
            _ => {}
        },
    )?;

    let events = scheduler.events();
    scheduler.start()?;
    if now {
        scheduler.run_job_now("nightly-tests")?;
    } else {
        println!("press Ctrl-C to stop");
    }
    for event in events {
        let finished = matches!(event, Event::JobExecuted { .. } | Event::JobError { .. });
        if now && finished {
            break;
        }
    }
    if scheduler.state() != apsched::SchedulerState::ShutDown {
        scheduler.shutdown()?; // also joins the listener, so its report is printed by now
    }
    Ok(())
}
