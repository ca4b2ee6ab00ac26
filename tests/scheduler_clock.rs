//! The wall clock against the monotonic one: jumps, suspends, DST days, driven by the test clock.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::trigger::{Cron, Interval};
use apsched::{Event, JobContext, MisfireGrace, Scheduler, TestClock, Zone};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use common::*;

#[tokio::test(start_paused = true)]
async fn a_year_long_jump_forward_runs_a_coalesced_job_once_and_promptly() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    let job = scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .misfire_grace_time(MisfireGrace::Unlimited)
        .await
        .unwrap();
    advance(Duration::from_secs(61)).await;
    assert_eq!(runs.count(), 1);

    let jumped_at = clock.now();
    clock.jump(TimeDelta::days(365));
    // The core notices within its sleep cap (60 s), not a year later.
    advance(Duration::from_secs(60)).await;
    assert_eq!(runs.count(), 2, "525,600 missed runs coalesce into one");
    let caught_up = runs.times()[1];
    assert!(caught_up - (jumped_at + TimeDelta::days(365)) <= TimeDelta::seconds(60));

    let events = drain(&mut events);
    let jumps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ClockJumped { by } => Some(*by),
            _ => None,
        })
        .collect();
    assert_eq!(jumps.len(), 1, "{events:?}");
    assert!((jumps[0] - TimeDelta::days(365)).abs() < TimeDelta::seconds(1));
    // And the schedule goes on from the new now.
    let next = scheduler
        .get_job(&job.id)
        .await
        .unwrap()
        .next_run_time
        .unwrap();
    let next = next.with_timezone(&Utc);
    assert!(next > caught_up && next - caught_up <= TimeDelta::minutes(1));
}

#[tokio::test(start_paused = true)]
async fn a_jump_forward_without_coalesce_runs_only_what_is_within_grace() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .coalesce(false)
        .misfire_grace_time(Duration::from_secs(150))
        .max_instances(100)
        .await
        .unwrap();
    clock.jump(TimeDelta::days(3650)); // ten years, five million fire times
    advance(Duration::from_millis(10)).await; // a wake comes within the sleep cap...
    advance(Duration::from_secs(60)).await;
    // ...and runs the two or three fire times inside the 150 s grace window, not millions.
    assert!((2..=4).contains(&runs.count()), "{}", runs.count());
    let missed = drain(&mut events)
        .iter()
        .filter(|e| matches!(e, Event::JobMissed { .. }))
        .count();
    assert_eq!(missed, 1, "one missed event for the skipped stretch");
}

#[tokio::test(start_paused = true)]
async fn a_jump_backward_neither_double_runs_nor_stalls() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(10 * 60 + 1)).await;
    assert_eq!(runs.count(), 10);
    clock.jump(TimeDelta::hours(-1));
    // Wall time is back at 23:10 the day before; the next run stays at 00:11 (no repeat of
    // 23:11 .. 00:10), reached an hour of real time later.
    advance(Duration::from_secs(3600 - 2)).await;
    assert_eq!(runs.count(), 10, "no run repeats a fire time already run");
    advance(Duration::from_secs(62)).await;
    assert_eq!(runs.count(), 11, "not stalled beyond the sleep cap");
    let times = runs.times();
    assert_eq!(times[10], t0() + TimeDelta::minutes(11));
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

/// Runs a daily 02:30 wall-clock job in `zone` for `days` days from `start` (local midnight)
/// and returns the local fire times.
async fn daily_0230(zone: &str, start: NaiveDate, days: i64) -> Vec<DateTime<Zone>> {
    let zone = Zone::parse(zone).unwrap();
    let begin = zone
        .from_local_datetime(&start.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let clock = TestClock::new(begin);
    let scheduler = Scheduler::builder().clock(clock).timezone(zone).build();
    scheduler.start().await.unwrap();
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Cron::new().hour("2").minute("30"))
        .await
        .unwrap();
    advance(Duration::from_secs(days as u64 * 86_400)).await;
    runs.times()
        .iter()
        .map(|t| t.with_timezone(&zone))
        .collect()
}

