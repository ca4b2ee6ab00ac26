//! Time zones: an IANA zone from chrono-tz or a fixed UTC offset, as one `chrono::TimeZone`.
//!
//! Triggers and the scheduler's default take a [`Zone`]. Rules come from chrono-tz; this module
//! joins the two kinds so that a `DateTime<Zone>` can carry either, and owns the one rule that
//! turns a wall-clock time into an instant (`resolve_wall_time`), which cron and calendar
//! triggers share.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Utc,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// A time zone: an IANA zone (`Europe/Berlin`) or a fixed offset (`+08:00`).
///
/// Parse one with [`Zone::parse`] (or `str::parse`); an unknown name is
/// [`Error::UnknownTimeZone`]. It implements [`chrono::TimeZone`], so `DateTime<Zone>` works as
/// any chrono date time, and it serializes as its name.
///
/// ```
/// use apsched::Zone;
///
/// let berlin = Zone::parse("Europe/Berlin")?;
/// let fixed = Zone::parse("+05:30")?;
/// assert_eq!(berlin.to_string(), "Europe/Berlin");
/// assert_eq!(fixed.to_string(), "+05:30");
/// assert!(Zone::parse("Mars/Olympus_Mons").is_err());
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// A zone of the IANA time zone database, with its daylight saving rules.
    Named(chrono_tz::Tz),
    /// A fixed offset from UTC, without daylight saving time.
    Fixed(FixedOffset),
}

impl Zone {
    /// Coordinated Universal Time.
    pub const UTC: Zone = Zone::Named(chrono_tz::UTC);

    /// Parses an IANA name (`Asia/Shanghai`, `UTC`) or a fixed offset (`+08:00`, `-0330`, `Z`).
    ///
    /// # Errors
    /// [`Error::UnknownTimeZone`] naming the text when it is neither.
    pub fn parse(name: &str) -> Result<Zone> {
        let trimmed = name.trim();
        if let Ok(tz) = trimmed.parse::<chrono_tz::Tz>() {
            return Ok(Zone::Named(tz));
        }
        if trimmed == "Z" {
            return Ok(Zone::UTC);
        }
        if trimmed.starts_with(['+', '-']) {
            if let Ok(offset) = trimmed.parse::<FixedOffset>() {
                return Ok(Zone::Fixed(offset));
            }
        }
        Err(Error::UnknownTimeZone(name.to_string()))
    }

    /// The machine's local zone by its IANA name, or UTC when it cannot be told.
    pub fn local() -> Zone {
        iana_time_zone::get_timezone()
            .ok()
            .and_then(|name| name.parse::<chrono_tz::Tz>().ok())
            .map_or(Zone::UTC, Zone::Named)
    }
}

impl Default for Zone {
    /// UTC.
    fn default() -> Self {
        Zone::UTC
    }
}

impl From<chrono_tz::Tz> for Zone {
    fn from(tz: chrono_tz::Tz) -> Self {
        Zone::Named(tz)
    }
}

impl From<FixedOffset> for Zone {
    fn from(offset: FixedOffset) -> Self {
        Zone::Fixed(offset)
    }
}

impl From<chrono::Utc> for Zone {
    fn from(_: chrono::Utc) -> Self {
        Zone::UTC
    }
}

/// What a trigger's `timezone(..)` setter takes: a [`Zone`], a chrono-tz zone
/// (`apsched::tz::Asia::Shanghai`; `apsched::tz` is chrono-tz), a [`FixedOffset`] or
/// [`chrono::Utc`].
///
/// A name is not a zone until it is parsed, so a string does not compile here: parse it with
/// [`Zone::parse`] (and handle the error where the name comes from), or name the zone statically.
///
/// ```
/// use apsched::trigger::Cron;
/// use apsched::Zone;
///
/// // Named statically: a typo does not compile.
/// let shanghai = Cron::parse("30 6 * * *")?.timezone(apsched::tz::Asia::Shanghai);
/// // From configuration: an unknown name is an error that names it.
/// let name = "Asia/Shanghai";
/// let configured = Cron::parse("30 6 * * *")?.timezone(Zone::parse(name)?);
/// assert_eq!(shanghai, configured);
/// assert!(Zone::parse("Asia/Shanghia").is_err());
/// # Ok::<(), apsched::Error>(())
/// ```
///
/// ```compile_fail
/// // error: a time zone name must be parsed: `Zone::parse("Asia/Shanghai")?`, ...
/// let cron = apsched::trigger::Cron::parse("30 6 * * *").unwrap().timezone("Asia/Shanghai");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a time zone",
    label = "a time zone name must be parsed: `Zone::parse(\"Asia/Shanghai\")?`, or named statically: `apsched::tz::Asia::Shanghai`"
)]
pub trait IntoZone {
    /// The zone.
    fn into_zone(self) -> Zone;
}

// One impl per zone type rather than a blanket `impl<T: Into<Zone>>`: with a blanket impl, rustc
// reports the failed `Zone: From<&str>` bound and never shows the message above.
macro_rules! into_zone {
    ($($t:ty),*) => {$(
        impl IntoZone for $t {
            fn into_zone(self) -> Zone {
                self.into()
            }
        }
    )*};
}
into_zone!(Zone, chrono_tz::Tz, FixedOffset, chrono::Utc);

