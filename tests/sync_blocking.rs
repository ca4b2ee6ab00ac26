//! The blocking scheduler: `start()` blocks until shutdown (from a job, another thread or a
//! signal), shutdown waits for running jobs, `shutdown_timeout` does not, calls from other
//! threads work meanwhile, and it works inside and outside a Tokio runtime. Ordering is
//! observed through channels and gates, time is a paused runtime's with a `TestClock`, and
//! every wait is bounded (`start` itself runs under a bound).
//!
//! Every test here turns signal handling off but the signal test's child: the signal goes to a
//! child process (this test binary, re-run to run `sigterm_child` alone), never to this one.

mod sync_common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::{Date, Interval};
use apsched::{BlockingScheduler, Error, Event, SchedulerState, TestClock, Zone};
use sync_common::{
    bounded, event_channel, executed, paused_runtime, recv, start_time, wait_for, wait_until, Gate,
    HeldClock, ThreadExit,
};

/// A scheduler on the default runtime and the system clock, for tests with no time in them.
fn scheduler() -> BlockingScheduler {
    BlockingScheduler::builder()
        .timezone(Zone::UTC)
        .handle_signals(false)
        .build()
        .unwrap()
}

/// A scheduler on a paused runtime with a `TestClock`, and that clock held still.
fn paused() -> (BlockingScheduler, HeldClock) {
    let sched = BlockingScheduler::builder()
        .timezone(Zone::UTC)
        .handle_signals(false)
        .clock(TestClock::new(start_time()))
        .runtime(paused_runtime())
        .build()
        .unwrap();
    let clock = HeldClock::new(sched.runtime_handle());
    (sched, clock)
}

/// Runs `start()` under a bound, so a scheduler that never stops fails the test.
fn start(sched: &BlockingScheduler) -> apsched::Result<()> {
    let sched = sched.clone();
    bounded("start", move || sched.start())
}

/// Due as soon as the scheduler starts.
fn at_start(sched: &BlockingScheduler) -> Date {
    Date::at(sched.now())
}

#[test]
fn start_blocks_until_a_job_shuts_it_down() {
    let (sched, clock) = paused();
    assert_eq!(
        format!("{sched:?}"),
        "BlockingScheduler { state: Stopped, .. }"
    );
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
            Interval::seconds(5),
        )
        .id("counter")
        .add()
        .unwrap();
    let events = event_channel(&sched);
    let observer = sched.clone();
    let driver = std::thread::spawn(move || {
        wait_until("running", || observer.state() == SchedulerState::Running);
        // One run per step of the clock, each waited for before the next step.
        for _ in 0..3 {
            clock.advance(Duration::from_secs(5));
            executed(&events, &["counter"]);
        }
        // The clock is let go only now (dropping it lets the runtime end).
    });
    start(&sched).unwrap();
    driver.join().unwrap();
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
            at_start(&sched),
        )
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .add()
        .unwrap();
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        recv(&started_rx);
        let stopper = {
            let other = other.clone();
            std::thread::spawn(move || other.shutdown().unwrap())
        };
        wait_until("shutting down", || {
            other.state() == SchedulerState::ShutDown
        });
        gate.open(1);
        stopper.join().unwrap();
    });
    start(&sched).unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "start returned before the job ended"
    );
    helper.join().unwrap();
}

#[test]
fn shutdown_timeout_ends_start_without_waiting_for_a_stuck_job() {
    let sched = scheduler();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let (finished_tx, finished_rx) = mpsc::channel();
    let g = gate.clone();
    sched
        .add_job(
            move || {
                started_tx.send(()).unwrap();
                g.pass();
                finished_tx.send(()).unwrap();
            },
            at_start(&sched),
        )
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .add()
        .unwrap();
    let other = sched.clone();
    let stopper = std::thread::spawn(move || {
        recv(&started_rx);
        // APScheduler's shutdown(wait=False).
        other.shutdown_timeout(Duration::ZERO)
    });
    start(&sched).unwrap();
    assert!(stopper.join().unwrap().is_ok());
    // Both returned with the job still running; it ends on its own.
    assert!(finished_rx.try_recv().is_err());
    gate.open(1);
    recv(&finished_rx);
}

