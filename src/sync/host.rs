//! The thread, runtime and async scheduler behind a sync scheduler, and the waits and listener
//! threads it adds.

use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Events, ListenerId};
use crate::{
    AbandonedRun, Cause, Error, Event, EventMask, Result, Scheduler, SchedulerBuilder,
    SchedulerState,
};

thread_local! {
    /// The scheduler whose runtime, host or listener thread this is (0: none), so a call from
    /// a job never waits for itself.
    static OWNER: Cell<u64> = const { Cell::new(0) };
    /// Set on a host thread that also drives a current-thread runtime's tasks: a blocking wait
    /// there would stop the core it waits for.
    static DRIVER: Cell<u64> = const { Cell::new(0) };
}

static NEXT_HOST_ID: AtomicU64 = AtomicU64::new(1);
/// Listener ids are unique across schedulers, so one scheduler's id never removes another's
/// listener.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// What a sync scheduler's builder collects.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) scheduler: SchedulerBuilder,
    pub(crate) runtime: Option<tokio::runtime::Builder>,
    pub(crate) handle_signals: bool,
    pub(crate) thread_name: &'static str,
}

struct Listener {
    id: u64,
    thread: JoinHandle<()>,
    /// Cancelled by `remove_listener`: the thread stops at its next event.
    stop: CancellationToken,
}

