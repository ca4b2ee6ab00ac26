//! Property tests: fire times agree with a brute-force scan, are strictly increasing, and
//! parsing never panics. Case counts are small so the file runs in seconds in debug builds.

use std::time::Duration;

use apsched::trigger::{CalendarInterval, Cron, Date, Interval, Trigger};
use apsched::Zone;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use proptest::prelude::*;

/// A day rule's expression and the scan's test for it.
type DayTest = fn(NaiveDateTime) -> bool;
type DayRule = (String, DayTest);

/// A field as the brute-force scan sees it: the set of allowed values.
#[derive(Clone, Debug)]
struct Field {
    text: String,
    values: Vec<u32>,
    star: bool,
}

fn star(min: u32, max: u32) -> Field {
    Field {
        text: "*".into(),
        values: (min..=max).collect(),
        star: true,
    }
}

/// `*`, `a`, `a-b`, `a-b/c`, `*/c` or `a,b` over `min..=max`.
fn field(min: u32, max: u32, allow_star_step: bool) -> impl Strategy<Value = Field> {
    let single = (min..=max).prop_map(|a| Field {
        text: a.to_string(),
        values: vec![a],
        star: false,
    });
    let range = (min..=max, min..=max, 1..4u32).prop_map(|(a, b, c)| {
        let (a, b) = (a.min(b), a.max(b));
        // A step larger than the range's span is refused (APScheduler's validate_range).
        let text = if b == a {
            format!("{a}-{b}")
        } else {
            format!("{a}-{b}/{}", c.min(b - a))
        };
        Field {
            text,
            values: (a..=b).step_by(c.min((b - a).max(1)) as usize).collect(),
            star: false,
        }
    });
    let list = (min..=max, min..=max).prop_map(|(a, b)| {
        let mut values = vec![a, b];
        values.sort_unstable();
        values.dedup();
        Field {
            text: format!("{a},{b}"),
            values,
            star: false,
        }
    });
    let star_step = (2..7u32).prop_map(move |c| Field {
        text: format!("*/{c}"),
        values: (min..=max).step_by(c as usize).collect(),
        star: false,
    });
    if allow_star_step {
        prop_oneof![Just(star(min, max)), single, range, list, star_step].boxed()
    } else {
        prop_oneof![Just(star(min, max)), single, range, list].boxed()
    }
}

#[derive(Clone, Debug)]
struct Crontab {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Crontab {
    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.minute.text, self.hour.text, self.dom.text, self.month.text, self.dow.text
        )
    }

    /// Vixie cron: when both day fields are restricted, either may match.
    fn matches(&self, t: NaiveDateTime) -> bool {
        let dom = self.dom.values.contains(&t.day());
        let dow = self
            .dow
            .values
            .contains(&t.weekday().num_days_from_sunday())
            || (t.weekday().num_days_from_sunday() == 0 && self.dow.values.contains(&7));
        let day = match (self.dom.star, self.dow.star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        };
        t.second() == 0
            && self.minute.values.contains(&t.minute())
            && self.hour.values.contains(&t.hour())
            && self.month.values.contains(&t.month())
            && day
    }
}

fn crontab() -> impl Strategy<Value = Crontab> {
    (
        field(0, 59, true),
        field(0, 23, true),
        field(1, 28, false),
        field(1, 12, true),
        field(0, 7, false),
    )
        .prop_map(|(minute, hour, dom, month, dow)| Crontab {
            minute,
            hour,
            dom,
            month,
            dow,
        })
}

/// An instant in 2020-2029 on a whole second.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (1_577_836_800i64..1_893_456_000).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn offset_zone() -> impl Strategy<Value = FixedOffset> {
    prop_oneof![
        Just(FixedOffset::east_opt(0).unwrap()),
        Just(FixedOffset::east_opt(5 * 3600 + 1800).unwrap()),
        Just(FixedOffset::west_opt(8 * 3600).unwrap()),
    ]
}

