//! The search for a cron trigger's next fire time, on the wall clock of its zone.
//!
//! Croner matches the fields. What is searched here is how wall-clock times become instants:
//!
//! - A pattern with a **fixed time of day** (one hour, minute and second) fires once on each
//!   matching date, at that wall time, and at the first instant after a daylight saving gap that
//!   swallows it, even when the gap crosses midnight or skips the whole day. Croner checks the
//!   day on the date after such a gap, and gives up on gaps longer than two hours, so these
//!   patterns are matched by croner on naive wall times (as UTC, which has no gaps) and each
//!   match is resolved with [`resolve_wall_time`].
//! - Any other pattern fires at every real instant whose wall time matches (both readings of a
//!   repeated hour, none in a gap): croner's own search in the zone.
//! - What croner cannot express (an ISO week, weekday positions mixed with other day rules) walks
//!   matching dates here and finds the time of day on each by the same two rules.

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone as _, Timelike,
    Utc,
};
use croner::JobType;

use super::fields::{self, FieldSet};
use crate::zone::{earliest_wall_reaching, resolve_wall_time};
use crate::Zone;

/// The last date croner can reach (its `YEAR_UPPER_LIMIT`); no fire time is found after it, on
/// the trigger's wall clock.
pub(crate) const HORIZON: &str = "5000-01-01";

fn horizon() -> NaiveDate {
    NaiveDate::from_ymd_opt(5000, 1, 1).unwrap_or(NaiveDate::MAX)
}

/// How many matching dates the engine tries for a real time of day before it gives up. A date
/// fails only when its matching times have passed (the first) or all lie in a gap, so a few
/// suffice.
const MAX_DATES_TRIED: u32 = 16;

/// How many naive matches a fixed-time search resolves before it gives up: a fixed time matches
/// at most once a day, and only a fold can resolve a match to before the start.
const MAX_FIXED_TRIES: u32 = 8;

#[derive(Clone, Debug)]
pub(super) enum Compiled {
    /// Croner evaluates the whole pattern.
    Croner {
        cron: croner::Cron,
        /// The time of day when the pattern fixes one.
        fixed: Option<NaiveTime>,
        /// The last year the pattern allows (croner's limit when the year is not restricted).
        last_year: u32,
    },
    /// The date fields are walked here; croner finds the time of day on each matching date.
    Engine {
        fields: Box<FieldSet>,
        time_of_day: croner::Cron,
        fixed: Option<NaiveTime>,
        /// Which kinds of year have a matching date (see [`FieldSet::year_kinds`]).
        kinds: u32,
    },
    /// No calendar date can ever match: found once at compile time, so that a search never
    /// has to run to the end of croner's range to find out.
    Never(String),
}

impl Compiled {
    /// A croner pattern, or `Never` when no calendar date matches its day and month fields.
    /// `last_year` is the field API's own last year (croner is handed only years up to its
    /// limit); `None` reads it from the pattern.
    pub(super) fn croner(cron: croner::Cron, last_year: Option<u32>) -> Compiled {
        let p = &cron.pattern;
        let possible = sample_dates().any(|d| {
            p.month_match(d.month()).unwrap_or(false)
                && p.day_match(d.year(), d.month(), d.day(), fields::croner_weekday(d))
                    .unwrap_or(false)
        });
        if !possible {
            return Compiled::Never("no calendar date matches its day and month fields".into());
        }
        let last_year = last_year.unwrap_or_else(|| {
            (1..=fields::CRONER_MAX_YEAR)
                .rev()
                .find(|y| {
                    i32::try_from(*y)
                        .ok()
                        .and_then(|y| p.year_match(y).ok())
                        .unwrap_or(false)
                })
                .unwrap_or(0)
        });
        Compiled::Croner {
            fixed: fixed_time(&cron),
            cron,
            last_year,
        }
    }

    pub(super) fn engine(fields: FieldSet, time_of_day: croner::Cron) -> Compiled {
        let kinds = fields.year_kinds();
        if kinds == 0 {
            return Compiled::Never("no calendar date matches its day fields".into());
        }
        Compiled::Engine {
            fixed: fixed_time(&time_of_day),
            fields: Box::new(fields),
            time_of_day,
            kinds,
        }
    }

    /// The last year the trigger's fields allow.
    pub(super) fn last_year(&self) -> u32 {
        match self {
            Compiled::Croner { last_year, .. } => *last_year,
            Compiled::Engine { fields, .. } => fields.max_year(),
            Compiled::Never(_) => 0,
        }
    }

    /// The first fire time at or after `at` (a whole second), or `None` when there is none
    /// before [`HORIZON`].
    pub(super) fn next(&self, zone: Zone, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let found = match self {
            Compiled::Croner { cron, fixed, .. } => match (fixed, zone) {
                (Some(_), Zone::Named(_)) if !is_utc(zone) => fixed_next(cron, zone, at),
                // UTC and fixed offsets have no gaps nor folds: croner alone.
                _ => croner_next(cron, zone, at),
            },
            Compiled::Engine {
                fields,
                time_of_day,
                fixed,
                kinds,
            } => engine_next(fields, *kinds, time_of_day, *fixed, zone, at),
            Compiled::Never(_) => None,
        }?;
        (found.with_timezone(&zone).date_naive() <= horizon()).then_some(found)
    }
}

