//! Managing jobs: add a job and keep its id, pause, resume, list, remove.
//!
//! ```text
//! cargo run --example manage_jobs
//! ```

use apsched::trigger::Interval;
use apsched::Scheduler;

async fn job_function() {
    println!("job_function ran");
}

#[tokio::main]
async fn main() -> Result<(), apsched::Error> {
    let scheduler = Scheduler::new();
    scheduler.start().await?;

    // Add a job and get its id.
    let job = scheduler
        .add_job(job_function, Interval::minutes(5))
        .await?;
    let job_id = job.id.clone();
    println!("added:   {job}  [id {job_id}]");

    // Pause it: no next run time while paused.
    let paused = scheduler.pause_job(&job_id).await?;
    println!("paused:  {paused}");

    // Resume it: the next run is computed from now.
    if let Some(resumed) = scheduler.resume_job(&job_id).await? {
        println!("resumed: {resumed}");
    }

    // List every job.
    scheduler
        .add_job(job_function, Interval::hours(1))
        .id("hourly")
        .name("hourly report")
        .await?;
    println!("all jobs:");
    for job in scheduler.get_jobs().await? {
        println!("  {job}");
    }

    // Remove it by id; a second removal is an error that names the id.
    scheduler.remove_job(&job_id).await?;
    println!(
        "removed {job_id}; {} job(s) left",
        scheduler.get_jobs().await?.len()
    );
    if let Err(error) = scheduler.remove_job(&job_id).await {
        println!("removing it again: {error}");
    }

    scheduler.shutdown().await
}
