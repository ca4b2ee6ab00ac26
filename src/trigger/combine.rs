//! And / or combinations of triggers.
//!
//! This module owns how several triggers' fire times are merged: `or` takes the earliest,
//! `and` searches for an instant all of them agree on (within a threshold) by moving the ones
//! that lag, with a bound on the number of steps so that triggers that never agree give an
//! error instead of a hang. The children keep their own rules; this module never looks inside
//! them beyond [`Trigger::fire_time_at_or_after`].

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::Trigger;
use crate::{Error, IntoZone, Result, Zone};

/// Several triggers combined by [`Trigger::and`] or [`Trigger::or`] (APScheduler's
/// `AndTrigger` / `OrTrigger`).
///
/// - **or**: fires at the earliest next fire time of any child; an instant two children share
///   fires once.
/// - **and**: fires when every child has a fire time within [`threshold`](Combination::threshold)
///   (1 s by default) of the others, at the latest of those times. Children that lag are moved
///   forward; after 10,000 moves without agreement the search gives up with
///   [`Error::TriggerNeverFires`].
///
/// Children are asked for their regular fire times at or after an instant, so a past
/// [`Date`](super::Date) child no longer contributes. Each child reads its fields in its own
/// zone; a child without one takes the combination's (the scheduler's default otherwise).
///
/// ```
/// use apsched::trigger::{Combination, Cron, Interval, Trigger};
/// use apsched::Zone;
/// use chrono::{TimeZone, Utc};
/// use std::time::Duration;
///
/// let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
/// // Every 2 hours, but only on Mondays.
/// let both = Trigger::and_within(
///     Duration::from_secs(1),
///     [
///         Trigger::from(Interval::hours(2).start(start)),
///         Trigger::from(Cron::new().day_of_week("mon").hour("*")),
///     ],
/// )
/// .prepared(Zone::UTC, start)?;
/// let sunday = Utc.with_ymd_and_hms(2024, 1, 7, 0, 0, 0).unwrap();
/// assert_eq!(
///     both.next_fire_time(None, sunday)?,
///     Some(Utc.with_ymd_and_hms(2024, 1, 8, 0, 0, 0).unwrap())
/// );
/// assert_eq!(
///     both.describe(),
///     "all of [every 2 hours; At minute 0 past every hour, on Monday. (UTC)] within 1 second"
/// );
///
/// let either = Trigger::or([Cron::parse("0 9 * * *")?, Cron::parse("0 17 * * *")?]);
/// # let _ = Combination::new([either.clone()]);
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Combination {
    triggers: Vec<Trigger>,
    #[serde(
        default = "default_threshold",
        with = "crate::serde_util::seconds",
        skip_serializing_if = "is_default_threshold"
    )]
    threshold: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<Zone>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_util::opt_seconds"
    )]
    jitter: Option<Duration>,
}

/// How many times an `and` search may move its lagging children before giving up.
pub(crate) const MAX_AND_STEPS: u32 = 10_000;

fn default_threshold() -> Duration {
    Duration::from_secs(1)
}

fn is_default_threshold(d: &Duration) -> bool {
    *d == default_threshold()
}

impl Trigger {
    /// A trigger that fires when all of `triggers` agree on an instant within `threshold`
    /// (see [`Combination`]).
    pub fn and_within(
        threshold: Duration,
        triggers: impl IntoIterator<Item = impl Into<Trigger>>,
    ) -> Trigger {
        Trigger::And(Box::new(Combination::new(triggers).threshold(threshold)))
    }
}

impl Combination {
    /// The children to combine; wrap the result in [`Trigger::And`] or [`Trigger::Or`] (or use
    /// [`Trigger::and`] / [`Trigger::or`] directly).
    pub fn new(triggers: impl IntoIterator<Item = impl Into<Trigger>>) -> Combination {
        Combination {
            triggers: triggers.into_iter().map(Into::into).collect(),
            threshold: default_threshold(),
            timezone: None,
            jitter: None,
        }
    }

