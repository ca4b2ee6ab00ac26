//! Next-fire-time cost of each trigger kind, next to croner's own search as the yardstick.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use apsched::trigger::{CalendarInterval, Cron, Date, Interval, Trigger};
use apsched::Zone;
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};

fn triggers(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    let pattern = "*/5 9-17 * * mon-fri";

    let croner = croner::Cron::from_str(pattern).unwrap();
    let now_berlin = now.with_timezone(&chrono_tz::Europe::Berlin);
    c.bench_function("croner find_next_occurrence UTC", |b| {
        b.iter(|| croner.find_next_occurrence(black_box(&now), false))
    });
    c.bench_function("croner find_next_occurrence Berlin", |b| {
        b.iter(|| croner.find_next_occurrence(black_box(&now_berlin), false))
    });

    let cron_utc = Trigger::from(Cron::parse(pattern).unwrap())
        .prepared(Zone::UTC, now)
        .unwrap();
    let cron_berlin = Trigger::from(Cron::parse(pattern).unwrap())
        .prepared(berlin, now)
        .unwrap();
    c.bench_function("cron crontab UTC", |b| {
        b.iter(|| cron_utc.next_fire_time(black_box(Some(now)), now))
    });
    c.bench_function("cron crontab Berlin", |b| {
        b.iter(|| cron_berlin.next_fire_time(black_box(Some(now)), now))
    });

    // A fixed time of day in a zone with daylight saving: matched on naive wall times and
    // resolved by the zone's rule (gaps across midnight, skipped days).
    let fixed_berlin = Trigger::from(Cron::parse("30 6 * * mon-fri").unwrap())
        .prepared(berlin, now)
        .unwrap();
    c.bench_function("cron crontab fixed time Berlin", |b| {
        b.iter(|| fixed_berlin.next_fire_time(black_box(Some(now)), now))
    });

    let fields = Trigger::from(
        Cron::new()
            .day_of_week("mon-fri")
            .hour("9-17")
            .minute("*/5"),
    )
    .prepared(berlin, now)
    .unwrap();
    c.bench_function("cron fields Berlin", |b| {
        b.iter(|| fields.next_fire_time(black_box(Some(now)), now))
    });
    let iso_week = Trigger::from(Cron::new().week("20-30").day_of_week("mon").hour(9))
        .prepared(berlin, now)
        .unwrap();
    c.bench_function("cron fields ISO week (engine) Berlin", |b| {
        b.iter(|| iso_week.next_fire_time(black_box(Some(now)), now))
    });
    // The worst case the walk allows: Feb 29 in ISO week 9, every hundredth year (goal: a
    // search never costs the core more than a millisecond).
    let rarest = Trigger::from(Cron::new().year("2100-5000/100").month(2).day(29).week("9"))
        .prepared(berlin, now)
        .unwrap();
    c.bench_function("cron fields, rarest date (engine) Berlin", |b| {
        b.iter(|| rarest.next_fire_time(black_box(None), now))
    });

    let calendar = Trigger::from(CalendarInterval::months(1).at(9, 0, 0))
        .prepared(berlin, now)
        .unwrap();
    c.bench_function("calendar interval monthly Berlin", |b| {
        b.iter(|| calendar.next_fire_time(black_box(Some(now)), now))
    });

    let interval = Trigger::from(Interval::hours(6))
        .prepared(Zone::UTC, now)
        .unwrap();
    c.bench_function("interval", |b| {
        b.iter(|| interval.next_fire_time(black_box(Some(now)), now))
    });
    let date = Trigger::from(Date::at(now));
    c.bench_function("date", |b| {
        b.iter(|| date.next_fire_time(black_box(None), now))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = triggers
}
criterion_main!(benches);
