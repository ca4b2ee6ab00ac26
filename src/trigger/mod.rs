//! Triggers: the rules that say when a job runs.
//!
//! A [`Trigger`] is a plain value: serializable, comparable, and a pure function of
//! (previous fire time, now) that never reads the clock. The scheduler core asks it for the
//! next fire time after each run; tests and tools can ask it directly.
//!
//! | trigger | fires | APScheduler |
//! |---|---|---|
//! | [`Date`] | once, at an instant | `date` |
//! | [`Interval`] | every fixed span of real elapsed time | `interval` |
//! | [`Cron`] | at wall-clock times matching cron fields | `cron` |
//! | [`CalendarInterval`] | every N years/months/weeks/days at a wall-clock time | `calendarinterval` |
//! | [`Trigger::and`] / [`Trigger::or`] | when all / any of several triggers fire | `and` / `or` |

mod bounds;
mod calendar;
mod combine;
mod cron;
mod date;
mod interval;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use calendar::CalendarInterval;
pub use combine::Combination;
pub use cron::{Cron, CronValue};
pub use date::Date;
pub use interval::Interval;

use crate::{Result, Zone};

/// When a job runs: one of the trigger kinds.
///
/// Build one from its kind (`Interval::every(..)`, `Cron::parse(..)?`, `Date::at(..)`, ...) and
/// pass it anywhere an `impl Into<Trigger>` is taken.
///
/// ```
/// use apsched::trigger::{Cron, Interval, Trigger};
/// use chrono::{TimeZone, Utc};
/// use std::time::Duration;
///
/// let every_two_hours: Trigger = Interval::every(Duration::from_secs(7200)).into();
/// let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
/// let daily: Trigger = Cron::parse("30 6 * * *")?.into();
/// let daily = daily.prepared(apsched::Zone::UTC, now)?;
/// assert_eq!(
///     daily.next_fire_time(None, now)?,
///     Some(Utc.with_ymd_and_hms(2024, 5, 2, 6, 30, 0).unwrap())
/// );
/// # let _ = every_two_hours;
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// Once, at an instant.
    Date(Date),
    /// Every fixed span of real elapsed time.
    Interval(Interval),
    /// At wall-clock times that match cron fields.
    Cron(Box<Cron>),
    /// Every N calendar units at a wall-clock time of day.
    CalendarInterval(Box<CalendarInterval>),
    /// When every one of several triggers fires at (about) the same instant.
    And(Box<Combination>),
    /// When any one of several triggers fires.
    Or(Box<Combination>),
}

impl Trigger {
    /// A trigger that fires when all of `triggers` agree on an instant (within the
    /// combination's threshold, 1 s by default).
    pub fn and(triggers: impl IntoIterator<Item = impl Into<Trigger>>) -> Trigger {
        Trigger::And(Box::new(Combination::new(triggers)))
    }

    /// A trigger that fires at the earliest fire time of any of `triggers`; an instant two of
    /// them share fires once.
    pub fn or(triggers: impl IntoIterator<Item = impl Into<Trigger>>) -> Trigger {
        Trigger::Or(Box::new(Combination::new(triggers)))
    }