fn is_utc(zone: Zone) -> bool {
    matches!(zone, Zone::Named(chrono_tz::UTC | chrono_tz::Tz::Etc__UTC))
}

/// The pattern's time of day when it is fixed (croner's `FixedTime`: a single hour, minute and
/// second, no step).
fn fixed_time(cron: &croner::Cron) -> Option<NaiveTime> {
    if cron.determine_job_type() != JobType::FixedTime {
        return None;
    }
    let midnight = NaiveDateTime::default();
    let first = cron.find_next_occurrence(&midnight.and_utc(), true).ok()?;
    Some(first.time())
}

/// Dates covering every combination of leap year and weekday of January 1 (a 28-year cycle),
/// enough to tell whether any day of any month can match.
fn sample_dates() -> impl Iterator<Item = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    first.iter_days().take_while(|d| d.year() < 2028)
}

/// Croner's next match at or after `at`, read in `zone`. Croner is called with chrono's and
/// chrono-tz's own types, which keeps the zone lookups as cheap as croner's own.
fn croner_next(cron: &croner::Cron, zone: Zone, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match zone {
        // chrono's own UTC needs no zone lookups at all.
        Zone::Named(chrono_tz::UTC | chrono_tz::Tz::Etc__UTC) => {
            cron.find_next_occurrence(&at, true).ok()
        }
        Zone::Named(tz) => cron
            .find_next_occurrence(&at.with_timezone(&tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Zone::Fixed(offset) => cron
            .find_next_occurrence(&at.with_timezone(&offset), true)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// A fixed-time pattern: croner matches naive wall times (read as UTC, which has no gaps), and
/// each match becomes an instant by the zone's rule, on the date it was meant for.
fn fixed_next(cron: &croner::Cron, zone: Zone, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut from = earliest_wall_reaching(zone, at);
    for _ in 0..MAX_FIXED_TRIES {
        let wall = cron.find_next_occurrence(&from.and_utc(), true).ok()?;
        let wall = wall.naive_utc();
        if wall.date() > horizon() {
            return None;
        }
        let instant = resolve_wall_time(zone, wall)?;
        if instant >= at {
            return Some(instant);
        }
        // The earlier reading of a repeated time, before `at`: it has fired.
        from = wall.checked_add_signed(TimeDelta::seconds(1))?;
    }
    None
}

/// The engine: walk matching dates in the zone's calendar and find the time of day on each.
fn engine_next(
    fields: &FieldSet,
    kinds: u32,
    time_of_day: &croner::Cron,
    fixed: Option<NaiveTime>,
    zone: Zone,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // A fixed time on the day before may resolve to `at` itself, past a gap at midnight.
    let mut day = earliest_wall_reaching(zone, at).date();
    for _ in 0..MAX_DATES_TRIED {
        day = next_date(fields, kinds, day)?;
        if day > horizon() {
            return None;
        }
        let found = match fixed {
            Some(time) => resolve_wall_time(zone, day.and_time(time)).filter(|t| *t >= at),
            None => first_time_on(time_of_day, zone, day, at),
        };
        if found.is_some() {
            return found;
        }
        day = day.succ_opt()?;
    }
    None
}

/// The first real instant at or after `at` whose wall time on `day` matches `time_of_day`
/// (croner's search in the zone, kept to the instants that read as `day`).
fn first_time_on(
    time_of_day: &croner::Cron,
    zone: Zone,
    day: NaiveDate,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let day_start = resolve_wall_time(zone, day.and_time(NaiveTime::MIN))?;
    let found = croner_next(time_of_day, zone, at.max(day_start))?;
    let found_day = found.with_timezone(&zone).date_naive();
    if found_day == day {
        return Some(found);
    }
    if found_day < day {
        // A fold across midnight replays the end of the day before after `day` has begun:
        // search again from the last time `day`'s midnight shows.
        let midnight = zone.from_local_datetime(&day.and_time(NaiveTime::MIN));
        let later = midnight.latest()?.with_timezone(&Utc);
        if later > found {
            let again = croner_next(time_of_day, zone, at.max(later))?;
            return (again.with_timezone(&zone).date_naive() == day).then_some(again);
        }
    }
    None
}

/// The first date at or after `date` that passes every date field, or `None` when no allowed
/// year has one. Years whose kind has no matching date are skipped whole, so a search costs at
/// most one pass over the allowed years and two over a year's days.
fn next_date(fields: &FieldSet, kinds: u32, date: NaiveDate) -> Option<NaiveDate> {
    let mut date = date;
    loop {
        let year = u32::try_from(date.year()).ok()?;
        let allowed = fields.next_year(year)?;
        if allowed != year {
            date = NaiveDate::from_ymd_opt(i32::try_from(allowed).ok()?, 1, 1)?;
        }
        if kinds & (1 << fields::year_kind(date.year())) == 0 {
            date = NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)?;
            continue;
        }
        let this_year = date.year();
        while date.year() == this_year {
            if fields.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                continue;
            }
            if fields.date_ok(date) {
                return Some(date);
            }
            date = date.succ_opt()?;
        }
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// `t` rounded down to its second.
pub(super) fn floor_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}
