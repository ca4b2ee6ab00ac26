//! Conformance table for every trigger kind: (trigger, zone, start instant, expected fire
//! times). Expected times were worked out by hand from the calendar and the IANA rules (and
//! checked against Python's zoneinfo), never by running the code under test.

use std::time::Duration;

use apsched::trigger::{CalendarInterval, Cron, Date, Interval, Trigger};
use apsched::{Error, Zone};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Marks the end of a trigger: `next_fire_time` gives `Ok(None)`.
const END: &str = "end";

struct Case {
    name: &'static str,
    trigger: Trigger,
    zone: &'static str,
    start: &'static str,
    expect: &'static [&'static str],
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad time {s}: {e}"))
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn cron(expr: &str) -> Trigger {
    Cron::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .into()
}

fn case(
    name: &'static str,
    trigger: impl Into<Trigger>,
    zone: &'static str,
    start: &'static str,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        trigger: trigger.into(),
        zone,
        start,
        expect,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // ---- APScheduler fields: every expression form ----
        case(
            "daily 06:30",
            Cron::new().hour("6").minute("30"),
            "UTC",
            "2024-05-01T12:00:00Z",
            &[
                "2024-05-02T06:30:00Z",
                "2024-05-03T06:30:00Z",
                "2024-05-04T06:30:00Z",
            ],
        ),
        case(
            "mon-fri 01:00",
            Cron::new().day_of_week("mon-fri").hour("1"),
            "UTC",
            "2024-05-03T12:00:00Z",
            &[
                "2024-05-06T01:00:00Z",
                "2024-05-07T01:00:00Z",
                "2024-05-08T01:00:00Z",
            ],
        ),
        case(
            "numbers as values",
            Cron::new().hour(6).minute(30u8),
            "UTC",
            "2024-05-01T12:00:00Z",
            &["2024-05-02T06:30:00Z"],
        ),
        case(
            "every two hours a-b/c",
            Cron::new().hour("0-23/2"),
            "UTC",
            "2024-05-01T03:00:00Z",
            &[
                "2024-05-01T04:00:00Z",
                "2024-05-01T06:00:00Z",
                "2024-05-01T08:00:00Z",
            ],
        ),
        case(
            "*/a",
            Cron::new().minute("*/15"),
            "UTC",
            "2024-05-01T10:07:00Z",
            &[
                "2024-05-01T10:15:00Z",
                "2024-05-01T10:30:00Z",
                "2024-05-01T10:45:00Z",
                "2024-05-01T11:00:00Z",
            ],
        ),
        case(
            "a-b/c minutes",
            Cron::new().minute("10-40/15"),
            "UTC",
            "2024-05-01T10:00:00Z",
            &[
                "2024-05-01T10:10:00Z",
                "2024-05-01T10:25:00Z",
                "2024-05-01T10:40:00Z",
                "2024-05-01T11:10:00Z",
            ],
        ),
        case(
            "a/c seconds",
            Cron::new().second("50/5"),
            "UTC",
            "2024-05-01T10:00:00Z",
            &[
                "2024-05-01T10:00:50Z",
                "2024-05-01T10:00:55Z",
                "2024-05-01T10:01:50Z",
            ],
        ),
        case(
            "* every second",
            Cron::new().second("*"),
            "UTC",
            "2024-05-01T10:00:00.5Z",
            &["2024-05-01T10:00:01Z", "2024-05-01T10:00:02Z"],
        ),
        case(
            "day list",
            Cron::new().day("1,15,28").hour("12"),
            "UTC",
            "2024-02-10T00:00:00Z",
            &[
                "2024-02-15T12:00:00Z",
                "2024-02-28T12:00:00Z",
                "2024-03-01T12:00:00Z",
            ],
        ),
        case(
            "month names",
            Cron::new().month("jan,jul").day("1"),
            "UTC",
            "2024-02-01T00:00:00Z",
            &[
                "2024-07-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "2025-07-01T00:00:00Z",
            ],
        ),
        case(
            "month range, last day",
            Cron::new().month("mar-may").day("last"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z",
                "2024-05-31T00:00:00Z",
                "2025-03-31T00:00:00Z",
            ],
        ),
        case(
            "wrapping weekdays sat-mon",
            Cron::new().day_of_week("sat-mon").hour("9"),
            "UTC",
            "2024-05-01T00:00:00Z",
            &[
                "2024-05-04T09:00:00Z",
                "2024-05-05T09:00:00Z",
                "2024-05-06T09:00:00Z",
                "2024-05-11T09:00:00Z",
            ],
        ),
        case(
            "weekday 0 is sunday",
            Cron::new().day_of_week("0").hour("8"),
            "UTC",
            "2024-05-01T00:00:00Z",
            &["2024-05-05T08:00:00Z", "2024-05-12T08:00:00Z"],
        ),
        case(
            "weekday 7 is sunday",
            Cron::new().day_of_week(7).hour("8"),
            "UTC",
            "2024-05-01T00:00:00Z",
            &["2024-05-05T08:00:00Z", "2024-05-12T08:00:00Z"],
        ),
        case(
            "weekdays 5-7",
            Cron::new().day_of_week("5-7").hour("8"),
            "UTC",
            "2024-05-01T00:00:00Z",
            &[
                "2024-05-03T08:00:00Z",
                "2024-05-04T08:00:00Z",
                "2024-05-05T08:00:00Z",
                "2024-05-10T08:00:00Z",
            ],
        ),
        case(
            "year=2009/2 month=1/3 day=5-13",
            Cron::new().year("2009/2").month("1/3").day("5-13"),
            "UTC",
            "2009-01-13T00:00:01Z",
            &["2009-04-05T00:00:00Z", "2009-04-06T00:00:00Z"],
        ),
        case(
            "year=2009/2 skips 2010",
            Cron::new().year("2009/2").month("1/3").day("5-13"),
            "UTC",
            "2009-10-13T01:00:00Z",
            &["2011-01-05T00:00:00Z", "2011-01-06T00:00:00Z"],
        ),
        case(
            "last day of a leap february",
            Cron::new().month("2").day("last"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-02-29T00:00:00Z",
                "2025-02-28T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2027-02-28T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ],
        ),
        case(
            "4th wed",
            Cron::new().day("4th wed"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-24T00:00:00Z",
                "2024-02-28T00:00:00Z",
                "2024-03-27T00:00:00Z",
            ],
        ),
        case(
            "last fri",
            Cron::new().day("last fri").hour(18),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-26T18:00:00Z",
                "2024-02-23T18:00:00Z",
                "2024-03-29T18:00:00Z",
            ],
        ),
        case(
            "ISO week 15 on monday",
            Cron::new().week("15").day_of_week("mon"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-04-08T00:00:00Z",
                "2025-04-07T00:00:00Z",
                "2026-04-06T00:00:00Z",
            ],
        ),
        case(
            "ISO week 1 spans new year",
            Cron::new().week(1),
            "UTC",
            "2024-12-29T00:00:00Z",
            &[
                "2024-12-30T00:00:00Z",
                "2024-12-31T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ],
        ),
        case(
            "1st mon or last day",
            Cron::new().day("1st mon,last"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T00:00:00Z",
                "2024-01-31T00:00:00Z",
                "2024-02-05T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ],
        ),
        case(
            "day and day_of_week: both match",
            Cron::new().day("1-7").day_of_week("mon"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T00:00:00Z",
                "2024-02-05T00:00:00Z",
                "2024-03-04T00:00:00Z",
            ],
        ),
        case(
            "no field: january 1st",
            Cron::new(),
            "UTC",
            "2024-05-01T00:00:00Z",
            &["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
        ),
        case(
            "fields end bound",
            Cron::new().hour("12").end(t("2024-05-03T12:00:00Z")),
            "UTC",
            "2024-05-01T13:00:00Z",
            &["2024-05-02T12:00:00Z", "2024-05-03T12:00:00Z", END],
        ),
        case(
            "fields start bound",
            Cron::new().hour("12").start(t("2024-06-01T00:00:00Z")),
            "UTC",
            "2024-05-01T13:00:00Z",
            &["2024-06-01T12:00:00Z"],
        ),
        // ---- crontab strings ----
        case(
            "crontab 5 fields",
            cron("30 6 * * *"),
            "UTC",
            "2024-05-01T12:00:00Z",
            &["2024-05-02T06:30:00Z", "2024-05-03T06:30:00Z"],
        ),
        case(
            "crontab 6 fields, seconds first",
            cron("*/20 * * * * *"),
            "UTC",
            "2024-05-01T10:00:05Z",
            &[
                "2024-05-01T10:00:20Z",
                "2024-05-01T10:00:40Z",
                "2024-05-01T10:01:00Z",
            ],
        ),
        case(
            "crontab 7 fields, year last",
            cron("0 0 12 1 1 * 2030"),
            "UTC",
            "2029-06-01T00:00:00Z",
            &["2030-01-01T12:00:00Z", END],
        ),
        case(
            "crontab day or weekday (Vixie)",
            cron("0 0 1-7 * 1"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
                "2024-01-03T00:00:00Z",
            ],
        ),
        case(
            "crontab day and weekday (+)",
            cron("0 0 1-7 * +1"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T00:00:00Z",
                "2024-02-05T00:00:00Z",
                "2024-03-04T00:00:00Z",
            ],
        ),
        case(
            "@hourly",
            cron("@hourly"),
            "UTC",
            "2024-05-01T10:30:00Z",
            &["2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"],
        ),
        case(
            "@daily",
            cron("@daily"),
            "UTC",
            "2024-05-01T10:30:00Z",
            &["2024-05-02T00:00:00Z", "2024-05-03T00:00:00Z"],
        ),
        case(
            "@weekly is sunday",
            cron("@weekly"),
            "UTC",
            "2024-05-01T10:30:00Z",
            &["2024-05-05T00:00:00Z", "2024-05-12T00:00:00Z"],
        ),
        case(
            "@monthly",
            cron("@monthly"),
            "UTC",
            "2024-05-01T10:30:00Z",
            &["2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z"],
        ),
        case(
            "@yearly",
            cron("@yearly"),
            "UTC",
            "2024-05-01T10:30:00Z",
            &["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
        ),
        case(
            "crontab L",
            cron("0 0 L * *"),
            "UTC",
            "2024-02-01T00:00:00Z",
            &[
                "2024-02-29T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z",
            ],
        ),
        case(
            "crontab W",
            cron("0 0 15W * *"),
            "UTC",
            "2024-06-01T00:00:00Z",
            &[
                "2024-06-14T00:00:00Z",
                "2024-07-15T00:00:00Z",
                "2024-08-15T00:00:00Z",
                "2024-09-16T00:00:00Z",
            ],
        ),
        case(
            "crontab #",
            cron("0 0 * * 1#2"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-08T00:00:00Z",
                "2024-02-12T00:00:00Z",
                "2024-03-11T00:00:00Z",
            ],
        ),
        case(
            "crontab 5L",
            cron("0 18 * * 5L"),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-26T18:00:00Z",
                "2024-02-23T18:00:00Z",
                "2024-03-29T18:00:00Z",
            ],
        ),
        case(
            "crontab ?",
            cron("0 0 1 * ?"),
            "UTC",
            "2024-01-15T00:00:00Z",
            &["2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"],
        ),
        case(
            "crontab names",
            cron("0 9 * jan-mar mon-fri"),
            "UTC",
            "2024-03-29T10:00:00Z",
            &[
                "2025-01-01T09:00:00Z",
                "2025-01-02T09:00:00Z",
                "2025-01-03T09:00:00Z",
                "2025-01-06T09:00:00Z",
            ],
        ),
        case(
            "crontab 7 is sunday",
            cron("0 0 * * 7"),
            "UTC",
            "2024-05-01T00:00:00Z",
            &["2024-05-05T00:00:00Z", "2024-05-12T00:00:00Z"],
        ),
        case(
            "crontab end bound",
            Cron::parse("0 12 * * *")
                .unwrap()
                .end(t("2024-05-02T12:00:00Z")),
            "UTC",
            "2024-05-01T13:00:00Z",
            &["2024-05-02T12:00:00Z", END],
        ),
        // ---- daylight saving: fixed times and wildcard hours ----
        case(
            "New York gap, fixed 02:30",
            cron("30 2 * * *"),
            "America/New_York",
            "2024-03-09T05:00:00Z",
            &[
                "2024-03-09T02:30:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-11T02:30:00-04:00",
            ],
        ),
        case(
            "New York gap, fields 02:30",
            Cron::new().hour(2).minute(30),
            "America/New_York",
            "2024-03-09T05:00:00Z",
            &[
                "2024-03-09T02:30:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-11T02:30:00-04:00",
            ],
        ),
        case(
            "New York fold, fixed 01:30 once",
            cron("30 1 * * *"),
            "America/New_York",
            "2024-11-02T12:00:00Z",
            &["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        case(
            "New York fold, wildcard hour twice",
            cron("30 * * * *"),
            "America/New_York",
            "2024-11-03T04:00:00Z",
            &[
                "2024-11-03T00:30:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-03T02:30:00-05:00",
            ],
        ),
        case(
            "New York gap, wildcard hour skips",
            cron("30 * * * *"),
            "America/New_York",
            "2024-03-10T05:00:00Z",
            &[
                "2024-03-10T00:30:00-05:00",
                "2024-03-10T01:30:00-05:00",
                "2024-03-10T03:30:00-04:00",
                "2024-03-10T04:30:00-04:00",
            ],
        ),
        case(
            "London gap, fixed 01:30",
            cron("30 1 * * *"),
            "Europe/London",
            "2024-03-30T12:00:00Z",
            &["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"],
        ),
        case(
            "London fold, fixed 01:30",
            cron("30 1 * * *"),
            "Europe/London",
            "2024-10-26T12:00:00Z",
            &["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"],
        ),
        case(
            "Berlin gap, fixed 02:30",
            cron("30 2 * * *"),
            "Europe/Berlin",
            "2024-03-30T12:00:00Z",
            &["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        case(
            "Berlin fold, fixed 02:30",
            cron("30 2 * * *"),
            "Europe/Berlin",
            "2024-10-26T12:00:00Z",
            &["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
        ),
        case(
            "Berlin fold, wildcard hour",
            cron("0,30 * * * *"),
            "Europe/Berlin",
            "2024-10-27T00:00:00Z",
            &[
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:00:00+01:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-27T03:00:00+01:00",
            ],
        ),
        case(
            "Helsinki gap, fixed 03:30",
            cron("30 3 * * *"),
            "Europe/Helsinki",
            "2024-03-30T12:00:00Z",
            &["2024-03-31T04:00:00+03:00", "2024-04-01T03:30:00+03:00"],
        ),
        case(
            "Helsinki fold, fixed 03:30",
            cron("30 3 * * *"),
            "Europe/Helsinki",
            "2024-10-26T12:00:00Z",
            &["2024-10-27T03:30:00+03:00", "2024-10-28T03:30:00+02:00"],
        ),
        case(
            "Sydney gap (October), fixed 02:30",
            cron("30 2 * * *"),
            "Australia/Sydney",
            "2024-10-05T00:00:00Z",
            &["2024-10-06T03:00:00+11:00", "2024-10-07T02:30:00+11:00"],
        ),
        case(
            "Sydney fold (April), fixed 02:30",
            cron("30 2 * * *"),
            "Australia/Sydney",
            "2024-04-06T00:00:00Z",
            &["2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"],
        ),
        case(
            "Lord Howe 30-minute gap",
            cron("15 2 * * *"),
            "Australia/Lord_Howe",
            "2024-10-05T00:00:00Z",
            &["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"],
        ),
        case(
            "Lord Howe 30-minute fold, fixed",
            cron("45 1 * * *"),
            "Australia/Lord_Howe",
            "2024-04-06T00:00:00Z",
            &["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"],
        ),
        case(
            "Lord Howe 30-minute fold, wildcard",
            cron("15,45 * * * *"),
            "Australia/Lord_Howe",
            "2024-04-06T14:00:00Z",
            &[
                "2024-04-06T14:15:00Z",
                "2024-04-06T14:45:00Z",
                "2024-04-06T15:15:00Z",
                "2024-04-06T15:45:00Z",
            ],
        ),
        case(
            "Chatham 45-minute offset gap",
            cron("0 3 * * *"),
            "Pacific/Chatham",
            "2024-09-28T00:00:00Z",
            &["2024-09-29T03:45:00+13:45", "2024-09-30T03:00:00+13:45"],
        ),
        case(
            "Chatham winter",
            cron("0 9 * * *"),
            "Pacific/Chatham",
            "2024-06-30T00:00:00Z",
            &["2024-06-30T20:15:00Z", "2024-07-01T20:15:00Z"],
        ),
        case(
            "Shanghai, no DST",
            Cron::new().hour(6).minute(30),
            "Asia/Shanghai",
            "2024-03-09T00:00:00Z",
            &[
                "2024-03-09T22:30:00Z",
                "2024-03-10T22:30:00Z",
                "2024-03-11T22:30:00Z",
            ],
        ),
        case(
            "Nuuk gap at midnight, fixed 23:30",
            cron("30 23 * * *"),
            "America/Nuuk",
            "2024-03-29T12:00:00Z",
            &[
                "2024-03-29T23:30:00-02:00",
                "2024-03-31T00:00:00-01:00",
                "2024-03-31T23:30:00-01:00",
            ],
        ),
        case(
            "Nuuk fold before midnight, fixed 23:30",
            cron("30 23 * * *"),
            "America/Nuuk",
            "2024-10-26T12:00:00Z",
            &["2024-10-26T23:30:00-01:00", "2024-10-27T23:30:00-02:00"],
        ),
        case(
            "fixed offset zone",
            cron("0 9 * * *"),
            "+05:30",
            "2024-05-01T00:00:00Z",
            &["2024-05-01T03:30:00Z", "2024-05-02T03:30:00Z"],
        ),
        // ---- daylight saving edges: midnight, skipped days, restricted days ----
        case(
            "Nuuk gap across midnight on a restricted weekday",
            cron("30 23 * * 6"),
            "America/Nuuk",
            "2024-03-29T12:00:00Z",
            &["2024-03-31T00:00:00-01:00", "2024-04-06T23:30:00-01:00"],
        ),
        case(
            "Nuuk gap across midnight on a restricted weekday, fields",
            Cron::new().day_of_week("sat").hour(23).minute(30),
            "America/Nuuk",
            "2024-03-29T12:00:00Z",
            &["2024-03-31T00:00:00-01:00", "2024-04-06T23:30:00-01:00"],
        ),
        case(
            "Nuuk yearly date in a gap across midnight",
            cron("30 23 30 3 *"),
            "America/Nuuk",
            "2024-01-01T00:00:00Z",
            &["2024-03-31T00:00:00-01:00", "2025-03-30T23:30:00-01:00"],
        ),
        case(
            "Nuuk yearly date in a gap across midnight, fields",
            Cron::new().month(3).day(30).hour(23).minute(30),
            "America/Nuuk",
            "2024-01-01T00:00:00Z",
            &["2024-03-31T00:00:00-01:00", "2025-03-30T23:30:00-01:00"],
        ),
        case(
            "Nuuk gap across midnight, ISO week walk",
            Cron::new().week("1-53").hour(23).minute(30),
            "America/Nuuk",
            "2024-03-29T12:00:00Z",
            &[
                "2024-03-29T23:30:00-02:00",
                "2024-03-31T00:00:00-01:00",
                "2024-03-31T23:30:00-01:00",
            ],
        ),
        case(
            "Nuuk gap across midnight, last saturday mixed with a day",
            Cron::new().day("last sat,1").hour(23).minute(30),
            "America/Nuuk",
            "2024-03-15T00:00:00Z",
            &["2024-03-31T00:00:00-01:00", "2024-04-01T23:30:00-01:00"],
        ),
        case(
            "Tehran gap at midnight, ISO week walk",
            Cron::new().week("1-53").hour(0),
            "Asia/Tehran",
            "2021-03-20T12:00:00Z",
            &[
                "2021-03-21T00:00:00+03:30",
                "2021-03-22T01:00:00+04:30",
                "2021-03-23T00:00:00+04:30",
            ],
        ),
        case(
            "Tehran gap at midnight, fixed 00:30",
            cron("30 0 * * *"),
            "Asia/Tehran",
            "2021-03-21T00:00:00Z",
            &["2021-03-22T01:00:00+04:30", "2021-03-23T00:30:00+04:30"],
        ),
        case(
            "Tehran gap at midnight, wildcard minutes on an ISO week walk",
            Cron::new().week("1-53").hour(0).minute("*/20"),
            "Asia/Tehran",
            "2021-03-21T12:00:00Z",
            &[
                "2021-03-23T00:00:00+04:30",
                "2021-03-23T00:20:00+04:30",
                "2021-03-23T00:40:00+04:30",
            ],
        ),
        case(
            "Tehran fold at midnight, fixed 23:30 once",
            cron("30 23 * * *"),
            "Asia/Tehran",
            "2021-09-21T12:00:00Z",
            &["2021-09-21T23:30:00+04:30", "2021-09-22T23:30:00+03:30"],
        ),
        case(
            "Tehran fold at midnight, wildcard hour twice",
            cron("30 * * * *"),
            "Asia/Tehran",
            "2021-09-21T18:00:00Z",
            &[
                "2021-09-21T22:30:00+04:30",
                "2021-09-21T23:30:00+04:30",
                "2021-09-21T23:30:00+03:30",
                "2021-09-22T00:30:00+03:30",
            ],
        ),
        case(
            "Santiago gap at midnight, ISO week walk",
            Cron::new().week("1-53").hour(0),
            "America/Santiago",
            "2024-09-06T12:00:00Z",
            &[
                "2024-09-07T00:00:00-04:00",
                "2024-09-08T01:00:00-03:00",
                "2024-09-09T00:00:00-03:00",
            ],
        ),
        case(
            "Santiago fold at midnight, fixed 00:00",
            cron("0 0 * * *"),
            "America/Santiago",
            "2024-04-06T00:00:00Z",
            &[
                "2024-04-06T00:00:00-03:00",
                "2024-04-07T00:00:00-04:00",
                "2024-04-08T00:00:00-04:00",
            ],
        ),
        case(
            "Havana gap at midnight, fixed 00:00",
            cron("0 0 * * *"),
            "America/Havana",
            "2024-03-09T12:00:00Z",
            &["2024-03-10T01:00:00-04:00", "2024-03-11T00:00:00-04:00"],
        ),
        case(
            "Havana fold at 00:30, fixed once",
            cron("30 0 * * *"),
            "America/Havana",
            "2024-11-02T12:00:00Z",
            &["2024-11-03T00:30:00-04:00", "2024-11-04T00:30:00-05:00"],
        ),
        case(
            "Havana fold at 00:30, wildcard hour twice",
            cron("30 * * * *"),
            "America/Havana",
            "2024-11-03T03:00:00Z",
            &[
                "2024-11-02T23:30:00-04:00",
                "2024-11-03T00:30:00-04:00",
                "2024-11-03T00:30:00-05:00",
                "2024-11-03T01:30:00-05:00",
            ],
        ),
        case(
            "Apia skipped day, fixed 12:00",
            cron("0 12 * * *"),
            "Pacific/Apia",
            "2011-12-28T12:00:00Z",
            &[
                "2011-12-28T12:00:00-10:00",
                "2011-12-29T12:00:00-10:00",
                "2011-12-31T00:00:00+14:00",
                "2011-12-31T12:00:00+14:00",
            ],
        ),
        case(
            "Apia skipped day, fields on an ISO week walk",
            Cron::new().week("1-53").hour(12),
            "Pacific/Apia",
            "2011-12-29T12:00:00Z",
            &[
                "2011-12-29T12:00:00-10:00",
                "2011-12-31T00:00:00+14:00",
                "2011-12-31T12:00:00+14:00",
            ],
        ),
        case(
            "Apia skipped day, every 6 hours skips it",
            cron("0 */6 * * *"),
            "Pacific/Apia",
            "2011-12-29T12:00:00Z",
            &[
                "2011-12-29T06:00:00-10:00",
                "2011-12-29T12:00:00-10:00",
                "2011-12-29T18:00:00-10:00",
                "2011-12-31T00:00:00+14:00",
            ],
        ),
        case(
            "Apia skipped day, calendar interval",
            CalendarInterval::days(1)
                .at(12, 0, 0)
                .start_date(date(2011, 12, 28)),
            "Pacific/Apia",
            "2011-12-28T00:00:00Z",
            &[
                "2011-12-28T12:00:00-10:00",
                "2011-12-29T12:00:00-10:00",
                "2011-12-31T00:00:00+14:00",
                "2011-12-31T12:00:00+14:00",
            ],
        ),
        case(
            "Kwajalein skipped day, fixed 12:00",
            cron("0 12 * * *"),
            "Pacific/Kwajalein",
            "1993-08-20T01:00:00Z",
            &[
                "1993-08-20T12:00:00-12:00",
                "1993-08-22T00:00:00+12:00",
                "1993-08-22T12:00:00+12:00",
            ],
        ),
        case(
            "Lord Howe 30-minute gap on a restricted weekday",
            cron("15 2 * * 0"),
            "Australia/Lord_Howe",
            "2024-10-05T00:00:00Z",
            &["2024-10-06T02:30:00+11:00", "2024-10-13T02:15:00+11:00"],
        ),
        case(
            "Auckland gap (September), fixed 02:30",
            cron("30 2 * * *"),
            "Pacific/Auckland",
            "2024-09-28T00:00:00Z",
            &["2024-09-29T03:00:00+13:00", "2024-09-30T02:30:00+13:00"],
        ),
        case(
            "Tehran gap at midnight, calendar interval at 00:30",
            CalendarInterval::days(1)
                .at(0, 30, 0)
                .start_date(date(2021, 3, 21)),
            "Asia/Tehran",
            "2021-03-20T00:00:00Z",
            &[
                "2021-03-21T00:30:00+03:30",
                "2021-03-22T01:00:00+04:30",
                "2021-03-23T00:30:00+04:30",
            ],
        ),
        // ---- calendar intervals ----
        case(
            "month end keeps day 31",
            CalendarInterval::months(1)
                .at(9, 0, 0)
                .start_date(date(2024, 1, 31)),
            "Europe/Berlin",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-31T09:00:00+01:00",
                "2024-03-31T09:00:00+02:00",
                "2024-05-31T09:00:00+02:00",
                "2024-07-31T09:00:00+02:00",
            ],
        ),
        case(
            "daily across a gap",
            CalendarInterval::days(1)
                .at(2, 30, 0)
                .start_date(date(2024, 3, 9)),
            "America/New_York",
            "2024-03-09T00:00:00Z",
            &[
                "2024-03-09T02:30:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-11T02:30:00-04:00",
            ],
        ),
        case(
            "daily across a fold",
            CalendarInterval::days(1)
                .at(1, 30, 0)
                .start_date(date(2024, 11, 2)),
            "America/New_York",
            "2024-11-02T00:00:00Z",
            &[
                "2024-11-02T01:30:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-04T01:30:00-05:00",
            ],
        ),
        case(
            "yearly from february 29",
            CalendarInterval::years(1).start_date(date(2024, 2, 29)),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-02-29T00:00:00Z",
                "2028-02-29T00:00:00Z",
                "2032-02-29T00:00:00Z",
            ],
        ),
        case(
            "every two weeks",
            CalendarInterval::weeks(2)
                .at(12, 0, 0)
                .start_date(date(2024, 1, 1)),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T12:00:00Z",
                "2024-01-15T12:00:00Z",
                "2024-01-29T12:00:00Z",
            ],
        ),
        case(
            "quarterly in Shanghai",
            CalendarInterval::months(3)
                .at(8, 0, 0)
                .start_date(date(2024, 1, 15)),
            "Asia/Shanghai",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-15T00:00:00Z",
                "2024-04-15T00:00:00Z",
                "2024-07-15T00:00:00Z",
            ],
        ),
        case(
            "months and days combined",
            CalendarInterval::new(0, 1, 0, 1).start_date(date(2024, 1, 10)),
            "UTC",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-10T00:00:00Z",
                "2024-02-11T00:00:00Z",
                "2024-03-12T00:00:00Z",
            ],
        ),
        case(
            "calendar end bound",
            CalendarInterval::days(1)
                .start_date(date(2024, 1, 1))
                .end(t("2024-01-03T00:00:00Z")),
            "UTC",
            "2023-12-01T00:00:00Z",
            &[
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
                "2024-01-03T00:00:00Z",
                END,
            ],
        ),
        case(
            "calendar start instant",
            CalendarInterval::days(1)
                .at(6, 0, 0)
                .start(t("2024-01-01T07:00:00Z")),
            "UTC",
            "2023-12-01T00:00:00Z",
            &["2024-01-02T06:00:00Z", "2024-01-03T06:00:00Z"],
        ),
        case(
            "calendar in the leap day gap year",
            CalendarInterval::years(4).start_date(date(2096, 2, 29)),
            "UTC",
            "2096-03-01T00:00:00Z",
            &["2104-02-29T00:00:00Z"],
        ),
        // ---- interval and date ----
        case(
            "every 6 hours",
            Interval::hours(6).start(t("2024-01-01T00:00:00Z")),
            "UTC",
            "2024-01-01T01:00:00Z",
            &["2024-01-01T06:00:00Z", "2024-01-01T12:00:00Z"],
        ),
        case(
            "interval counts elapsed time across a gap",
            Interval::hours(24).start(t("2024-03-09T12:00:00-05:00")),
            "America/New_York",
            "2024-03-09T00:00:00Z",
            &["2024-03-09T12:00:00-05:00", "2024-03-10T13:00:00-04:00"],
        ),
        case(
            "date once",
            Date::at(t("2030-08-01T15:30:00Z")),
            "UTC",
            "2024-01-01T00:00:00Z",
            &["2030-08-01T15:30:00Z", END],
        ),
        // ---- combinations ----
        case(
            "or of two times",
            Trigger::or([cron("0 9 * * *"), cron("0 17 * * *")]),
            "UTC",
            "2024-05-01T10:00:00Z",
            &[
                "2024-05-01T17:00:00Z",
                "2024-05-02T09:00:00Z",
                "2024-05-02T17:00:00Z",
            ],
        ),
        case(
            "or shares instants once",
            Trigger::or([cron("0 * * * *"), cron("0 */2 * * *")]),
            "UTC",
            "2024-05-01T10:30:00Z",
            &[
                "2024-05-01T11:00:00Z",
                "2024-05-01T12:00:00Z",
                "2024-05-01T13:00:00Z",
            ],
        ),
        case(
            "and: even hours on mondays",
            Trigger::and([
                Trigger::from(Interval::hours(2).start(t("2024-01-01T00:00:00Z"))),
                Cron::new().day_of_week("mon").hour("*").into(),
            ]),
            "UTC",
            "2024-01-06T00:00:00Z",
            &[
                "2024-01-08T00:00:00Z",
                "2024-01-08T02:00:00Z",
                "2024-01-08T04:00:00Z",
            ],
        ),
        case(
            "and within the threshold fires at the latest",
            Trigger::and([
                Trigger::from(Interval::minutes(5).start(t("2024-01-01T00:00:00.4Z"))),
                cron("0 * * * *"),
            ]),
            "UTC",
            "2024-01-01T00:00:00Z",
            &["2024-01-01T00:00:00.4Z", "2024-01-01T01:00:00.4Z"],
        ),
        case(
            "and ends with a child",
            Trigger::and([
                Trigger::from(Date::at(t("2024-01-01T10:00:00Z"))),
                cron("0 * * * *"),
            ]),
            "UTC",
            "2024-01-01T00:00:00Z",
            &["2024-01-01T10:00:00Z", END],
        ),
    ]
}

