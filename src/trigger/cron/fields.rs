//! The APScheduler-style cron fields: parsing each field's expression into the set of values it
//! matches, and testing calendar dates against the day-level fields.
//!
//! This module owns the field grammar (`*`, `*/a`, `a`, `a-b`, `a-b/c`, `a/c`, lists, names,
//! `xth y`, `last x`, `last`) and its error messages. It does not search for fire times: that is
//! croner's job, or the engine's for what croner cannot express.

use chrono::{Datelike, NaiveDate, Weekday};

use crate::{Error, Result};

/// One of the eight fields, most significant first (APScheduler's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldName {
    Year,
    Month,
    Day,
    Week,
    DayOfWeek,
    Hour,
    Minute,
    Second,
}

impl FieldName {
    pub(crate) const ALL: [FieldName; 8] = [
        FieldName::Year,
        FieldName::Month,
        FieldName::Day,
        FieldName::Week,
        FieldName::DayOfWeek,
        FieldName::Hour,
        FieldName::Minute,
        FieldName::Second,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldName::Year => "year",
            FieldName::Month => "month",
            FieldName::Day => "day",
            FieldName::Week => "week",
            FieldName::DayOfWeek => "day_of_week",
            FieldName::Hour => "hour",
            FieldName::Minute => "minute",
            FieldName::Second => "second",
        }
    }

    /// The accepted range of plain numbers. Day of week takes 0-7 (0 and 7 are Sunday).
    fn range(self) -> (u32, u32) {
        match self {
            FieldName::Year => (1970, 9999),
            FieldName::Month => (1, 12),
            FieldName::Day => (1, 31),
            FieldName::Week => (1, 53),
            FieldName::DayOfWeek => (0, 7),
            FieldName::Hour => (0, 23),
            FieldName::Minute | FieldName::Second => (0, 59),
        }
    }

    /// APScheduler's value for a field below the least significant one given.
    pub(crate) fn default_below(self) -> &'static str {
        match self {
            FieldName::Year | FieldName::Week | FieldName::DayOfWeek => "*",
            FieldName::Month | FieldName::Day => "1",
            FieldName::Hour | FieldName::Minute | FieldName::Second => "0",
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Index = crontab number (0 = Sunday).
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A run of years `from..=to` every `step`, as given (croner is handed the runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct YearRun {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) step: u32,
}

/// The year field: its runs, and the years they allow as a bit set over 1970-9999, so that
/// finding the next allowed year costs a few word scans however many runs there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Years {
    pub(crate) runs: Vec<YearRun>,
    bits: Vec<u64>,
}

const FIRST_YEAR: u32 = 1970;
const LAST_YEAR: u32 = 9999;

impl Years {
    fn new(runs: Vec<YearRun>) -> Years {
        let words = ((LAST_YEAR - FIRST_YEAR) / 64 + 1) as usize;
        let mut bits = vec![0u64; words];
        for run in &runs {
            let mut year = Some(run.from);
            while let Some(y) = year.filter(|y| *y <= run.to) {
                let i = y - FIRST_YEAR;
                bits[(i / 64) as usize] |= 1 << (i % 64);
                year = y.checked_add(run.step);
            }
        }
        Years { runs, bits }
    }

