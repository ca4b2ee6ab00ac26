//! The cron trigger: wall-clock times that match cron fields.
//!
//! PLACEHOLDER (first cut): crontab strings through croner, and the field builder translated to
//! a croner pattern. Replaced by the complete implementation.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Zone};

/// Fires at wall-clock times that match cron fields (APScheduler's `cron` trigger).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cron {
    expression: Option<String>,
    fields: Fields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<Zone>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_util::opt_seconds"
    )]
    jitter: Option<Duration>,
    #[serde(skip)]
    compiled: Option<croner::Cron>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Fields {
    second: Option<String>,
    minute: Option<String>,
    hour: Option<String>,
    day: Option<String>,
    month: Option<String>,
    day_of_week: Option<String>,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.expression == other.expression
            && self.fields == other.fields
            && self.start == other.start
            && self.end == other.end
            && self.timezone == other.timezone
            && self.jitter == other.jitter
    }
}

impl Default for Cron {
    fn default() -> Self {
        Cron::new()
    }
}

impl Cron {
    /// A field-builder cron trigger with no field set yet (every second until fields are set).
    pub fn new() -> Cron {
        Cron {
            expression: None,
            fields: Fields::default(),
            start: None,
            end: None,
            timezone: None,
            jitter: None,
            compiled: None,
        }
    }

    /// Parses a crontab expression.
    ///
    /// # Errors
    /// [`Error::InvalidCronField`] naming the expression.
    pub fn parse(expression: &str) -> Result<Cron> {
        let mut cron = Cron::new();
        cron.expression = Some(expression.to_string());
        cron.compile()?;
        Ok(cron)
    }

    /// The second field.
    #[must_use]
    pub fn second(mut self, expr: impl Into<String>) -> Cron {
        self.fields.second = Some(expr.into());
        self
    }
    /// The minute field.
    #[must_use]
    pub fn minute(mut self, expr: impl Into<String>) -> Cron {
        self.fields.minute = Some(expr.into());
        self
    }
    /// The hour field.
    #[must_use]
    pub fn hour(mut self, expr: impl Into<String>) -> Cron {
        self.fields.hour = Some(expr.into());
        self
    }
    /// The day-of-month field.
    #[must_use]
    pub fn day(mut self, expr: impl Into<String>) -> Cron {
        self.fields.day = Some(expr.into());
        self
    }
    /// The month field.
    #[must_use]
    pub fn month(mut self, expr: impl Into<String>) -> Cron {
        self.fields.month = Some(expr.into());
        self
    }
    /// The day-of-week field.
    #[must_use]
    pub fn day_of_week(mut self, expr: impl Into<String>) -> Cron {
        self.fields.day_of_week = Some(expr.into());
        self
    }
    /// No run before this instant.
    #[must_use]
    pub fn start<Tz: TimeZone>(mut self, start: DateTime<Tz>) -> Cron {
        self.start = Some(start.with_timezone(&Utc));
        self
    }
    /// No run after this instant.
    #[must_use]
    pub fn end<Tz: TimeZone>(mut self, end: DateTime<Tz>) -> Cron {
        self.end = Some(end.with_timezone(&Utc));
        self
    }
    /// The zone whose wall clock the fields are read in.
    #[must_use]
    pub fn timezone(mut self, zone: impl Into<Zone>) -> Cron {
        self.timezone = Some(zone.into());
        self
    }
    /// Delays each run by a uniform random span in `[0, jitter]`.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Cron {
        self.jitter = Some(jitter);
        self
    }

    fn pattern(&self) -> String {
        if let Some(expression) = &self.expression {
            return expression.clone();
        }
        let f = &self.fields;
        let given = [
            &f.second,
            &f.minute,
            &f.hour,
            &f.day,
            &f.month,
            &f.day_of_week,
        ];
        let least = given.iter().position(|g| g.is_some()).unwrap_or(6);
        let min = ["0", "0", "0", "1", "1", "*"];
        let field = |i: usize, v: &Option<String>| match v {
            Some(v) => v.clone(),
            None if i < least && i < 3 => min[i].to_string(),
            None => "*".to_string(),
        };
        format!(
            "{} {} {} {} {} {}",
            field(0, &f.second),
            field(1, &f.minute),
            field(2, &f.hour),
            field(3, &f.day),
            field(4, &f.month),
            field(5, &f.day_of_week)
        )
    }

    fn compile(&mut self) -> Result<()> {
        let pattern = self.pattern();
        let parser = croner::parser::CronParser::builder()
            .dom_and_dow(self.expression.is_none())
            .build();
        let compiled = parser
            .parse(&pattern)
            .map_err(|e| Error::InvalidCronField {
                field: "expression",
                value: pattern.clone(),
                reason: e.to_string(),
            })?;
        self.compiled = Some(compiled);
        Ok(())
    }

    pub(crate) fn zone(&self) -> Option<Zone> {
        self.timezone
    }
    pub(crate) fn jitter_span(&self) -> Option<Duration> {
        self.jitter
    }
    pub(crate) fn end_date(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    pub(crate) fn prepare(&mut self, default_zone: Zone) -> Result<()> {
        self.timezone.get_or_insert(default_zone);
        self.compile()
    }

    pub(crate) fn next_fire_time(
        &self,
        previous: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let compiled = match &self.compiled {
            Some(c) => c.clone(),
            None => {
                let mut me = self.clone();
                me.compile()?;
                me.compiled.unwrap_or_else(|| unreachable!())
            }
        };
        let zone = self.timezone.unwrap_or_default();
        let (from, inclusive) = match previous {
            Some(p) => (p.min(now).max(p), false),
            None => (self.start.map_or(now, |s| s.max(now)), true),
        };
        let from = from.with_timezone(&zone);
        match compiled.find_next_occurrence(&from, inclusive) {
            Ok(next) => {
                let next = next.with_timezone(&Utc);
                Ok(match self.end {
                    Some(end) if next > end => None,
                    _ => Some(next),
                })
            }
            Err(e) => Err(Error::TriggerNeverFires {
                trigger: self.describe(),
                reason: e.to_string(),
            }),
        }
    }

    pub(crate) fn fire_time_at_or_after(&self, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.next_fire_time(None, at)
    }

    pub(crate) fn describe(&self) -> String {
        format!("cron[{}]", self.pattern())
    }
}
