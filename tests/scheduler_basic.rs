//! Jobs fire when their triggers say, over simulated hours and days.
mod common;

use std::time::Duration;

use apsched::trigger::{Cron, Date, Interval};
use apsched::{Event, Zone};
use chrono::{Datelike, TimeDelta, TimeZone, Timelike, Utc, Weekday};
use common::*;

#[tokio::test(start_paused = true)]
async fn interval_job_fires_every_period_for_hours() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(10))
        .await
        .unwrap();
    advance(Duration::from_secs(3 * 3600 + 1)).await;
    assert_eq!(runs.count(), 18);
    let times = runs.times();
    assert_eq!(times[0], t0() + TimeDelta::minutes(10));
    assert_eq!(times[17], t0() + TimeDelta::minutes(180));
}

#[tokio::test(start_paused = true)]
async fn date_job_fires_once_and_is_removed() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    let at = t0() + TimeDelta::minutes(90);
    let job = scheduler
        .add_job(record_now(&runs), Date::at(at))
        .await
        .unwrap();
    assert_eq!(job.next_run_time.unwrap(), at);
    advance(Duration::from_secs(5 * 3600)).await;
    assert_eq!(runs.times(), vec![at]);
    assert!(matches!(
        scheduler.get_job(&job.id).await,
        Err(apsched::Error::JobNotFound(id)) if id == job.id.as_str()
    ));
    assert!(scheduler.get_jobs().await.unwrap().is_empty());
    let events = drain(&mut events);
    assert!(events.contains(&Event::JobRemoved {
        job_id: job.id.clone()
    }));
}

#[tokio::test(start_paused = true)]
async fn cron_fires_daily_at_0630_in_shanghai_for_three_days() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let shanghai = Zone::parse("Asia/Shanghai").unwrap();
    let job = scheduler
        .add_job(
            record_now(&runs),
            Cron::parse("30 6 * * *").unwrap().timezone(shanghai),
        )
        .await
        .unwrap();
    // 06:30 in Shanghai (UTC+8) is 22:30 UTC the day before.
    let first = job.next_run_time.unwrap();
    assert_eq!((first.hour(), first.minute()), (6, 30));
    assert_eq!(
        first.with_timezone(&Utc),
        Utc.with_ymd_and_hms(2024, 1, 1, 22, 30, 0).unwrap()
    );
    advance(Duration::from_secs(3 * 86_400)).await;
    let local: Vec<_> = runs
        .times()
        .iter()
        .map(|t| t.with_timezone(&shanghai))
        .collect();
    assert_eq!(local.len(), 3);
    for (i, t) in local.iter().enumerate() {
        assert_eq!(
            (t.day(), t.hour(), t.minute(), t.second()),
            (2 + i as u32, 6, 30, 0)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn weekday_cron_skips_weekends() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    scheduler
        .add_job(
            record_now(&runs),
            Cron::new().day_of_week("mon-fri").hour("1"),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(14 * 86_400)).await;
    let times = runs.times();
    assert_eq!(times.len(), 10, "two working weeks: {times:?}");
    for t in &times {
        assert!(!matches!(t.weekday(), Weekday::Sat | Weekday::Sun), "{t}");
        assert_eq!((t.hour(), t.minute(), t.second()), (1, 0, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_due_in_five_years_is_kept_and_fires() {
    // A day-long sleep cap keeps five simulated years to a couple of thousand core wakes.
    let scheduler = apsched::Scheduler::builder()
        .clock(apsched::TestClock::new(t0()))
        .max_sleep(Duration::from_secs(86_400))
        .build();
    scheduler.start().await.unwrap();
    let runs = Runs::default();
    let at = Utc.with_ymd_and_hms(2029, 1, 1, 12, 0, 0).unwrap();
    let job = scheduler
        .add_job(record_now(&runs), Date::at(at))
        .await
        .unwrap();
    assert_eq!(
        scheduler
            .get_job(&job.id)
            .await
            .unwrap()
            .next_run_time
            .unwrap(),
        at
    );
    // A year at a time: one sleep longer than Tokio's timer wheel (about two years) is clamped.
    for _ in 0..5 {
        advance(Duration::from_secs(366 * 86_400)).await;
    }
    assert_eq!(runs.times(), vec![at]);
}

#[tokio::test(start_paused = true)]
async fn jobs_added_before_start_run_from_start() {
    let clock = apsched::TestClock::new(t0());
    let scheduler = apsched::Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .build();
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs.count(), 0, "nothing runs before start");
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), 1);
    scheduler.start().await.unwrap();
    advance(Duration::from_secs(150)).await;
    // The interval is anchored where it was added (00:01); the first run at or after the
    // start instant is 00:10, which is the start instant itself.
    let expected: Vec<_> = (10..=12).map(|m| t0() + TimeDelta::minutes(m)).collect();
    assert_eq!(runs.times(), expected);
}

#[tokio::test(start_paused = true)]
async fn instants_at_the_end_of_time_never_panic() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let last = chrono::DateTime::<Utc>::MAX_UTC;
    let date = scheduler
        .add_job(|| async {}, Date::at(last))
        .await
        .unwrap();
    assert_eq!(date.next_run_time.unwrap(), last);
    let interval = scheduler
        .add_job(
            || async {},
            Interval::hours(1)
                .start(last - TimeDelta::minutes(30))
                .jitter(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(interval.next_run_time.unwrap() >= last - TimeDelta::minutes(30));
    advance(Duration::from_secs(120)).await;
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), 2);
}
