//! The background scheduler: jobs run on its thread, every call works from any thread with or
//! without a Tokio runtime, shutdown and drop wait for running jobs and join the thread,
//! `shutdown_timeout` is a bound, listeners can be removed, and the blocking pool keeps its
//! bound. Ordering is observed through channels and gates, never by sleeping: tests with time
//! in them run on a paused runtime with a `TestClock`, and every wait is bounded.

mod sync_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::trigger::{Cron, Date, Interval, Trigger};
use apsched::{BackgroundScheduler, Error, Event, EventMask, SchedulerState, TestClock, Zone};
use chrono::{TimeDelta, Timelike};
use sync_common::{
    bounded, event_channel, executed, paused_runtime, recv, start_time, wait_for, wait_until,
    DropFlag, Gate, HeldClock, ThreadExit,
};

/// A scheduler on the default runtime and the system clock, for tests with no time in them
/// (jobs run by `run_job_now`).
fn scheduler() -> BackgroundScheduler {
    BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .build()
        .unwrap()
}

/// A scheduler on a paused runtime with a `TestClock`, and that clock held still.
fn paused() -> (BackgroundScheduler, HeldClock) {
    let scheduler = BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .clock(TestClock::new(start_time()))
        .runtime(paused_runtime())
        .build()
        .unwrap();
    let clock = HeldClock::new(scheduler.runtime_handle());
    (scheduler, clock)
}

#[test]
fn sync_and_async_jobs_run_without_a_runtime() {
    let (scheduler, clock) = paused();
    let (tx, rx) = mpsc::channel();
    let sync_tx = tx.clone();
    scheduler
        .add_job(move || sync_tx.send("sync").unwrap(), Interval::seconds(10))
        .id("sync")
        .add()
        .unwrap();
    scheduler
        .add_job(
            move || {
                let tx = tx.clone();
                async move { tx.send("async").unwrap() }
            },
            Interval::seconds(10),
        )
        .id("async")
        .add()
        .unwrap();
    assert_eq!(scheduler.state(), SchedulerState::Stopped);
    assert_eq!(
        format!("{scheduler:?}"),
        "BackgroundScheduler { state: Stopped, .. }"
    );
    let events = event_channel(&scheduler);
    scheduler.start().unwrap();
    for round in 1..=2 {
        clock.advance(Duration::from_secs(10));
        let mut seen = [recv(&rx), recv(&rx)];
        seen.sort_unstable();
        assert_eq!(seen, ["async", "sync"], "round {round}");
        executed(&events, &["async", "sync"]);
    }
    // Nothing more is due before the clock moves on.
    assert!(rx.try_recv().is_err());
    let mut ids: Vec<String> = scheduler
        .get_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["async", "sync"]);
    drop(clock);
    scheduler.shutdown().unwrap();
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
    assert_eq!(scheduler.shutdown(), Err(Error::Shutdown));
    assert_eq!(
        scheduler.shutdown_timeout(Duration::ZERO),
        Err(Error::Shutdown)
    );
    assert!(matches!(scheduler.get_jobs(), Err(Error::Shutdown)));
}

#[test]
fn add_job_reads_the_schedulers_clock_not_the_callers() {
    let (scheduler, clock) = paused();
    // A day on the scheduler's clock; the caller's (real) clock has not moved.
    clock.advance(Duration::from_secs(86_400));
    let now = scheduler.now();
    assert!(now >= start_time() + TimeDelta::days(1), "{now}");
    let job = scheduler
        .add_job(|| (), Interval::hours(1))
        .id("hourly")
        .add()
        .unwrap();
    assert_eq!(
        job.next_run_time.map(|at| at.with_timezone(&chrono::Utc)),
        Some(now + TimeDelta::hours(1))
    );
    // The preview reads the scheduler's clock too.
    let preview = scheduler.preview_job("hourly", 2).unwrap();
    assert_eq!(
        preview[0].with_timezone(&chrono::Utc),
        now + TimeDelta::hours(1)
    );
    assert_eq!(preview[1] - preview[0], TimeDelta::hours(1));
    drop(clock);
}

