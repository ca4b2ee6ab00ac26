//! The cron trigger: wall-clock times that match cron fields.
//!
//! This module owns both ways of writing a cron schedule: crontab strings ([`Cron::parse`]),
//! read by croner, and APScheduler's eight fields ([`Cron::new`] and its setters), translated
//! into a croner pattern whenever croner can express them. Croner matches the fields; how a
//! matching wall time becomes an instant (daylight saving gaps and repeated hours) is
//! `search`'s, with the zone's one rule for fixed times (`zone::resolve_wall_time`). Only what
//! croner cannot express (an ISO week, weekday positions mixed with other day rules) walks dates
//! here, and croner still matches the time of day on each.

mod crontab;
mod fields;
mod search;

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Timelike, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use self::fields::{FieldName, FieldSet};
use self::search::{floor_to_second, Compiled, HORIZON};
use super::bounds::{Bounds, Jitter};
use crate::{Error, IntoZone, Result, Zone};

/// Fires at wall-clock times that match cron fields (APScheduler's `cron` trigger).
///
/// Two ways to write one:
///
/// - **A crontab string**, [`Cron::parse`]: 5 fields (`minute hour day month day_of_week`), 6
///   (seconds first) or 7 (year last); `*`, `a-b`, `*/c`, `a-b/c`, lists, names (`jan`, `mon`),
///   `L` (last day of month, or `5L` last Friday), `W` (nearest weekday), `#` (`1#2` second
///   Monday), `?`, and `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`; a year is at most
///   5000 (croner's limit). When both day of
///   month and day of week are restricted, **either** may match (Vixie cron); start the day of
///   week with `+` (`0 0 1-7 * +mon`) to require both.
/// - **APScheduler's fields**, [`Cron::new`] and one setter per field: `year` (1970-9999;
///   fire times are found up to 5000-01-01),
///   `month`, `day`, `week` (ISO 1-53), `day_of_week`, `hour`, `minute`, `second`. Each takes
///   `*`, `*/c`, `a`, `a-b`, `a-b/c`, `a/c`, comma lists and names; `day` also takes `1st`-`5th`
///   and `last` before a weekday name (`"4th wed"`, `"last fri"`) and `last` alone. A step
///   larger than the range it steps over (`"*/31"` or `"4-6/3"` for `day`) is refused, as in
///   APScheduler. Fields more
///   significant than the least significant one given default to `*`, the others to their
///   minimum (so `Cron::new().hour("6").minute("30")` fires daily at 06:30:00, and a `Cron::new()`
///   with no field at all fires on January 1 at midnight, as in APScheduler). When `day` and
///   `day_of_week` are both restricted, **both** must match.
///
/// Days of the week are numbered as in crontab, in both forms: 0 or 7 Sunday, 1 Monday, ...
/// 6 Saturday (APScheduler 4's numbering); `sat-mon` wraps around the week.
///
/// Fields are read on the wall clock of the trigger's zone: a fixed time of day (single hour,
/// minute and second) that falls in a daylight saving gap fires at the first instant after the
/// gap, on the date it was meant for (also when the gap crosses midnight or skips the whole
/// day), and one that happens twice fires once, at its first occurrence; a pattern with a
/// wildcard, range or list in its time fields fires at every real matching instant.
///
/// ```
/// use apsched::trigger::{Cron, Trigger};
/// use apsched::Zone;
/// use chrono::{TimeZone, Utc};
///
/// let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(); // a Wednesday
/// let weekdays: Trigger = Cron::new().day_of_week("mon-fri").hour(1).into();
/// let weekdays = weekdays.prepared(Zone::UTC, now)?;
/// assert_eq!(
///     weekdays.next_fire_time(None, now)?,
///     Some(Utc.with_ymd_and_hms(2024, 5, 2, 1, 0, 0).unwrap())
/// );
///
/// let last_friday: Trigger = Cron::parse("0 18 * * 5L")?.into();
/// assert_eq!(
///     last_friday.next_fire_time(None, now)?,
///     Some(Utc.with_ymd_and_hms(2024, 5, 31, 18, 0, 0).unwrap())
/// );
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Cron {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expression: Option<String>,
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    fields: Fields,
    #[serde(flatten)]
    bounds: Bounds,
    /// The compiled pattern, built once on first use (or at `prepare`); a deserialized
    /// trigger starts without it.
    #[serde(skip)]
    compiled: OnceLock<Result<Compiled>>,
}

