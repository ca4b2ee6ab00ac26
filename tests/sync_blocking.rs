//! The blocking scheduler: `start()` blocks until shutdown (from a job, another thread or a
//! signal), shutdown waits for running jobs, calls from other threads work meanwhile, and it
//! works inside and outside a Tokio runtime. Ordering is observed through channels and gates.
//!
//! Every test but the signal test turns signal handling off: the signal test sends SIGTERM to
//! this whole test process.

mod sync_common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Interval;
use apsched::{BlockingScheduler, Error, Event, SchedulerState, Zone};
use sync_common::{recv, Gate, ThreadExit};

fn scheduler() -> BlockingScheduler {
    BlockingScheduler::builder()
        .timezone(Zone::UTC)
        .handle_signals(false)
        .build()
        .unwrap()
}

#[test]
fn start_blocks_until_a_job_shuts_it_down() {
    let sched = scheduler();
    let handle = sched.clone();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    sched
        .add_job(
            move || {
                if r.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                    handle.shutdown().unwrap();
                }
            },
            Interval::every(Duration::from_millis(5)),
        )
        .add()
        .unwrap();
    sched.start().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(sched.state(), SchedulerState::ShutDown);
    assert!(matches!(sched.start(), Err(Error::Shutdown)));
}

#[test]
fn shutdown_from_another_thread_waits_for_the_running_job() {
    let sched = scheduler();
    let gate = Gate::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let (g, f) = (gate.clone(), finished.clone());
    sched
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
                f.store(true, Ordering::SeqCst);
            },
            Interval::every(Duration::from_millis(5)),
        )
        .add()
        .unwrap();
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        recv(&started_rx);
        let stopper = {
            let other = other.clone();
            std::thread::spawn(move || other.shutdown().unwrap())
        };
        while other.state() != SchedulerState::ShutDown {
            std::thread::yield_now();
        }
        gate.open(1);
        stopper.join().unwrap();
    });
    sched.start().unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "start returned before the job ended"
    );
    helper.join().unwrap();
}

#[test]
fn jobs_are_managed_from_other_threads_while_start_blocks() {
    let sched = scheduler();
    let (tx, rx) = mpsc::channel();
    sched
        .add_job(
            move || tx.send(()).unwrap(),
            Interval::every(Duration::from_millis(5)),
        )
        .id("tick")
        .add()
        .unwrap();
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        recv(&rx);
        assert_eq!(other.state(), SchedulerState::Running);
        assert!(other.pause_job("tick").unwrap().is_paused());
        other.pause().unwrap();
        assert_eq!(other.state(), SchedulerState::Paused);
        other.resume().unwrap();
        other.resume_job("tick").unwrap().unwrap();
        while rx.try_recv().is_ok() {}
        recv(&rx);
        other.remove_job("tick").unwrap();
        assert!(other.get_jobs().unwrap().is_empty());
        other.shutdown().unwrap();
    });
    sched.start().unwrap();
    helper.join().unwrap();
}

#[test]
fn max_instances_and_the_pool_bound_apply_to_sync_jobs() {
    let sched = BlockingScheduler::builder()
        .handle_signals(false)
        .max_blocking_jobs(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let running = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    for i in 0..3 {
        let (g, r, tx) = (gate.clone(), running.clone(), started_tx.clone());
        sched
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
    let mut events = sched.events();
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        while other.state() != SchedulerState::Running {
            std::thread::yield_now();
        }
        for i in 0..3 {
            other.run_job_now(&format!("job-{i}")).unwrap();
        }
        // A second run of a job still running is skipped (max_instances = 1).
        other.run_job_now("job-0").unwrap();
        assert!(events.any(|e| matches!(e, Event::JobMaxInstances { .. })));
        recv(&started_rx);
        recv(&started_rx);
        assert_eq!(running.load(Ordering::SeqCst), 2);
        assert!(
            started_rx.try_recv().is_err(),
            "a third job got a thread of a pool of 2"
        );
        gate.open(1);
        recv(&started_rx);
        gate.open(2);
        other.shutdown().unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0);
    });
    sched.start().unwrap();
    helper.join().unwrap();
}

#[test]
fn dropping_an_unstarted_scheduler_joins_its_thread() {
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.enable_all();
    let sched = BlockingScheduler::builder()
        .handle_signals(false)
        .runtime(runtime)
        .build()
        .unwrap();
    let exit = ThreadExit::new();
    // Runs on the scheduler's thread (the current-thread runtime's only thread).
    let e = exit.clone();
    sched.runtime_handle().spawn(async move { e.arm() });
    let (tx, rx) = mpsc::channel();
    sched
        .runtime_handle()
        .spawn(async move { tx.send(()).unwrap() });
    recv(&rx);
    assert!(!exit.exited());
    drop(sched);
    assert!(
        exit.exited(),
        "drop returned before the scheduler thread ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_works_inside_a_tokio_runtime() {
    let sched = scheduler();
    let handle = sched.clone();
    sched
        .add_job(
            move || {
                let handle = handle.clone();
                async move { handle.shutdown().unwrap() }
            },
            Interval::every(Duration::from_millis(5)),
        )
        .add()
        .unwrap();
    // Blocks this worker thread (allowed) until the async job shuts the scheduler down.
    sched.start().unwrap();
    assert_eq!(sched.state(), SchedulerState::ShutDown);
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_it_down_gracefully() {
    // Listen for SIGTERM first, so that the signal never takes the default action (ending this
    // test process) even before the scheduler's own listener is installed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .unwrap();

    let sched = BlockingScheduler::builder().build().unwrap();
    let (tx, rx) = mpsc::channel();
    sched
        .add_job(
            move || tx.send(()).unwrap(),
            Interval::every(Duration::from_millis(5)),
        )
        .add()
        .unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let s = stopped.clone();
    let killer = std::thread::spawn(move || {
        recv(&rx);
        // The scheduler installs its listener as it starts, a moment after the first run
        // could be seen: send again until it has stopped.
        while !s.load(Ordering::SeqCst) {
            std::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    sched.start().unwrap();
    stopped.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    assert_eq!(sched.state(), SchedulerState::ShutDown);
}