#[test]
fn pause_resume_and_remove_from_other_threads() {
    let (scheduler, clock) = paused();
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_job(move || tx.send(()).unwrap(), Interval::seconds(5))
        .id("tick")
        .add()
        .unwrap();
    let events = event_channel(&scheduler);
    scheduler.start().unwrap();
    clock.advance(Duration::from_secs(5));
    recv(&rx);
    executed(&events, &["tick"]);

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
    assert!(scheduler.preview_job("tick", 3).unwrap().is_empty());
    // Paused: time passes (past eleven fire times, not onto a twelfth), and the job does
    // not run.
    clock.advance(Duration::from_secs(57));

    let other = scheduler.clone();
    std::thread::spawn(move || {
        other.resume().unwrap();
        let job = other.resume_job("tick").unwrap().unwrap();
        assert!(!job.is_paused() && job.next_run_time.is_some());
    })
    .join()
    .unwrap();
    // Its next run is the first fire time after now, 3 s away.
    assert!(rx.try_recv().is_err(), "the job ran while paused");
    clock.advance(Duration::from_secs(3));
    recv(&rx);

    let other = scheduler.clone();
    std::thread::spawn(move || other.remove_job("tick").unwrap())
        .join()
        .unwrap();
    assert!(matches!(
        scheduler.get_job("tick"),
        Err(Error::JobNotFound(_))
    ));
    wait_for(
        &events,
        "JobRemoved",
        |e| matches!(e, Event::JobRemoved { job_id } if job_id == "tick"),
    );
    drop(clock);
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
fn job_count_and_running_jobs_without_a_round_trip() {
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
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("idle")
        .paused()
        .add()
        .unwrap();
    assert_eq!((scheduler.job_count(), scheduler.running_jobs()), (2, 0));
    scheduler.start().unwrap();
    scheduler.run_job_now("slow").unwrap();
    recv(&started_rx);
    assert_eq!(scheduler.running_jobs(), 1);
    gate.open(1);
    wait_until("the run counted as ended", || scheduler.running_jobs() == 0);
    scheduler.remove_job("idle").unwrap();
    assert_eq!(scheduler.job_count(), 1);
    scheduler.shutdown().unwrap();
    assert_eq!(scheduler.job_count(), 0);
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
    wait_until("shutting down", || {
        scheduler.state() == SchedulerState::ShutDown
    });
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
fn shutdown_timeout_abandons_a_blocking_run_at_its_deadline() {
    let (scheduler, clock) = paused();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let (finished_tx, finished_rx) = mpsc::channel();
    let g = gate.clone();
    scheduler
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
                finished_tx.send(()).unwrap();
            },
            Interval::hours(1),
        )
        .id("stuck")
        .add()
        .unwrap();
    // The current-thread runtime's only thread is the scheduler's.
    let scheduler_thread = ThreadExit::new();
    let exit = scheduler_thread.clone();
    scheduler.runtime_handle().spawn(async move { exit.arm() });
    scheduler.start().unwrap();
    scheduler.run_job_now("stuck").unwrap();
    recv(&started_rx);

    let (done_tx, done_rx) = mpsc::channel();
    let other = scheduler.clone();
    std::thread::spawn(move || {
        done_tx
            .send(other.shutdown_timeout(Duration::from_secs(600)))
            .unwrap();
    });
    wait_until("shutting down", || {
        scheduler.state() == SchedulerState::ShutDown
    });
    clock.advance(Duration::from_secs(599));
    assert!(done_rx.try_recv().is_err(), "returned before the deadline");
    clock.advance(Duration::from_secs(1));
    // At the deadline runs are cancelled; those still going 100 ms later are abandoned.
    clock.advance(Duration::from_millis(100));
    let abandoned = recv(&done_rx).unwrap();
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    // Returned with the job still running, the scheduler's thread ended.
    assert!(finished_rx.try_recv().is_err());
    assert!(
        scheduler_thread.exited(),
        "the scheduler thread waited for the abandoned run"
    );
    // The abandoned run goes on and ends on its own.
    gate.open(1);
    recv(&finished_rx);
}

#[test]
fn shutdown_timeout_returns_the_abandoned_runs() {
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
        .id("stuck")
        .add()
        .unwrap();
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("done")
        .add()
        .unwrap();
    let events = event_channel(&scheduler);
    scheduler.start().unwrap();
    scheduler.run_job_now("done").unwrap();
    wait_for(
        &events,
        "JobExecuted",
        |e| matches!(e, Event::JobExecuted { job_id, .. } if job_id == "done"),
    );
    scheduler.run_job_now("stuck").unwrap();
    recv(&started_rx);
    let abandoned = scheduler.shutdown_timeout(Duration::ZERO).unwrap();
    gate.open(1);
    let ids: Vec<&str> = abandoned.iter().map(|run| run.job_id.as_str()).collect();
    assert_eq!(ids, ["stuck"]);
}

#[test]
fn shutdown_timeout_gives_up_on_an_async_job_that_never_yields() {
    /// Lets the job end when the test does, pass or fail.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    // Multi-thread (the default): the job holds one worker, the core runs on the other.
    let scheduler = scheduler();
    let release = Release(Arc::new(AtomicBool::new(false)));
    let (started_tx, started_rx) = mpsc::channel();
    let r = Arc::clone(&release.0);
    scheduler
        .add_job(
            move || {
                let (r, tx) = (Arc::clone(&r), started_tx.clone());
                async move {
                    tx.send(()).unwrap();
                    // No `.await`: cancellation can never reach it.
                    while !r.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                }
            },
            Interval::hours(1),
        )
        .id("spinner")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("spinner").unwrap();
    recv(&started_rx);
    let other = scheduler.clone();
    let abandoned = bounded("shutdown_timeout(0)", move || {
        other.shutdown_timeout(Duration::ZERO)
    })
    .unwrap();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].job_id, "spinner");
    drop(release);
}