/// The field expressions as given, most significant first; `None` where not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    year: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    month: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    week: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day_of_week: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    second: Option<String>,
}

impl Fields {
    fn is_empty(&self) -> bool {
        *self == Fields::default()
    }

    fn given(&self) -> [Option<&str>; 8] {
        [
            self.year.as_deref(),
            self.month.as_deref(),
            self.day.as_deref(),
            self.week.as_deref(),
            self.day_of_week.as_deref(),
            self.hour.as_deref(),
            self.minute.as_deref(),
            self.second.as_deref(),
        ]
    }

    /// APScheduler's defaults: `*` above the least significant given field, the minimum below.
    fn defaulted(&self) -> [&str; 8] {
        let given = self.given();
        let least = given.iter().rposition(Option::is_some);
        std::array::from_fn(|i| match given[i] {
            Some(expr) => expr,
            None if least.is_none_or(|least| i > least) => FieldName::ALL[i].default_below(),
            None => "*",
        })
    }
}

/// A value that can be given to one of [`Cron`]'s field setters: an expression (`&str`,
/// `String`) or a plain number (`Cron::new().hour(6)`).
pub trait CronValue {
    /// The field expression.
    fn into_expression(self) -> String;
}

impl CronValue for &str {
    fn into_expression(self) -> String {
        self.to_string()
    }
}

impl CronValue for String {
    fn into_expression(self) -> String {
        self
    }
}

impl CronValue for &String {
    fn into_expression(self) -> String {
        self.clone()
    }
}

macro_rules! cron_value_for_numbers {
    ($($t:ty),*) => {$(
        impl CronValue for $t {
            fn into_expression(self) -> String {
                self.to_string()
            }
        }
    )*};
}
cron_value_for_numbers!(u8, u16, u32, u64, usize, i32, i64);

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        // The compiled cache is derived from the rest, so it takes no part.
        self.expression == other.expression
            && self.fields == other.fields
            && self.bounds == other.bounds
    }
}

/// What the user gave, in a line: the expression or the fields, and the bounds that are set
/// (not croner's compiled tables, which run to kilobytes).
impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Given<'a>(&'a Fields);
        impl std::fmt::Debug for Given<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let given = FieldName::ALL.iter().zip(self.0.given());
                f.debug_map()
                    .entries(given.filter_map(|(name, expr)| Some((name.name(), expr?))))
                    .finish()
            }
        }
        let mut d = f.debug_struct("Cron");
        match &self.expression {
            Some(expression) => d.field("expression", expression),
            None => d.field("fields", &Given(&self.fields)),
        };
        let Bounds {
            start,
            end,
            timezone,
            jitter,
        } = &self.bounds;
        if let Some(start) = start {
            d.field("start", start);
        }
        if let Some(end) = end {
            d.field("end", end);
        }
        if let Some(zone) = timezone {
            d.field("timezone", &format_args!("{zone}"));
        }
        if let Some(jitter) = jitter.span() {
            d.field("jitter", &jitter);
        }
        d.finish()
    }
}

impl Default for Cron {
    fn default() -> Self {
        Cron::new()
    }
}

macro_rules! field_setter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, expr: impl CronValue) -> Cron {
            self.fields.$name = Some(expr.into_expression());
            self.expression = None;
            self.compiled = OnceLock::new();
            self
        }
    };
}

impl Cron {
    /// A cron trigger built from APScheduler-style fields, none set yet.
    ///
    /// Set fields with [`year`](Cron::year), [`month`](Cron::month), [`day`](Cron::day),
    /// [`week`](Cron::week), [`day_of_week`](Cron::day_of_week), [`hour`](Cron::hour),
    /// [`minute`](Cron::minute) and [`second`](Cron::second). Expressions are checked when the
    /// trigger is prepared (or first asked for a fire time), and a bad one is
    /// [`Error::InvalidCronField`] naming the field and the value.
    pub fn new() -> Cron {
        Cron {
            expression: None,
            fields: Fields::default(),
            bounds: Bounds::default(),
            compiled: OnceLock::new(),
        }
    }

