//! APScheduler's "Hello World every 2 seconds", on the async scheduler.
//!
//! ```text
//! cargo run --example quickstart            # until Ctrl-C
//! cargo run --example quickstart -- --runs 3
//! ```
//! Ctrl-C (or the last run) shuts the scheduler down gracefully: running jobs finish first.

use apsched::trigger::Interval;
use apsched::{Event, Scheduler};
use futures::StreamExt;

async fn job_function() {
    println!(
        "Hello World {}",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
}

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let runs = runs_from_args();
    let scheduler = Scheduler::new();
    let mut events = scheduler.subscribe();
    scheduler.start().await?;

    // Schedule job_function to be called every two seconds.
    let job = scheduler
        .add_job(job_function, Interval::seconds(2))
        .await?;
    println!("added {job}");
    println!("press Ctrl-C to stop");

    let mut executed = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                Some(Event::JobExecuted { .. }) => {
                    executed += 1;
                    if Some(executed) == runs {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    scheduler.shutdown().await?;
    println!("shut down after {executed} run(s)");
    Ok(())
}

/// `--runs N`: stop after N runs.
fn runs_from_args() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--runs takes a number"))
}
