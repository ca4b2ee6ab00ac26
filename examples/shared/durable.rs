//! The walk-through both durable examples share: the same tasks and jobs on whichever store
//! the example opened.

use std::time::Duration;

use apsched::store::JobStore;
use apsched::trigger::{Cron, Interval};
use apsched::{Event, MisfireGrace, Scheduler, TaskRegistry};
use futures::StreamExt;
use serde::Deserialize;

#[derive(Clone, Deserialize)]
pub struct Greeting {
    pub name: String,
}

/// The registered tasks: durable jobs name them, so a new process can rebuild the jobs.
pub fn tasks() -> TaskRegistry {
    TaskRegistry::new()
        .register("greet", |greeting: Greeting| async move {
            println!("  hello, {}!", greeting.name);
            // A value a task returns is kept in the run's history.
            Ok::<_, std::io::Error>(serde_json::json!({ "greeted": greeting.name }))
        })
        .register("report", |(): ()| async {
            println!("  daily report");
        })
}

/// Opens a scheduler on `store`, restores or adds the jobs, runs them for `seconds`, and shows
/// their history.
pub async fn walk_through(store: impl JobStore, seconds: u64) -> Result<(), apsched::Error> {
    let tasks = tasks();
    let scheduler = Scheduler::builder()
        .store("durable", store)
        .default_store("durable")
        .tasks(tasks.clone())
        .build();
    let mut events = scheduler.subscribe();
    scheduler.start().await?; // reads the jobs the store holds

    let restored = scheduler.get_jobs().await?;
    if restored.is_empty() {
        println!("a new store: adding the jobs");
        scheduler
            .add_job(
                tasks.task("greet", serde_json::json!({ "name": "Ada" }))?,
                Interval::seconds(2),
            )
            .id("greet")
            // Missed while the process was away: run once for all of them.
            .misfire_grace_time(MisfireGrace::Unlimited)
            .await?;
        scheduler
            .add_job(
                tasks.task("greet", serde_json::json!({ "name": "Grace" }))?,
                Interval::seconds(3),
            )
            .id("greet-each")
            // Missed while away: each one within 10 s runs, the older are reported missed.
            .coalesce(false)
            .misfire_grace_time(Duration::from_secs(10))
            .await?;
        scheduler
            .add_job(
                tasks.task("report", serde_json::Value::Null)?,
                Cron::parse("0 6 * * *")?,
            )
            .id("report")
            .await?;
    } else {
        println!("restored {} jobs from the store:", restored.len());
    }
    for job in scheduler.get_jobs().await? {
        println!("  {:<10} {job}", job.id.as_str());
    }

    println!("running for {seconds} s ...");
    let stop = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                Some(Event::JobMissed { job_id, scheduled_run_time }) => {
                    println!("  {job_id}: missed runs from {scheduled_run_time} (past their grace time)");
                }
                Some(Event::JobSubmitted { job_id, scheduled_run_time }) => {
                    println!("  {job_id}: run for {scheduled_run_time}");
                }
                Some(Event::StoreError { store, message, .. }) => {
                    println!("  store {store}: {message} (retrying)");
                }
                Some(_) => {}
                None => break,
            },
        }
    }

    println!("run history (newest first):");
    for job in scheduler.get_jobs().await? {
        for run in scheduler.get_job_runs(&job.id, 3).await? {
            println!(
                "  {:<10} {}  {:?}{}",
                job.id,
                run.fire_time.format("%H:%M:%S"),
                run.state,
                run.result
                    .map(|value| format!("  -> {value}"))
                    .unwrap_or_default()
            );
        }
    }
    scheduler.shutdown().await?;
    println!("shut down; run me again to see the jobs restored");
    Ok(())
}

/// `--seconds N` (default 5).
pub fn seconds_from_args() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