#[test]
fn shutdown_timeout_does_not_wait_for_a_stuck_listener_past_its_deadline() {
    let (scheduler, clock) = paused();
    let gate = Gate::new();
    let listener_thread = ThreadExit::new();
    let (called_tx, called_rx) = mpsc::channel();
    let (g, exit) = (gate.clone(), listener_thread.clone());
    scheduler
        .add_listener(EventMask::JOB_EXECUTED, move |_| {
            exit.arm();
            called_tx.send(()).unwrap();
            g.pass();
        })
        .unwrap();
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("job")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("job").unwrap();
    recv(&called_rx); // the listener is stuck in its callback now

    let (done_tx, done_rx) = mpsc::channel();
    let other = scheduler.clone();
    std::thread::spawn(move || {
        done_tx
            .send(other.shutdown_timeout(Duration::from_secs(60)))
            .unwrap();
    });
    // No run is going, so the core stops at once; the listener is waited for until the
    // deadline, on the scheduler's clock.
    wait_until("shutting down", || {
        scheduler.state() == SchedulerState::ShutDown
    });
    clock.advance(Duration::from_secs(59));
    assert!(done_rx.try_recv().is_err(), "returned before the deadline");
    clock.advance(Duration::from_secs(1));
    assert_eq!(recv(&done_rx), Ok(Vec::new()));
    // Detached, not joined: it finishes its call and ends on its own.
    assert!(!listener_thread.exited());
    gate.open(1);
    wait_until("the listener thread ended", || listener_thread.exited());
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
    bounded("drop", move || drop(scheduler));
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
    // The job is let go only once the drop below has begun the shutdown.
    let async_handle = scheduler.scheduler().clone();
    let opener = std::thread::spawn(move || {
        wait_until("shutting down", || {
            async_handle.state() == SchedulerState::ShutDown
        });
        gate.open(1);
    });
    bounded("drop", move || drop(scheduler));
    assert!(
        finished.load(Ordering::SeqCst),
        "drop returned before the job ended"
    );
    opener.join().unwrap();
}

#[test]
fn a_slow_sync_job_does_not_delay_other_jobs() {
    let (scheduler, clock) = paused();
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
        .add_job(move || tick_tx.send(()).unwrap(), Interval::seconds(5))
        .id("fast")
        .add()
        .unwrap();
    let events = event_channel(&scheduler);
    scheduler.start().unwrap();
    scheduler.run_job_now("slow").unwrap();
    recv(&started_rx);
    // The slow job holds its thread until the gate opens; the fast one runs on time, each
    // time the clock reaches it.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(5));
        recv(&tick_rx);
        executed(&events, &["fast"]);
    }
    // And max_instances (1) applies to the sync job: a second run is skipped, not queued.
    scheduler.run_job_now("slow").unwrap();
    wait_for(
        &events,
        "JobMaxInstances",
        |e| matches!(e, Event::JobMaxInstances { job_id, .. } if job_id == "slow"),
    );
    gate.open(1);
    drop(clock);
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
    let events = scheduler.events();
    scheduler.start().unwrap();
    for i in 0..=POOL {
        scheduler.run_job_now(&format!("job-{i}")).unwrap();
    }
    // All eleven runs were submitted...
    let submitted = bounded("eleven submissions", move || {
        events
            .filter(|e| matches!(e, Event::JobSubmitted { .. }))
            .take(POOL + 1)
            .count()
    });
    assert_eq!(submitted, POOL + 1);
    // ...ten hold the pool, and the eleventh waits for a thread.
    for _ in 0..POOL {
        recv(&started_rx);
    }
    assert_eq!(running.load(Ordering::SeqCst), POOL);
    assert_eq!(scheduler.running_jobs(), POOL + 1);
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
    // Nothing else matched the mask (not even SchedulerShutdown), and the thread was joined:
    // its closure, the channel's sender, is gone.
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
}

