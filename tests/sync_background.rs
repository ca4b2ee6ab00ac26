//! The background scheduler: jobs run on its thread, every call works from any thread with or
//! without a Tokio runtime, shutdown and drop wait for running jobs and join the thread, and
//! the blocking pool keeps its bound. Ordering is observed through channels and gates, never
//! by sleeping.

mod sync_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::{Cron, Interval, Trigger};
use apsched::{BackgroundScheduler, Error, Event, EventMask, SchedulerState, TestClock, Zone};
use chrono::{TimeZone, Timelike, Utc};
use sync_common::{recv, Gate, ThreadExit};

fn scheduler() -> BackgroundScheduler {
    BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .build()
        .unwrap()
}

#[test]
fn sync_and_async_jobs_run_without_a_runtime() {
    let scheduler = scheduler();
    let (tx, rx) = mpsc::channel();
    let sync_tx = tx.clone();
    scheduler
        .add_job(
            move || sync_tx.send("sync").unwrap(),
            Interval::every(Duration::from_millis(10)),
        )
        .id("sync")
        .add()
        .unwrap();
    scheduler
        .add_job(
            move || {
                let tx = tx.clone();
                async move { tx.send("async").unwrap() }
            },
            Interval::every(Duration::from_millis(10)),
        )
        .id("async")
        .add()
        .unwrap();
    assert_eq!(scheduler.state(), SchedulerState::Stopped);
    scheduler.start().unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        seen.insert(recv(&rx));
    }
    let ids: Vec<String> = scheduler
        .get_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    scheduler.shutdown().unwrap();
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
    assert_eq!(scheduler.shutdown(), Err(Error::Shutdown));
    assert!(matches!(scheduler.get_jobs(), Err(Error::Shutdown)));
}

#[test]
fn pause_resume_and_remove_from_other_threads() {
    let scheduler = scheduler();
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_job(
            move || tx.send(()).unwrap(),
            Interval::every(Duration::from_millis(5)),
        )
        .id("tick")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    recv(&rx);

    let other = scheduler.clone();
    std::thread::spawn(move || {
        let job = other.pause_job("tick").unwrap();
        assert!(job.is_paused() && job.next_run_time.is_none());
        other.pause().unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(scheduler.state(), SchedulerState::Paused);
    assert!(scheduler.get_job("tick").unwrap().is_paused());

    let other = scheduler.clone();
    std::thread::spawn(move || {
        other.resume().unwrap();
        let job = other.resume_job("tick").unwrap().unwrap();
        assert!(!job.is_paused() && job.next_run_time.is_some());
    })
    .join()
    .unwrap();
    // Runs again: drain what ran before the pause, then see a fresh run.
    while rx.try_recv().is_ok() {}
    recv(&rx);

    let mut events = scheduler.events();
    let other = scheduler.clone();
    std::thread::spawn(move || other.remove_job("tick").unwrap())
        .join()
        .unwrap();
    assert!(matches!(
        scheduler.get_job("tick"),
        Err(Error::JobNotFound(_))
    ));
    assert!(events.any(|e| matches!(e, Event::JobRemoved { job_id } if job_id == "tick")));
}

#[test]
fn modify_reschedule_and_remove_all() {
    let scheduler = scheduler();
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("job")
        .add()
        .unwrap();
    let job = scheduler
        .modify_job("job")
        .name("renamed")
        .max_instances(3)
        .apply()
        .unwrap();
    assert_eq!(
        (job.name.as_str(), job.options.max_instances),
        ("renamed", 3)
    );
    let job = scheduler.reschedule_job("job", Interval::days(1)).unwrap();
    assert!(
        matches!(job.trigger, Trigger::Interval(ref i) if i.period() == Duration::from_secs(86_400))
    );
    assert!(matches!(
        scheduler.add_job(|| (), Interval::hours(1)).id("job").add(),
        Err(Error::ConflictingId(_))
    ));
    scheduler.remove_all_jobs().unwrap();
    assert!(scheduler.get_jobs().unwrap().is_empty());
}

#[test]
fn shutdown_waits_for_a_running_sync_job() {
    let scheduler = scheduler();
    let gate = Gate::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let (g, f) = (gate.clone(), finished.clone());
    scheduler
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
                f.store(true, Ordering::SeqCst);
            },
            Interval::hours(1),
        )
        .id("slow")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("slow").unwrap();
    recv(&started_rx);

    let (done_tx, done_rx) = mpsc::channel();
    let other = scheduler.clone();
    let stopper = std::thread::spawn(move || {
        other.shutdown().unwrap();
        // What the job had done by the time shutdown returned.
        done_tx.send(()).unwrap();
    });
    // Shutdown has begun (new calls are refused) but cannot end while the job runs.
    while scheduler.state() != SchedulerState::ShutDown {
        std::thread::yield_now();
    }
    assert!(done_rx.try_recv().is_err());
    gate.open(1);
    recv(&done_rx);
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown returned before the job ended"
    );
    stopper.join().unwrap();
}