    /// Parses a crontab expression (5, 6 or 7 fields, or `@daily` and its kin); see [`Cron`]
    /// for the syntax.
    ///
    /// ```
    /// use apsched::trigger::Cron;
    ///
    /// assert!(Cron::parse("*/15 9-17 * * mon-fri").is_ok());
    /// assert!(Cron::parse("0 0 12 * * * 2030").is_ok()); // seconds first, year last
    /// let err = Cron::parse("0 25 * * *").unwrap_err();
    /// assert!(err.to_string().starts_with("invalid cron field 'expression': value '0 25 * * *'"));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCronField`] with field `expression`, the whole string as value and
    /// croner's reason.
    pub fn parse(expression: &str) -> Result<Cron> {
        let mut cron = Cron::new();
        cron.expression = Some(expression.to_string());
        let compiled = cron.compile()?;
        // Keep the work just done: the cache is empty, so this always succeeds.
        let _ = cron.compiled.set(Ok(compiled));
        Ok(cron)
    }

    /// Another name for [`Cron::parse`], as APScheduler's `CronTrigger.from_crontab`.
    ///
    /// # Errors
    /// As [`Cron::parse`].
    pub fn from_crontab(expression: &str) -> Result<Cron> {
        Cron::parse(expression)
    }

    field_setter!(
        /// The year field: 1970-9999, as APScheduler. Fire times are found up to 5000-01-01 on
        /// the trigger's wall clock (the last date croner's search reaches): a trigger whose
        /// years all lie later is accepted and reports [`Error::TriggerNeverFires`] when asked.
        /// (A crontab string refuses years past 5000.)
        year
    );
    field_setter!(
        /// The month field: 1-12 or `jan`-`dec`.
        month
    );
    field_setter!(
        /// The day-of-month field: 1-31, `last`, `1st mon`-`5th sun`, `last fri`.
        day
    );
    field_setter!(
        /// The ISO week field: 1-53.
        week
    );
    field_setter!(
        /// The day-of-week field: 0-7 (0 and 7 are Sunday) or `mon`-`sun`; ranges may wrap
        /// (`sat-mon`).
        day_of_week
    );
    field_setter!(
        /// The hour field: 0-23.
        hour
    );
    field_setter!(
        /// The minute field: 0-59.
        minute
    );
    field_setter!(
        /// The second field: 0-59.
        second
    );

    /// No run before this instant.
    #[must_use]
    pub fn start<Tz: TimeZone>(mut self, start: DateTime<Tz>) -> Cron {
        self.bounds.start = Some(start.with_timezone(&Utc));
        self
    }

    /// No run after this instant.
    #[must_use]
    pub fn end<Tz: TimeZone>(mut self, end: DateTime<Tz>) -> Cron {
        self.bounds.end = Some(end.with_timezone(&Utc));
        self
    }

    /// The zone whose wall clock the fields are read in (default: the scheduler's zone).
    #[must_use]
    pub fn timezone(mut self, zone: impl IntoZone) -> Cron {
        self.bounds.timezone = Some(zone.into_zone());
        self
    }

