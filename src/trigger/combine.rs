//! PLACEHOLDER: replaced by the complete and/or combination.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Trigger;
use crate::{Error, Result, Zone};

/// Several triggers combined by [`Trigger::and`] or [`Trigger::or`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Combination {
    triggers: Vec<Trigger>,
}

impl Combination {
    pub(crate) fn new(triggers: impl IntoIterator<Item = impl Into<Trigger>>) -> Combination {
        Combination {
            triggers: triggers.into_iter().map(Into::into).collect(),
        }
    }
    pub(crate) fn zone(&self) -> Option<Zone> {
        None
    }
    pub(crate) fn jitter_span(&self) -> Option<Duration> {
        None
    }
    pub(crate) fn prepare(&mut self, _default_zone: Zone, _now: DateTime<Utc>) -> Result<()> {
        Err(unbuilt())
    }
    pub(crate) fn next_fire_time_all(
        &self,
        _previous: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(unbuilt())
    }
    pub(crate) fn next_fire_time_any(
        &self,
        _previous: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(unbuilt())
    }
    pub(crate) fn fire_time_at_or_after_all(
        &self,
        _at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(unbuilt())
    }
    pub(crate) fn fire_time_at_or_after_any(
        &self,
        _at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        Err(unbuilt())
    }
    pub(crate) fn describe(&self, _op: &str) -> String {
        "combination".into()
    }
}

fn unbuilt() -> Error {
    Error::InvalidTrigger {
        field: "combination",
        value: String::new(),
        reason: "not built yet".into(),
    }
}
