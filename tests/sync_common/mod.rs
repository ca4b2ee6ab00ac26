//! Helpers for the sync-facade tests: a gate that jobs wait at, a bounded receive, and a flag
//! that a thread sets as it exits.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Receives the next message; a test that would otherwise hang fails after a generous bound.
pub fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("no message within 20 s")
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