impl FromStr for Zone {
    type Err = Error;
    fn from_str(s: &str) -> Result<Zone> {
        Zone::parse(s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Zone::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// The offset of a [`Zone`] at one instant; displays as the zone's abbreviation (`CEST`) or
/// as `+08:00` for a fixed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneOffset {
    /// The offset of an IANA zone.
    Named(<chrono_tz::Tz as TimeZone>::Offset),
    /// A fixed offset.
    Fixed(FixedOffset),
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        match self {
            ZoneOffset::Named(offset) => offset.fix(),
            ZoneOffset::Fixed(offset) => *offset,
        }
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneOffset::Named(offset) => write!(f, "{offset}"),
            ZoneOffset::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        match offset {
            ZoneOffset::Named(offset) => Zone::Named(chrono_tz::Tz::from_offset(offset)),
            ZoneOffset::Fixed(offset) => Zone::Fixed(*offset),
        }
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        match self {
            Zone::Named(tz) => tz.offset_from_local_date(local).map(ZoneOffset::Named),
            Zone::Fixed(offset) => offset.offset_from_local_date(local).map(ZoneOffset::Fixed),
        }
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        match self {
            Zone::Named(tz) => tz.offset_from_local_datetime(local).map(ZoneOffset::Named),
            Zone::Fixed(offset) => offset
                .offset_from_local_datetime(local)
                .map(ZoneOffset::Fixed),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        match self {
            Zone::Named(tz) => ZoneOffset::Named(tz.offset_from_utc_date(utc)),
            Zone::Fixed(offset) => ZoneOffset::Fixed(offset.offset_from_utc_date(utc)),
        }
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        match self {
            Zone::Named(tz) => ZoneOffset::Named(tz.offset_from_utc_datetime(utc)),
            Zone::Fixed(offset) => ZoneOffset::Fixed(offset.offset_from_utc_datetime(utc)),
        }
    }
}

/// The instant a wall-clock time names in `zone`: the earlier of the two when the clock shows
/// it twice (fall back), the first instant after the gap when it never shows it (spring
/// forward). `None` only past the range chrono can represent.
pub(crate) fn resolve_wall_time(zone: Zone, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(t) => Some(t.with_timezone(&Utc)),
        MappedLocalTime::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        MappedLocalTime::None => {
            // In a gap the transition instant T lies in (local - after, local - before]: find
            // it by bisection on the offset, which changes once there.
            let offset_at =
                |utc: NaiveDateTime| zone.offset_from_utc_datetime(&utc).fix().local_minus_utc();
            let day = TimeDelta::days(1);
            let before = offset_at(local.checked_sub_signed(day)?);
            let after = offset_at(local.checked_add_signed(day)?);
            let mut lo = local.checked_sub_signed(TimeDelta::seconds(i64::from(after)))?;
            let mut hi = local.checked_sub_signed(TimeDelta::seconds(i64::from(before)))?;
            if hi <= lo {
                // Not a simple gap (two transitions within a day): the old offset's reading.
                return Some(hi.and_utc());
            }
            // Transitions fall on whole seconds: bisect in whole seconds, or a gap that is not
            // a power of two seconds wide (a skipped day) ends on a fraction of one.
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
                if offset_at(mid) == before {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Some(hi.and_utc())
        }
    }
}

/// The earliest wall-clock time that [`resolve_wall_time`] turns into `at` or later: `at`'s
/// own reading, or, when `at` is the first instant after a gap, the first wall time the gap
/// swallowed (which resolves to `at`).
pub(crate) fn earliest_wall_reaching(zone: Zone, at: DateTime<Utc>) -> NaiveDateTime {
    let reading = at.with_timezone(&zone).naive_local();
    let Some(before) = at.checked_sub_signed(TimeDelta::nanoseconds(1)) else {
        return reading;
    };
    let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    if offset(before).local_minus_utc() < offset(at).local_minus_utc() {
        // The clock jumped forward at `at`: the wall times from just after `before`'s reading
        // up to `at`'s never showed.
        let before_reading = before.with_timezone(&zone).naive_local();
        return before_reading
            .checked_add_signed(TimeDelta::nanoseconds(1))
            .unwrap_or(reading);
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn named_zone_follows_dst() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let winter = berlin.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        let summer = berlin.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap();
        assert_eq!(winter.offset().fix().local_minus_utc(), 3600);
        assert_eq!(summer.offset().fix().local_minus_utc(), 7200);
        assert_eq!(summer.to_string(), "2024-07-01 12:00:00 CEST");
        assert_eq!(summer.with_timezone(&chrono::Utc).hour(), 10);
    }

    #[test]
    fn unknown_and_fixed() {
        assert_eq!(
            Zone::parse("Nowhere/City"),
            Err(Error::UnknownTimeZone("Nowhere/City".into()))
        );
        let fixed = Zone::parse("-03:30").unwrap();
        assert_eq!(
            fixed,
            Zone::Fixed(FixedOffset::west_opt(3 * 3600 + 1800).unwrap())
        );
        let json = serde_json::to_string(&fixed).unwrap();
        assert_eq!(serde_json::from_str::<Zone>(&json).unwrap(), fixed);
    }

    #[test]
    fn gap_resolves_to_its_end() {
        let ny = Zone::parse("America/New_York").unwrap();
        let local = NaiveDate::from_ymd_opt(2024, 3, 10)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        // 03:00 EDT = 07:00 UTC.
        assert_eq!(
            resolve_wall_time(ny, local),
            Some(Utc.with_ymd_and_hms(2024, 3, 10, 7, 0, 0).unwrap())
        );
        let fold = NaiveDate::from_ymd_opt(2024, 11, 3)
            .unwrap()
            .and_hms_opt(1, 30, 0)
            .unwrap();
        // The first 01:30 is EDT = 05:30 UTC.
        assert_eq!(
            resolve_wall_time(ny, fold),
            Some(Utc.with_ymd_and_hms(2024, 11, 3, 5, 30, 0).unwrap())
        );
    }
}