    /// The first allowed year at or after `year`.
    fn next(&self, year: u32) -> Option<u32> {
        let mut i = year.max(FIRST_YEAR).checked_sub(FIRST_YEAR)?;
        while let Some(word) = self.bits.get((i / 64) as usize) {
            let rest = word >> (i % 64);
            if rest != 0 {
                return Some(FIRST_YEAR + i + rest.trailing_zeros());
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    fn last(&self) -> u32 {
        self.runs.iter().map(|r| r.to).max().unwrap_or(0)
    }
}

/// The day field: plain days of month plus APScheduler's weekday positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DaySpec {
    /// Bit d set: day d of the month.
    pub(crate) days: u64,
    /// `last`: the month's last day.
    pub(crate) last_day: bool,
    /// `xth y`: (x in 1..=5, y as days from Sunday).
    pub(crate) nth: Vec<(u8, u8)>,
    /// `last y`: bit y (days from Sunday).
    pub(crate) last_weekday: u8,
}

impl DaySpec {
    pub(crate) fn has_positions(&self) -> bool {
        !self.nth.is_empty() || self.last_weekday != 0
    }

    fn matches(&self, date: NaiveDate, month_len: u32) -> bool {
        let day = date.day();
        if self.days & (1 << day) != 0 || (self.last_day && day == month_len) {
            return true;
        }
        let wd = date.weekday().num_days_from_sunday() as u8;
        if self.last_weekday & (1 << wd) != 0 && day + 7 > month_len {
            return true;
        }
        let position = ((day - 1) / 7 + 1) as u8;
        self.nth.iter().any(|&(n, w)| n == position && w == wd)
    }
}

/// Every field parsed. Bit sets are indexed by value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldSet {
    /// `None`: any year.
    pub(crate) years: Option<Years>,
    pub(crate) months: u64,
    pub(crate) day: Option<DaySpec>,
    pub(crate) weeks: Option<u64>,
    /// Bits by days from Sunday; `None`: any weekday.
    pub(crate) weekdays: Option<u8>,
    pub(crate) hours: u64,
    pub(crate) minutes: u64,
    pub(crate) seconds: u64,
}

impl FieldSet {
    /// Parses the eight field expressions (already defaulted, most significant first).
    pub(crate) fn parse(exprs: [&str; 8]) -> Result<FieldSet> {
        let [year, month, day, week, dow, hour, minute, second] = exprs;
        let years = parse_years(year)?;
        let months = parse_bits(FieldName::Month, month)?;
        let day = if day.trim() == "*" {
            None
        } else {
            Some(parse_day(day)?)
        };
        let weeks = if week.trim() == "*" {
            None
        } else {
            Some(parse_bits(FieldName::Week, week)?)
        };
        let weekdays = if dow.trim() == "*" {
            None
        } else {
            let bits = parse_bits(FieldName::DayOfWeek, dow)?;
            // 7 is Sunday too: one numbering for both spellings.
            let bits = (bits | (bits >> 7)) & 0x7f;
            Some(bits as u8).filter(|b| *b != 0x7f)
        };
        Ok(FieldSet {
            years,
            months,
            day,
            weeks,
            weekdays,
            hours: parse_bits(FieldName::Hour, hour)?,
            minutes: parse_bits(FieldName::Minute, minute)?,
            seconds: parse_bits(FieldName::Second, second)?,
        })
    }

    /// The first allowed year at or after `year`.
    pub(crate) fn next_year(&self, year: u32) -> Option<u32> {
        match &self.years {
            None => (year <= LAST_YEAR).then_some(year),
            Some(years) => years.next(year),
        }
    }

    pub(crate) fn max_year(&self) -> u32 {
        match &self.years {
            None => LAST_YEAR,
            Some(years) => years.last(),
        }
    }

    /// Whether `date` passes the month, week, day and day-of-week fields (not the year).
    pub(crate) fn date_ok(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        if let Some(weeks) = self.weeks {
            if weeks & (1 << date.iso_week().week()) == 0 {
                return false;
            }
        }
        if let Some(weekdays) = self.weekdays {
            if weekdays & (1 << date.weekday().num_days_from_sunday()) == 0 {
                return false;
            }
        }
        match &self.day {
            None => true,
            Some(day) => day.matches(date, month_len(date.year(), date.month())),
        }
    }

    /// Which kinds of year ([`year_kind`]) have a date that passes the date fields. Whether a
    /// date passes depends on its month, its day and its year's kind alone, and every kind
    /// occurs in 2000-2027, so these years tell for all.
    pub(crate) fn year_kinds(&self) -> u32 {
        let mut kinds = 0u32;
        for year in 2000..2028 {
            let kind = 1 << year_kind(year);
            if kinds & kind != 0 {
                continue;
            }
            let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) else {
                continue;
            };
            if first
                .iter_days()
                .take_while(|d| d.year() == year)
                .any(|d| self.date_ok(d))
            {
                kinds |= kind;
            }
        }
        kinds
    }

