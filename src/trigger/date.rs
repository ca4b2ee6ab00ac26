//! The date trigger: one run at one instant.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{IntoZone, Result, Zone};

/// Fires once, at `run_date` (APScheduler's `date` trigger).
///
/// A date in the past still fires once when the job is added: the scheduler then applies the
/// job's `misfire_grace_time` to decide whether it runs or is reported missed.
///
/// ```
/// use apsched::trigger::{Date, Trigger};
/// use chrono::{TimeZone, Utc};
///
/// let at = Utc.with_ymd_and_hms(2030, 8, 1, 15, 30, 0).unwrap();
/// let trigger = Trigger::from(Date::at(at));
/// assert_eq!(trigger.next_fire_time(None, Utc::now())?, Some(at));
/// assert_eq!(trigger.next_fire_time(Some(at), at)?, None);
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Date {
    run_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<Zone>,
}

impl Date {
    /// Fires once at `run_date`, an instant in any zone. A `DateTime` in a [`Zone`] or a
    /// chrono-tz zone also sets the zone that job listings show the time in.
    pub fn at<Tz: TimeZone>(run_date: DateTime<Tz>) -> Date {
        Date {
            run_date: run_date.with_timezone(&Utc),
            timezone: None,
        }
    }

    /// Shows the fire time in `zone` (it does not change the instant).
    #[must_use]
    pub fn timezone(mut self, zone: impl IntoZone) -> Date {
        self.timezone = Some(zone.into_zone());
        self
    }

    /// The instant it fires.
    pub fn run_date(&self) -> DateTime<Utc> {
        self.run_date
    }

    pub(crate) fn zone(&self) -> Option<Zone> {
        self.timezone
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone) -> Result<()> {
        self.timezone.get_or_insert(default_zone);
        Ok(())
    }

    pub(crate) fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match previous {
            None => Some(self.run_date),
            Some(_) => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        let zone = self.timezone.unwrap_or_default();
        let at = self.run_date.with_timezone(&zone);
        format!("once at {}", at.format("%Y-%m-%d %H:%M:%S %Z"))
    }
}
