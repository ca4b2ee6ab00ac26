//! The next five fire times of common schedules in two time zones, using only the trigger API.
//!
//! Run with `cargo run --example cron_and_calendar`. The start instant is fixed, so the output
//! is the same on every machine.

use std::time::Duration;

use apsched::trigger::{CalendarInterval, Cron, Date, Interval, Trigger};
use apsched::Zone;
use chrono::{NaiveDate, TimeZone, Utc};

fn main() -> Result<(), apsched::Error> {
    let now = Utc.with_ymd_and_hms(2024, 3, 28, 12, 0, 0).unwrap();
    let schedules: Vec<(&str, Trigger)> = vec![
        ("daily at 06:30", Cron::new().hour("6").minute("30").into()),
        (
            "mon-fri at 01:00",
            Cron::new().day_of_week("mon-fri").hour("1").into(),
        ),
        ("every two hours", Cron::new().hour("0-23/2").into()),
        ("crontab: 02:30 daily", Cron::parse("30 2 * * *")?.into()),
        ("every 6 hours", Interval::hours(6).start(now).into()),
        (
            "once",
            Date::at(Utc.with_ymd_and_hms(2024, 4, 1, 9, 0, 0).unwrap()).into(),
        ),
        (
            "monthly on the 31st at 09:00",
            CalendarInterval::months(1)
                .at(9, 0, 0)
                .start_date(NaiveDate::from_ymd_opt(2024, 1, 31).unwrap())
                .into(),
        ),
        (
            "09:00 or 17:00",
            Trigger::or([Cron::parse("0 9 * * *")?, Cron::parse("0 17 * * *")?]),
        ),
        (
            "every 2 hours, mondays only",
            Trigger::and_within(
                Duration::from_secs(1),
                [
                    Trigger::from(Interval::hours(2).start(now)),
                    Cron::new().day_of_week("mon").hour("*").into(),
                ],
            ),
        ),
    ];

    for zone_name in ["Asia/Shanghai", "Europe/Berlin"] {
        let zone = Zone::parse(zone_name)?;
        println!("== {zone_name} (from {}) ==", now.with_timezone(&zone));
        for (name, trigger) in &schedules {
            let trigger = trigger.clone().prepared(zone, now)?;
            println!("{name}: {trigger}");
            let mut previous = None;
            for _ in 0..5 {
                match trigger.next_fire_time(previous, now)? {
                    Some(next) => {
                        println!("    {}", next.with_timezone(&zone));
                        previous = Some(next);
                    }
                    None => break,
                }
            }
        }
        println!();
    }
    Ok(())
}