    /// The croner pattern (7 fields, seconds first, year last) with the same meaning when the
    /// fields are read with croner's `dom_and_dow` (both must match), or `None` when croner
    /// cannot express them: an ISO week, years past croner's limit, or weekday positions mixed
    /// with plain days or a day-of-week restriction.
    pub(crate) fn to_croner(&self) -> Option<String> {
        if self.weeks.is_some() {
            return None;
        }
        let year = match &self.years {
            None => "*".to_string(),
            Some(years) => {
                // Croner searches no further than its year limit, and neither can the engine
                // (it asks croner for the time of day), so later years are cut here.
                let runs: Vec<String> = years
                    .runs
                    .iter()
                    .filter(|r| r.from <= CRONER_MAX_YEAR)
                    .map(|r| {
                        let to = r.to.min(CRONER_MAX_YEAR);
                        // A run cut at croner's limit may be left with its first year alone.
                        if r.step > to - r.from {
                            r.from.to_string()
                        } else {
                            format!("{}-{to}/{}", r.from, r.step)
                        }
                    })
                    .collect();
                if runs.is_empty() {
                    return None;
                }
                runs.join(",")
            }
        };
        let (day, dow) = match (&self.day, self.weekdays) {
            (None, None) => ("*".to_string(), "*".to_string()),
            (None, Some(w)) => ("*".to_string(), render_bits(u64::from(w), 0, 6)),
            (Some(d), weekdays) if !d.has_positions() => {
                let mut day = render_bits(d.days, 1, 31);
                if d.last_day {
                    day = if d.days == 0 {
                        "L".into()
                    } else if day == "*" {
                        day
                    } else {
                        format!("{day},L")
                    };
                }
                let dow = weekdays.map_or("*".to_string(), |w| render_bits(u64::from(w), 0, 6));
                (day, dow)
            }
            (Some(d), None) if d.days == 0 && !d.last_day => {
                let mut parts: Vec<String> =
                    d.nth.iter().map(|(n, w)| format!("{w}#{n}")).collect();
                for w in 0..7 {
                    if d.last_weekday & (1 << w) != 0 {
                        parts.push(format!("{w}L"));
                    }
                }
                ("*".to_string(), parts.join(","))
            }
            _ => return None,
        };
        Some(format!(
            "{} {} {} {} {} {} {}",
            render_bits(self.seconds, 0, 59),
            render_bits(self.minutes, 0, 59),
            render_bits(self.hours, 0, 23),
            day,
            render_bits(self.months, 1, 12),
            dow,
            year
        ))
    }

    /// The croner pattern of the time-of-day fields alone, for the engine.
    pub(crate) fn time_of_day_pattern(&self) -> String {
        format!(
            "{} {} {} * * *",
            render_bits(self.seconds, 0, 59),
            render_bits(self.minutes, 0, 59),
            render_bits(self.hours, 0, 23)
        )
    }
}

/// The last year croner matches (`croner::YEAR_UPPER_LIMIT`): its searches end on
/// 5000-01-01, the last date they can reach.
pub(crate) const CRONER_MAX_YEAR: u32 = 5000;

/// A year's kind, 0-27: the weekday of its January 1, whether it is a leap year, and whether
/// the year before was (which decides the ISO week of its first days).
pub(crate) fn year_kind(year: i32) -> u32 {
    let leap = |y: i32| NaiveDate::from_ymd_opt(y, 2, 29).is_some();
    let weekday =
        NaiveDate::from_ymd_opt(year, 1, 1).map_or(0, |d| d.weekday().num_days_from_sunday());
    let previous = year.checked_sub(1).is_some_and(leap);
    weekday * 4 + u32::from(leap(year)) * 2 + u32::from(previous)
}

