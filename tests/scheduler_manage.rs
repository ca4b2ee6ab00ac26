//! Job management calls change exactly what they say, and bad input changes nothing.
mod common;

use std::time::Duration;

use apsched::trigger::{Cron, Date, Interval};
use apsched::{Error, Event, JobContext, MisfireGrace, Scheduler};
use chrono::TimeDelta;
use common::*;

fn counter(runs: &Runs) -> impl Fn() -> std::future::Ready<()> + Send + Sync + 'static {
    let runs = runs.clone();
    move || {
        runs.record(t0());
        std::future::ready(())
    }
}

async fn job_ids(scheduler: &Scheduler) -> Vec<String> {
    let mut ids: Vec<String> = scheduler
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn get_jobs_lists_next_run_times_soonest_first() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(|| async {}, Interval::hours(2))
        .id("b")
        .await
        .unwrap();
    scheduler
        .add_job(|| async {}, Interval::minutes(5))
        .id("a")
        .await
        .unwrap();
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("c")
        .paused()
        .await
        .unwrap();
    let jobs = scheduler.get_jobs().await.unwrap();
    let listed: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.id.to_string(),
                j.next_run_time.map(|t| t.with_timezone(&chrono::Utc)),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a".to_string(), Some(t0() + TimeDelta::minutes(5))),
            ("b".to_string(), Some(t0() + TimeDelta::hours(2))),
            ("c".to_string(), None),
        ]
    );
    assert!(jobs[2].is_paused());
    // A closure job without a name is known by its id.
    assert_eq!(
        jobs[0].to_string(),
        "a (trigger: every 5 minutes, next run at: 2024-01-01 00:05:00 UTC)"
    );
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_a_job() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let job = scheduler
        .add_job(counter(&runs), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(150)).await; // runs at 1 and 2 min
    assert_eq!(runs.count(), 2);

    let paused = scheduler.pause_job(&job.id).await.unwrap();
    assert!(paused.is_paused());
    assert_eq!(paused.next_run_time, None);
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs.count(), 2, "a paused job does not run");

    let resumed = scheduler.resume_job(&job.id).await.unwrap().unwrap();
    assert!(!resumed.is_paused());
    // Now is 00:12:30; the anchored series gives 00:13:00.
    assert_eq!(
        resumed.next_run_time.unwrap(),
        t0() + TimeDelta::minutes(13)
    );
    advance(Duration::from_secs(60)).await;
    assert_eq!(runs.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_the_scheduler() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    scheduler
        .add_job(counter(&runs), Interval::minutes(1))
        .misfire_grace_time(MisfireGrace::Unlimited)
        .await
        .unwrap();
    scheduler.pause().await.unwrap();
    assert_eq!(scheduler.state(), apsched::SchedulerState::Paused);
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs.count(), 0);
    scheduler.resume().await.unwrap();
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        runs.count(),
        1,
        "ten missed runs coalesce into one on resume"
    );
    let events = drain(&mut events);
    assert!(events.contains(&Event::SchedulerPaused));
    assert!(events.contains(&Event::SchedulerResumed));
}

#[tokio::test(start_paused = true)]
async fn remove_job_stops_it_and_forgets_it() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let runs = Runs::default();
    let job = scheduler
        .add_job(counter(&runs), Interval::minutes(1))
        .await
        .unwrap();
    let other = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(61)).await;
    scheduler.remove_job(&job.id).await.unwrap();
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs.count(), 1);
    assert_eq!(job_ids(&scheduler).await, vec![other.id.to_string()]);
    assert_eq!(
        scheduler.remove_job(&job.id).await,
        Err(Error::JobNotFound(job.id.to_string()))
    );
    assert!(drain(&mut events).contains(&Event::JobRemoved {
        job_id: job.id.clone()
    }));

    scheduler.remove_all_jobs().await.unwrap();
    assert!(scheduler.get_jobs().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn reschedule_gives_a_new_trigger_from_now() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let job = scheduler
        .add_job(counter(&runs), Interval::hours(1))
        .await
        .unwrap();
    advance(Duration::from_secs(600)).await;
    let job = scheduler
        .reschedule_job(&job.id, Interval::minutes(1))
        .await
        .unwrap();
    assert_eq!(job.next_run_time.unwrap(), t0() + TimeDelta::minutes(11));
    advance(Duration::from_secs(5 * 60 + 1)).await;
    assert_eq!(runs.count(), 5);
}

