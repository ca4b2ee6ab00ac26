//! The interval trigger: every fixed span of real elapsed time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::bounds::{Bounds, Jitter};
use crate::{Error, IntoZone, Result, Zone};

/// Fires every `period` of real elapsed time (APScheduler's `interval` trigger).
///
/// "Every hour" is every 3600 s, across daylight saving changes too: the wall-clock hour of the
/// runs shifts when the zone's offset does. For "every day at 06:30 wall time" use
/// [`Cron`](super::Cron) or [`CalendarInterval`](super::CalendarInterval).
///
/// Without a start, the first run is one period after the job is added (as APScheduler). Runs
/// fall at `start + k × period`; with an end bound, none after it.
///
/// ```
/// use apsched::trigger::{Interval, Trigger};
/// use chrono::{TimeZone, Utc};
/// use std::time::Duration;
///
/// let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
/// let trigger = Trigger::from(Interval::minutes(5).start(start));
/// let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 12, 0).unwrap();
/// assert_eq!(trigger.next_fire_time(None, now)?, Some(start + chrono::TimeDelta::minutes(15)));
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// In nanoseconds (not a `Duration`): a scheduler may hold a million of these.
    #[serde(rename = "period", with = "crate::serde_util::nanos_as_seconds")]
    period_ns: u64,
    #[serde(flatten)]
    bounds: Bounds,
}

impl Interval {
    /// Every `period`, which must be at least 1 ms: the scheduler's timer works in
    /// milliseconds. A shorter (or zero) period is refused when the trigger is prepared (when
    /// the job is added), as [`Error::InvalidTrigger`] with field `interval`.
    ///
    /// ```
    /// use apsched::trigger::{Interval, Trigger};
    /// use std::time::Duration;
    ///
    /// let now = chrono::Utc::now();
    /// assert!(Trigger::from(Interval::every(Duration::from_millis(1))).prepared(apsched::Zone::UTC, now).is_ok());
    /// let err = Trigger::from(Interval::every(Duration::from_nanos(1)))
    ///     .prepared(apsched::Zone::UTC, now)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("must be at least 1 ms"));
    /// ```
    pub fn every(period: Duration) -> Interval {
        Interval {
            period_ns: nanos(period),
            bounds: Bounds::default(),
        }
    }

    /// Every `n` weeks (of 7 × 24 hours).
    pub fn weeks(n: u64) -> Interval {
        Interval::every(Duration::from_secs(n.saturating_mul(7 * 86_400)))
    }

    /// Every `n` days (of 24 hours).
    pub fn days(n: u64) -> Interval {
        Interval::every(Duration::from_secs(n.saturating_mul(86_400)))
    }

    /// Every `n` hours.
    pub fn hours(n: u64) -> Interval {
        Interval::every(Duration::from_secs(n.saturating_mul(3600)))
    }

    /// Every `n` minutes.
    pub fn minutes(n: u64) -> Interval {
        Interval::every(Duration::from_secs(n.saturating_mul(60)))
    }

    /// Every `n` seconds.
    pub fn seconds(n: u64) -> Interval {
        Interval::every(Duration::from_secs(n))
    }

    /// The first run (and the anchor of all later ones). Default: one period after the job
    /// is added.
    #[must_use]
    pub fn start<Tz: TimeZone>(mut self, start: DateTime<Tz>) -> Interval {
        self.bounds.start = Some(start.with_timezone(&Utc));
        self
    }

    /// No run after this instant.
    #[must_use]
    pub fn end<Tz: TimeZone>(mut self, end: DateTime<Tz>) -> Interval {
        self.bounds.end = Some(end.with_timezone(&Utc));
        self
    }

    /// The zone job listings show fire times in (the scheduler's default otherwise). It does
    /// not change when runs happen: an interval counts elapsed time.
    #[must_use]
    pub fn timezone(mut self, zone: impl IntoZone) -> Interval {
        self.bounds.timezone = Some(zone.into_zone());
        self
    }

    /// Delays each run by a uniform random span in `[0, jitter]` (zero: no jitter).
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Interval {
        self.bounds.jitter = Jitter::unless_zero(jitter);
        self
    }

