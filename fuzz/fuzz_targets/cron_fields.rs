//! The APScheduler-style field setters on arbitrary text: the text is split on `|` into up to
//! eight fields (year .. second); preparing and searching may fail, never panic.
#![no_main]

use apsched::trigger::{Cron, Trigger};
use apsched::Zone;
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut cron = Cron::new();
    for (i, field) in text.split('|').take(8).enumerate() {
        cron = match i {
            0 => cron.year(field),
            1 => cron.month(field),
            2 => cron.day(field),
            3 => cron.week(field),
            4 => cron.day_of_week(field),
            5 => cron.hour(field),
            6 => cron.minute(field),
            _ => cron.second(field),
        };
    }
    let now = Utc.with_ymd_and_hms(2024, 10, 27, 0, 30, 0).unwrap();
    let Ok(trigger) = Trigger::from(cron).prepared(Zone::parse("Europe/Berlin").unwrap(), now)
    else {
        return;
    };
    let _ = trigger.describe();
    if let Ok(Some(next)) = trigger.next_fire_time(None, now) {
        assert!(next >= now);
        if let Ok(Some(after)) = trigger.next_fire_time(Some(next), now) {
            assert!(after > next);
        }
    }
});