#[tokio::test(start_paused = true)]
async fn modify_job_changes_name_and_options_only() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .await
        .unwrap();
    let modified = scheduler
        .modify_job(&job.id)
        .name("renamed")
        .max_instances(3)
        .coalesce(false)
        .misfire_grace_time(MisfireGrace::Unlimited)
        .await
        .unwrap();
    assert_eq!(modified.name, "renamed");
    assert_eq!(modified.options.max_instances, 3);
    assert!(!modified.options.coalesce);
    assert_eq!(modified.options.misfire_grace_time, MisfireGrace::Unlimited);
    assert_eq!(modified.next_run_time, job.next_run_time);
    assert_eq!(modified.trigger, job.trigger);
    assert_eq!(scheduler.get_job(&job.id).await.unwrap(), modified);
}

#[tokio::test(start_paused = true)]
async fn run_job_now_adds_one_run_and_keeps_the_schedule() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let job = scheduler
        .add_job(counter(&runs), Interval::hours(1))
        .await
        .unwrap();
    scheduler.run_job_now(&job.id).await.unwrap();
    advance(Duration::from_millis(1)).await;
    assert_eq!(runs.count(), 1);
    let after = scheduler.get_job(&job.id).await.unwrap();
    assert_eq!(after.next_run_time, job.next_run_time);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_job_can_manage_jobs_from_inside_its_run() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    let child_runs = runs.clone();
    scheduler
        .add_job(
            move |ctx: JobContext| {
                let child_runs = child_runs.clone();
                async move {
                    let scheduler = ctx.scheduler().expect("scheduler alive");
                    let child = scheduler
                        .add_job(counter(&child_runs), Interval::minutes(1))
                        .id("child")
                        .await?;
                    scheduler.modify_job(&child.id).name("spawned").await?;
                    scheduler.pause_job(ctx.job_id()).await?;
                    scheduler.get_jobs().await?;
                    Ok::<(), apsched::Error>(())
                }
            },
            Date::at(t0() + TimeDelta::seconds(10)),
        )
        .id("parent")
        .await
        .unwrap();
    advance(Duration::from_secs(10 + 181)).await;
    assert_eq!(runs.count(), 3);
    assert_eq!(scheduler.get_job("child").await.unwrap().name, "spawned");
}

