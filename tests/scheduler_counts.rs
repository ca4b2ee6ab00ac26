//! The cheap counters a status page reads: `job_count` and `running_jobs`.
mod common;

use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Interval;
use common::*;
use tokio::sync::Notify;

#[tokio::test(start_paused = true)]
async fn counts_follow_jobs_and_runs() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    assert_eq!((scheduler.job_count(), scheduler.running_jobs()), (0, 0));

    let release = Arc::new(Notify::new());
    let r = Arc::clone(&release);
    scheduler
        .add_job(
            move || {
                let r = Arc::clone(&r);
                async move { r.notified().await }
            },
            Interval::seconds(10),
        )
        .id("slow")
        .await
        .unwrap();
    scheduler
        .add_job(|| async {}, Interval::hours(1))
        .paused()
        .await
        .unwrap();
    assert_eq!(scheduler.job_count(), 2);

    advance(Duration::from_secs(11)).await;
    assert_eq!(scheduler.running_jobs(), 1);

    release.notify_one();
    advance(Duration::from_millis(1)).await;
    assert_eq!(scheduler.running_jobs(), 0);

    scheduler.remove_job("slow").await.unwrap();
    assert_eq!(scheduler.job_count(), 1);
    scheduler.shutdown().await.unwrap();
    assert_eq!((scheduler.job_count(), scheduler.running_jobs()), (0, 0));
}
