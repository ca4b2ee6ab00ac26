//! APScheduler's basic `BlockingScheduler` example: "Hello World" every two seconds, in a plain
//! `fn main` without a Tokio runtime.
//!
//! ```text
//! cargo run --example blocking_basic            # until Ctrl-C
//! cargo run --example blocking_basic -- --runs 3
//! ```
//! `start()` blocks until the scheduler shuts down: on Ctrl-C (or SIGTERM), which the blocking
//! scheduler handles by waiting for running jobs, or here after `--runs N` runs.

use apsched::trigger::Interval;
use apsched::{BlockingScheduler, EventMask};

fn job_function() {
    println!(
        "Hello World {}",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
}

fn main() -> Result<(), apsched::Error> {
    let runs = flag_value("--runs");
    let sched = BlockingScheduler::new()?;

    // Schedule job_function to be called every two seconds.
    let job = sched.add_job(job_function, Interval::seconds(2)).add()?;
    println!("added {job}");

    if let Some(runs) = runs {
        // A listener runs on its own thread; shutdown() from there asks and returns.
        let handle = sched.clone();
        let mut executed = 0;
        sched.add_listener(EventMask::JOB_EXECUTED, move |_| {
            executed += 1;
            if executed == runs {
                let _ = handle.shutdown();
            }
        })?;
    }

    println!("press Ctrl-C to stop");
    sched.start()?;
    println!("scheduler shut down");
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
