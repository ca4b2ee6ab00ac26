//! Where the scheduler reads wall-clock time.
//!
//! Wall-clock time decides *when* a job runs; Tokio's monotonic timer only decides how long the
//! core sleeps. Both meet here: [`SystemClock`] reads the real clock, and [`TestClock`] derives
//! wall time from Tokio's (pausable) clock so tests cover days of schedule in milliseconds and
//! can jump the wall clock like an NTP step or a suspend would.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of wall-clock time.
///
/// The scheduler core calls [`Clock::now`] on every wake; it must be cheap and must not block.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's real-time clock (`chrono::Utc::now`). The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock for tests: it starts at a chosen instant and then moves with Tokio's clock, so
/// `tokio::time::pause` / `advance` (or `#[tokio::test(start_paused = true)]`) move it too.
///
/// [`TestClock::jump`] moves the wall clock alone, as an NTP step or a suspend does, which the
/// scheduler must notice. Clones share one clock.
///
/// ```
/// use apsched::{Scheduler, TestClock};
/// use chrono::{TimeZone, Utc};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TestClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
/// let scheduler = Scheduler::builder().clock(clock.clone()).build();
/// tokio::time::advance(std::time::Duration::from_secs(90)).await;
/// assert_eq!(clock.now(), Utc.with_ymd_and_hms(2030, 1, 1, 0, 1, 30).unwrap());
/// # drop(scheduler);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TestClock {
    inner: Arc<TestClockInner>,
}

#[derive(Debug)]
struct TestClockInner {
    start_wall: DateTime<Utc>,
    start_instant: tokio::time::Instant,
    /// The sum of all jumps: how far the wall clock stands from where Tokio's clock puts it.
    jumped: Mutex<TimeDelta>,
}

impl TestClock {
    /// A clock that reads `start` now and then advances with Tokio's clock.
    pub fn new(start: DateTime<Utc>) -> TestClock {
        TestClock {
            inner: Arc::new(TestClockInner {
                start_wall: start,
                start_instant: tokio::time::Instant::now(),
                jumped: Mutex::new(TimeDelta::zero()),
            }),
        }
    }

    /// The current wall-clock instant.
    pub fn now(&self) -> DateTime<Utc> {
        Clock::now(self)
    }

    /// Steps the wall clock by `by` (negative goes back) without moving Tokio's clock.
    pub fn jump(&self, by: TimeDelta) {
        *self.inner.jumped.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.inner.start_instant;
        let jumped = *self.inner.jumped.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.start_wall + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX) + jumped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn test_clock_follows_tokio_and_jumps() {
        let start = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        let clock = TestClock::new(start);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + TimeDelta::hours(1));
        clock.jump(TimeDelta::days(-1));
        assert_eq!(
            clock.now(),
            start + TimeDelta::hours(1) - TimeDelta::days(1)
        );
    }
}
