//! PLACEHOLDER: replaced by the complete calendar interval trigger.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Zone};

/// Every N years/months/weeks/days at a wall-clock time of day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarInterval {
    days: u32,
}

impl CalendarInterval {
    pub(crate) fn zone(&self) -> Option<Zone> {
        None
    }
    pub(crate) fn jitter_span(&self) -> Option<Duration> {
        None
    }
    pub(crate) fn end_date(&self) -> Option<DateTime<Utc>> {
        None
    }
    pub(crate) fn prepare(&mut self, _default_zone: Zone) -> Result<()> {
        Err(self.unbuilt())
    }
    pub(crate) fn next_fire_time(
        &self,
        _previous: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(self.unbuilt())
    }
    pub(crate) fn fire_time_at_or_after(
        &self,
        _at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(self.unbuilt())
    }
    pub(crate) fn describe(&self) -> String {
        "calendar interval".into()
    }
    fn unbuilt(&self) -> Error {
        Error::InvalidTrigger {
            field: "calendar_interval",
            value: String::new(),
            reason: "not built yet".into(),
        }
    }
}