pub(crate) fn month_len(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

/// `*` when every value in `min..=max` is set, otherwise the values as a comma list.
fn render_bits(bits: u64, min: u32, max: u32) -> String {
    let values: Vec<String> = (min..=max)
        .filter(|v| bits & (1 << v) != 0)
        .map(|v| v.to_string())
        .collect();
    if values.len() as u32 == max - min + 1 {
        "*".into()
    } else {
        values.join(",")
    }
}

fn err(field: FieldName, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidCronField {
        field: field.name(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Splits a field into its comma-separated items, refusing empty ones.
fn items(field: FieldName, expr: &str) -> Result<Vec<String>> {
    let lowered = expr.trim().to_ascii_lowercase();
    if lowered.is_empty() {
        return Err(err(field, expr, "is empty"));
    }
    lowered
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                Err(err(field, expr, "has an empty list item"))
            } else {
                Ok(item.to_string())
            }
        })
        .collect()
}

/// One number or name of a field.
fn value(field: FieldName, text: &str) -> Result<u32> {
    let named = match field {
        FieldName::Month => MONTHS.iter().position(|m| *m == text).map(|i| i as u32 + 1),
        FieldName::DayOfWeek => WEEKDAYS.iter().position(|d| *d == text).map(|i| i as u32),
        _ => None,
    };
    if let Some(v) = named {
        return Ok(v);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let hint = match field {
            FieldName::Month => " (expected a number or jan-dec)",
            FieldName::DayOfWeek => " (expected a number 0-7 or mon-sun)",
            _ => "",
        };
        return Err(err(field, text, format!("is not a valid value{hint}")));
    }
    let (min, max) = field.range();
    match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(err(field, text, format!("is out of range {min}-{max}"))),
    }
}

fn step(field: FieldName, item: &str, text: &str) -> Result<u32> {
    match text.parse::<u32>() {
        Ok(s) if s >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(s),
        _ => Err(err(
            field,
            item,
            "has an invalid step (expected a whole number of at least 1)",
        )),
    }
}

/// A range item `*`, `a`, `a-b`, with an optional `/step`, as (from, to, step); `wrapped` when
/// a day-of-week range runs past Saturday (`sat-mon`).
fn range_item(field: FieldName, item: &str) -> Result<(u32, u32, u32)> {
    let (range, step_text) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    let (min, max) = field.range();
    let (from, to) = if range == "*" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        if a.trim().is_empty() || b.trim().is_empty() {
            return Err(err(field, item, "is not a valid range (expected a-b)"));
        }
        (value(field, a.trim())?, value(field, b.trim())?)
    } else {
        let a = value(field, range.trim())?;
        // `a/c` runs from a to the end of the field, as APScheduler.
        (a, if step_text.is_some() { max } else { a })
    };
    let step = match step_text {
        Some(s) => step(field, item, s.trim())?,
        None => 1,
    };
    if from > to && field != FieldName::DayOfWeek {
        return Err(err(
            field,
            item,
            format!("is a range whose start {from} is after its end {to}"),
        ));
    }
    if step_text.is_some() {
        // APScheduler's validate_range: a step longer than the range it steps over would match
        // its first value alone, which is a mistake, not a schedule.
        let span = if field == FieldName::DayOfWeek {
            weekday_span(from, to)
        } else {
            to - from
        };
        let span = if range == "*" && field == FieldName::DayOfWeek {
            6
        } else {
            span
        };
        if step > span {
            return Err(err(
                field,
                item,
                format!(
                    "has a step of {step}, larger than the {span} its range {from}-{to} spans \
                     (only its first value would match)"
                ),
            ));
        }
    }
    Ok((from, to, step))
}

/// Weekday ranges wrap: `sat-mon` spans 2 days. 7 and 0 are both Sunday, and `0-7` is the
/// whole week.
fn weekday_span(from: u32, to: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        to + 7 - from
    }
}

/// Sets bit `from + k × step` for every such value up to `to`.
fn set_steps(bits: &mut u64, from: u32, to: u32, step: u32, map: impl Fn(u32) -> u32) {
    let mut v = Some(from);
    while let Some(value) = v.filter(|v| *v <= to) {
        *bits |= 1 << map(value);
        v = value.checked_add(step);
    }
}

fn parse_bits(field: FieldName, expr: &str) -> Result<u64> {
    let mut bits = 0u64;
    for item in items(field, expr)? {
        let (from, to, step) = range_item(field, &item)?;
        if field == FieldName::DayOfWeek {
            // Sunday as 7 starts a range on Sunday: 7-3 is sun-wed, 7 (or 7-7) Sunday alone.
            let (from, to) = if from == 7 { (0, to % 7) } else { (from, to) };
            let span = weekday_span(from, to);
            set_steps(&mut bits, 0, span, step, |offset| (from + offset) % 7);
        } else {
            set_steps(&mut bits, from, to, step, |v| v);
        }
    }
    Ok(bits)
}