/// The thread, runtime and async scheduler behind a sync scheduler. Sync schedulers are
/// `Arc<Host>` handles; dropping the last one shuts the scheduler down and joins the thread.
pub(crate) struct Host {
    id: u64,
    pub(crate) scheduler: Scheduler,
    pub(crate) handle: Handle,
    thread: Mutex<Option<JoinHandle<()>>>,
    listeners: Mutex<Vec<Listener>>,
    /// Holds a token per live listener thread: the scheduler thread waits for them to deliver
    /// their last events before it ends.
    listeners_alive: TaskTracker,
    /// Set by `shutdown_timeout`: when, on the scheduler's clock, the shutdown stops waiting.
    /// The scheduler thread then waits for listeners only until then, and drops the runtime
    /// without waiting for the blocking threads of abandoned runs; `join` detaches listeners
    /// still busy.
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Whether `start` installs the Ctrl-C / SIGTERM handler (only then, so a scheduler that
    /// is built but never started leaves the program's signals alone).
    handle_signals: bool,
    signals_watched: AtomicBool,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only join handles and a deadline live behind these locks; a panic cannot leave them
    // half-changed.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    /// Starts the thread and its runtime, and builds the scheduler inside it (stopped).
    pub(crate) fn spawn(config: Config) -> Result<Arc<Host>> {
        let id = NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed);
        let mut runtime = config.runtime.unwrap_or_else(|| {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // Workers only poll the core and async jobs; blocking jobs have their own pool.
            builder.worker_threads(2).thread_name("apsched");
            builder
        });
        runtime
            .enable_all()
            .on_thread_start(move || OWNER.with(|o| o.set(id)));
        let deadline = Arc::new(Mutex::new(None::<Instant>));
        let listeners_alive = TaskTracker::new();
        let (deadline_in_thread, listeners_in_thread) =
            (Arc::clone(&deadline), listeners_alive.clone());
        let scheduler_builder = config.scheduler;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(config.thread_name.into())
            .spawn(move || {
                OWNER.with(|o| o.set(id));
                let runtime = match runtime.build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(Error::Runtime {
                            source: Cause::new(error),
                        }));
                        return;
                    }
                };
                if runtime.handle().runtime_flavor() == RuntimeFlavor::CurrentThread {
                    DRIVER.with(|d| d.set(id));
                }
                let deadline = runtime.block_on(async move {
                    let scheduler = scheduler_builder.build();
                    let stopped = scheduler.stopped();
                    let _ = ready_tx.send(Ok((scheduler, Handle::current())));
                    // The core closes its channel when it has stopped, after its last run (or
                    // at the deadline of a `shutdown_timeout`).
                    stopped.await;
                    // Listeners end after `SchedulerShutdown`; let them deliver it, but not
                    // past a shutdown's deadline.
                    listeners_in_thread.close();
                    let deadline = *lock(&deadline_in_thread);
                    match deadline {
                        Some(deadline) => {
                            let _ =
                                tokio::time::timeout_at(deadline, listeners_in_thread.wait()).await;
                        }
                        None => listeners_in_thread.wait().await,
                    }
                    deadline
                });
                // Dropped here, on its own thread, never inside a caller's async context.
                // Dropping waits for the blocking pool's threads; after a deadline, runs may
                // have been abandoned, and this thread must not wait for them.
                if deadline.is_some() {
                    runtime.shutdown_background();
                } else {
                    drop(runtime);
                }
            })
            .map_err(|e| Error::Runtime {
                source: Cause::new(e),
            })?;
        let (scheduler, handle) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(error);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Runtime {
                    source: Cause::new("the scheduler thread stopped early"),
                });
            }
        };
        Ok(Arc::new(Host {
            id,
            scheduler,
            handle,
            thread: Mutex::new(Some(thread)),
            listeners: Mutex::new(Vec::new()),
            listeners_alive,
            deadline,
            handle_signals: config.handle_signals,
            signals_watched: AtomicBool::new(false),
        }))
    }

    /// Whether the calling thread is one of this scheduler's: its own, its runtime's, or a
    /// listener's.
    fn on_own_thread(&self) -> bool {
        OWNER.with(Cell::get) == self.id
    }

    /// Waits for `fut` (a call of the async scheduler) on the calling thread, inside the
    /// scheduler's runtime context.
    ///
    /// # Panics
    /// From an async job of this scheduler on a current-thread runtime: the wait would stop the
    /// only thread that runs the core, so it could never end.
    pub(crate) fn wait<F: Future>(&self, fut: F) -> F::Output {
        assert!(
            DRIVER.with(Cell::get) != self.id,
            "apsched: a blocking call from an async job on the scheduler's own current-thread \
             runtime would deadlock; use the async handle (JobContext::scheduler) there"
        );
        // Unconstrained: inside a Tokio task whose cooperative budget is spent, the channel
        // futures would return `Pending` forever under a foreign executor.
        let fut = tokio::task::unconstrained(fut);
        let run = move || {
            // The scheduler's clock (a test clock follows the runtime's paused time) must read
            // the scheduler's runtime, not the caller's.
            let _enter = self.handle.enter();
            futures::executor::block_on(fut)
        };
        let on_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        if self.on_own_thread() && on_multi_thread_runtime {
            // An async job of ours: hand this worker's other tasks (maybe the core) to another
            // worker while we block. On a blocking-pool thread this just runs `run`.
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }

    /// Runs a synchronous part of the async scheduler (a clock read) inside the scheduler's
    /// runtime context.
    pub(crate) fn enter<T>(&self, f: impl FnOnce(&Scheduler) -> T) -> T {
        let _enter = self.handle.enter();
        f(&self.scheduler)
    }

    /// Shuts the core down on Ctrl-C (SIGINT) or SIGTERM, waiting for running jobs.
    fn watch_signals(&self) {
        if self.signals_watched.swap(true, Ordering::AcqRel) {
            return;
        }
        // Registered now, not when the task first runs: once `start` has been called, a
        // signal always finds the handler, never the default action (ending the process).
        let signal = {
            let _enter = self.handle.enter();
            shutdown_signal()
        };
        let scheduler = self.scheduler.clone();
        self.handle.spawn(async move {
            if signal.await {
                tracing::info!(
                    "apsched: signal received, shutting down (waiting for running jobs)"
                );
                let _ = scheduler.shutdown().await;
            }
        });
    }

    pub(crate) fn start(&self, paused: bool) -> Result<()> {
        // Before the core starts, so no job runs while a signal would still end the process.
        // A scheduler that cannot start (already started or shut down) installs nothing.
        if self.handle_signals && self.scheduler.state() == SchedulerState::Stopped {
            self.watch_signals();
        }
        if paused {
            self.wait(self.scheduler.start_paused())
        } else {
            self.wait(self.scheduler.start())
        }
    }

    /// Blocks until the core has stopped, then joins the threads.
    pub(crate) fn wait_stopped(&self) {
        if !self.on_own_thread() {
            self.wait(self.scheduler.stopped());
        }
        self.join();
    }

    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> Result<Vec<AbandonedRun>> {
        if let Some(timeout) = timeout {
            self.scheduler.ensure_open()?;
            self.set_deadline(timeout);
        }
        if self.on_own_thread() {
            // From a job or a listener: waiting for the running jobs would wait for ourselves.
            self.scheduler.ensure_open()?;
            self.request_shutdown(timeout);
            return Ok(Vec::new());
        }
        let abandoned = match timeout {
            Some(timeout) => self.wait(self.scheduler.shutdown_timeout(timeout))?,
            None => {
                self.wait(self.scheduler.shutdown())?;
                Vec::new()
            }
        };
        self.join();
        Ok(abandoned)
    }

    /// Records when a `shutdown_timeout` stops waiting, by the scheduler's clock (a paused
    /// runtime's clock in tests), the earliest of several.
    fn set_deadline(&self, timeout: Duration) {
        // A timeout past the end of `Instant` is no timeout, as the core treats it.
        let Some(at) = self.enter(|_| Instant::now().checked_add(timeout)) else {
            return;
        };
        let mut deadline = lock(&self.deadline);
        *deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }

    fn request_shutdown(&self, timeout: Option<Duration>) {
        let scheduler = self.scheduler.clone();
        self.handle.spawn(async move {
            let _ = match timeout {
                Some(timeout) => scheduler.shutdown_timeout(timeout).await.map(drop),
                None => scheduler.shutdown().await,
            };
        });
    }

    /// Joins the scheduler thread and the listener threads; after a `shutdown_timeout`,
    /// listeners still busy are detached instead. Concurrent callers all return after the
    /// scheduler thread's join: the lock is held through it.
    fn join(&self) {
        if self.on_own_thread() {
            return;
        }
        {
            let mut thread = lock(&self.thread);
            if let Some(thread) = thread.take() {
                if thread.join().is_err() {
                    tracing::error!("apsched: the scheduler thread panicked");
                }
            }
        }
        // The scheduler thread waited for the listeners (until the deadline, if any).
        let detach_busy = lock(&self.deadline).is_some();
        // Taken out of the lock first: a listener may call `remove_listener` as it ends.
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        for listener in listeners {
            if detach_busy && !listener.thread.is_finished() {
                // Stuck past the deadline: it ends on its own, after its current call.
                listener.stop.cancel();
                continue;
            }
            // A listener that panicked was already reported on its thread.
            let _ = listener.thread.join();
        }
    }

    pub(crate) fn events(&self) -> Events {
        let stream = self.scheduler.subscribe();
        // Subscribed after the core stopped, the stream would wait forever for its last event.
        let stopped = self.scheduler.is_stopped();
        Events::new(stream, stopped)
    }

    pub(crate) fn add_listener<F>(&self, mask: EventMask, mut listener: F) -> Result<ListenerId>
    where
        F: FnMut(&Event) + Send + 'static,
    {
        self.scheduler.ensure_open()?;
        let mut events = self.events();
        let (host_id, id) = (self.id, NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed));
        let stop = CancellationToken::new();
        let stop_in_thread = stop.clone();
        let alive = self.listeners_alive.token();
        let thread = std::thread::Builder::new()
            .name("apsched-listener".into())
            .spawn(move || {
                let _alive = alive;
                OWNER.with(|o| o.set(host_id));
                while let Some(event) = events.next_unless(&stop_in_thread) {
                    if !mask.matches(&event) {
                        continue;
                    }
                    let called = std::panic::catch_unwind(AssertUnwindSafe(|| listener(&event)));
                    if called.is_err() {
                        tracing::error!(?event, "apsched: an event listener panicked");
                    }
                }
            })
            .map_err(|e| Error::Runtime {
                source: Cause::new(e),
            })?;
        let mut listeners = lock(&self.listeners);
        listeners.retain(|l| !l.thread.is_finished());
        listeners.push(Listener { id, thread, stop });
        Ok(ListenerId(id))
    }

    pub(crate) fn remove_listener(&self, id: ListenerId) -> bool {
        let listener = {
            let mut listeners = lock(&self.listeners);
            let Some(at) = listeners.iter().position(|l| l.id == id.0) else {
                return false;
            };
            listeners.swap_remove(at)
        };
        listener.stop.cancel();
        // From a job or a listener (maybe the one removed), waiting could wait for itself.
        if !self.on_own_thread() {
            let _ = listener.thread.join();
        }
        true
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.scheduler.is_stopped() {
            if self.on_own_thread() {
                // The last handle went with a job (or a listener) of this scheduler: ask the
                // core to stop; the thread ends on its own.
                self.request_shutdown(None);
                return;
            }
            let _ = self.wait(self.scheduler.shutdown());
        }
        self.join();
    }
}