    /// The next fire time, without jitter.
    ///
    /// `previous` is the last fire time (`None` before the first run); `now` is the current
    /// instant, which a trigger uses only to find its first fire time. Semantics follow
    /// APScheduler's `get_next_fire_time(previous_fire_time, now)`; `next_fire_time(None, t)` is
    /// the first fire time at or after `t`.
    ///
    /// Returns `Ok(None)` once the trigger is finished (past its end bound, or a date trigger
    /// that has fired).
    ///
    /// # Errors
    /// A cron pattern or combination for which no fire time can be found within its search
    /// bound ([`Error::TriggerNeverFires`](crate::Error::TriggerNeverFires)), or a trigger
    /// that was never prepared and is invalid.
    pub fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        match self {
            Trigger::Date(t) => Ok(t.next_fire_time(previous, now)),
            Trigger::Interval(t) => t.next_fire_time(previous, now),
            Trigger::Cron(t) => t.next_fire_time(previous, now),
            Trigger::CalendarInterval(t) => t.next_fire_time(previous, now),
            Trigger::And(t) => t.next_fire_time_all(previous, now),
            Trigger::Or(t) => t.next_fire_time_any(previous, now),
        }
    }

    /// The first fire time of a prepared trigger from `now`: what the scheduler asks when a job
    /// is added, rescheduled or resumed.
    ///
    /// # Errors
    /// [`Error::TriggerNeverFires`](crate::Error::TriggerNeverFires) when there is none, with a
    /// reason that says why (the end bound is past, the year field has no year left, ...);
    /// otherwise as [`Trigger::next_fire_time`].
    pub(crate) fn first_fire_time(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        match self.next_fire_time(None, now)? {
            Some(first) => Ok(first),
            None => Err(crate::Error::TriggerNeverFires {
                trigger: self.describe(),
                reason: self.finished_reason(now),
            }),
        }
    }

    /// Why the trigger has no fire time at or after `now`.
    fn finished_reason(&self, now: DateTime<Utc>) -> String {
        match self {
            Trigger::Date(t) => format!(
                "its run date {} is before {}",
                t.run_date().to_rfc3339(),
                now.to_rfc3339()
            ),
            Trigger::Interval(t) => t.bounds().end_reason(now),
            Trigger::Cron(t) => t.finished_reason(now),
            Trigger::CalendarInterval(t) => t.bounds().end_reason(now),
            Trigger::And(t) => {
                let finished = t
                    .triggers()
                    .iter()
                    .find(|child| matches!(child.fire_time_at_or_after(now), Ok(None)));
                match finished {
                    Some(child) => format!(
                        "one of its triggers, {child}, has finished: {}",
                        child.finished_reason(now)
                    ),
                    None => "its triggers have no fire time left in common".into(),
                }
            }
            Trigger::Or(t) => {
                let reasons: Vec<String> = t
                    .triggers()
                    .iter()
                    .map(|child| format!("{child}: {}", child.finished_reason(now)))
                    .collect();
                format!(
                    "every one of its triggers has finished ({})",
                    reasons.join("; ")
                )
            }
        }
    }

    /// The first regular fire time at or after `at`, whatever ran before: what the scheduler
    /// uses to skip over missed runs without enumerating them. Unlike
    /// `next_fire_time(None, ..)`, a date trigger whose instant is before `at` gives `None`.
    ///
    /// # Errors
    /// As [`Trigger::next_fire_time`].
    pub fn fire_time_at_or_after(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        match self {
            Trigger::Date(t) => Ok(Some(t.run_date()).filter(|run| *run >= at)),
            Trigger::Interval(t) => t.next_fire_time(None, at),
            Trigger::Cron(t) => t.fire_time_at_or_after(at),
            Trigger::CalendarInterval(t) => t.fire_time_at_or_after(at),
            Trigger::And(t) => t.fire_time_at_or_after_all(at),
            Trigger::Or(t) => t.fire_time_at_or_after_any(at),
        }
    }

    /// The fire times from `after` on: the first at or after it, then each one after the last,
    /// as the scheduler follows them (jitter excluded), until the trigger finishes. Prepare the
    /// trigger first ([`prepared`](Self::prepared)) where it leaves its zone or start open.
    ///
    /// An error (a pattern with no fire time within its search bound) is the last item.
    ///
    /// ```
    /// use apsched::trigger::{Cron, Trigger};
    /// use apsched::Zone;
    /// use chrono::{TimeZone, Utc};
    ///
    /// let now = Utc.with_ymd_and_hms(2024, 3, 29, 12, 0, 0).unwrap();
    /// // 02:30 every day in Berlin; 2024-03-31 has no 02:30 (clocks go 02:00 -> 03:00).
    /// let trigger = Trigger::from(Cron::parse("30 2 * * *")?).prepared(Zone::parse("Europe/Berlin")?, now)?;
    /// let times: Vec<String> = trigger
    ///     .fire_times(now)
    ///     .take(3)
    ///     .map(|t| t.map(|t| t.to_rfc3339()))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(
    ///     times,
    ///     ["2024-03-30T01:30:00+00:00", "2024-03-31T01:00:00+00:00", "2024-04-01T00:30:00+00:00"]
    /// );
    /// # Ok::<(), apsched::Error>(())
    /// ```
    pub fn fire_times(&self, after: DateTime<Utc>) -> FireTimes<'_> {
        FireTimes {
            trigger: self,
            after,
            previous: None,
            done: false,
        }
    }

    /// Validates the trigger and settles what was left open: the time zone (set to
    /// `default_zone` where none was given), an interval's start (`now` + one period, as
    /// APScheduler), a cron pattern's compiled form.
    ///
    /// The scheduler calls this when a job is added or rescheduled.
    ///
    /// # Errors
    /// The first invalid setting, by field and value.
    pub fn prepared(mut self, default_zone: Zone, now: DateTime<Utc>) -> Result<Trigger> {
        self.prepare(default_zone, now)?;
        Ok(self)
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone, now: DateTime<Utc>) -> Result<()> {
        match self {
            Trigger::Date(t) => t.prepare(default_zone),
            Trigger::Interval(t) => t.prepare(default_zone, now),
            Trigger::Cron(t) => t.prepare(default_zone),
            Trigger::CalendarInterval(t) => t.prepare(default_zone, now),
            Trigger::And(t) | Trigger::Or(t) => t.prepare(default_zone, now),
        }
    }

    /// The time zone the trigger reads wall-clock fields in and shows times in.
    pub fn timezone(&self) -> Option<Zone> {
        match self {
            Trigger::Date(t) => t.zone(),
            Trigger::Interval(t) => t.bounds().timezone,
            Trigger::Cron(t) => t.bounds().timezone,
            Trigger::CalendarInterval(t) => t.bounds().timezone,
            Trigger::And(t) | Trigger::Or(t) => t.zone(),
        }
    }

    /// The largest random delay added to each fire time, if any.
    pub fn jitter(&self) -> Option<Duration> {
        match self {
            Trigger::Date(_) => None,
            Trigger::Interval(t) => t.bounds().jitter.span(),
            Trigger::Cron(t) => t.bounds().jitter.span(),
            Trigger::CalendarInterval(t) => t.bounds().jitter.span(),
            Trigger::And(t) | Trigger::Or(t) => t.jitter_span(),
        }
    }

    /// The last instant at which the trigger may fire, if bounded.
    pub fn end_date(&self) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Date(t) => Some(t.run_date()),
            Trigger::Interval(t) => t.bounds().end,
            Trigger::Cron(t) => t.bounds().end,
            Trigger::CalendarInterval(t) => t.bounds().end,
            Trigger::And(_) | Trigger::Or(_) => None,
        }
    }

    /// An English description, e.g. `every 2 seconds` or `At 06:30 AM`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Date(t) => t.describe(),
            Trigger::Interval(t) => t.describe(),
            Trigger::Cron(t) => t.describe(),
            Trigger::CalendarInterval(t) => t.describe(),
            Trigger::And(t) => t.describe("and"),
            Trigger::Or(t) => t.describe("or"),
        }
    }

    /// The instant a run scheduled for `regular` actually fires: `regular` plus a uniform
    /// random delay in `[0, jitter]`, cut short so it never reaches the next regular fire time
    /// and never passes the end bound. The next regular time is always computed from
    /// `regular`, so jitter never accumulates drift.
    pub fn jittered(&self, regular: DateTime<Utc>) -> DateTime<Utc> {
        let Some(jitter) = self.jitter().and_then(|j| TimeDelta::from_std(j).ok()) else {
            return regular;
        };
        let mut limit = jitter;
        if let Ok(Some(next)) = self.next_fire_time(Some(regular), regular) {
            // Strictly before the next regular run.
            limit = limit.min(next - regular - TimeDelta::microseconds(1));
        }
        if let Some(end) = self.end_date() {
            limit = limit.min(end - regular);
        }
        let limit_us = limit.num_microseconds().unwrap_or(0);
        if limit_us <= 0 {
            return regular;
        }
        let delay = TimeDelta::microseconds(rand::rng().random_range(0..=limit_us));
        // At the end of chrono's range there is no room for a delay: run on time.
        regular.checked_add_signed(delay).unwrap_or(regular)
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl From<Date> for Trigger {
    fn from(t: Date) -> Trigger {
        Trigger::Date(t)
    }
}

impl From<Interval> for Trigger {
    fn from(t: Interval) -> Trigger {
        Trigger::Interval(t)
    }
}

impl From<Cron> for Trigger {
    fn from(t: Cron) -> Trigger {
        Trigger::Cron(Box::new(t))
    }
}

impl From<CalendarInterval> for Trigger {
    fn from(t: CalendarInterval) -> Trigger {
        Trigger::CalendarInterval(Box::new(t))
    }
}

/// The fire times of a trigger, from [`Trigger::fire_times`].
#[derive(Clone, Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct FireTimes<'a> {
    trigger: &'a Trigger,
    after: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
    done: bool,
}

