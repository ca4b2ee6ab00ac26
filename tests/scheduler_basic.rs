mod common;

use std::time::Duration;

use apsched::trigger::Interval;
use common::*;

#[tokio::test(start_paused = true)]
async fn interval_job_fires_every_period_for_hours() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let r = runs.clone();
    let c = clock.clone();
    scheduler
        .add_job(
            move || {
                let r = r.clone();
                let c = c.clone();
                async move { r.record(c.now()) }
            },
            Interval::minutes(10),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(3 * 3600 + 1)).await;
    assert_eq!(runs.count(), 18);
    let times = runs.times();
    assert_eq!(times[0], t0() + chrono::TimeDelta::minutes(10));
    assert_eq!(times[17], t0() + chrono::TimeDelta::minutes(180));
}
