//! `Cron::parse` on arbitrary text, then a search from a fixed instant: neither may panic.
#![no_main]

use apsched::trigger::{Cron, Trigger};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cron) = Cron::parse(text) {
        let now = Utc.with_ymd_and_hms(2024, 3, 31, 0, 30, 0).unwrap();
        let trigger = Trigger::from(cron.timezone(apsched::tz::Europe::Berlin));
        let _ = trigger.describe();
        let first = trigger.next_fire_time(None, now);
        // A parsed pattern either fires, has finished or says it never fires.
        assert!(
            matches!(first, Ok(_) | Err(apsched::Error::TriggerNeverFires { .. })),
            "{text:?}: {first:?}"
        );
        if let Ok(Some(next)) = first {
            assert!(next >= now);
            if let Ok(Some(after)) = trigger.next_fire_time(Some(next), now) {
                assert!(after > next);
            }
        }
    }
});