#[tokio::test(start_paused = true)]
async fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("keep")
        .await
        .unwrap();
    let before = scheduler.get_jobs().await.unwrap();

    // Duplicate id.
    let dup = scheduler
        .add_job(|| async {}, Interval::hours(1))
        .id("keep")
        .await;
    assert_eq!(dup, Err(Error::ConflictingId("keep".into())));
    // Invalid cron expression.
    let bad = Cron::parse("61 * * * *");
    assert!(
        matches!(bad, Err(Error::InvalidCronField { .. })),
        "{bad:?}"
    );
    // Invalid cron field in the builder: the error surfaces when the job is added.
    let bad = scheduler
        .add_job(|| async {}, Cron::new().hour("25"))
        .id("x")
        .await;
    match bad {
        Err(Error::InvalidCronField { field, value, .. }) => {
            assert!(field == "hour" || field == "expression", "{field}");
            assert!(value.contains("25"), "{value}");
        }
        other => panic!("expected InvalidCronField, got {other:?}"),
    }
    // Unknown time zone.
    assert_eq!(
        apsched::Zone::parse("Mars/Base"),
        Err(Error::UnknownTimeZone("Mars/Base".into()))
    );
    // Steps past their field's range, and intervals the timer cannot keep.
    for field in [
        Cron::new().minute("1/4294967295"),
        Cron::new().year("1970/4294967295").week("1"),
    ] {
        let bad = scheduler.add_job(|| async {}, field).await;
        assert!(
            matches!(bad, Err(Error::InvalidCronField { .. })),
            "{bad:?}"
        );
    }
    let tiny = scheduler
        .add_job(|| async {}, Interval::every(Duration::from_nanos(1)))
        .await;
    assert!(
        matches!(
            tiny,
            Err(Error::InvalidTrigger {
                field: "interval",
                ..
            })
        ),
        "{tiny:?}"
    );
    // A pattern whose years are all past says so (not "its end bound is in the past").
    match scheduler
        .add_job(|| async {}, Cron::parse("0 0 0 1 1 * 2000").unwrap())
        .await
    {
        Err(Error::TriggerNeverFires { reason, .. }) => {
            assert!(reason.contains("year"), "{reason}");
            assert!(!reason.contains("end bound"), "{reason}");
        }
        other => panic!("expected TriggerNeverFires, got {other:?}"),
    }
    // Zero interval, a trigger already over, zero max_instances, empty id.
    let zero = scheduler.add_job(|| async {}, Interval::seconds(0)).await;
    assert!(
        matches!(
            zero,
            Err(Error::InvalidTrigger {
                field: "interval",
                ..
            })
        ),
        "{zero:?}"
    );
    let over = scheduler
        .add_job(
            || async {},
            Interval::minutes(1)
                .start(t0() - TimeDelta::days(2))
                .end(t0() - TimeDelta::days(1)),
        )
        .await;
    assert!(
        matches!(over, Err(Error::TriggerNeverFires { .. })),
        "{over:?}"
    );
    let none = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .max_instances(0)
        .await;
    assert!(matches!(
        none,
        Err(Error::InvalidOption {
            option: "max_instances",
            ..
        })
    ));
    let empty = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("")
        .await;
    assert!(matches!(
        empty,
        Err(Error::InvalidOption { option: "id", .. })
    ));
    // Unknown job ids.
    let missing = || Error::JobNotFound("nope".into());
    assert_eq!(scheduler.get_job("nope").await, Err(missing()));
    assert_eq!(scheduler.pause_job("nope").await, Err(missing()));
    assert_eq!(scheduler.resume_job("nope").await, Err(missing()));
    assert_eq!(scheduler.remove_job("nope").await, Err(missing()));
    assert_eq!(scheduler.run_job_now("nope").await.unwrap_err(), missing());
    assert_eq!(scheduler.modify_job("nope").name("n").await, Err(missing()));
    assert_eq!(
        scheduler.reschedule_job("nope", Interval::hours(1)).await,
        Err(missing())
    );
    // An invalid new trigger leaves the job as it was.
    let bad = scheduler.reschedule_job("keep", Interval::seconds(0)).await;
    assert!(matches!(bad, Err(Error::InvalidTrigger { .. })));
    let bad = scheduler.modify_job("keep").max_instances(0).await;
    assert!(matches!(bad, Err(Error::InvalidOption { .. })));
    // Starting twice.
    assert!(matches!(
        scheduler.start().await,
        Err(Error::InvalidState { .. })
    ));

    assert_eq!(scheduler.get_jobs().await.unwrap(), before);
}

#[tokio::test(start_paused = true)]
async fn replace_existing_swaps_the_job() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let old_runs = Runs::default();
    let new_runs = Runs::default();
    scheduler
        .add_job(counter(&old_runs), Interval::minutes(1))
        .id("j")
        .await
        .unwrap();
    let job = scheduler
        .add_job(counter(&new_runs), Interval::minutes(2))
        .id("j")
        .replace_existing(true)
        .await
        .unwrap();
    assert_eq!(job.next_run_time.unwrap(), t0() + TimeDelta::minutes(2));
    advance(Duration::from_secs(601)).await;
    assert_eq!((old_runs.count(), new_runs.count()), (0, 5));
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), 1);
}
