//! Start, shutdown (graceful and with a timeout), calls after shutdown, dropped handles.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::{Date, Interval};
use apsched::{Error, Event, JobContext, Scheduler, SchedulerState};
use chrono::TimeDelta;
use common::*;

/// A job that takes `span` and then sets `done`.
fn slow(
    span: Duration,
    done: &Arc<AtomicBool>,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync + 'static
{
    let done = done.clone();
    move || {
        let done = done.clone();
        Box::pin(async move {
            tokio::time::sleep(span).await;
            done.store(true, Ordering::SeqCst);
        })
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_running_job() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let done = Arc::new(AtomicBool::new(false));
    scheduler
        .add_job(
            slow(Duration::from_secs(300), &done),
            Date::at(t0() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(2)).await; // the run is under way
    assert!(!done.load(Ordering::SeqCst));
    scheduler.shutdown().await.unwrap();
    assert!(
        done.load(Ordering::SeqCst),
        "shutdown returned before the job finished"
    );
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
    let events = drain(&mut events);
    assert!(
        matches!(events.iter().rev().nth(1), Some(Event::JobExecuted { .. })),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&Event::SchedulerShutdown));
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_cancels_what_still_runs() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let done = Arc::new(AtomicBool::new(false));
    let noticed = Arc::new(AtomicBool::new(false));
    let n = noticed.clone();
    scheduler
        .add_job(
            slow(Duration::from_secs(3600), &done),
            Date::at(t0() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    // A cooperative job sees the cancellation through its context.
    scheduler
        .add_job(
            move |ctx: JobContext| {
                let n = n.clone();
                async move {
                    ctx.cancellation_token().cancelled().await;
                    n.store(true, Ordering::SeqCst);
                }
            },
            Date::at(t0() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(2)).await;
    let started = tokio::time::Instant::now();
    scheduler
        .shutdown_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(
        !done.load(Ordering::SeqCst),
        "the slow job was cancelled, not finished"
    );
    let errors: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            Event::JobError { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    // The uncooperative run is reported cancelled; the cooperative one ended cleanly.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cancelled"));
    assert!(noticed.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn every_call_after_shutdown_is_refused() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .await
        .unwrap();
    let other_handle = scheduler.clone();
    scheduler.shutdown().await.unwrap();
    let s = &other_handle;
    assert_eq!(
        s.add_job(|| async {}, Interval::minutes(1)).await,
        Err(Error::Shutdown)
    );
    assert_eq!(s.get_job(&job.id).await, Err(Error::Shutdown));
    assert_eq!(s.get_jobs().await, Err(Error::Shutdown));
    assert_eq!(s.pause_job(&job.id).await, Err(Error::Shutdown));
    assert_eq!(s.resume_job(&job.id).await, Err(Error::Shutdown));
    assert_eq!(s.remove_job(&job.id).await, Err(Error::Shutdown));
    assert_eq!(s.remove_all_jobs().await, Err(Error::Shutdown));
    assert_eq!(s.run_job_now(&job.id).await.unwrap_err(), Error::Shutdown);
    assert_eq!(s.modify_job(&job.id).name("x").await, Err(Error::Shutdown));
    assert_eq!(
        s.reschedule_job(&job.id, Interval::hours(1)).await,
        Err(Error::Shutdown)
    );
    assert_eq!(s.start().await, Err(Error::Shutdown));
    assert_eq!(s.pause().await, Err(Error::Shutdown));
    assert_eq!(s.resume().await, Err(Error::Shutdown));
    assert_eq!(s.shutdown().await, Err(Error::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_core_after_running_jobs() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let done = Arc::new(AtomicBool::new(false));
    scheduler
        .add_job(
            slow(Duration::from_secs(30), &done),
            Date::at(t0() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(2)).await;
    drop(scheduler);
    // The stream ends with the shutdown event once the running job is done.
    let mut last = None;
    while let Some(event) = events.recv().await {
        last = Some(event);
    }
    assert_eq!(last, Some(Event::SchedulerShutdown));
    assert!(done.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn start_paused_schedules_but_runs_nothing_until_resumed() {
    let clock = apsched::TestClock::new(t0());
    let scheduler = Scheduler::builder().clock(clock).build();
    let runs = Runs::default();
    let r = runs.clone();
    scheduler
        .add_job(
            move || {
                r.record(t0());
                async {}
            },
            Interval::minutes(1),
        )
        .await
        .unwrap();
    scheduler.start_paused().await.unwrap();
    assert_eq!(scheduler.state(), SchedulerState::Paused);
    advance(Duration::from_secs(300)).await;
    assert_eq!(runs.count(), 0);
    scheduler.resume().await.unwrap();
    advance(Duration::from_secs(61)).await;
    // Missed runs before 00:05 are past their 1 s grace; 00:05 (due at resume) and 00:06 run.
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn endless_spans_are_accepted_without_panicking() {
    let scheduler = Scheduler::builder()
        .clock(apsched::TestClock::new(t0()))
        .max_sleep(Duration::MAX)
        .build();
    scheduler.start().await.unwrap();
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(121)).await;
    assert_eq!(runs.count(), 2);
    scheduler.shutdown_timeout(Duration::MAX).await.unwrap();
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
}

#[test]
fn shutdown_timeout_returns_at_its_deadline_whatever_the_jobs_do() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop_spinning = Arc::new(AtomicBool::new(false));
    let (abandoned, elapsed) = runtime.block_on(async {
        let scheduler = Scheduler::builder().timezone(apsched::Zone::UTC).build();
        scheduler.start().await.unwrap();
        let mut events = scheduler.subscribe();
        let stop = Arc::clone(&stop_spinning);
        // An async job that never reaches an await: cancelling its token cannot stop it.
        let job = scheduler
            .add_job(
                move || {
                    let stop = Arc::clone(&stop);
                    async move {
                        while !stop.load(Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    }
                },
                Interval::hours(1),
            )
            .id("spinner")
            .await
            .unwrap();
        scheduler.run_job_now(&job.id).await.unwrap();
        // Bounded: the run has started once its event arrives.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(events.recv().await, Some(Event::JobSubmitted { .. })) {}
        })
        .await
        .expect("the run starts");
        let started = std::time::Instant::now();
        let abandoned = tokio::time::timeout(
            Duration::from_secs(10),
            scheduler.shutdown_timeout(Duration::from_millis(200)),
        )
        .await
        .expect("shutdown_timeout is a bound")
        .unwrap();
        (abandoned, started.elapsed())
    });
    stop_spinning.store(true, Ordering::Relaxed);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0].job_id, "spinner");
}

#[tokio::test(start_paused = true)]
async fn a_job_that_shuts_its_own_scheduler_down_does_not_wait_for_itself() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    scheduler
        .add_job(
            move |ctx: JobContext| {
                let d = d.clone();
                async move {
                    let own = ctx.scheduler().expect("alive");
                    own.shutdown().await.expect("shutdown begins");
                    // Asked, not waited for: the job itself goes on to its end.
                    d.store(true, Ordering::SeqCst);
                }
            },
            Date::at(t0() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = events.recv().await {
            if event == Event::SchedulerShutdown {
                return true;
            }
        }
        false
    })
    .await
    .expect("the scheduler shuts down instead of deadlocking");
    assert!(ended);
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
}