    /// Delays each run by a uniform random span in `[0, jitter]`.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Cron {
        self.bounds.jitter = Jitter::new(jitter);
        self
    }

    /// The crontab expression, when the trigger was parsed from one.
    pub fn expression(&self) -> Option<&str> {
        self.expression.as_deref()
    }

    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone) -> Result<()> {
        self.bounds.settle_zone(default_zone);
        self.bounds.check()?;
        self.compiled().map(|_| ())
    }

    fn compiled(&self) -> Result<&Compiled> {
        self.compiled
            .get_or_init(|| self.compile())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn compile(&self) -> Result<Compiled> {
        if let Some(expression) = &self.expression {
            if !self.fields.is_empty() {
                return Err(Error::InvalidCronField {
                    field: "expression",
                    value: expression.clone(),
                    reason: "is given together with fields: a cron trigger takes one or the other"
                        .into(),
                });
            }
            // Vixie cron semantics: day of month OR day of week unless the pattern says `+`.
            let parser = CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Optional)
                .dom_and_dow(false)
                .build();
            let refused = |reason| Error::InvalidCronField {
                field: "expression",
                value: expression.clone(),
                reason,
            };
            let pattern = crontab::prepare(expression).map_err(refused)?;
            let cron = parse_catching(&parser, &pattern).map_err(refused)?;
            return Ok(Compiled::croner(cron, None));
        }
        let exprs = self.fields.defaulted();
        let fields = FieldSet::parse(exprs)?;
        let parser = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Required)
            .dom_and_dow(true)
            .build();
        let internal = |reason: String, pattern: &str| Error::InvalidCronField {
            field: "expression",
            value: pattern.to_string(),
            reason: format!("internal translation refused by croner: {reason}"),
        };
        if let Some(pattern) = fields.to_croner() {
            let cron = parse_catching(&parser, &pattern).map_err(|r| internal(r, &pattern))?;
            return Ok(Compiled::croner(cron, Some(fields.max_year())));
        }
        let pattern = fields.time_of_day_pattern();
        let time_of_day = parse_catching(&CronParser::builder().build(), &pattern)
            .map_err(|r| internal(r, &pattern))?;
        Ok(Compiled::engine(fields, time_of_day))
    }

    pub(crate) fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let from = match previous {
            // Strictly after the previous run, whatever `now` says: after a clock that jumped
            // back, the job must not fire again.
            Some(previous) => floor_to_second(previous).checked_add_signed(TimeDelta::seconds(1)),
            None => Some(now),
        };
        match from {
            Some(from) => self.first_at_or_after(from),
            // Nothing comes after the end of chrono's range.
            None => Ok(None),
        }
    }

    pub(crate) fn fire_time_at_or_after(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.first_at_or_after(at)
    }

    fn first_at_or_after(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let compiled = self.compiled()?;
        let Some(at) = ceil_to_second(self.bounds.not_before_start(at)) else {
            return Ok(None);
        };
        if self.bounds.past_end(at) {
            return Ok(None);
        }
        let zone = self.bounds.timezone.unwrap_or_default();
        if let Compiled::Never(reason) = compiled {
            return Err(self.never_fires(reason.clone()));
        }
        if let Some(next) = compiled.next(zone, at) {
            return Ok(Some(next).filter(|n| !self.bounds.past_end(*n)));
        }
        // No time is left before croner's horizon. An end bound, or a year field whose last
        // year has come, makes that an ordinary finish.
        let last_year = compiled.last_year();
        let year = u32::try_from(at.with_timezone(&zone).year()).unwrap_or(0);
        if self.bounds.end.is_some() || year >= last_year {
            return Ok(None);
        }
        let reason = if last_year > fields::CRONER_MAX_YEAR {
            format!(
                "its years run to {last_year}, but fire times are only found up to {HORIZON} \
                 (croner's search horizon)"
            )
        } else {
            format!("no matching time before the search horizon ({HORIZON})")
        };
        Err(self.never_fires(reason))
    }

    /// Why [`Cron::first_at_or_after`] found no fire time from `now`: the year field ran out,
    /// or the end bound came.
    pub(crate) fn finished_reason(&self, now: DateTime<Utc>) -> String {
        let zone = self.bounds.timezone.unwrap_or_default();
        let at = self.bounds.not_before_start(now);
        if let Ok(compiled) = self.compiled() {
            let last = compiled.last_year();
            let year = u32::try_from(at.with_timezone(&zone).year()).unwrap_or(0);
            if year > last {
                return format!("its year field has no year left: the last it allows is {last}");
            }
            if year == last && self.bounds.end.is_none_or(|end| end >= at) {
                return format!(
                    "its year field has no year left: {last}, the last it allows, has no match \
                     after {}",
                    at.to_rfc3339()
                );
            }
        }
        self.bounds.end_reason(now)
    }

    fn never_fires(&self, reason: String) -> Error {
        Error::TriggerNeverFires {
            trigger: self.describe(),
            reason,
        }
    }

    /// English: croner's description where croner evaluates the pattern, the fields otherwise.
    pub(crate) fn describe(&self) -> String {
        let text = match (self.compiled(), &self.expression) {
            (Ok(Compiled::Croner { cron, .. }), _) => cron.describe(),
            (_, Some(expression)) => format!("cron '{expression}'"),
            (_, None) => {
                let parts: Vec<String> = FieldName::ALL
                    .iter()
                    .zip(self.fields.defaulted())
                    .filter(|(_, expr)| *expr != "*")
                    .map(|(name, expr)| format!("{}='{expr}'", name.name()))
                    .collect();
                format!("cron fields {}", parts.join(", "))
            }
        };
        match self.bounds.timezone {
            Some(zone) => format!("{text} ({zone})"),
            None => text,
        }
    }
}

