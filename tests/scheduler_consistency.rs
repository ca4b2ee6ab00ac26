//! The id index and the job table always agree: under concurrent calls on one id, and when a
//! call's future is dropped at any point (a `select!`, a timeout, an aborted task).
mod common;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use apsched::trigger::Interval;
use apsched::{Error, Scheduler, SchedulerState, TestClock, Zone};
use common::*;
use futures::FutureExt;

/// Every job listed can be found, counted and removed by its id, and nothing else can.
async fn assert_consistent(scheduler: &Scheduler) {
    let jobs = scheduler.get_jobs().await.unwrap();
    assert_eq!(
        scheduler.job_count(),
        jobs.len(),
        "job_count disagrees with get_jobs: {jobs:?}"
    );
    let mut ids: Vec<_> = jobs.iter().map(|j| j.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), jobs.len(), "one id listed twice: {jobs:?}");
    for job in &jobs {
        assert_eq!(scheduler.get_job(&job.id).await.unwrap().id, job.id);
    }
}

/// A started scheduler whose channel holds one command, on the test clock.
async fn small_channel() -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(TestClock::new(t0()))
        .timezone(Zone::UTC)
        .channel_capacity(1)
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

/// Fills the one-command channel without yielding, so the next call must wait for room.
async fn fill_channel(scheduler: &Scheduler) {
    scheduler
        .add_job(|| async {}, Interval::hours(1))
        .await
        .unwrap();
}

/// Polls `fut` once and drops it; asserts it was waiting (for room in the channel or for the
/// core's answer), so the drop happens mid-way.
async fn drop_pending<F: std::future::Future>(fut: F) {
    let mut fut = std::pin::pin!(fut);
    assert!(
        matches!(futures::poll!(fut.as_mut()), Poll::Pending),
        "the call should have been waiting"
    );
}

#[test]
fn concurrent_replace_and_remove_on_one_id_leave_no_orphans() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scheduler = Scheduler::builder().timezone(Zone::UTC).build();
        scheduler.start().await.unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let scheduler = scheduler.clone();
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                for i in 0..3000 {
                    // Yield now and then, so the callers interleave on every worker.
                    if i % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                    if worker % 2 == 0 {
                        let runs = Arc::clone(&runs);
                        let added = scheduler
                            .add_job(
                                move || {
                                    runs.fetch_add(1, Ordering::Relaxed);
                                    async {}
                                },
                                Interval::hours(1),
                            )
                            .id("y")
                            .replace_existing(true)
                            .await;
                        assert!(added.is_ok(), "{added:?}");
                    } else {
                        let removed = scheduler.remove_job("y").await;
                        assert!(
                            matches!(removed, Ok(()) | Err(Error::JobNotFound(_))),
                            "{removed:?}"
                        );
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_consistent(&scheduler).await;
        let jobs = scheduler.get_jobs().await.unwrap();
        assert!(jobs.len() <= 1, "{} jobs named y", jobs.len());
        match scheduler.remove_job("y").await {
            Ok(()) => assert_eq!(jobs.len(), 1),
            Err(Error::JobNotFound(_)) => assert!(jobs.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(scheduler.get_jobs().await.unwrap().is_empty());
        assert_eq!(scheduler.job_count(), 0);
        assert_eq!(runs.load(Ordering::Relaxed), 0, "no hourly job ran");
        scheduler.shutdown().await.unwrap();
    });
}

#[tokio::test(start_paused = true)]
async fn an_add_never_polled_or_dropped_while_waiting_adds_nothing() {
    let scheduler = small_channel().await;
    // Built but never polled.
    let never_polled = scheduler
        .add_job(|| async {}, Interval::hours(1))
        .id("x")
        .into_future();
    drop(never_polled);
    assert_eq!(scheduler.job_count(), 0);
    // Dropped while it waits for room in the channel.
    fill_channel(&scheduler).await;
    drop_pending(
        scheduler
            .add_job(|| async {}, Interval::hours(1))
            .id("x")
            .into_future(),
    )
    .await;
    assert_eq!(
        scheduler.get_job("x").await,
        Err(Error::JobNotFound("x".into()))
    );
    // The id is free: adding it again works, exactly once.
    scheduler
        .add_job(|| async {}, Interval::hours(1))
        .id("x")
        .await
        .unwrap();
    assert_eq!(
        scheduler
            .add_job(|| async {}, Interval::hours(1))
            .id("x")
            .await,
        Err(Error::ConflictingId("x".into()))
    );
    assert_consistent(&scheduler).await;
    assert_eq!(scheduler.job_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_remove_dropped_while_waiting_removes_nothing() {
    let scheduler = small_channel().await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .id("x")
        .await
        .unwrap();
    fill_channel(&scheduler).await;
    drop_pending(scheduler.remove_job("x")).await;
    // Still there, still findable and still running on schedule...
    assert_eq!(scheduler.get_job("x").await.unwrap().id, "x");
    advance(Duration::from_secs(61)).await;
    assert_eq!(runs.count(), 1);
    // ...and removable.
    scheduler.remove_job("x").await.unwrap();
    advance(Duration::from_secs(120)).await;
    assert_eq!(runs.count(), 1);
    assert_consistent(&scheduler).await;
}

#[tokio::test(start_paused = true)]
async fn calls_dropped_while_waiting_for_room_change_nothing() {
    let scheduler = small_channel().await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::minutes(1))
        .id("x")
        .await
        .unwrap();
    let before = scheduler.get_job("x").await.unwrap();
    fill_channel(&scheduler).await;
    drop_pending(scheduler.pause_job("x")).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.modify_job("x").name("renamed").into_future()).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.reschedule_job("x", Interval::hours(5))).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.run_job_now("x")).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.remove_all_jobs()).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.pause()).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.shutdown()).await;
    fill_channel(&scheduler).await;
    drop_pending(scheduler.shutdown_timeout(Duration::ZERO)).await;
    assert_eq!(scheduler.get_job("x").await.unwrap(), before);
    assert_eq!(scheduler.state(), SchedulerState::Running);
    assert_consistent(&scheduler).await;
    assert_eq!(scheduler.job_count(), 9);
    advance(Duration::from_secs(30)).await;
    assert_eq!(runs.count(), 0, "the dropped run_job_now ran nothing");
}