#[test]
fn drop_shuts_down_and_joins_the_thread() {
    // On a current-thread runtime async jobs run on the scheduler's own thread, so a
    // thread-local set by a job is destroyed exactly when that thread exits.
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.enable_all();
    let scheduler = BackgroundScheduler::builder()
        .runtime(runtime)
        .build()
        .unwrap();
    let exit = ThreadExit::new();
    let (tx, rx) = mpsc::channel();
    let e = exit.clone();
    scheduler
        .add_job(
            move || {
                e.arm();
                let tx = tx.clone();
                async move { tx.send(()).unwrap() }
            },
            Interval::hours(1),
        )
        .id("mark")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("mark").unwrap();
    recv(&rx);
    assert!(!exit.exited());
    drop(scheduler);
    assert!(
        exit.exited(),
        "drop returned before the scheduler thread ended"
    );
}

#[test]
fn drop_waits_for_a_running_sync_job() {
    let scheduler = scheduler();
    let finished = Arc::new(AtomicBool::new(false));
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let (g, f) = (gate.clone(), finished.clone());
    scheduler
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
                f.store(true, Ordering::SeqCst);
            },
            Interval::hours(1),
        )
        .id("slow")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("slow").unwrap();
    recv(&started_rx);
    gate.open(1);
    drop(scheduler);
    assert!(finished.load(Ordering::SeqCst));
}

#[test]
fn a_slow_sync_job_does_not_delay_other_jobs() {
    let scheduler = scheduler();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    scheduler
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
            },
            Interval::hours(1),
        )
        .id("slow")
        .add()
        .unwrap();
    let (tick_tx, tick_rx) = mpsc::channel();
    scheduler
        .add_job(
            move || tick_tx.send(()).unwrap(),
            Interval::every(Duration::from_millis(5)),
        )
        .id("fast")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("slow").unwrap();
    recv(&started_rx);
    // The slow job holds its thread until the gate opens; the fast one keeps running.
    for _ in 0..5 {
        recv(&tick_rx);
    }
    // And max_instances (1) applies to the sync job: a second run is skipped, not queued.
    let mut events = scheduler.events();
    scheduler.run_job_now("slow").unwrap();
    assert!(events.any(|e| matches!(e, Event::JobMaxInstances { job_id, .. } if job_id == "slow")));
    gate.open(1);
    scheduler.shutdown().unwrap();
}

#[test]
fn the_pool_bound_holds() {
    const POOL: usize = 10;
    let scheduler = BackgroundScheduler::builder()
        .max_blocking_jobs(POOL)
        .build()
        .unwrap();
    let gate = Gate::new();
    let running = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    for i in 0..=POOL {
        let (g, r, tx) = (gate.clone(), running.clone(), started_tx.clone());
        scheduler
            .add_job(
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    tx.send(i).unwrap();
                    g.pass();
                    r.fetch_sub(1, Ordering::SeqCst);
                },
                Interval::hours(1),
            )
            .id(format!("job-{i}"))
            .add()
            .unwrap();
    }
    let mut events = scheduler.events();
    scheduler.start().unwrap();
    for i in 0..=POOL {
        scheduler.run_job_now(&format!("job-{i}")).unwrap();
    }
    // All eleven runs were submitted...
    let submitted = events
        .by_ref()
        .filter(|e| matches!(e, Event::JobSubmitted { .. }))
        .take(POOL + 1)
        .count();
    assert_eq!(submitted, POOL + 1);
    // ...ten hold the pool, and the eleventh waits for a thread.
    for _ in 0..POOL {
        recv(&started_rx);
    }
    assert_eq!(running.load(Ordering::SeqCst), POOL);
    assert!(started_rx.try_recv().is_err());
    // One finishes: the eleventh gets its thread.
    gate.open(1);
    recv(&started_rx);
    assert!(running.load(Ordering::SeqCst) <= POOL);
    gate.open(POOL);
    scheduler.shutdown().unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