/// The first instant at or after `from` (stepping by `step`) whose wall time in `zone`
/// matches, within `window`.
fn scan(
    from: DateTime<Utc>,
    zone: FixedOffset,
    step: i64,
    window: TimeDelta,
    matches: impl Fn(NaiveDateTime) -> bool,
) -> Option<DateTime<Utc>> {
    let start = from.timestamp().div_euclid(step) * step;
    let start = if start < from.timestamp() {
        start + step
    } else {
        start
    };
    let end = (from + window).timestamp();
    (0..)
        .map(|k| start + k * step)
        .take_while(|s| *s <= end)
        .map(|s| Utc.timestamp_opt(s, 0).unwrap())
        .find(|t| matches(t.with_timezone(&zone).naive_local()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn crontab_agrees_with_brute_force(pattern in crontab(), at in instant(), zone in offset_zone()) {
        let trigger: Trigger = Cron::parse(&pattern.text()).unwrap().timezone(zone).into();
        let window = TimeDelta::days(400);
        let expected = scan(at, zone, 60, window, |t| pattern.matches(t));
        let got = trigger.next_fire_time(None, at).unwrap();
        match expected {
            Some(expected) => prop_assert_eq!(got, Some(expected), "{}", pattern.text()),
            None => prop_assert!(got.is_none_or(|g| g > at + window), "{}", pattern.text()),
        }
        if let Some(got) = got {
            prop_assert!(got >= at);
            let after = trigger.next_fire_time(Some(got), at).unwrap();
            prop_assert!(after.is_none_or(|a| a > got));
        }
    }
}

#[derive(Clone, Debug)]
struct FieldApi {
    month: Option<Field>,
    day: Option<DayRule>,
    dow: Option<Field>,
    hour: Field,
    minute: Field,
    second: Field,
}

fn last_of_month(t: NaiveDateTime) -> bool {
    (t.date() + TimeDelta::days(1)).month() != t.month()
}

fn day_rule() -> impl Strategy<Value = Option<DayRule>> {
    let rules: Vec<(&str, DayTest)> = vec![
        ("last", last_of_month),
        ("2nd tue", |t| {
            t.weekday().num_days_from_sunday() == 2 && (t.day() - 1) / 7 == 1
        }),
        ("last fri", |t| {
            t.weekday().num_days_from_sunday() == 5
                && (t.date() + TimeDelta::days(7)).month() != t.month()
        }),
        ("10-20", |t| (10..=20).contains(&t.day())),
        ("1,15", |t| t.day() == 1 || t.day() == 15),
    ];
    prop_oneof![
        Just(None),
        proptest::sample::select(rules).prop_map(|(s, f)| Some((s.to_string(), f)))
    ]
}

fn field_api() -> impl Strategy<Value = FieldApi> {
    (
        proptest::option::of(field(1, 12, true)),
        day_rule(),
        proptest::option::of(prop_oneof![
            Just(("mon-fri", vec![1, 2, 3, 4, 5])),
            Just(("sat-mon", vec![6, 0, 1])),
            Just(("0,3", vec![0, 3])),
            Just(("7", vec![0])),
        ]),
        field(0, 23, true),
        field(0, 59, true),
        prop_oneof![Just("0"), Just("30"), Just("0,30"), Just("*/30")],
    )
        .prop_map(|(month, day, dow, hour, minute, second)| FieldApi {
            month,
            day,
            dow: dow.map(|(text, values)| Field {
                text: text.into(),
                values,
                star: false,
            }),
            hour,
            minute,
            second: Field {
                text: second.into(),
                values: match second {
                    "0" => vec![0],
                    "30" => vec![30],
                    _ => vec![0, 30],
                },
                star: false,
            },
        })
}

impl FieldApi {
    fn cron(&self) -> Cron {
        let mut c = Cron::new()
            .hour(&self.hour.text)
            .minute(&self.minute.text)
            .second(&self.second.text);
        if let Some(m) = &self.month {
            c = c.month(&m.text);
        }
        if let Some((d, _)) = &self.day {
            c = c.day(d);
        }
        if let Some(w) = &self.dow {
            c = c.day_of_week(&w.text);
        }
        c
    }

    /// Whether any date of a 28-year calendar cycle passes the day-level fields.
    fn any_date_matches(&self) -> bool {
        let first = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        first
            .iter_days()
            .take_while(|d| d.year() < 2028)
            .any(|d| self.date_matches(d.and_hms_opt(0, 0, 0).unwrap()))
    }

    fn date_matches(&self, t: NaiveDateTime) -> bool {
        self.month
            .as_ref()
            .is_none_or(|m| m.values.contains(&t.month()))
            && self.day.as_ref().is_none_or(|(_, f)| f(t))
            && self
                .dow
                .as_ref()
                .is_none_or(|w| w.values.contains(&t.weekday().num_days_from_sunday()))
    }

    /// APScheduler: every given field must match, day and day_of_week included.
    fn matches(&self, t: NaiveDateTime) -> bool {
        self.month
            .as_ref()
            .is_none_or(|m| m.values.contains(&t.month()))
            && self.day.as_ref().is_none_or(|(_, f)| f(t))
            && self
                .dow
                .as_ref()
                .is_none_or(|w| w.values.contains(&t.weekday().num_days_from_sunday()))
            && self.hour.values.contains(&t.hour())
            && self.minute.values.contains(&t.minute())
            && self.second.values.contains(&t.second())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fields_agree_with_brute_force(api in field_api(), at in instant(), zone in offset_zone()) {
        let trigger: Trigger = api.cron().timezone(zone).into();
        let window = TimeDelta::days(120);
        let expected = scan(at, zone, 30, window, |t| api.matches(t));
        let got = match trigger.next_fire_time(None, at) {
            Ok(got) => got,
            // A field set that matches no date at all (e.g. last friday on sundays) never
            // fires; any other error fails.
            Err(apsched::Error::TriggerNeverFires { .. }) if !api.any_date_matches() => {
                prop_assert!(expected.is_none());
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        match expected {
            Some(expected) => prop_assert_eq!(got, Some(expected), "{:?}", api.cron()),
            None => prop_assert!(got.is_none_or(|g| g > at + window)),
        }
    }
}

fn any_trigger() -> impl Strategy<Value = Trigger> {
    let zone = prop_oneof![
        Just("UTC"),
        Just("Europe/Berlin"),
        Just("America/New_York"),
        Just("Australia/Lord_Howe"),
    ]
    .prop_map(|z| Zone::parse(z).unwrap());
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    prop_oneof![
        (1..100_000u64).prop_map(move |s| Trigger::from(Interval::seconds(s).start(start))),
        Just(Trigger::from(Date::at(start + TimeDelta::days(3)))),
        (crontab(), zone.clone())
            .prop_map(|(p, z)| Trigger::from(Cron::parse(&p.text()).unwrap().timezone(z))),
        // Field sets that can fire: a trigger here that errors fails the property.
        (
            field_api().prop_filter("matches some date", FieldApi::any_date_matches),
            zone.clone()
        )
            .prop_map(|(a, z)| Trigger::from(a.cron().timezone(z))),
        (1..4u32, 0..4u32, 0..24u32, zone.clone()).prop_map(move |(n, unit, h, z)| {
            let c = match unit {
                0 => CalendarInterval::days(n),
                1 => CalendarInterval::weeks(n),
                2 => CalendarInterval::months(n),
                _ => CalendarInterval::years(n),
            };
            Trigger::from(
                c.at(h, 30, 0)
                    .start_date(chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap())
                    .timezone(z),
            )
        }),
        (crontab(), crontab()).prop_map(|(a, b)| Trigger::or([
            Cron::parse(&a.text()).unwrap(),
            Cron::parse(&b.text()).unwrap()
        ])),
        (1..6u64).prop_map(move |h| Trigger::and([
            Trigger::from(Interval::hours(h).start(start)),
            Trigger::from(Cron::parse("0 * * * 1-5").unwrap()),
        ])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn next_fire_time_is_strictly_increasing(trigger in any_trigger(), at in instant()) {
        let trigger = trigger.prepared(Zone::UTC, at).unwrap();
        let mut previous = None;
        for _ in 0..12 {
            let next = match trigger.next_fire_time(previous, at) {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(e) => return Err(TestCaseError::fail(format!("{trigger}: {e}"))),
            };
            if let Some(p) = previous {
                prop_assert!(next > p, "{} after {}", next, p);
            } else {
                prop_assert!(next >= at || matches!(trigger, Trigger::Date(_)));
            }
            previous = Some(next);
        }
    }

    /// The fuzz targets' property, run on every `cargo test`: no input makes parsing or
    /// searching panic.
    #[test]
    fn arbitrary_input_never_panics(
        text in "\\PC{0,40}",
        cron_like in "[0-9*/,LW#?@a-zA-Z +-]{0,30}",
        at in instant(),
    ) {
        for input in [&text, &cron_like] {
            if let Ok(c) = Cron::parse(input) {
                let _ = Trigger::from(c).next_fire_time(None, at);
            }
            let fields = [
                Cron::new().hour(input.as_str()),
                Cron::new().day(input.as_str()),
                Cron::new().day_of_week(input.as_str()),
                Cron::new().year(input.as_str()).week(input.as_str()),
            ];
            for c in fields {
                let _ = Trigger::from(c).next_fire_time(None, at);
            }
        }
    }
}

#[test]
fn jitter_stays_within_bounds() {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    // Jitter larger than the period: cut short before the next regular run.
    let interval = Trigger::from(
        Interval::seconds(10)
            .start(start)
            .jitter(Duration::from_secs(60)),
    );
    let cron = Trigger::from(
        Cron::new()
            .minute("*")
            .timezone(Zone::UTC)
            .jitter(Duration::from_secs(20)),
    );
    let end = start + TimeDelta::seconds(5);
    let ended = Trigger::from(
        Interval::seconds(1)
            .start(start)
            .end(end)
            .jitter(Duration::from_secs(30)),
    );
    for (trigger, regular, max_delay) in [
        (&interval, start, TimeDelta::seconds(10)),
        (&cron, start, TimeDelta::seconds(20)),
        (&ended, end, TimeDelta::zero()),
    ] {
        let next = trigger.next_fire_time(Some(regular), regular).unwrap();
        let mut sum = 0.0;
        let samples = 4000;
        let mut max_seen = TimeDelta::zero();
        for _ in 0..samples {
            let fired = trigger.jittered(regular);
            let delay = fired - regular;
            assert!(delay >= TimeDelta::zero(), "negative jitter {delay}");
            assert!(delay <= max_delay, "{delay} > {max_delay}");
            if let Some(next) = next {
                assert!(fired < next, "jitter reached the next run");
            }
            if let Some(end) = trigger.end_date() {
                assert!(fired <= end);
            }
            max_seen = max_seen.max(delay);
            sum += delay.as_seconds_f64();
        }
        // Uniform on [0, max]: the mean is max / 2 (within 5 % of max for 4000 samples).
        let mean = sum / f64::from(samples);
        let half = max_delay.as_seconds_f64() / 2.0;
        assert!(
            (mean - half).abs() <= 0.05 * max_delay.as_seconds_f64() + 1e-9,
            "mean {mean} vs {half}"
        );
        assert!(max_seen.as_seconds_f64() >= 0.9 * max_delay.as_seconds_f64());
    }
    // Regular times come from the unjittered schedule, so jitter never drifts.
    let regular = start + TimeDelta::seconds(10);
    assert_eq!(
        interval.next_fire_time(Some(start), start).unwrap(),
        Some(regular)
    );
}

const DST_ZONES: [&str; 12] = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Apia",
    "America/Nuuk",
    "America/Santiago",
    "America/Havana",
    "Asia/Tehran",
];

/// The instants in `year` at which `zone`'s offset changes (to the day).
fn transitions(zone: Zone, year: i32) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| {
        use chrono::Offset;
        t.with_timezone(&zone).offset().fix().local_minus_utc()
    };
    let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    (0..366)
        .map(|d| start + TimeDelta::days(d))
        .filter(|t| offset(*t) != offset(*t + TimeDelta::days(1)))
        .collect()
}

/// The rule of time for a fixed wall time `time` on `date`, by brute force: the first instant
/// (minute by minute) whose wall reading is at or after it. That is the time itself when it
/// exists (its first occurrence when it happens twice) and the end of the gap when it does not.
fn expected_instant(zone: Zone, date: chrono::NaiveDate, time: chrono::NaiveTime) -> DateTime<Utc> {
    let wall = date.and_time(time);
    let from = wall.and_utc() - TimeDelta::hours(15);
    (0..30 * 60)
        .map(|m| from + TimeDelta::minutes(m))
        .find(|t| t.with_timezone(&zone).naive_local() >= wall)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A fixed time of day, near a daylight saving change in a dozen zones, through a crontab
    /// string, the field API and the date-walking engine alike: once on each matching date, at
    /// the wall time or at the first instant after the gap that swallows it.
    #[test]
    fn fixed_times_follow_the_rule_of_time_near_transitions(
        zone in proptest::sample::select(DST_ZONES.to_vec()),
        year in 2011..2025i32,
        pick in 0..8usize,
        hour in proptest::sample::select(vec![0u32, 1, 2, 3, 12, 22, 23]),
        minute in proptest::sample::select(vec![0u32, 15, 30, 45]),
        weekday in proptest::option::of(0..7u32),
        before in 0..(3 * 86_400i64),
    ) {
        let zone = Zone::parse(zone).unwrap();
        let changes = transitions(zone, year);
        prop_assume!(!changes.is_empty());
        let at = changes[pick % changes.len()] - TimeDelta::seconds(before);
        let time = chrono::NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
        let dow = weekday.map_or("*".to_string(), |w| w.to_string());
        let mut fields = Cron::new().hour(hour).minute(minute);
        let mut walked = Cron::new().week("1-53").hour(hour).minute(minute);
        if let Some(w) = weekday {
            fields = fields.day_of_week(w);
            walked = walked.day_of_week(w);
        }
        let triggers = [
            Trigger::from(Cron::parse(&format!("{minute} {hour} * * {dow}")).unwrap()),
            Trigger::from(fields),
            Trigger::from(walked),
        ];
        // Expected: the rule applied to each matching date from the day before `at`.
        let first_day = at.with_timezone(&zone).date_naive() - TimeDelta::days(2);
        let mut expected: Vec<DateTime<Utc>> = first_day
            .iter_days()
            .take(40)
            .filter(|d| weekday.is_none_or(|w| d.weekday().num_days_from_sunday() == w))
            .map(|d| expected_instant(zone, d, time))
            .filter(|t| *t >= at)
            .collect();
        expected.dedup();
        expected.truncate(3);
        for trigger in triggers {
            let trigger = trigger.prepared(zone, at).unwrap();
            let mut got = Vec::new();
            let mut previous = None;
            for _ in 0..3 {
                match trigger.next_fire_time(previous, at) {
                    Ok(Some(next)) => {
                        got.push(next);
                        previous = Some(next);
                    }
                    other => return Err(TestCaseError::fail(format!("{trigger}: {other:?}"))),
                }
            }
            prop_assert_eq!(&got, &expected, "{} from {}", trigger, at);
        }
    }
}