fn assert_once_a_day(runs: &[DateTime<Zone>], first: NaiveDate, gap_day: NaiveDate) {
    for (i, run) in runs.iter().enumerate() {
        let day = first + TimeDelta::days(i as i64);
        assert_eq!(run.date_naive(), day, "one run per day: {runs:?}");
        if day == gap_day {
            // 02:30 does not exist that day: the run comes at the first instant after the gap.
            assert_eq!((run.hour(), run.minute()), (3, 0), "{run}");
        } else {
            assert_eq!(
                (run.hour(), run.minute(), run.second()),
                (2, 30, 0),
                "{run}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn daily_0230_runs_once_a_day_across_berlin_dst_changes() {
    // Spring: 2024-03-31 02:00 -> 03:00. Autumn: 2024-10-27 03:00 -> 02:00 (02:30 twice).
    let spring = daily_0230(
        "Europe/Berlin",
        NaiveDate::from_ymd_opt(2024, 3, 29).unwrap(),
        5,
    )
    .await;
    assert_eq!(spring.len(), 5);
    assert_once_a_day(
        &spring,
        NaiveDate::from_ymd_opt(2024, 3, 29).unwrap(),
        NaiveDate::from_ymd_opt(2024, 3, 31).unwrap(),
    );
    let autumn = daily_0230(
        "Europe/Berlin",
        NaiveDate::from_ymd_opt(2024, 10, 25).unwrap(),
        5,
    )
    .await;
    assert_eq!(
        autumn.len(),
        5,
        "02:30 happens twice on 10-27 but runs once: {autumn:?}"
    );
    assert_once_a_day(
        &autumn,
        NaiveDate::from_ymd_opt(2024, 10, 25).unwrap(),
        NaiveDate::MIN,
    );
    let on_fold = autumn.iter().find(|t| t.day() == 27).unwrap();
    assert_eq!(
        on_fold.offset().to_string(),
        "CEST",
        "the first 02:30 (summer time)"
    );
}

#[tokio::test(start_paused = true)]
async fn daily_0230_runs_once_a_day_across_new_york_dst_changes() {
    // Spring: 2024-03-10 02:00 -> 03:00. Autumn: 2024-11-03 02:00 -> 01:00.
    let spring = daily_0230(
        "America/New_York",
        NaiveDate::from_ymd_opt(2024, 3, 8).unwrap(),
        5,
    )
    .await;
    assert_eq!(spring.len(), 5);
    assert_once_a_day(
        &spring,
        NaiveDate::from_ymd_opt(2024, 3, 8).unwrap(),
        NaiveDate::from_ymd_opt(2024, 3, 10).unwrap(),
    );
    let autumn = daily_0230(
        "America/New_York",
        NaiveDate::from_ymd_opt(2024, 11, 1).unwrap(),
        5,
    )
    .await;
    assert_eq!(autumn.len(), 5);
    assert_once_a_day(
        &autumn,
        NaiveDate::from_ymd_opt(2024, 11, 1).unwrap(),
        NaiveDate::MIN,
    );
}

#[tokio::test(start_paused = true)]
async fn an_hourly_interval_counts_real_time_across_dst() {
    let zone = Zone::parse("Europe/Berlin").unwrap();
    // 2024-03-31 00:00 CET = 23:00 UTC the day before.
    let start = Utc.with_ymd_and_hms(2024, 3, 30, 23, 0, 0).unwrap();
    let clock = TestClock::new(start);
    let scheduler = Scheduler::builder().clock(clock).timezone(zone).build();
    scheduler.start().await.unwrap();
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::hours(1))
        .await
        .unwrap();
    advance(Duration::from_secs(4 * 3600 + 1)).await;
    let local: Vec<u32> = runs
        .times()
        .iter()
        .map(|t| t.with_timezone(&zone).hour())
        .collect();
    // 01:00 CET, then 03:00 CEST (02:00 does not exist), 04:00, 05:00: every 3600 s.
    assert_eq!(local, vec![1, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn without_coalesce_each_missed_run_in_grace_runs_in_order_without_overlap() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&runs);
    scheduler
        .add_job(
            move |ctx: JobContext| {
                let r = Arc::clone(&r);
                async move {
                    let own = ctx.scheduler().expect("alive");
                    let started = own.now();
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    r.lock()
                        .unwrap()
                        .push((ctx.scheduled_run_time(), started, own.now()));
                }
            },
            Interval::minutes(1),
        )
        .coalesce(false)
        .misfire_grace_time(Duration::from_secs(150))
        .await
        .unwrap();
    advance(Duration::from_secs(30)).await;
    clock.jump(TimeDelta::minutes(10));
    // The core wakes at its armed deadline, 00:01 by the monotonic clock, 00:11 on the wall.
    advance(Duration::from_secs(31 + 3 * 10)).await;
    let runs = runs.lock().unwrap().clone();
    let scheduled: Vec<_> = runs.iter().map(|(s, _, _)| *s).collect();
    // 00:09, 00:10 and 00:11 are within 150 s of 00:11; 00:01-00:08 are missed.
    assert_eq!(
        scheduled,
        [9, 10, 11].map(|m| t0() + TimeDelta::minutes(m)),
        "{runs:?}"
    );
    for pair in runs.windows(2) {
        assert!(pair[1].1 >= pair[0].2, "runs overlapped: {runs:?}");
    }
    let events = drain(&mut events);
    let missed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::JobMissed {
                scheduled_run_time, ..
            } => Some(*scheduled_run_time),
            _ => None,
        })
        .collect();
    assert_eq!(
        missed,
        [t0() + TimeDelta::minutes(1)],
        "one event for the stretch"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::JobMaxInstances { .. })),
        "{events:?}"
    );
}