#[test]
fn jobs_are_managed_from_other_threads_while_start_blocks() {
    let (sched, clock) = paused();
    let (tx, rx) = mpsc::channel();
    sched
        .add_job(move || tx.send(()).unwrap(), Interval::seconds(5))
        .id("tick")
        .add()
        .unwrap();
    let events = event_channel(&sched);
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        wait_until("running", || other.state() == SchedulerState::Running);
        clock.advance(Duration::from_secs(5));
        recv(&rx);
        executed(&events, &["tick"]);
        assert!(other.pause_job("tick").unwrap().is_paused());
        other.pause().unwrap();
        assert_eq!(other.state(), SchedulerState::Paused);
        // Past eleven fire times, not onto a twelfth.
        clock.advance(Duration::from_secs(57));
        other.resume().unwrap();
        other.resume_job("tick").unwrap().unwrap();
        assert!(rx.try_recv().is_err(), "the job ran while paused");
        // The next run is the first fire time after now, 3 s away.
        clock.advance(Duration::from_secs(3));
        recv(&rx);
        other.remove_job("tick").unwrap();
        assert!(other.get_jobs().unwrap().is_empty());
        drop(clock);
        other.shutdown().unwrap();
    });
    start(&sched).unwrap();
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
    let events = event_channel(&sched);
    let other = sched.clone();
    let helper = std::thread::spawn(move || {
        wait_until("running", || other.state() == SchedulerState::Running);
        for i in 0..3 {
            other.run_job_now(&format!("job-{i}")).unwrap();
        }
        // A second run of a job still running is skipped (max_instances = 1).
        other.run_job_now("job-0").unwrap();
        wait_for(&events, "JobMaxInstances", |e| {
            matches!(e, Event::JobMaxInstances { .. })
        });
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
    start(&sched).unwrap();
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
    bounded("drop", move || drop(sched));
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
            at_start(&sched),
        )
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .add()
        .unwrap();
    // Blocks a worker thread of this runtime (allowed) until the async job shuts the scheduler
    // down.
    let starter = sched.clone();
    let started = tokio::spawn(async move { starter.start() });
    tokio::time::timeout(sync_common::BOUND, started)
        .await
        .expect("start returned")
        .unwrap()
        .unwrap();
    assert_eq!(sched.state(), SchedulerState::ShutDown);
}

/// The environment variable that makes `sigterm_child` run its program.
#[cfg(unix)]
const CHILD: &str = "APSCHED_SIGTERM_CHILD";
/// Prefixes the child's protocol lines on stderr, apart from anything else it prints.
#[cfg(unix)]
const MARK: &str = "sigterm-child: ";

/// The program `sigterm_shuts_it_down_gracefully` runs in a child process: a blocking
/// scheduler with default signal handling, and one job that reports on stderr and waits for
/// the parent on stdin. Does nothing unless `CHILD` is set.
#[cfg(unix)]
#[test]
#[ignore = "the child process of sigterm_shuts_it_down_gracefully, which runs it"]
fn sigterm_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let sched = BlockingScheduler::builder()
        .timezone(Zone::UTC)
        .build()
        .unwrap();
    let state = sched.scheduler().clone();
    sched
        .add_job(
            move || {
                eprintln!("{MARK}job started");
                wait_until("shutting down", || {
                    state.state() == SchedulerState::ShutDown
                });
                eprintln!("{MARK}shutting down");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).unwrap();
                eprintln!("{MARK}job finished");
            },
            at_start(&sched),
        )
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .add()
        .unwrap();
    sched.start().unwrap();
    eprintln!("{MARK}start returned");
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_it_down_gracefully() {
    use std::io::{BufRead, Write};
    use std::process::{Child, Command, Stdio};

    /// Kills the child if the test fails before it has exited.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            if matches!(self.0.try_wait(), Ok(None)) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["sigterm_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(said) = line
                .find(MARK)
                .map(|at| line[at + MARK.len()..].to_string())
            {
                let _ = tx.send(said);
            }
        }
    });

    // The handler is installed before any job runs, so the signal finds it.
    assert_eq!(recv(&lines), "job started");
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // Shutdown began, and waits for the running job...
    assert_eq!(recv(&lines), "shutting down");
    writeln!(child.0.stdin.take().unwrap(), "finish").unwrap();
    // ...which finishes before `start` returns and the process exits normally.
    assert_eq!(recv(&lines), "job finished");
    assert_eq!(recv(&lines), "start returned");
    // Its stderr closes as it exits.
    assert!(matches!(
        lines.recv_timeout(sync_common::BOUND),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