    /// How far apart the children's fire times may be for an `and` to fire (default 1 s).
    /// Ignored by `or`.
    #[must_use]
    pub fn threshold(mut self, threshold: Duration) -> Combination {
        self.threshold = threshold;
        self
    }

    /// The zone of children that name none (default: the scheduler's).
    #[must_use]
    pub fn timezone(mut self, zone: impl IntoZone) -> Combination {
        self.timezone = Some(zone.into_zone());
        self
    }

    /// Delays each run by a uniform random span in `[0, jitter]`.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Combination {
        self.jitter = Some(jitter);
        self
    }

    /// The combined triggers.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    pub(crate) fn zone(&self) -> Option<Zone> {
        self.timezone
    }

    pub(crate) fn jitter_span(&self) -> Option<Duration> {
        self.jitter
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone, now: DateTime<Utc>) -> Result<()> {
        if self.triggers.is_empty() {
            return Err(Error::InvalidTrigger {
                field: "triggers",
                value: "[]".into(),
                reason: "a combination needs at least one trigger".into(),
            });
        }
        if TimeDelta::from_std(self.threshold).is_err() {
            return Err(Error::InvalidTrigger {
                field: "threshold",
                value: format!("{:?}", self.threshold),
                reason: "it is longer than chrono can represent".into(),
            });
        }
        let zone = *self.timezone.get_or_insert(default_zone);
        self.triggers
            .iter_mut()
            .try_for_each(|t| t.prepare(zone, now))
    }

    pub(crate) fn next_fire_time_all(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        match after(previous, now) {
            Some(at) => self.fire_time_at_or_after_all(at),
            None => Ok(None),
        }
    }

    pub(crate) fn next_fire_time_any(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        match after(previous, now) {
            Some(at) => self.fire_time_at_or_after_any(at),
            None => Ok(None),
        }
    }

    pub(crate) fn fire_time_at_or_after_all(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let threshold = TimeDelta::from_std(self.threshold).unwrap_or(TimeDelta::MAX);
        let mut at = at;
        for _ in 0..MAX_AND_STEPS {
            let mut earliest: Option<DateTime<Utc>> = None;
            let mut latest: Option<DateTime<Utc>> = None;
            for trigger in &self.triggers {
                let Some(t) = trigger.fire_time_at_or_after(at)? else {
                    // One child is finished: they can never all agree again.
                    return Ok(None);
                };
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                latest = Some(latest.map_or(t, |l| l.max(t)));
            }
            let (Some(earliest), Some(latest)) = (earliest, latest) else {
                return Ok(None);
            };
            if latest - earliest <= threshold {
                // The latest: by then every child has reached its time, and the next search
                // (strictly after it) cannot meet any of these times again.
                return Ok(Some(latest));
            }
            // Whatever lies before `latest - threshold` cannot agree with `latest`'s child.
            at = latest
                .checked_sub_signed(threshold)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
        }
        Err(Error::TriggerNeverFires {
            trigger: self.describe("and"),
            reason: format!("its triggers did not agree within {MAX_AND_STEPS} steps"),
        })
    }

    pub(crate) fn fire_time_at_or_after_any(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut first_error = None;
        for trigger in &self.triggers {
            match trigger.fire_time_at_or_after(at) {
                Ok(Some(t)) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                Ok(None) => {}
                // A child that never fires does not stop the others.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (earliest, first_error) {
            (None, Some(e)) => Err(e),
            (earliest, _) => Ok(earliest),
        }
    }

    pub(crate) fn describe(&self, op: &str) -> String {
        let children: Vec<String> = self.triggers.iter().map(Trigger::describe).collect();
        match op {
            "and" => format!(
                "all of [{}] within {}",
                children.join("; "),
                super::interval::describe_span(self.threshold)
            ),
            _ => format!("any of [{}]", children.join("; ")),
        }
    }
}

/// The first instant a combination may fire at: strictly after the previous run, or from now;
/// `None` after the end of chrono's range.
fn after(previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match previous {
        Some(p) => p.checked_add_signed(TimeDelta::nanoseconds(1)),
        None => Some(now),
    }
}
