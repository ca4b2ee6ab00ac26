//! What the bounded triggers (interval, cron, calendar interval) share: a start, an end, a time
//! zone and a jitter, their serde form and the end-before-start check.

use std::num::NonZeroU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result, Zone};

/// Start, end, zone and jitter, flattened into each trigger's JSON
/// (`"start"`, `"end"`, `"timezone"`, `"jitter"`, each left out when unset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timezone: Option<Zone>,
    #[serde(default, skip_serializing_if = "Jitter::is_unset")]
    pub(crate) jitter: Jitter,
}

impl Bounds {
    /// Refuses an end before the start: the one check every bounded trigger makes.
    pub(crate) fn check(&self) -> Result<()> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if end < start => Err(Error::InvalidTrigger {
                field: "end_date",
                value: end.to_rfc3339(),
                reason: format!("it is before the start date {}", start.to_rfc3339()),
            }),
            _ => Ok(()),
        }
    }

    /// The zone, `default` where none was given; it is kept.
    pub(crate) fn settle_zone(&mut self, default: Zone) -> Zone {
        *self.timezone.get_or_insert(default)
    }

    /// `at`, or the start when that is later.
    pub(crate) fn not_before_start(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.start.map_or(at, |start| start.max(at))
    }

    /// Whether `t` lies past the end bound.
    pub(crate) fn past_end(&self, t: DateTime<Utc>) -> bool {
        self.end.is_some_and(|end| t > end)
    }

    /// Why a trigger whose search stopped at its end bound gives no fire time from `now`.
    pub(crate) fn end_reason(&self, now: DateTime<Utc>) -> String {
        match self.end {
            Some(end) if end < now => format!("its end bound {} is in the past", end.to_rfc3339()),
            Some(end) => format!(
                "no regular run falls between now ({}) and its end bound {}",
                now.to_rfc3339(),
                end.to_rfc3339()
            ),
            None => "it has no fire time left".into(),
        }
    }
}

/// A jitter span in 8 bytes (a scheduler may hold a million triggers): unset, or a number of
/// nanoseconds up to 584 years. Unset and zero are kept apart so that a trigger's JSON says what
/// was given. Serialized as seconds (a float).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Jitter(
    /// The span in nanoseconds plus one; `None` when unset.
    Option<NonZeroU64>,
);

impl Jitter {
    /// At most `u64::MAX - 1` nanoseconds: longer spans saturate (584 years).
    pub(crate) fn new(span: Duration) -> Jitter {
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Jitter(NonZeroU64::new(nanos.saturating_add(1)))
    }

    /// Zero is no jitter (unset), as an interval has always stored it.
    pub(crate) fn unless_zero(span: Duration) -> Jitter {
        if span.is_zero() {
            Jitter::default()
        } else {
            Jitter::new(span)
        }
    }

    pub(crate) fn span(self) -> Option<Duration> {
        self.0.map(|n| Duration::from_nanos(n.get() - 1))
    }

    fn is_unset(&self) -> bool {
        self.0.is_none()
    }
}

impl Serialize for Jitter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.span() {
            Some(span) => s.serialize_some(&span.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Jitter, D::Error> {
        let Some(secs) = Option::<f64>::deserialize(d)? else {
            return Ok(Jitter::default());
        };
        let span = Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)?;
        match u64::try_from(span.as_nanos()) {
            Ok(nanos) if nanos < u64::MAX => Ok(Jitter::new(span)),
            _ => Err(serde::de::Error::custom(format!(
                "jitter of {secs} seconds is longer than 584 years"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_unset_and_zero_apart() {
        assert_eq!(Jitter::default().span(), None);
        assert_eq!(Jitter::new(Duration::ZERO).span(), Some(Duration::ZERO));
        assert_eq!(Jitter::unless_zero(Duration::ZERO).span(), None);
        let long = Jitter::new(Duration::MAX).span().unwrap();
        assert_eq!(long, Duration::from_nanos(u64::MAX - 1));
        assert_eq!(std::mem::size_of::<Jitter>(), 8);
    }
}
