//! The three job kinds: a date job, an interval job every 5 minutes, and a cron job daily
//! at 06:30. Each job prints when it runs; the example lists the jobs and their next run
//! times, then runs a date job due in one second and exits.
//!
//! ```text
//! cargo run --example job_kinds
//! ```

use std::time::Duration;

use apsched::trigger::{Cron, Date, Interval};
use apsched::{Event, Scheduler};
use futures::StreamExt;

async fn job_function() {
    println!(
        "  job_function ran at {}",
        chrono::Local::now().format("%H:%M:%S")
    );
}

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let scheduler = Scheduler::new();
    let mut events = scheduler.subscribe();
    scheduler.start().await?;

    // Once, at a date (here: one second from now).
    let soon = chrono::Local::now() + chrono::TimeDelta::seconds(1);
    scheduler
        .add_job(job_function, Date::at(soon))
        .id("once")
        .await?;
    // Every 5 minutes.
    scheduler
        .add_job(job_function, Interval::minutes(5))
        .id("every-5-min")
        .await?;
    // Every day at 06:30 (APScheduler: 'cron', hour='6', minute='30').
    scheduler
        .add_job(job_function, Cron::new().hour("6").minute("30"))
        .id("daily-0630")
        .await?;

    println!("jobs (time zone {}):", scheduler.timezone());
    for job in scheduler.get_jobs().await? {
        println!("  {:<12} {job}", job.id.as_str());
    }

    // Wait for the date job's run, then stop.
    let wait = async {
        while let Some(event) = events.next().await {
            if let Event::JobExecuted { job_id, .. } = event {
                println!("executed {job_id}");
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .ok();
    scheduler.shutdown().await
}
