//! A `BackgroundScheduler` in a plain `fn main`: jobs run on the scheduler's own thread while the
//! main thread does its own work (APScheduler's `BackgroundScheduler`, as a GUI or a worker
//! loop would use it).
//!
//! ```text
//! cargo run --example background                 # 10 seconds
//! cargo run --example background -- --seconds 3
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::trigger::Interval;
use apsched::{BackgroundScheduler, Event, EventMask};

fn main() -> Result<(), apsched::Error> {
    let seconds = flag_value("--seconds").unwrap_or(10);
    let scheduler = BackgroundScheduler::new()?;

    // The main thread's progress, which a job reports on.
    let progress = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&progress);
    scheduler
        .add_job(
            move || {
                println!(
                    "[{}] job: main thread has done {} units of work",
                    thread_name(),
                    seen.load(Ordering::Relaxed)
                );
            },
            Interval::seconds(1),
        )
        .id("report")
        .name("report")
        .add()?;
    // A slow job: it runs on the thread pool, so it never holds up "report".
    scheduler
        .add_job(
            || {
                println!("[{}] slow job: starting (2 s)", thread_name());
                std::thread::sleep(Duration::from_secs(2));
                println!("[{}] slow job: done", thread_name());
            },
            Interval::seconds(3),
        )
        .id("slow")
        .name("slow")
        .add()?;
    scheduler.add_listener(
        EventMask::JOB_ERROR | EventMask::JOB_MAX_INSTANCES,
        |event| {
            println!("listener: {event:?}");
        },
    )?;
    scheduler.start()?; // returns at once
    for job in scheduler.get_jobs()? {
        println!("scheduled: {job}");
    }

    // The main thread's own work, for a while.
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        progress.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("main: shutting down (waits for a running slow job)");
    let events = scheduler.events();
    scheduler.shutdown()?;
    let last = events.last();
    assert_eq!(last, Some(Event::SchedulerShutdown));
    println!("main: scheduler stopped and its thread joined");
    Ok(())
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
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
