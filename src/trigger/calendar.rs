//! The calendar interval trigger: every N years, months, weeks or days at a wall-clock time.
//!
//! Wall-clock times become instants by the zone's one rule, `zone::resolve_wall_time`.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::bounds::{Bounds, Jitter};
use crate::zone::resolve_wall_time;
use crate::{Error, IntoZone, Result, Zone};

/// Fires every N years, months, weeks and/or days at a wall-clock time of day in a zone
/// (APScheduler 4's `calendarinterval` trigger).
///
/// Runs fall on the start date plus k × the interval, at the time of day set with
/// [`at`](CalendarInterval::at) (default midnight). Months and years keep the start's day of
/// month: from January 31, `months(1)` skips the months without a 31st (as APScheduler). Units
/// may be combined with [`CalendarInterval::new`]; the months and years are added before the
/// weeks and days, always counted from the start date.
///
/// Without a start, the start date is the day the trigger is prepared (the day the job is added)
/// in its zone. A time of day that does not exist on a date (daylight saving gap) fires at the
/// first instant after the gap; one that happens twice fires once, at its first occurrence.
///
/// ```
/// use apsched::trigger::{CalendarInterval, Trigger};
/// use apsched::Zone;
/// use chrono::{NaiveDate, TimeZone, Utc};
///
/// let berlin = Zone::parse("Europe/Berlin")?;
/// let month_end: Trigger = CalendarInterval::months(1)
///     .at(9, 0, 0)
///     .start_date(NaiveDate::from_ymd_opt(2024, 1, 31).unwrap())
///     .timezone(berlin)
///     .into();
/// let now = Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap();
/// // No February 31st, April 31st: the next runs are March 31 and May 31, 09:00 in Berlin.
/// assert_eq!(
///     month_end.next_fire_time(None, now)?,
///     Some(Utc.with_ymd_and_hms(2024, 3, 31, 7, 0, 0).unwrap())
/// );
/// assert_eq!(month_end.describe(), "every 1 month on day 31 at 09:00:00 (Europe/Berlin)");
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarInterval {
    #[serde(default)]
    years: u32,
    #[serde(default)]
    months: u32,
    #[serde(default)]
    weeks: u32,
    #[serde(default)]
    days: u32,
    #[serde(default)]
    hour: u32,
    #[serde(default)]
    minute: u32,
    #[serde(default)]
    second: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_date: Option<NaiveDate>,
    #[serde(flatten)]
    bounds: Bounds,
}

/// How many steps past the estimate a search may take (a day of month that few months have,
/// such as February 29 with `years(1)`, skips most steps).
const MAX_STEPS: u32 = 2_000;

impl CalendarInterval {
    /// Every `years` years, `months` months, `weeks` weeks and `days` days together (at least
    /// one of them non-zero).
    pub fn new(years: u32, months: u32, weeks: u32, days: u32) -> CalendarInterval {
        CalendarInterval {
            years,
            months,
            weeks,
            days,
            hour: 0,
            minute: 0,
            second: 0,
            start_date: None,
            bounds: Bounds::default(),
        }
    }

    /// Every `n` years, on the start's month and day.
    pub fn years(n: u32) -> CalendarInterval {
        CalendarInterval::new(n, 0, 0, 0)
    }

    /// Every `n` months, on the start's day of month.
    pub fn months(n: u32) -> CalendarInterval {
        CalendarInterval::new(0, n, 0, 0)
    }

    /// Every `n` weeks, on the start's weekday.
    pub fn weeks(n: u32) -> CalendarInterval {
        CalendarInterval::new(0, 0, n, 0)
    }

    /// Every `n` days.
    pub fn days(n: u32) -> CalendarInterval {
        CalendarInterval::new(0, 0, 0, n)
    }

    /// The wall-clock time of day of each run (default 00:00:00).
    #[must_use]
    pub fn at(mut self, hour: u32, minute: u32, second: u32) -> CalendarInterval {
        self.hour = hour;
        self.minute = minute;
        self.second = second;
        self
    }