#[test]
fn listeners_get_masked_events_on_their_own_thread() {
    let scheduler = scheduler();
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_listener(EventMask::JOB_EXECUTED | EventMask::JOB_ERROR, move |e| {
            tx.send((e.clone(), std::thread::current().name().map(String::from)))
                .unwrap();
        })
        .unwrap();
    scheduler
        .add_job(|| Err::<(), _>("boom"), Interval::hours(1))
        .id("fails")
        .add()
        .unwrap();
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("works")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("fails").unwrap();
    let (event, thread) = recv(&rx);
    assert!(matches!(event, Event::JobError { ref message, .. } if message == "boom"));
    assert_eq!(thread.as_deref(), Some("apsched-listener"));
    scheduler.run_job_now("works").unwrap();
    assert!(matches!(recv(&rx).0, Event::JobExecuted { .. }));
    scheduler.shutdown().unwrap();
    // Nothing else matched the mask (not even SchedulerShutdown), and the thread was joined.
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_job_can_shut_the_scheduler_down() {
    let scheduler = scheduler();
    let handle = scheduler.clone();
    scheduler
        .add_job(move || handle.shutdown().unwrap(), Interval::hours(1))
        .id("stop")
        .add()
        .unwrap();
    let events = scheduler.events();
    scheduler.start().unwrap();
    scheduler.run_job_now("stop").unwrap();
    let last = events.last();
    assert_eq!(last, Some(Event::SchedulerShutdown));
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
}

#[tokio::test(flavor = "multi_thread")]
async fn usable_inside_a_multi_thread_runtime() {
    let scheduler = scheduler();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    scheduler
        .add_job(
            move || tx.send(()).unwrap(),
            Interval::every(Duration::from_millis(5)),
        )
        .id("tick")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    rx.recv().await.unwrap();
    scheduler.pause_job("tick").unwrap();
    assert_eq!(scheduler.get_jobs().unwrap().len(), 1);
    // The async handle of the same scheduler awaits instead of blocking.
    assert!(scheduler
        .scheduler()
        .get_job("tick")
        .await
        .unwrap()
        .is_paused());
    drop(scheduler); // shuts down and joins from inside a runtime, without a panic
}

#[tokio::test(flavor = "current_thread")]
async fn usable_inside_a_current_thread_runtime() {
    let scheduler = scheduler();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    scheduler
        .add_job(
            move || {
                let tx = tx.clone();
                async move { tx.send(()).unwrap() }
            },
            Interval::every(Duration::from_millis(5)),
        )
        .add()
        .unwrap();
    scheduler.start().unwrap();
    rx.recv().await.unwrap();
    scheduler.shutdown().unwrap();
}

#[test]
fn days_of_cron_in_milliseconds_on_a_paused_runtime() {
    // A test clock follows the scheduler runtime's clock; started paused, that runtime jumps to
    // each next timer whenever it is idle, so midnight comes at once.
    let clock = TestClock::new(Utc.with_ymd_and_hms(2024, 1, 1, 0, 30, 0).unwrap());
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.start_paused(true);
    let scheduler = BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .clock(clock.clone())
        .runtime(runtime)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_job(move || tx.send(clock.now()).unwrap(), Cron::new().hour("0"))
        .add()
        .unwrap();
    scheduler.start().unwrap();
    let first = recv(&rx);
    assert_eq!((first.hour(), first.minute()), (0, 0), "{first}");
    for day in 1..=3 {
        let at = recv(&rx);
        assert_eq!(
            at.date_naive(),
            first.date_naive() + chrono::Days::new(day),
            "{at}"
        );
        assert_eq!((at.hour(), at.minute()), (0, 0), "{at}");
    }
    scheduler.shutdown().unwrap();
}

#[test]
fn async_jobs_can_call_the_blocking_methods() {
    // An async job runs on a worker of the scheduler's own runtime; the call moves that
    // worker's other tasks (the core among them, maybe) away before it blocks.
    let scheduler = scheduler();
    let handle = scheduler.clone();
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_job(
            move || {
                let (handle, tx) = (handle.clone(), tx.clone());
                async move {
                    let jobs = handle.get_jobs().unwrap();
                    handle.pause_job("self").unwrap();
                    tx.send(jobs.len()).unwrap();
                }
            },
            Interval::hours(1),
        )
        .id("self")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("self").unwrap();
    assert_eq!(recv(&rx), 1);
    assert!(scheduler.get_job("self").unwrap().is_paused());
    // The job holds a handle: shut down explicitly to break the cycle.
    scheduler.shutdown().unwrap();
}