    /// The span between runs.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn period_delta(&self) -> TimeDelta {
        TimeDelta::from_std(self.period()).unwrap_or(TimeDelta::MAX)
    }

    /// The period's own checks, made at prepare and again on every search, so that a trigger
    /// read from JSON and never prepared cannot fire in a loop.
    fn check_period(&self) -> Result<()> {
        let refuse = |reason: &str| {
            Err(Error::InvalidTrigger {
                field: "interval",
                value: format!("{:?}", self.period()),
                reason: reason.into(),
            })
        };
        match self.period_ns {
            0 => refuse("the period must be longer than zero"),
            1..MIN_PERIOD_NS => refuse(
                "must be at least 1 ms: the scheduler's timer works in milliseconds, and a \
                 shorter period would keep it busy with runs that are always due",
            ),
            u64::MAX => refuse("the period is longer than 584 years"),
            _ => Ok(()),
        }
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone, now: DateTime<Utc>) -> Result<()> {
        self.check_period()?;
        self.bounds.settle_zone(default_zone);
        if self.bounds.start.is_none() {
            let first = now.checked_add_signed(self.period_delta()).ok_or_else(|| {
                Error::InvalidTrigger {
                    field: "interval",
                    value: format!("{:?}", self.period()),
                    reason: format!(
                        "one period after {} is past the last instant chrono can represent",
                        now.to_rfc3339()
                    ),
                }
            })?;
            self.bounds.start = Some(first);
        }
        self.bounds.check()
    }

    pub(crate) fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        self.check_period()?;
        let period = self.period_delta();
        let next = match (previous, self.bounds.start) {
            (Some(previous), _) => previous.checked_add_signed(period),
            (None, Some(start)) if start >= now => Some(start),
            // The first `start + k × period` at or after `now`, by arithmetic: a clock that
            // jumped ten years costs the same as one missed run.
            (None, Some(start)) => first_step_at_or_after(start, self.period_ns, now),
            (None, None) => now.checked_add_signed(period),
        };
        // Past the end of chrono's range there is no next run: the trigger is finished.
        Ok(next.filter(|next| !self.bounds.past_end(*next)))
    }

    pub(crate) fn describe(&self) -> String {
        format!("every {}", describe_span(self.period()))
    }
}

/// The shortest period accepted: the core's timer works in milliseconds.
const MIN_PERIOD_NS: u64 = 1_000_000;

/// `start + k × period` for the least `k` that reaches `now` (`now > start`), in 128-bit
/// nanoseconds so that no span chrono can represent overflows; `None` past chrono's range.
fn first_step_at_or_after(
    start: DateTime<Utc>,
    period_ns: u64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    const NANOS: i128 = 1_000_000_000;
    let elapsed = now.signed_duration_since(start);
    let elapsed = i128::from(elapsed.num_seconds()) * NANOS + i128::from(elapsed.subsec_nanos());
    let period = i128::from(period_ns);
    let steps = elapsed.checked_add(period - 1)? / period;
    let offset = steps.checked_mul(period)?;
    let secs = i64::try_from(offset / NANOS).ok()?;
    let nanos = u32::try_from(offset % NANOS).ok()?;
    start.checked_add_signed(TimeDelta::new(secs, nanos)?)
}

/// A span in nanoseconds, saturating (584 years and more read as `u64::MAX`).
fn nanos(span: Duration) -> u64 {
    u64::try_from(span.as_nanos()).unwrap_or(u64::MAX)
}

/// "2 seconds", "1 hour 30 minutes", "1.5 seconds".
pub(crate) fn describe_span(span: Duration) -> String {
    let mut secs = span.as_secs();
    let nanos = span.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "0 seconds".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("week", 604_800),
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
    ] {
        if secs >= size {
            let n = secs / size;
            secs %= size;
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if secs > 0 || nanos > 0 {
        if nanos > 0 {
            let value = secs as f64 + f64::from(nanos) / 1e9;
            parts.push(format!("{value} seconds"));
        } else {
            parts.push(format!("{secs} second{}", if secs == 1 { "" } else { "s" }));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_spans() {
        assert_eq!(describe_span(Duration::from_secs(2)), "2 seconds");
        assert_eq!(
            describe_span(Duration::from_secs(5400)),
            "1 hour 30 minutes"
        );
        assert_eq!(describe_span(Duration::from_millis(1500)), "1.5 seconds");
        assert_eq!(
            describe_span(Duration::from_secs(86_400 * 8)),
            "1 week 1 day"
        );
    }

    #[test]
    fn first_fire_is_anchored_on_start() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let t = Interval::hours(1).start(start);
        let now = Utc.with_ymd_and_hms(2034, 1, 1, 0, 30, 0).unwrap();
        assert_eq!(
            t.next_fire_time(None, now).unwrap(),
            Some(Utc.with_ymd_and_hms(2034, 1, 1, 1, 0, 0).unwrap())
        );
        assert_eq!(t.next_fire_time(None, start).unwrap(), Some(start));
    }

    #[test]
    fn end_bound_and_zero_period() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let t = Interval::hours(1)
            .start(start)
            .end(start + TimeDelta::minutes(90));
        assert_eq!(
            t.next_fire_time(Some(start), start).unwrap(),
            Some(start + TimeDelta::hours(1))
        );
        assert_eq!(
            t.next_fire_time(Some(start + TimeDelta::hours(1)), start)
                .unwrap(),
            None
        );
        let mut zero = Interval::every(Duration::ZERO);
        assert!(matches!(
            zero.prepare(Zone::UTC, start),
            Err(Error::InvalidTrigger {
                field: "interval",
                ..
            })
        ));
    }
}