impl Iterator for FireTimes<'_> {
    type Item = Result<DateTime<Utc>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.trigger.next_fire_time(self.previous, self.after) {
            Ok(Some(next)) if self.previous.is_none_or(|previous| next > previous) => {
                self.previous = Some(next);
                Some(Ok(next))
            }
            // Finished (or, defensively, not moving forward).
            Ok(_) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl std::iter::FusedIterator for FireTimes<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn never_reason(trigger: impl Into<Trigger>, now: DateTime<Utc>) -> String {
        let trigger = trigger.into().prepared(Zone::UTC, now).unwrap();
        match trigger.first_fire_time(now) {
            Err(Error::TriggerNeverFires { reason, .. }) => reason,
            other => panic!("{trigger}: {other:?}"),
        }
    }

    #[test]
    fn first_fire_time_says_why_there_is_none() {
        let now = utc(2024, 6, 1, 10, 15);
        let past_years = cron::Cron::parse("0 0 0 1 1 * 2000").unwrap();
        assert_eq!(
            never_reason(past_years, now),
            "its year field has no year left: the last it allows is 2000"
        );
        let this_year = cron::Cron::new().year(2024).month(1);
        assert_eq!(
            never_reason(this_year, now),
            "its year field has no year left: 2024, the last it allows, has no match after \
             2024-06-01T10:15:00+00:00"
        );
        let ended = cron::Cron::new().hour(1).end(utc(2024, 5, 1, 0, 0));
        assert_eq!(
            never_reason(ended, now),
            "its end bound 2024-05-01T00:00:00+00:00 is in the past"
        );
        let gap = Interval::hours(1)
            .start(utc(2024, 6, 1, 10, 0))
            .end(utc(2024, 6, 1, 10, 30));
        assert_eq!(
            never_reason(gap, now),
            "no regular run falls between now (2024-06-01T10:15:00+00:00) and its end bound \
             2024-06-01T10:30:00+00:00"
        );
        let both = Trigger::and([
            Trigger::from(Date::at(utc(2024, 1, 1, 0, 0))),
            cron::Cron::parse("0 * * * *").unwrap().into(),
        ]);
        assert_eq!(
            never_reason(both, now),
            "one of its triggers, once at 2024-01-01 00:00:00 UTC, has finished: its run date \
             2024-01-01T00:00:00+00:00 is before 2024-06-01T10:15:00+00:00"
        );
        let daily = Trigger::from(cron::Cron::parse("0 12 * * *").unwrap())
            .prepared(Zone::UTC, now)
            .unwrap();
        assert_eq!(daily.first_fire_time(now), Ok(utc(2024, 6, 1, 12, 0)));
    }
}