fn parse_years(expr: &str) -> Result<Option<Years>> {
    let field = FieldName::Year;
    if expr.trim() == "*" {
        return Ok(None);
    }
    let mut runs = Vec::new();
    for item in items(field, expr)? {
        let (from, to, step) = range_item(field, &item)?;
        runs.push(YearRun { from, to, step });
    }
    Ok(Some(Years::new(runs)))
}

fn weekday_name(field: FieldName, item: &str, text: &str) -> Result<u8> {
    WEEKDAYS
        .iter()
        .position(|d| *d == text.trim())
        .map(|i| i as u8)
        .ok_or_else(|| {
            err(
                field,
                item,
                "names no weekday (expected e.g. '2nd mon', 'last fri')",
            )
        })
}

fn parse_day(expr: &str) -> Result<DaySpec> {
    let field = FieldName::Day;
    let mut spec = DaySpec::default();
    for item in items(field, expr)? {
        if item == "last" {
            spec.last_day = true;
            continue;
        }
        if let Some((position, weekday)) = item.split_once(char::is_whitespace) {
            let wd = weekday_name(field, &item, weekday)?;
            match position {
                "last" => spec.last_weekday |= 1 << wd,
                "1st" | "2nd" | "3rd" | "4th" | "5th" => {
                    let n = position.as_bytes()[0] - b'0';
                    spec.nth.push((n, wd));
                }
                _ => {
                    return Err(err(
                        field,
                        &item,
                        "has an unknown position (expected 1st-5th or last)",
                    ))
                }
            }
            continue;
        }
        let (from, to, step) = range_item(field, &item)?;
        set_steps(&mut spec.days, from, to, step, |v| v);
    }
    Ok(spec)
}

/// The weekday of a date as croner counts it, for the satisfiability check.
pub(crate) fn croner_weekday(date: NaiveDate) -> croner::Weekday {
    let n = match date.weekday() {
        Weekday::Sun => 0,
        other => other.number_from_monday(),
    };
    croner::Weekday::from_days_from_sunday(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(exprs: [&str; 8]) -> FieldSet {
        FieldSet::parse(exprs).unwrap()
    }

    #[test]
    fn weekday_numbering_and_wrapping() {
        assert_eq!(
            parse_bits(FieldName::DayOfWeek, "sat-mon").unwrap(),
            0b100_0011
        );
        assert_eq!(parse_bits(FieldName::DayOfWeek, "5-1").unwrap(), 0b110_0011);
        let s = set(["*", "*", "*", "*", "7", "0", "0", "0"]);
        assert_eq!(s.weekdays, Some(1));
        let s = set(["*", "*", "*", "*", "0-7", "0", "0", "0"]);
        assert_eq!(s.weekdays, None);
    }

    #[test]
    fn croner_translation() {
        let s = set(["*", "*", "*", "*", "mon-fri", "1", "0", "0"]);
        assert_eq!(s.to_croner().unwrap(), "0 0 1 * * 1,2,3,4,5 *");
        let s = set(["*", "*", "4th wed", "*", "*", "0", "0", "0"]);
        assert_eq!(s.to_croner().unwrap(), "0 0 0 * * 3#4 *");
        let s = set(["*", "*", "*", "15", "*", "0", "0", "0"]);
        assert_eq!(s.to_croner(), None);
        let s = set(["2009/2", "1/3", "5-13", "*", "*", "0", "0", "0"]);
        assert_eq!(
            s.to_croner().unwrap(),
            "0 0 0 5,6,7,8,9,10,11,12,13 1,4,7,10 * 2009-5000/2"
        );
    }

    #[test]
    fn errors_name_field_and_value() {
        let e = FieldSet::parse(["*", "*", "*", "*", "*", "25", "0", "0"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid cron field 'hour': value '25' is out of range 0-23"
        );
        let e = FieldSet::parse(["*", "*", "9th mon", "*", "*", "0", "0", "0"]).unwrap_err();
        assert!(matches!(e, Error::InvalidCronField { field: "day", .. }));
    }
}