/// Listens for Ctrl-C (SIGINT) and SIGTERM from now on; resolves `true` when one comes, or
/// `false` if the runtime stops first. Call inside the scheduler's runtime context.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = bool> + Send + 'static {
    use tokio::signal::unix::{signal, Signal, SignalKind};

    fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
        signal(kind)
            .map_err(|error| tracing::warn!(%error, "apsched: cannot listen for {name}"))
            .ok()
    }
    async fn next(signal: &mut Option<Signal>) -> Option<()> {
        match signal {
            Some(signal) => signal.recv().await,
            None => std::future::pending().await,
        }
    }

    let mut interrupt = listen(SignalKind::interrupt(), "Ctrl-C (SIGINT)");
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            Some(()) = next(&mut interrupt) => true,
            Some(()) = next(&mut terminate) => true,
            else => false,
        }
    }
}

/// Listens for Ctrl-C from now on; resolves `true` when it comes, or `false` if the runtime
/// stops first. Call inside the scheduler's runtime context.
#[cfg(windows)]
fn shutdown_signal() -> impl Future<Output = bool> + Send + 'static {
    let ctrl_c = tokio::signal::windows::ctrl_c()
        .map_err(|error| tracing::warn!(%error, "apsched: cannot listen for Ctrl-C"))
        .ok();
    async move {
        match ctrl_c {
            Some(mut ctrl_c) => ctrl_c.recv().await.is_some(),
            None => std::future::pending().await,
        }
    }
}
