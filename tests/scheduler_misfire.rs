//! Misfire rules (APScheduler's): max_instances, misfire_grace_time, coalesce; failing jobs.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Interval;
use apsched::{Event, MisfireGrace};
use chrono::TimeDelta;
use common::*;

#[tokio::test(start_paused = true)]
async fn max_instances_skips_runs_while_a_slow_one_goes_on() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let job = scheduler
        .add_job(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                // Each run takes 150 s: two later fire times fall while it runs.
                tokio::time::sleep(Duration::from_secs(150))
            },
            Interval::minutes(1),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(60 * 6 + 1)).await;
    // Runs start at 1, 4 (2 and 3 skipped while the first runs to 3:30), 7 would be next.
    let events = drain(&mut events);
    let skipped: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::JobMaxInstances {
                job_id,
                scheduled_run_time,
            } if *job_id == job.id => Some(*scheduled_run_time),
            _ => None,
        })
        .collect();
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(
        skipped,
        vec![
            t0() + TimeDelta::minutes(2),
            t0() + TimeDelta::minutes(3),
            t0() + TimeDelta::minutes(5),
            t0() + TimeDelta::minutes(6)
        ]
    );
    // Still scheduled: the schedule moved on.
    let next = scheduler
        .get_job(&job.id)
        .await
        .unwrap()
        .next_run_time
        .unwrap();
    assert_eq!(next, t0() + TimeDelta::minutes(7));
}

#[tokio::test(start_paused = true)]
async fn max_instances_two_allows_overlap() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    scheduler
        .add_job(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(90))
            },
            Interval::minutes(1),
        )
        .max_instances(2)
        .await
        .unwrap();
    advance(Duration::from_secs(60 * 4 + 1)).await;
    assert_eq!(started.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_run_later_than_the_grace_time_is_missed() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    let job = scheduler
        .add_job(record_scheduled(&runs), Interval::minutes(10))
        .misfire_grace_time(Duration::from_secs(30))
        .coalesce(false)
        .await
        .unwrap();
    // Starve the core: the clock moves 10 min 45 s before it gets to run again.
    tokio::time::advance(Duration::from_secs(645)).await;
    advance(Duration::from_millis(1)).await;
    assert_eq!(runs.count(), 0, "45 s late with 30 s grace: skipped");
    let events = drain(&mut events);
    assert!(events.contains(&Event::JobMissed {
        job_id: job.id.clone(),
        scheduled_run_time: t0() + TimeDelta::minutes(10),
    }));
    // The schedule goes on at the regular times.
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs.times(), vec![t0() + TimeDelta::minutes(20)]);
}

#[tokio::test(start_paused = true)]
async fn within_the_grace_time_every_missed_run_runs_without_coalesce() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    scheduler
        .add_job(record_scheduled(&runs), Interval::minutes(1))
        .misfire_grace_time(Duration::from_secs(600))
        .coalesce(false)
        .max_instances(10)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(5 * 60 + 30)).await;
    advance(Duration::from_millis(1)).await;
    let expected: Vec<_> = (1..=5).map(|m| t0() + TimeDelta::minutes(m)).collect();
    assert_eq!(runs.times(), expected);
}

#[tokio::test(start_paused = true)]
async fn coalesce_runs_once_after_an_hour_of_starvation() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let job = scheduler
        .add_job(record_scheduled(&runs), Interval::minutes(1))
        .misfire_grace_time(MisfireGrace::Unlimited)
        .await
        .unwrap();
    // The core gets no chance to run for an hour (sixty fire times pass).
    tokio::time::advance(Duration::from_secs(3600 + 30)).await;
    advance(Duration::from_millis(1)).await;
    // One run, not sixty, standing for the latest missed fire time.
    assert_eq!(runs.times(), vec![t0() + TimeDelta::minutes(60)]);
    let next = scheduler
        .get_job(&job.id)
        .await
        .unwrap()
        .next_run_time
        .unwrap();
    assert_eq!(next, t0() + TimeDelta::minutes(61));
}

#[tokio::test(start_paused = true)]
async fn failing_and_panicking_jobs_report_errors_and_others_keep_firing() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    let panicking = scheduler
        .add_job(|| async { explode("sensor on fire") }, Interval::minutes(1))
        .await
        .unwrap();
    let failing = scheduler
        .add_job(
            || async { Err::<(), _>(std::io::Error::other("disk full")) },
            Interval::minutes(1),
        )
        .await
        .unwrap();
    let blocking_panic = scheduler
        .add_job(|| explode("blocking boom"), Interval::minutes(1))
        .await
        .unwrap();
    scheduler
        .add_job(record_scheduled(&runs), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(3 * 60 + 1)).await;
    assert_eq!(runs.count(), 3, "the healthy job kept firing");

    let events = drain(&mut events);
    let errors = |id: &apsched::JobId| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::JobError {
                    job_id, message, ..
                } if job_id == id => Some(message.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let panics = errors(&panicking.id);
    assert_eq!(panics.len(), 3);
    assert!(panics[0].contains("sensor on fire"), "{}", panics[0]);
    assert_eq!(errors(&failing.id), vec!["disk full"; 3]);
    assert!(errors(&blocking_panic.id)[0].contains("blocking boom"));
    // The failing jobs stay scheduled.
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn executed_events_carry_the_run_duration() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let job = scheduler
        .add_job(
            || tokio::time::sleep(Duration::from_secs(7)),
            Interval::minutes(1),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(68)).await;
    let events = drain(&mut events);
    let submitted = Event::JobSubmitted {
        job_id: job.id.clone(),
        scheduled_run_time: t0() + TimeDelta::minutes(1),
    };
    let executed = Event::JobExecuted {
        job_id: job.id.clone(),
        scheduled_run_time: t0() + TimeDelta::minutes(1),
        duration: Duration::from_secs(7),
    };
    let pos = |e: &Event| events.iter().position(|x| x == e);
    assert!(
        pos(&submitted).unwrap() < pos(&executed).unwrap(),
        "{events:?}"
    );
}

fn explode(what: &str) {
    panic!("{what}")
}