    /// The first date (in the trigger's zone) a run may fall on, and the anchor of all others.
    #[must_use]
    pub fn start_date(mut self, date: NaiveDate) -> CalendarInterval {
        self.start_date = Some(date);
        self.bounds.start = None;
        self
    }

    /// No run before this instant; its date in the trigger's zone is the anchor of all runs.
    #[must_use]
    pub fn start<Tz: TimeZone>(mut self, start: DateTime<Tz>) -> CalendarInterval {
        self.bounds.start = Some(start.with_timezone(&Utc));
        self.start_date = None;
        self
    }

    /// No run after this instant.
    #[must_use]
    pub fn end<Tz: TimeZone>(mut self, end: DateTime<Tz>) -> CalendarInterval {
        self.bounds.end = Some(end.with_timezone(&Utc));
        self
    }

    /// The zone whose calendar and wall clock the runs follow (default: the scheduler's).
    #[must_use]
    pub fn timezone(mut self, zone: impl IntoZone) -> CalendarInterval {
        self.bounds.timezone = Some(zone.into_zone());
        self
    }

    /// Delays each run by a uniform random span in `[0, jitter]`.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> CalendarInterval {
        self.bounds.jitter = Jitter::new(jitter);
        self
    }

    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field, value: String, reason: &str| {
            Err(Error::InvalidTrigger {
                field,
                value,
                reason: reason.into(),
            })
        };
        if self.years == 0 && self.months == 0 && self.weeks == 0 && self.days == 0 {
            return invalid(
                "interval",
                "0".into(),
                "at least one of years, months, weeks and days must be non-zero",
            );
        }
        if self.years > 9999 || self.months > 9999 * 12 {
            return invalid(
                "interval",
                format!("{} years {} months", self.years, self.months),
                "it is longer than the calendar",
            );
        }
        if self.hour > 23 {
            return invalid("hour", self.hour.to_string(), "out of range 0-23");
        }
        if self.minute > 59 {
            return invalid("minute", self.minute.to_string(), "out of range 0-59");
        }
        if self.second > 59 {
            return invalid("second", self.second.to_string(), "out of range 0-59");
        }
        self.bounds.check()
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone, now: DateTime<Utc>) -> Result<()> {
        self.validate()?;
        let zone = self.bounds.settle_zone(default_zone);
        if self.start_date.is_none() && self.bounds.start.is_none() {
            // APScheduler: the start date defaults to today.
            self.start_date = Some(now.with_timezone(&zone).date_naive());
        }
        Ok(())
    }

    fn time_of_day(&self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.hour, self.minute, self.second).unwrap_or(NaiveTime::MIN)
    }

    /// The anchor date: the start date, the start instant's date, or (unprepared) `fallback`.
    fn anchor(&self, zone: Zone, fallback: DateTime<Utc>) -> NaiveDate {
        self.start_date
            .or_else(|| {
                self.bounds
                    .start
                    .map(|s| s.with_timezone(&zone).date_naive())
            })
            .unwrap_or_else(|| fallback.with_timezone(&zone).date_naive())
    }

    pub(crate) fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        match previous {
            // Strictly after the previous run, even if the clock went back since.
            Some(p) => match p.checked_add_signed(TimeDelta::nanoseconds(1)) {
                Some(after) => self.first_at_or_after(after, p),
                // Nothing comes after the end of chrono's range.
                None => Ok(None),
            },
            None => self.first_at_or_after(now, now),
        }
    }

    pub(crate) fn fire_time_at_or_after(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.first_at_or_after(at, at)
    }

    /// The date of run `k`, or `None` when the start's day does not exist in that month.
    fn date_of(&self, anchor: NaiveDate, k: u64) -> Option<NaiveDate> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        let month_index = i64::from(anchor.year()) * 12
            + i64::from(anchor.month0())
            + i64::try_from(k.checked_mul(months)?).ok()?;
        let year = i32::try_from(month_index.div_euclid(12)).ok()?;
        let month = u32::try_from(month_index.rem_euclid(12)).ok()? + 1;
        let date = NaiveDate::from_ymd_opt(year, month, anchor.day())?;
        date.checked_add_signed(TimeDelta::try_days(
            i64::try_from(k.checked_mul(days)?).ok()?,
        )?)
    }

    fn first_at_or_after(
        &self,
        at: DateTime<Utc>,
        fallback_anchor: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        self.validate()?;
        let zone = self.bounds.timezone.unwrap_or_default();
        let at = self.bounds.not_before_start(at);
        if self.bounds.past_end(at) {
            return Ok(None);
        }
        let anchor = self.anchor(zone, fallback_anchor);
        // Estimate the step by arithmetic, a little early so that it never overshoots: months
        // average 30.436875 days over the Gregorian cycle and stray by at most a few days.
        let target = at.with_timezone(&zone).date_naive();
        let elapsed = (target - anchor).num_days();
        let months = f64::from(self.years) * 12.0 + f64::from(self.months);
        let days = f64::from(self.weeks) * 7.0 + f64::from(self.days);
        let per_step = months * 30.436_875 + days;
        let first = if elapsed <= 0 {
            0
        } else {
            ((elapsed as f64 / per_step).floor() as u64).saturating_sub(2)
        };
        let time = self.time_of_day();
        for k in first..first + u64::from(MAX_STEPS) {
            if let Some(date) = self.date_of(anchor, k) {
                let Some(instant) = resolve_wall_time(zone, date.and_time(time)) else {
                    break;
                };
                if instant >= at {
                    return Ok(Some(instant).filter(|i| !self.bounds.past_end(*i)));
                }
            } else if self.date_of_unbounded(anchor, k) {
                break;
            }
        }
        if self.bounds.end.is_some() {
            return Ok(None);
        }
        Err(Error::TriggerNeverFires {
            trigger: self.describe(),
            reason: "no run date found within the calendar's range".into(),
        })
    }

    /// Whether run `k` lies past the calendar chrono can represent (so the search must stop).
    fn date_of_unbounded(&self, anchor: NaiveDate, k: u64) -> bool {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let years_ahead = k.saturating_mul(months) / 12
            + k.saturating_mul(u64::from(self.weeks) * 7 + u64::from(self.days)) / 365;
        i64::from(anchor.year()).saturating_add(i64::try_from(years_ahead).unwrap_or(i64::MAX))
            > 200_000
    }

    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, unit) in [
            (self.years, "year"),
            (self.months, "month"),
            (self.weeks, "week"),
            (self.days, "day"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            }
        }
        let mut text = format!("every {}", parts.join(" "));
        let anchor = self.start_date.or_else(|| {
            self.bounds.start.map(|s| {
                s.with_timezone(&self.bounds.timezone.unwrap_or_default())
                    .date_naive()
            })
        });
        if let Some(anchor) = anchor {
            if self.years > 0 && self.months == 0 {
                text.push_str(&format!(" on {}", anchor.format("%B %-d")));
            } else if self.months > 0 {
                text.push_str(&format!(" on day {}", anchor.day()));
            } else if self.days == 0 {
                text.push_str(&format!(" on {}", anchor.format("%A")));
            }
        }
        text.push_str(&format!(
            " at {:02}:{:02}:{:02}",
            self.hour, self.minute, self.second
        ));
        if let Some(zone) = self.bounds.timezone {
            text.push_str(&format!(" ({zone})"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_end_skips_short_months() {
        let t = CalendarInterval::months(1)
            .start_date(NaiveDate::from_ymd_opt(2024, 1, 31).unwrap())
            .timezone(Zone::UTC);
        let mut at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let next = t.next_fire_time(Some(at), at).unwrap().unwrap();
            seen.push(next.date_naive().to_string());
            at = next;
        }
        assert_eq!(
            seen,
            ["2024-01-31", "2024-03-31", "2024-05-31", "2024-07-31"]
        );
    }
}