#[tokio::test(start_paused = true)]
async fn a_change_dropped_while_waiting_for_its_answer_is_made_whole() {
    let scheduler = small_channel().await;
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("x")
        .await
        .unwrap();
    // A round trip: the channel is empty again, so the next call is sent at once.
    scheduler.get_job("x").await.unwrap();
    // Sent, but the answer is never awaited: the core still pauses the job, entirely.
    drop_pending(scheduler.pause_job("x")).await;
    let job = scheduler.get_job("x").await.unwrap();
    assert!(job.is_paused() && job.next_run_time.is_none(), "{job:?}");
    drop_pending(scheduler.remove_all_jobs()).await;
    assert!(scheduler.get_jobs().await.unwrap().is_empty());
    assert_consistent(&scheduler).await;
}

#[tokio::test(start_paused = true)]
async fn commands_queued_behind_a_shutdown_are_refused() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::hours(1))
        .id("x")
        .await
        .unwrap();
    let (shutdown, run_now) = tokio::join!(scheduler.shutdown(), scheduler.run_job_now("x"));
    shutdown.unwrap();
    assert_eq!(run_now.unwrap_err(), Error::Shutdown);
    assert_eq!(runs.count(), 0, "nothing runs once a shutdown is queued");
}

#[tokio::test(start_paused = true)]
async fn builder_capacities_at_the_limits_never_panic() {
    let scheduler = Scheduler::builder()
        .clock(TestClock::new(t0()))
        .event_capacity(usize::MAX)
        .max_blocking_jobs(usize::MAX)
        .channel_capacity(usize::MAX)
        .build();
    scheduler.start().await.unwrap();
    let runs = Runs::default();
    let mut events = scheduler.subscribe();
    let r = runs.clone();
    scheduler
        .add_job(move || r.record(t0()), Interval::minutes(1))
        .await
        .unwrap();
    advance(Duration::from_secs(61)).await;
    assert_eq!(runs.count(), 1);
    assert!(!drain(&mut events).is_empty());
    scheduler.shutdown().await.unwrap();
}

#[test]
fn a_core_whose_runtime_is_gone_is_closed_not_running() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scheduler = runtime.block_on(async {
        let scheduler = Scheduler::new();
        scheduler.start().await.unwrap();
        scheduler
            .add_job(|| async {}, Interval::hours(1))
            .id("x")
            .await
            .unwrap();
        scheduler
    });
    // The core task is dropped with its runtime, without a shutdown.
    drop(runtime);
    assert_eq!(scheduler.state(), SchedulerState::Closed);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    other.block_on(async {
        assert_eq!(scheduler.get_jobs().await, Err(Error::Closed));
        assert_eq!(scheduler.remove_job("x").await, Err(Error::Closed));
        assert_eq!(
            scheduler.add_job(|| async {}, Interval::hours(1)).await,
            Err(Error::Closed)
        );
        assert_eq!(scheduler.shutdown().await, Err(Error::Closed));
    });
    assert!(
        scheduler.get_jobs().now_or_never().is_some(),
        "answers at once, never hangs"
    );
}
