//! `preview_job` and `Trigger::fire_times`: the times a job is shown to run at are the times it
//! then runs at, over simulated days, for every kind of trigger.
mod common;

use std::time::Duration;

use apsched::trigger::{CalendarInterval, Cron, Date, Interval, Trigger};
use apsched::{Error, Zone};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::*;

/// Previews `n` fire times of a job on `trigger`, then lets simulated time run until it has
/// run `n` times (at most `within`), and returns both, in UTC.
async fn preview_then_run(
    start: DateTime<Utc>,
    trigger: Trigger,
    n: usize,
    within: Duration,
) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let (scheduler, _clock) = scheduler_at(start).await;
    let runs = Runs::default();
    let job = scheduler
        .add_job(record_scheduled(&runs), trigger)
        .await
        .unwrap();
    let preview: Vec<DateTime<Utc>> = scheduler
        .preview_job(&job.id, n)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let step = Duration::from_secs(3600);
    let mut waited = Duration::ZERO;
    while runs.count() < n && waited < within {
        advance(step).await;
        waited += step;
    }
    let mut ran = runs.times();
    ran.truncate(n);
    (preview, ran)
}

fn berlin() -> Zone {
    Zone::parse("Europe/Berlin").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cron_preview_across_a_dst_change_is_what_runs() {
    // 02:30 daily in Berlin from 2024-03-28: the 31st has no 02:30 (it fires at 03:00).
    let start = Utc.with_ymd_and_hms(2024, 3, 28, 0, 0, 0).unwrap();
    let trigger = Cron::parse("30 2 * * *").unwrap().timezone(berlin()).into();
    let (preview, ran) = preview_then_run(start, trigger, 6, Duration::from_secs(8 * 86_400)).await;
    assert_eq!(preview.len(), 6);
    assert_eq!(preview, ran);
    assert_eq!(
        preview[3],
        Utc.with_ymd_and_hms(2024, 3, 31, 1, 0, 0).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn interval_calendar_and_combination_previews_are_what_runs() {
    let cases: Vec<Trigger> = vec![
        Interval::hours(7).into(),
        CalendarInterval::days(2)
            .at(9, 15, 0)
            .timezone(berlin())
            .into(),
        // 08:00 on weekdays, and every 10 hours, whichever is sooner.
        Trigger::or([
            Trigger::from(Cron::parse("0 8 * * 1-5").unwrap().timezone(berlin())),
            Interval::hours(10).into(),
        ]),
        // Both: hours that are multiples of 6 and also on the 3-hour interval.
        Trigger::and([
            Trigger::from(Cron::parse("0 */6 * * *").unwrap()),
            Interval::hours(3).start(t0()).into(),
        ]),
    ];
    for trigger in cases {
        let describe = trigger.describe();
        let (preview, ran) =
            preview_then_run(t0(), trigger, 8, Duration::from_secs(30 * 86_400)).await;
        assert_eq!(preview.len(), 8, "{describe}");
        assert_eq!(preview, ran, "{describe}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_paused_job_previews_nothing_and_an_end_bound_cuts_the_preview() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let paused = scheduler
        .add_job(|| async {}, Interval::hours(1))
        .paused()
        .await
        .unwrap();
    assert!(scheduler
        .preview_job(&paused.id, 5)
        .await
        .unwrap()
        .is_empty());
    let ending = scheduler
        .add_job(
            || async {},
            Interval::hours(1).end(t0() + TimeDelta::minutes(150)),
        )
        .await
        .unwrap();
    assert_eq!(
        scheduler.preview_job(&ending.id, 10).await.unwrap().len(),
        2
    );
    let once = scheduler
        .add_job(|| async {}, Date::at(t0() + TimeDelta::hours(5)))
        .await
        .unwrap();
    assert_eq!(scheduler.preview_job(&once.id, 10).await.unwrap().len(), 1);
    let every_second = scheduler
        .add_job(|| async {}, Interval::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        scheduler
            .preview_job(&every_second.id, 5000)
            .await
            .unwrap()
            .len(),
        apsched::MAX_PREVIEW
    );
    // In the trigger's zone.
    let zoned = scheduler
        .add_job(
            || async {},
            Cron::parse("0 12 * * *").unwrap().timezone(berlin()),
        )
        .await
        .unwrap();
    let first = scheduler.preview_job(&zoned.id, 1).await.unwrap()[0];
    assert_eq!(first.to_rfc3339(), "2024-01-01T12:00:00+01:00");
    assert!(matches!(
        scheduler.preview_job("nope", 3).await,
        Err(Error::JobNotFound(id)) if id == "nope"
    ));
}
