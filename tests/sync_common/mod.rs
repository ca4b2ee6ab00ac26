//! Helpers for the sync-scheduler tests: bounded waits (a bug fails the test instead of hanging
//! it), a gate that jobs wait at, a flag that a thread sets as it exits, and a held clock that
//! moves only when a test advances it.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use apsched::sync::{Mode, SyncScheduler};
use apsched::{Event, EventMask};
use chrono::{DateTime, TimeZone, Utc};
use tokio::runtime::Handle;

/// How long any wait may take before the test fails: generous, as it only bounds a bug.
pub const BOUND: Duration = Duration::from_secs(20);

/// Receives the next message; a test that would otherwise hang fails after [`BOUND`].
pub fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(BOUND).expect("no message within 20 s")
}

/// Waits until `done()` holds, failing after [`BOUND`]: for a state the scheduler sets with no
/// event to wait for (shutdown has begun, a run has ended).
pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < until, "not {what} within 20 s");
        std::thread::yield_now();
    }
}

/// Runs `f` on a thread of its own and returns what it returns; fails after [`BOUND`] (leaving
/// the thread behind) if it has not returned by then.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within 20 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Every event of `scheduler` from now on, on a channel: read it with [`recv`] or
/// [`wait_for`], which are bounded, where the blocking `Events` iterator is not. Works for
/// both sync schedulers: they are one type.
pub fn event_channel<M: Mode>(scheduler: &SyncScheduler<M>) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    scheduler
        .add_listener(EventMask::ALL, move |event| {
            let _ = tx.send(event.clone());
        })
        .unwrap();
    rx
}

/// Skips events until one matches, failing after [`BOUND`] in all.
pub fn wait_for(events: &mpsc::Receiver<Event>, what: &str, matches: impl Fn(&Event) -> bool) {
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if matches(&event) => return,
            Ok(_) => {}
            Err(_) => panic!("no {what} event within 20 s"),
        }
    }
}

/// Waits until each of `jobs` has had a run end (a `JobExecuted` event), failing after
/// [`BOUND`]. Once it has, the run no longer counts against `max_instances`: a test that moves
/// the clock to a job's next run waits for this first, not for what the job itself sent, or
/// that next run may find the last one still ending and be skipped.
pub fn executed(events: &mpsc::Receiver<Event>, jobs: &[&str]) {
    let mut left: Vec<&str> = jobs.to_vec();
    let until = Instant::now() + BOUND;
    while !left.is_empty() {
        match events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::JobExecuted { job_id, .. }) => left.retain(|id| *id != job_id.as_str()),
            Ok(_) => {}
            Err(_) => panic!("no run of {left:?} ended within 20 s"),
        }
    }
}

/// Where the tests' wall clocks start.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// A current-thread runtime whose clock starts paused, for a scheduler with a `TestClock`.
pub fn paused_runtime() -> tokio::runtime::Builder {
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.start_paused(true);
    runtime
}

/// A paused current-thread runtime's clock, held still: Tokio does not auto-advance such a
/// runtime's clock while one of its blocking tasks runs, and this one runs until the
/// `HeldClock` is dropped. So time moves only by [`HeldClock::advance`], and a test decides
/// exactly which runs fall due.
///
/// Drop it before a plain shutdown: dropping the runtime waits for its blocking tasks.
pub struct HeldClock {
    handle: Handle,
    release: Gate,
}

impl HeldClock {
    pub fn new(handle: &Handle) -> HeldClock {
        let release = Gate::new();
        let r = release.clone();
        // Tokio stops auto-advancing as the task is spawned, before it runs...
        drop(handle.spawn_blocking(move || r.pass()));
        // ...but an advance the runtime had begun may still land: once a task spawned after
        // it has run, it has.
        advance(handle, Duration::ZERO);
        HeldClock {
            handle: handle.clone(),
            release,
        }
    }

    /// Moves the clock by `by` and returns once the runtime has done so (timers now due have
    /// fired; what they start may still be under way).
    pub fn advance(&self, by: Duration) {
        advance(&self.handle, by);
    }
}

impl Drop for HeldClock {
    fn drop(&mut self) {
        self.release.open(1);
    }
}

/// Moves a paused runtime's clock by `by`, as [`HeldClock::advance`].
pub fn advance(handle: &Handle, by: Duration) {
    /// Reports on drop: `advance` moves the clock when first polled, and a runtime that ends
    /// meanwhile (a shutdown the advance let through) drops the task at its yield.
    struct Moved(mpsc::Sender<()>);
    impl Drop for Moved {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (tx, rx) = mpsc::channel();
    handle.spawn(async move {
        let _moved = Moved(tx);
        tokio::time::advance(by).await;
    });
    recv(&rx);
}

/// A counting gate: `pass` blocks until `open` lets one more through.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<(Mutex<usize>, Condvar)>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn pass(&self) {
        let (permits, cv) = &*self.inner;
        let mut permits = permits.lock().unwrap();
        while *permits == 0 {
            permits = cv.wait(permits).unwrap();
        }
        *permits -= 1;
    }

    pub fn open(&self, n: usize) {
        let (permits, cv) = &*self.inner;
        *permits.lock().unwrap() += n;
        cv.notify_all();
    }
}

/// Set when a thread that called [`ThreadExit::arm`] exits (its thread-locals are destroyed
/// before the thread can be joined).
#[derive(Clone, Default)]
pub struct ThreadExit {
    flag: Arc<AtomicBool>,
}

struct Guard(Arc<AtomicBool>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    static GUARD: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

impl ThreadExit {
    pub fn new() -> ThreadExit {
        ThreadExit::default()
    }

    /// Marks the calling thread.
    pub fn arm(&self) {
        GUARD.with(|g| *g.borrow_mut() = Some(Guard(Arc::clone(&self.flag))));
    }

    pub fn exited(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Set when the value it is moved into (a job's or a listener's closure) is dropped.
#[derive(Clone, Default)]
pub struct DropFlag {
    flag: Arc<AtomicBool>,
}

/// Sets its [`DropFlag`] when dropped.
pub struct DropMark(Arc<AtomicBool>);

impl Drop for DropMark {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl DropFlag {
    pub fn new() -> DropFlag {
        DropFlag::default()
    }

    pub fn mark(&self) -> DropMark {
        DropMark(Arc::clone(&self.flag))
    }

    pub fn dropped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}