#[test]
fn a_removed_listener_is_not_called_again() {
    let scheduler = scheduler();
    let (a_tx, a_rx) = mpsc::channel();
    let (b_tx, b_rx) = mpsc::channel();
    let a = scheduler
        .add_listener(EventMask::JOB_EXECUTED, move |_| a_tx.send(()).unwrap())
        .unwrap();
    let b = scheduler
        .add_listener(EventMask::JOB_EXECUTED, move |_| b_tx.send(()).unwrap())
        .unwrap();
    assert_ne!(a, b);
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("job")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("job").unwrap();
    recv(&a_rx);
    recv(&b_rx);

    assert!(scheduler.remove_listener(a));
    // Its thread has ended and dropped the closure (and with it the sender) before
    // `remove_listener` returned.
    assert_eq!(a_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    assert!(!scheduler.remove_listener(a), "removed twice");
    scheduler.run_job_now("job").unwrap();
    recv(&b_rx);
    scheduler.shutdown().unwrap();
    assert!(
        !scheduler.remove_listener(b),
        "listeners end with the scheduler"
    );
}

#[test]
fn a_listener_can_remove_itself() {
    let scheduler = scheduler();
    let id = Arc::new(Mutex::new(None));
    let closure = DropFlag::new();
    let (tx, rx) = mpsc::channel();
    let (handle, my_id, mark) = (scheduler.clone(), Arc::clone(&id), closure.mark());
    let listener = scheduler
        .add_listener(EventMask::JOB_EXECUTED, move |_| {
            let _keep = &mark;
            let me = my_id.lock().unwrap().expect("the id is set before any run");
            // From its own thread: returns at once, and the thread ends after this call.
            tx.send(handle.remove_listener(me)).unwrap();
        })
        .unwrap();
    *id.lock().unwrap() = Some(listener);
    scheduler
        .add_job(|| (), Interval::hours(1))
        .id("job")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("job").unwrap();
    assert!(recv(&rx));
    wait_until("the listener's closure dropped", || closure.dropped());
    assert!(!scheduler.remove_listener(listener));
    scheduler.shutdown().unwrap();
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
    // The blocking iterator ends with the shutdown.
    let last = bounded("the events", move || events.last());
    assert_eq!(last, Some(Event::SchedulerShutdown));
    assert_eq!(scheduler.state(), SchedulerState::ShutDown);
}

#[tokio::test(flavor = "multi_thread")]
async fn usable_inside_a_multi_thread_runtime() {
    let scheduler = scheduler();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    scheduler
        .add_job(move || tx.send(()).unwrap(), Interval::hours(1))
        .id("tick")
        .add()
        .unwrap();
    scheduler.start().unwrap();
    scheduler.run_job_now("tick").unwrap();
    tokio::time::timeout(sync_common::BOUND, rx.recv())
        .await
        .expect("the job ran")
        .unwrap();
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
            Date::at(scheduler.now()),
        )
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .add()
        .unwrap();
    scheduler.start().unwrap();
    tokio::time::timeout(sync_common::BOUND, rx.recv())
        .await
        .expect("the job ran")
        .unwrap();
    scheduler.shutdown().unwrap();
}

#[test]
fn days_of_cron_in_milliseconds_on_a_paused_runtime() {
    // A test clock follows the scheduler runtime's clock; started paused, that runtime jumps to
    // each next timer whenever it is idle, so midnight comes at once.
    let clock = TestClock::new(start_time() + TimeDelta::minutes(30));
    let scheduler = BackgroundScheduler::builder()
        .timezone(Zone::UTC)
        .clock(clock.clone())
        .runtime(paused_runtime())
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

#[test]
fn run_now_gives_the_outcome_and_the_run_control_options_are_on_the_builder() {
    let (scheduler, clock) = paused();
    let job = scheduler
        .add_job(
            |run: apsched::JobContext| async move {
                match run.attempt() {
                    1 => Err("not yet"),
                    attempt => Ok(attempt * 10),
                }
            },
            Interval::hours(1),
        )
        .id("flaky")
        .timeout(Duration::from_secs(30))
        .retry(apsched::RetryPolicy::new(2).backoff(Duration::from_secs(1), Duration::from_secs(1)))
        .add()
        .unwrap();
    assert_eq!(job.options.timeout, Some(Duration::from_secs(30)));
    let events = event_channel(&scheduler);
    scheduler.start().unwrap();
    let run = scheduler.run_job_now("flaky").unwrap();
    let waiting = std::thread::spawn(move || run.outcome());
    wait_for(&events, "the retry", |e| {
        matches!(e, Event::JobRetrying { .. })
    });
    // The retry waits up to 1 s of the scheduler's time.
    clock.advance(Duration::from_secs(2));
    let outcome = waiting.join().unwrap().unwrap();
    assert_eq!(outcome.state, apsched::store::RunState::Succeeded);
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.result, Some(serde_json::json!(20)));
    let refused = scheduler
        .modify_job("flaky")
        .timeout(Duration::ZERO)
        .apply();
    assert!(matches!(
        refused,
        Err(Error::InvalidOption {
            option: "timeout",
            ..
        })
    ));
    drop(clock);
}