/// Parses with croner, turning a panic inside it into an error: parsing must never panic on
/// any input, and croner's parser is not ours to audit line by line.
fn parse_catching(parser: &CronParser, pattern: &str) -> std::result::Result<croner::Cron, String> {
    let outcome = std::panic::catch_unwind(|| parser.parse(pattern));
    match outcome {
        Ok(Ok(cron)) => Ok(cron),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("croner could not parse it".into()),
    }
}

/// `None` past the end of chrono's range.
fn ceil_to_second(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if t.nanosecond() == 0 {
        Some(t)
    } else {
        floor_to_second(t).checked_add_signed(TimeDelta::seconds(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn apscheduler_defaults() {
        let f = Fields {
            hour: Some("6".into()),
            minute: Some("30".into()),
            ..Fields::default()
        };
        assert_eq!(f.defaulted(), ["*", "*", "*", "*", "*", "6", "30", "0"]);
        let f = Fields {
            day_of_week: Some("mon-fri".into()),
            hour: Some("1".into()),
            ..Fields::default()
        };
        assert_eq!(
            f.defaulted(),
            ["*", "*", "*", "*", "mon-fri", "1", "0", "0"]
        );
        assert_eq!(
            Fields::default().defaulted(),
            ["*", "1", "1", "*", "*", "0", "0", "0"]
        );
    }

    #[test]
    fn daily_and_strictly_after_previous() {
        let c = Cron::new().hour("6").minute("30");
        let now = utc(2024, 5, 1, 6, 30, 0);
        assert_eq!(c.next_fire_time(None, now).unwrap(), Some(now));
        assert_eq!(
            c.next_fire_time(Some(now), now - TimeDelta::days(3))
                .unwrap(),
            Some(utc(2024, 5, 2, 6, 30, 0))
        );
    }

    #[test]
    fn iso_week_uses_engine() {
        let c = Cron::new().week("15").day_of_week("mon").hour(9);
        assert!(matches!(c.compiled().unwrap(), Compiled::Engine { .. }));
        // ISO week 15 of 2024 starts Monday April 8.
        assert_eq!(
            c.next_fire_time(None, utc(2024, 1, 1, 0, 0, 0)).unwrap(),
            Some(utc(2024, 4, 8, 9, 0, 0))
        );
    }

    #[test]
    fn debug_shows_what_was_given() {
        let parsed = Cron::parse("0 12 * * *")
            .unwrap()
            .timezone(Zone::UTC)
            .jitter(Duration::from_secs(2));
        assert_eq!(
            format!("{parsed:?}"),
            r#"Cron { expression: "0 12 * * *", timezone: UTC, jitter: 2s }"#
        );
        let fields = Cron::new()
            .day("last fri")
            .hour(6)
            .end(utc(2030, 1, 1, 0, 0, 0));
        let _ = fields.compiled();
        assert_eq!(
            format!("{fields:?}"),
            r#"Cron { fields: {"day": "last fri", "hour": "6"}, end: 2030-01-01T00:00:00Z }"#
        );
        let trigger = crate::trigger::Trigger::from(parsed);
        assert!(format!("{trigger:?}").len() < 100, "{trigger:?}");
    }

    #[test]
    fn never_fires_is_an_error() {
        let c = Cron::parse("0 0 30 2 *").unwrap();
        assert!(matches!(
            c.next_fire_time(None, utc(2024, 1, 1, 0, 0, 0)),
            Err(Error::TriggerNeverFires { .. })
        ));
    }
}