#[test]
fn conformance_table() {
    let cases = cases();
    assert!(cases.len() >= 85, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let zone = Zone::parse(case.zone).unwrap();
        let start = t(case.start);
        let trigger = match case.trigger.prepared(zone, start) {
            Ok(trigger) => trigger,
            Err(e) => {
                failures.push(format!("{}: prepare failed: {e}", case.name));
                continue;
            }
        };
        let mut previous = None;
        let mut got = Vec::new();
        for _ in case.expect {
            match trigger.next_fire_time(previous, start) {
                Ok(Some(next)) => {
                    got.push(next.to_rfc3339());
                    previous = Some(next);
                }
                Ok(None) => {
                    got.push(END.to_string());
                    break;
                }
                Err(e) => {
                    got.push(format!("error: {e}"));
                    break;
                }
            }
        }
        let expect: Vec<String> = case
            .expect
            .iter()
            .map(|e| {
                if *e == END {
                    END.to_string()
                } else {
                    t(e).to_rfc3339()
                }
            })
            .collect();
        if got != expect {
            failures.push(format!(
                "{} ({}):\n  expected {expect:?}\n  got      {got:?}",
                case.name, case.zone
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn never_matching_pattern_is_an_error_quickly() {
    for expr in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30 2 * *"] {
        let trigger: Trigger = cron(expr);
        let trigger = trigger
            .prepared(Zone::UTC, t("2024-01-01T00:00:00Z"))
            .unwrap();
        let got = trigger.next_fire_time(None, t("2024-01-01T00:00:00Z"));
        assert!(
            matches!(got, Err(Error::TriggerNeverFires { .. })),
            "{expr}: {got:?}"
        );
    }
    let fields: Trigger = Cron::new().month("2").day("30").into();
    assert!(matches!(
        fields.next_fire_time(None, t("2024-01-01T00:00:00Z")),
        Err(Error::TriggerNeverFires { .. })
    ));
    let week: Trigger = Cron::new().week("1").month("6").into();
    assert!(matches!(
        week.next_fire_time(None, t("2024-01-01T00:00:00Z")),
        Err(Error::TriggerNeverFires { .. })
    ));
    let apart = Trigger::and([
        Interval::hours(2).start(t("2024-01-01T00:00:00Z")),
        Interval::hours(2).start(t("2024-01-01T01:00:00Z")),
    ]);
    assert!(matches!(
        apart.next_fire_time(None, t("2024-01-01T00:00:00Z")),
        Err(Error::TriggerNeverFires { .. })
    ));
}

#[test]
fn fire_time_at_or_after_skips_without_enumerating() {
    let far = t("2034-06-15T12:00:00Z");
    let calendar: Trigger = CalendarInterval::days(1)
        .start_date(date(2024, 1, 1))
        .timezone(Zone::UTC)
        .into();
    assert_eq!(
        calendar.fire_time_at_or_after(far).unwrap(),
        Some(t("2034-06-16T00:00:00Z"))
    );
    let monthly: Trigger = CalendarInterval::months(1)
        .start_date(date(2024, 1, 31))
        .timezone(Zone::UTC)
        .into();
    assert_eq!(
        monthly.fire_time_at_or_after(far).unwrap(),
        Some(t("2034-07-31T00:00:00Z"))
    );
    let cron: Trigger = Cron::new().hour(6).timezone(Zone::UTC).into();
    assert_eq!(
        cron.fire_time_at_or_after(far).unwrap(),
        Some(t("2034-06-16T06:00:00Z"))
    );
}

/// (trigger, field, value) for every kind of bad input.
#[test]
fn bad_inputs_name_field_and_value() {
    let now = t("2024-01-01T00:00:00Z");
    let bad_fields: Vec<(Cron, &str, &str)> = vec![
        (Cron::new().hour("25"), "hour", "25"),
        (Cron::new().minute("60"), "minute", "60"),
        (Cron::new().second("-1"), "second", "-1"),
        (Cron::new().day("32"), "day", "32"),
        (Cron::new().day("0"), "day", "0"),
        (Cron::new().month("13"), "month", "13"),
        (Cron::new().month("foo"), "month", "foo"),
        (Cron::new().day_of_week("8"), "day_of_week", "8"),
        (Cron::new().day_of_week("funday"), "day_of_week", "funday"),
        (Cron::new().week("54"), "week", "54"),
        (Cron::new().week("0"), "week", "0"),
        (Cron::new().year("1969"), "year", "1969"),
        (Cron::new().year("10000"), "year", "10000"),
        (Cron::new().minute("*/0"), "minute", "*/0"),
        (Cron::new().hour("5-2"), "hour", "5-2"),
        (Cron::new().day("6th mon"), "day", "6th mon"),
        (Cron::new().day("last xyz"), "day", "last xyz"),
        (Cron::new().hour(""), "hour", ""),
        (Cron::new().hour("1,,2"), "hour", "1,,2"),
    ];
    for (cron, field, value) in bad_fields {
        let got = Trigger::from(cron).prepared(Zone::UTC, now);
        match got {
            Err(Error::InvalidCronField {
                field: f, value: v, ..
            }) => assert_eq!((f, v.as_str()), (field, value)),
            other => panic!("{field}={value}: {other:?}"),
        }
    }
    let e = Trigger::from(Cron::new().hour("25"))
        .prepared(Zone::UTC, now)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid cron field 'hour': value '25' is out of range 0-23"
    );
    for expr in [
        "0 25 * * *",
        "",
        "* * *",
        "61 * * * *",
        "* * * * * * * *",
        "0 0 * * mon-",
    ] {
        match Cron::parse(expr) {
            Err(Error::InvalidCronField { field, value, .. }) => {
                assert_eq!((field, value.as_str()), ("expression", expr))
            }
            other => panic!("{expr:?}: {other:?}"),
        }
    }
    assert_eq!(
        Zone::parse("Mars/Olympus_Mons"),
        Err(Error::UnknownTimeZone("Mars/Olympus_Mons".into()))
    );
    let invalid = |t: Trigger, field: &str| match t.prepared(Zone::UTC, now) {
        Err(Error::InvalidTrigger { field: f, .. }) => assert_eq!(f, field),
        other => panic!("{field}: {other:?}"),
    };
    invalid(CalendarInterval::days(1).at(24, 0, 0).into(), "hour");
    invalid(CalendarInterval::days(1).at(0, 60, 0).into(), "minute");
    invalid(CalendarInterval::new(0, 0, 0, 0).into(), "interval");
    invalid(
        Cron::new()
            .hour(1)
            .start(t("2024-02-01T00:00:00Z"))
            .end(t("2024-01-01T00:00:00Z"))
            .into(),
        "end_date",
    );
    invalid(Trigger::or(Vec::<Trigger>::new()), "triggers");
}

#[test]
fn triggers_round_trip_through_json_and_recompile() {
    let now = t("2024-05-01T12:00:00Z");
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    let trigger = Trigger::or([
        Trigger::from(Cron::new().week("15").day_of_week("mon").hour(9)),
        cron("0 0 L * *"),
        Trigger::from(CalendarInterval::months(1).at(9, 0, 0)),
        Trigger::and_within(
            Duration::from_secs(5),
            [
                Trigger::from(Interval::hours(2).start(now)),
                Trigger::from(Cron::new().day("4th wed").hour("*")),
            ],
        ),
    ])
    .prepared(berlin, now)
    .unwrap();
    let json = serde_json::to_string(&trigger).unwrap();
    let back: Trigger = serde_json::from_str(&json).unwrap();
    assert_eq!(back, trigger);
    let mut previous = None;
    for _ in 0..10 {
        let a = trigger.next_fire_time(previous, now).unwrap();
        assert_eq!(back.next_fire_time(previous, now).unwrap(), a);
        previous = a;
    }
}

#[test]
fn time_zones_are_named_statically_or_parsed() {
    let now = t("2024-03-09T00:00:00Z");
    let fixed = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let triggers: Vec<Trigger> = vec![
        Cron::new()
            .hour(6)
            .minute(30)
            .timezone(apsched::tz::Asia::Shanghai)
            .into(),
        Cron::new()
            .hour(6)
            .minute(30)
            .timezone(Zone::parse("Asia/Shanghai").unwrap())
            .into(),
        CalendarInterval::days(1)
            .at(6, 30, 0)
            .start_date(date(2024, 3, 9))
            .timezone(fixed)
            .into(),
    ];
    for trigger in triggers {
        let trigger = trigger.prepared(Zone::UTC, now).unwrap();
        assert_eq!(
            trigger.next_fire_time(None, now).unwrap(),
            Some(t("2024-03-09T22:30:00Z")),
            "{trigger}"
        );
    }
    let zone = Trigger::from(Interval::hours(1).timezone(chrono::Utc)).timezone();
    assert_eq!(zone, Some(Zone::UTC));
    assert_eq!(
        Trigger::from(Date::at(now).timezone(apsched::tz::Europe::Berlin)).timezone(),
        Some(Zone::parse("Europe/Berlin").unwrap())
    );
}

/// The JSON of every trigger kind, as the REST API and stores read it: pinned field by field.
#[test]
fn json_forms_are_pinned() {
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    let (start, end) = (t("2024-01-01T00:00:00Z"), t("2024-02-01T00:00:00Z"));
    let cases: Vec<(Trigger, &str)> = vec![
        (
            Interval::every(Duration::from_millis(1500)).into(),
            r#"{"type":"interval","period":1.5}"#,
        ),
        (
            Interval::hours(2)
                .start(start)
                .end(end)
                .timezone(berlin)
                .jitter(Duration::from_millis(250))
                .into(),
            r#"{"type":"interval","period":7200.0,"start":"2024-01-01T00:00:00Z","end":"2024-02-01T00:00:00Z","timezone":"Europe/Berlin","jitter":0.25}"#,
        ),
        (
            Interval::hours(2).jitter(Duration::ZERO).into(),
            r#"{"type":"interval","period":7200.0}"#,
        ),
        (
            Cron::parse("0 12 * * *")
                .unwrap()
                .start(start)
                .end(end)
                .timezone(berlin)
                .jitter(Duration::from_secs(3))
                .into(),
            r#"{"type":"cron","expression":"0 12 * * *","start":"2024-01-01T00:00:00Z","end":"2024-02-01T00:00:00Z","timezone":"Europe/Berlin","jitter":3.0}"#,
        ),
        (
            Cron::new()
                .hour(6)
                .minute("*/5")
                .day("last fri")
                .jitter(Duration::ZERO)
                .into(),
            r#"{"type":"cron","fields":{"day":"last fri","hour":"6","minute":"*/5"},"jitter":0.0}"#,
        ),
        (
            CalendarInterval::new(1, 2, 3, 4)
                .at(5, 6, 7)
                .start_date(date(2024, 1, 31))
                .timezone(berlin)
                .jitter(Duration::from_secs(1))
                .end(t("2030-01-01T00:00:00Z"))
                .into(),
            r#"{"type":"calendar_interval","years":1,"months":2,"weeks":3,"days":4,"hour":5,"minute":6,"second":7,"start_date":"2024-01-31","end":"2030-01-01T00:00:00Z","timezone":"Europe/Berlin","jitter":1.0}"#,
        ),
        (
            CalendarInterval::days(1)
                .start(t("2024-01-01T07:00:00Z"))
                .into(),
            r#"{"type":"calendar_interval","years":0,"months":0,"weeks":0,"days":1,"hour":0,"minute":0,"second":0,"start":"2024-01-01T07:00:00Z"}"#,
        ),
        (
            Date::at(t("2024-01-01T07:00:00Z")).timezone(berlin).into(),
            r#"{"type":"date","run_date":"2024-01-01T07:00:00Z","timezone":"Europe/Berlin"}"#,
        ),
        (
            Trigger::and_within(
                Duration::from_secs(5),
                [Trigger::from(Interval::hours(1)), cron("@daily")],
            ),
            r#"{"type":"and","triggers":[{"type":"interval","period":3600.0},{"type":"cron","expression":"@daily"}],"threshold":5.0}"#,
        ),
    ];
    for (trigger, json) in cases {
        assert_eq!(serde_json::to_string(&trigger).unwrap(), json);
        let back: Trigger = serde_json::from_str(json).unwrap();
        assert_eq!(back, trigger, "{json}");
    }
}

#[test]
fn intervals_shorter_than_a_millisecond_are_refused() {
    let now = t("2024-01-01T00:00:00Z");
    for period in [Duration::from_nanos(1), Duration::from_micros(999)] {
        match Trigger::from(Interval::every(period)).prepared(Zone::UTC, now) {
            Err(Error::InvalidTrigger {
                field: "interval",
                value,
                reason,
            }) => {
                assert_eq!(value, format!("{period:?}"));
                assert!(reason.starts_with("must be at least 1 ms"), "{reason}");
                assert!(reason.contains("milliseconds"), "{reason}");
            }
            other => panic!("{period:?}: {other:?}"),
        }
    }
    let zero = Trigger::from(Interval::every(Duration::ZERO)).prepared(Zone::UTC, now);
    assert!(
        matches!(&zero, Err(Error::InvalidTrigger { field: "interval", reason, .. }) if reason.contains("longer than zero")),
        "{zero:?}"
    );
    let ms = Trigger::from(Interval::every(Duration::from_millis(1)))
        .prepared(Zone::UTC, now)
        .unwrap();
    assert_eq!(
        ms.next_fire_time(None, now).unwrap(),
        Some(t("2024-01-01T00:00:00.001Z"))
    );
    // Read from JSON and never prepared: an error, not a run in a loop at one instant.
    for json in [
        r#"{"type":"interval","period":0.0,"start":"2024-01-01T00:00:00Z"}"#,
        r#"{"type":"interval","period":1e-9,"start":"2024-01-01T00:00:00Z"}"#,
    ] {
        let raw: Trigger = serde_json::from_str(json).unwrap();
        assert!(
            matches!(
                raw.next_fire_time(Some(now), now),
                Err(Error::InvalidTrigger {
                    field: "interval",
                    ..
                })
            ),
            "{json}"
        );
    }
}

/// Searches at the ends of chrono's range, and spans that overflow 64-bit nanoseconds, give an
/// answer (debug builds panic on any integer or date overflow).
#[test]
fn extreme_instants_and_spans_never_panic() {
    let max = DateTime::<Utc>::MAX_UTC;
    let min = DateTime::<Utc>::MIN_UTC;
    let now = t("2024-01-01T00:00:00Z");
    let triggers: Vec<Trigger> = vec![
        Interval::hours(1).start(now).into(),
        cron("* * * * * *"),
        Cron::new().second("*").into(),
        CalendarInterval::days(1)
            .start_date(date(2024, 1, 1))
            .into(),
        Trigger::or([cron("0 * * * *")]),
        Trigger::and([cron("0 * * * *"), cron("0 */2 * * *")]),
        Trigger::and_within(
            Duration::from_secs(9_000_000_000_000_000),
            [cron("0 * * * *"), cron("30 * * * *")],
        ),
    ];
    for trigger in triggers {
        let trigger = trigger.prepared(Zone::UTC, now).unwrap();
        assert_eq!(
            trigger.next_fire_time(Some(max), now),
            Ok(None),
            "{trigger}"
        );
        let _ = trigger.next_fire_time(None, max);
        let _ = trigger.next_fire_time(Some(min), min);
        let _ = trigger.fire_time_at_or_after(max);
        let _ = trigger.jittered(max);
    }
    // 290 years in, with a 200-year period: past 64-bit nanoseconds, found by arithmetic.
    let start = t("2000-01-01T00:00:00Z");
    let period = TimeDelta::days(200 * 365);
    let long = Trigger::from(Interval::every(period.to_std().unwrap()).start(start));
    assert_eq!(
        long.next_fire_time(None, t("2290-01-01T00:00:00Z"))
            .unwrap(),
        Some(start + period + period)
    );
    assert_eq!(
        long.next_fire_time(None, start + period).unwrap(),
        Some(start + period)
    );
}

/// APScheduler's validate_range: a step larger than the range it steps over is refused, as is
/// one that does not fit in 32 bits; no accepted step overflows or slows a search.
#[test]
fn steps_larger_than_their_range_are_refused() {
    let now = t("2024-01-01T00:00:00Z");
    let refused: Vec<(Cron, &str, &str)> = vec![
        (Cron::new().minute("1/4294967295"), "minute", "1/4294967295"),
        (Cron::new().minute("*/60"), "minute", "*/60"),
        (Cron::new().second("0-59/60"), "second", "0-59/60"),
        (Cron::new().hour("*/24"), "hour", "*/24"),
        (Cron::new().day("*/31"), "day", "*/31"),
        (Cron::new().day("4-6/3"), "day", "4-6/3"),
        (Cron::new().day("30/2"), "day", "30/2"),
        (Cron::new().month("*/12"), "month", "*/12"),
        (Cron::new().week("*/53"), "week", "*/53"),
        (Cron::new().day_of_week("*/7"), "day_of_week", "*/7"),
        (
            Cron::new().day_of_week("sat-mon/3"),
            "day_of_week",
            "sat-mon/3",
        ),
        (
            Cron::new().year("1970/4294967295").week("1"),
            "year",
            "1970/4294967295",
        ),
        (Cron::new().year("2024-2030/7"), "year", "2024-2030/7"),
        (Cron::new().minute("*/4294967296"), "minute", "*/4294967296"),
    ];
    for (cron, field, value) in refused {
        match Trigger::from(cron).prepared(Zone::UTC, now) {
            Err(Error::InvalidCronField {
                field: f,
                value: v,
                reason,
            }) => {
                assert_eq!((f, v.as_str()), (field, value));
                assert!(reason.contains("step"), "{field}={value}: {reason}");
            }
            other => panic!("{field}={value}: {other:?}"),
        }
    }
    let e = Trigger::from(Cron::new().day("4-6/3"))
        .prepared(Zone::UTC, now)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid cron field 'day': value '4-6/3' has a step of 3, larger than the 2 its range 4-6 \
         spans (only its first value would match)"
    );
    // A step equal to the range's span is accepted (two values), as in APScheduler.
    let accepted: Vec<(Trigger, &[&str])> = vec![
        (
            Cron::new().day("4-6/2").into(),
            &[
                "2024-01-04T00:00:00Z",
                "2024-01-06T00:00:00Z",
                "2024-02-04T00:00:00Z",
            ],
        ),
        (
            Cron::new().minute("*/59").into(),
            &[
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:59:00Z",
                "2024-01-01T01:00:00Z",
            ],
        ),
        (
            Cron::new().day_of_week("sat-mon/2").hour(9).into(),
            &[
                "2024-01-01T09:00:00Z",
                "2024-01-06T09:00:00Z",
                "2024-01-08T09:00:00Z",
            ],
        ),
        (
            Cron::new().day_of_week("7-3").hour(9).into(),
            &[
                "2024-01-01T09:00:00Z",
                "2024-01-02T09:00:00Z",
                "2024-01-03T09:00:00Z",
                "2024-01-07T09:00:00Z",
            ],
        ),
        (
            Cron::new().year("1970-9999/8029").into(),
            &["9999-01-01T00:00:00Z"],
        ),
    ];
    for (trigger, expect) in accepted {
        let trigger = trigger.prepared(Zone::UTC, now).unwrap();
        let mut previous = None;
        for e in expect {
            let next = trigger.next_fire_time(previous, now);
            if e.starts_with("9999") {
                // Past croner's horizon: accepted, and it says it never fires.
                assert!(
                    matches!(next, Err(Error::TriggerNeverFires { .. })),
                    "{next:?}"
                );
                break;
            }
            assert_eq!(next.unwrap(), Some(t(e)), "{trigger}");
            previous = Some(t(e));
        }
    }
}

/// Field sets whose dates are rare or absent: every search answers (its cost is measured in
/// `benches/triggers.rs`, "cron fields, rarest date").
#[test]
fn rare_field_sets_are_searched_to_an_answer() {
    let now = t("2024-01-01T00:00:00Z");
    let rare: Vec<Cron> = vec![
        Cron::new().year("1970-9999/8029").week("1"),
        Cron::new().year("9999").week("53").day_of_week("thu"),
        Cron::new()
            .year("4000-4999/7")
            .week("53")
            .month("12")
            .day("31")
            .day_of_week("thu"),
        Cron::new()
            .week("53")
            .day("31")
            .month("12")
            .day_of_week("sun"),
        Cron::new().week("53").day("last sat,1st mon"),
        Cron::new().year("2100-5000/100").month(2).day(29).week("9"),
        Cron::new().year("2025-2027").month(2).day(29).week("9"),
        Cron::new().day("5th fri").month(2).week("8-9"),
        Cron::new().week("1").day("last"),
    ];
    for cron in rare {
        let text = format!("{cron:?}");
        let trigger = Trigger::from(cron).prepared(Zone::UTC, now).unwrap();
        let mut previous = None;
        for _ in 0..3 {
            let next = trigger.next_fire_time(previous, now);
            assert!(
                matches!(next, Ok(_) | Err(Error::TriggerNeverFires { .. })),
                "{text}: {next:?}"
            );
            match next {
                Ok(Some(next)) => previous = Some(next),
                _ => break,
            }
        }
    }
}

/// Croner matches years up to 5000 and finds nothing after 5000-01-01 (its search stops when a
/// date would move past a day of year 5000): a crontab year past 5000 is refused, naming the
/// limit; the field API accepts years to 9999 as APScheduler and says they never fire.
#[test]
fn years_past_croners_limit() {
    let now = t("4999-06-01T00:00:00Z");
    match Cron::parse("0 0 0 1 1 * 9999") {
        Err(Error::InvalidCronField {
            field: "expression",
            value,
            reason,
        }) => {
            assert_eq!(value, "0 0 0 1 1 * 9999");
            assert!(reason.contains("has the year 9999"), "{reason}");
            assert!(reason.contains("at most 5000"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let last: Trigger = cron("0 30 23 1 1 * 5000");
    assert_eq!(
        last.next_fire_time(None, now).unwrap(),
        Some(t("5000-01-01T23:30:00Z"))
    );
    assert_eq!(
        last.next_fire_time(Some(t("5000-01-01T23:30:00Z")), now)
            .unwrap(),
        None
    );
    // The last instant found: the end of 5000-01-01 on the wall clock, whatever the pattern.
    let every_second: Trigger = cron("* * * * * *");
    assert_eq!(
        every_second
            .next_fire_time(None, t("5000-01-01T23:59:59Z"))
            .unwrap(),
        Some(t("5000-01-01T23:59:59Z"))
    );
    assert_eq!(
        every_second
            .next_fire_time(Some(t("5000-01-01T23:59:59Z")), now)
            .unwrap(),
        None
    );
    let daily: Trigger = cron("0 12 * * *");
    assert_eq!(
        daily
            .next_fire_time(None, t("5000-01-01T13:00:00Z"))
            .unwrap(),
        None
    );
    let fields: Trigger = Cron::new().year(5000).month(1).day(1).hour(12).into();
    assert_eq!(
        fields.next_fire_time(None, now).unwrap(),
        Some(t("5000-01-01T12:00:00Z"))
    );
    for far in [
        Cron::new().year(9999),
        Cron::new().year("6000-9999").week(10),
    ] {
        let far = Trigger::from(far).prepared(Zone::UTC, now).unwrap();
        match far.next_fire_time(None, now) {
            Err(Error::TriggerNeverFires { reason, .. }) => {
                assert!(reason.contains("5000-01-01"), "{reason}")
            }
            other => panic!("{far}: {other:?}"),
        }
    }
}

/// Day-of-week ranges wrap in crontab strings as in the field API (croner refuses them).
#[test]
fn crontab_weekday_ranges_wrap() {
    let now = t("2024-05-01T00:00:00Z"); // a Wednesday
    let sat_to_mon = [
        "2024-05-04T12:00:00Z",
        "2024-05-05T12:00:00Z",
        "2024-05-06T12:00:00Z",
        "2024-05-11T12:00:00Z",
    ];
    for expr in [
        "0 12 * * sat-mon",
        "0 12 * * 6-1",
        "0 12 * * SAT-MON",
        "0 0 12 * * 6-1 *",
    ] {
        let trigger = cron(expr);
        let mut previous = None;
        for expected in sat_to_mon {
            let next = trigger.next_fire_time(previous, now).unwrap();
            assert_eq!(next, Some(t(expected)), "{expr}");
            previous = next;
        }
        assert_eq!(Cron::parse(expr).unwrap().expression(), Some(expr));
    }
    // With a step, beside `#` items, and with Sunday as 7.
    let cases: [(&str, &[&str]); 3] = [
        (
            "0 12 * * fri-mon/2",
            &[
                "2024-05-03T12:00:00Z",
                "2024-05-05T12:00:00Z",
                "2024-05-10T12:00:00Z",
            ],
        ),
        (
            "0 12 * * sat-sun,3#1",
            &[
                "2024-05-01T12:00:00Z",
                "2024-05-04T12:00:00Z",
                "2024-05-05T12:00:00Z",
            ],
        ),
        (
            "0 12 * * 7-1",
            &[
                "2024-05-05T12:00:00Z",
                "2024-05-06T12:00:00Z",
                "2024-05-12T12:00:00Z",
            ],
        ),
    ];
    for (expr, expect) in cases {
        let trigger = cron(expr);
        let mut previous = None;
        for expected in expect {
            let next = trigger.next_fire_time(previous, now).unwrap();
            assert_eq!(next, Some(t(expected)), "{expr}");
            previous = next;
        }
    }
    for bad in [
        "0 12 * * 8-1",
        "0 12 * * sat-",
        "0 12 * * sat-mon/0",
        "0 12 * * sat-xyz",
    ] {
        assert!(
            matches!(
                Cron::parse(bad),
                Err(Error::InvalidCronField {
                    field: "expression",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

/// Hostile crontab strings and field values: each is refused with a typed error or answered
/// within milliseconds, and none panics.
#[test]
fn hostile_input_is_refused_or_answered_quickly() {
    let now = t("2024-03-31T00:30:00Z");
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    let crontabs = [
        "*/4294967296 * * * *",
        "*/4294967295 * * * *",
        "0-59/4294967295 * * * *",
        "0 0 31 2 * 4999",
        "0 0 29 2 * 2100-4900/100",
        "0 0 29 2 1#5 2100-5000",
        "59 59 23 31 12 5#5 5000",
        "0 0 L-3 * *",
        "0 0 LW * *",
        "0 0 32W * *",
        "0 0 ? ? ?",
        "@reboot",
        "@every 5s",
        "* * * * * * * * *",
        "- - - - -",
        ", , , , ,",
        "0 0 * * sat-sat",
        "0 0 * * 7-0",
        "0 0 * * 1-7/3",
        "0 0 * * sun-sat/7",
        "0 0 0 1 1 * 0",
        "0 0 0 1 1 * 1-5000/4999",
        "0 0 1 1 * +mon",
        "\u{0}\u{1} * * * *",
        "٣ * * * *",
    ];
    for expr in crontabs {
        match Cron::parse(expr) {
            Err(Error::InvalidCronField { field, value, .. }) => {
                assert_eq!((field, value.as_str()), ("expression", expr));
            }
            Err(other) => panic!("{expr:?}: {other:?}"),
            Ok(cron) => {
                let trigger = Trigger::from(cron).prepared(berlin, now).unwrap();
                let mut previous = None;
                for _ in 0..3 {
                    match trigger.next_fire_time(previous, now) {
                        Ok(Some(next)) => {
                            assert!(previous.is_none_or(|p| next > p), "{expr:?}");
                            previous = Some(next);
                        }
                        Ok(None) | Err(Error::TriggerNeverFires { .. }) => break,
                        Err(other) => panic!("{expr:?}: {other:?}"),
                    }
                }
            }
        }
    }
    let long_list = vec!["1970-9999"; 2000].join(",");
    let fields = [
        Cron::new().year(long_list.as_str()),
        Cron::new().hour("1,".repeat(10_000).as_str()),
        Cron::new().day(" , "),
        Cron::new().day("1st"),
        Cron::new().day("last  fri"),
        Cron::new().day("-1"),
        Cron::new().minute("1-"),
        Cron::new().minute("/5"),
        Cron::new().minute("5/"),
        Cron::new().minute("*/-5"),
        Cron::new().minute("*/+5"),
        Cron::new().minute("٣"),
        Cron::new().week("53").year("2026"),
    ];
    for cron in fields {
        let text = format!("{cron:?}");
        match Trigger::from(cron).prepared(berlin, now) {
            Ok(trigger) => match trigger.next_fire_time(None, now) {
                Ok(_) | Err(Error::TriggerNeverFires { .. }) => {}
                Err(other) => panic!("{text}: {other:?}"),
            },
            Err(Error::InvalidCronField { .. }) => {}
            Err(other) => panic!("{text}: {other:?}"),
        }
    }
}

/// Triggers read from JSON with values out of range, or contradicting each other: a typed
/// error at prepare and on every search, never a panic or a run in a loop.
#[test]
fn json_with_values_out_of_range_is_refused() {
    let now = t("2024-01-01T00:00:00Z");
    let cases = [
        (r#"{"type":"calendar_interval","days":1,"hour":99}"#, "hour"),
        (
            r#"{"type":"calendar_interval","years":4294967295}"#,
            "interval",
        ),
        (r#"{"type":"calendar_interval"}"#, "interval"),
        (r#"{"type":"cron","fields":{"hour":"99"}}"#, "hour"),
        (r#"{"type":"cron","fields":{"day":"*/31"}}"#, "day"),
        (
            r#"{"type":"cron","expression":"0 0 * * *","fields":{"hour":"1"}}"#,
            "expression",
        ),
        (
            r#"{"type":"cron","expression":"0 0 * * *","start":"2024-02-01T00:00:00Z","end":"2024-01-01T00:00:00Z"}"#,
            "end_date",
        ),
        (
            r#"{"type":"interval","period":0.0005,"start":"2024-01-01T00:00:00Z"}"#,
            "interval",
        ),
    ];
    for (json, field) in cases {
        let raw: Trigger = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let field_of = |e: Error| match e {
            Error::InvalidCronField { field, .. } | Error::InvalidTrigger { field, .. } => field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(
            field_of(raw.clone().prepared(Zone::UTC, now).unwrap_err()),
            field,
            "{json}"
        );
        if field != "end_date" {
            assert_eq!(
                field_of(raw.next_fire_time(None, now).unwrap_err()),
                field,
                "{json}"
            );
        }
    }
    for json in [
        r#"{"type":"interval","period":-1.0}"#,
        r#"{"type":"interval","period":1e300}"#,
        r#"{"type":"interval","period":1e12}"#,
        r#"{"type":"cron","expression":"0 0 * * *","jitter":-3.0}"#,
        r#"{"type":"cron","expression":"0 0 * * *","jitter":1e12}"#,
        r#"{"type":"cron","expression":"0 0 * * *","timezone":"Mars/Olympus_Mons"}"#,
        r#"{"type":"date","run_date":"2024-13-01T00:00:00Z"}"#,
    ] {
        assert!(serde_json::from_str::<Trigger>(json).is_err(), "{json}");
    }
}
