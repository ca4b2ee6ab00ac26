//! APScheduler's misfire rules, as a pure function: given a job's trigger, its due run, its
//! options and the time, which run starts, which fire times are missed, and when it runs next.
//!
//! Nothing here reads a clock or touches the job table, so the rules are tested as a table.

use chrono::{DateTime, TimeDelta, Utc};

use super::table::{Admission, NextRun};
use crate::trigger::Trigger;
use crate::Result;

/// What to do with a job whose next run is due.
#[derive(Debug, PartialEq)]
pub(crate) struct Decision {
    /// Start a run standing for this fire time.
    pub(crate) run: Option<DateTime<Utc>>,
    /// Report this fire time, the first of a stretch, as missed.
    pub(crate) missed: Option<DateTime<Utc>>,
    /// After the run, run the later missed fire times up to this instant, one after another.
    pub(crate) catch_up_until: Option<DateTime<Utc>>,
    /// The next regular fire time to schedule (`Ok(None)`: the trigger is finished).
    pub(crate) next: Result<Option<DateTime<Utc>>>,
}

/// The misfire rules:
///
/// - On time (no later fire time is due yet): the run runs if it is within the grace time,
///   else it is missed.
/// - Behind (later fire times are due too), with `coalesce`: one run stands for all of them,
///   the latest, if that one is within the grace time; else they are missed.
/// - Behind, without `coalesce`: the fire times older than the grace time are missed (one
///   report for the stretch), and the rest run one after another, the first now (as
///   APScheduler 3 runs them in one submission).
///
/// However far behind, this costs about a hundred trigger calls at most.
pub(crate) fn decide(
    trigger: &Trigger,
    due: NextRun,
    options: Admission,
    now: DateTime<Utc>,
) -> Decision {
    let (regular, at) = (due.regular, due.at());
    let grace = options.grace();
    let in_grace = |fire_time: DateTime<Utc>| grace.is_none_or(|g| now - fire_time <= g);
    let after = trigger.next_fire_time(Some(regular), now);
    let behind = matches!(after, Ok(Some(n)) if n <= now);
    if !behind {
        let on_time = in_grace(at);
        return Decision {
            run: on_time.then_some(regular),
            missed: (!on_time).then_some(regular),
            catch_up_until: None,
            next: after,
        };
    }
    if options.coalesce {
        let latest = latest_fire_at_or_before(trigger, regular, now);
        let on_time = in_grace(latest);
        return Decision {
            run: on_time.then_some(latest),
            missed: (!on_time).then_some(regular),
            catch_up_until: None,
            next: trigger.next_fire_time(Some(latest), now),
        };
    }
    let first = if in_grace(at) {
        Some(regular)
    } else {
        let cutoff = grace.and_then(|g| now.checked_sub_signed(g)).unwrap_or(now);
        match trigger.fire_time_at_or_after(cutoff) {
            Ok(Some(first)) if first <= now => Some(first),
            _ => None,
        }
    };
    // Strictly after now: what is due now belongs to the catch-up.
    let next = match now.checked_add_signed(TimeDelta::nanoseconds(1)) {
        Some(after_now) => trigger.fire_time_at_or_after(after_now),
        None => Ok(None),
    };
    Decision {
        run: first,
        missed: (first != Some(regular)).then_some(regular),
        catch_up_until: first.map(|_| now),
        next,
    }
}

/// After a catch-up run for `previous`: the next missed fire time to run, up to `until`, by
/// the grace time at `now`. Returns the fire time to run (if any) and the first one missed on
/// the way (if any).
pub(super) fn next_catch_up(
    trigger: &Trigger,
    previous: DateTime<Utc>,
    until: DateTime<Utc>,
    grace: Option<TimeDelta>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Ok(Some(next)) = trigger.next_fire_time(Some(previous), now) else {
        return (None, None);
    };
    if next > until {
        return (None, None);
    }
    match grace {
        Some(grace) if now - next > grace => {
            let cutoff = now.checked_sub_signed(grace).unwrap_or(now);
            match trigger.fire_time_at_or_after(cutoff) {
                Ok(Some(in_grace)) if in_grace <= until => (Some(in_grace), Some(next)),
                _ => (None, Some(next)),
            }
        }
        _ => (Some(next), None),
    }
}

/// The latest fire time at or before `now`, given `known`, a fire time at or before `now`.
///
/// Whether a probe instant has a fire time in `[probe, now]` is true up to the latest fire
/// time and false after it, so the latest is found by searching for where that changes:
/// backwards from `now` in doubling steps, then by bisection down to a millisecond, then
/// forward over the few fire times left. A clock that jumped ten years costs about a hundred
/// trigger calls, not five million.
fn latest_fire_at_or_before(
    trigger: &Trigger,
    known: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let fires_by_now = |probe: DateTime<Utc>| -> Option<DateTime<Utc>> {
        match trigger.fire_time_at_or_after(probe) {
            Ok(Some(found)) if found <= now => Some(found),
            _ => None,
        }
    };
    if let Some(at_now) = fires_by_now(now) {
        return at_now;
    }
    // `lo` has a fire time in [lo, now]; `hi` has none in [hi, now].
    let (mut lo, mut hi) = (known, now);
    let mut step = TimeDelta::milliseconds(1);
    while let Some(probe) = now.checked_sub_signed(step) {
        if probe <= known {
            break;
        }
        if fires_by_now(probe).is_some() {
            lo = probe;
            break;
        }
        hi = probe;
        let Some(doubled) = step.checked_mul(2) else {
            break;
        };
        step = doubled;
    }
    while hi - lo > TimeDelta::milliseconds(1) {
        let mid = lo + (hi - lo) / 2;
        if fires_by_now(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut latest = fires_by_now(lo).unwrap_or(known).max(known);
    // At most a few fire times lie within the last millisecond (an interval is at least 1 ms;
    // the bound covers combinations).
    for _ in 0..64 {
        match trigger.next_fire_time(Some(latest), now) {
            Ok(Some(next)) if next <= now => latest = next,
            _ => break,
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{Cron, Date, Interval};
    use crate::{JobOptions, MisfireGrace, Zone};
    use chrono::TimeZone;
    use std::time::Duration;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn every_minute() -> Trigger {
        Interval::minutes(1)
            .start(t(1))
            .into_trigger()
            .prepared(Zone::UTC, t(0))
            .unwrap()
    }

    fn options(grace_s: Option<u64>, coalesce: bool) -> Admission {
        let grace = grace_s.map_or(MisfireGrace::Unlimited, |s| {
            MisfireGrace::Within(Duration::from_secs(s))
        });
        JobOptions::default()
            .misfire_grace_time(grace)
            .coalesce(coalesce)
            .into()
    }

    fn due(minutes: i64) -> NextRun {
        NextRun::new(t(minutes), t(minutes))
    }

    trait IntoTrigger {
        fn into_trigger(self) -> Trigger;
    }
    impl<T: Into<Trigger>> IntoTrigger for T {
        fn into_trigger(self) -> Trigger {
            self.into()
        }
    }

    /// (case, trigger, due minute, grace seconds, coalesce, now minute + seconds)
    /// -> (run, missed, catch-up until, next)
    #[test]
    fn the_misfire_rules_as_a_table() {
        let secs = |m: i64, s: i64| t(m) + TimeDelta::seconds(s);
        type Row = (
            &'static str,
            i64,
            Option<u64>,
            bool,
            DateTime<Utc>,
            (
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
            ),
        );
        let rows: [Row; 8] = [
            (
                "on time",
                1,
                Some(1),
                true,
                t(1),
                (Some(t(1)), None, None, Some(t(2))),
            ),
            (
                "late within grace",
                1,
                Some(30),
                true,
                secs(1, 20),
                (Some(t(1)), None, None, Some(t(2))),
            ),
            (
                "late past grace",
                1,
                Some(1),
                true,
                secs(1, 20),
                (None, Some(t(1)), None, Some(t(2))),
            ),
            (
                "behind, coalesced into the latest",
                1,
                Some(30),
                true,
                secs(10, 5),
                (Some(t(10)), None, None, Some(t(11))),
            ),
            (
                "behind, coalesced, latest past grace",
                1,
                Some(1),
                true,
                secs(10, 5),
                (None, Some(t(1)), None, Some(t(11))),
            ),
            (
                "behind, no coalesce: catch up from the first in grace",
                1,
                Some(150),
                false,
                secs(10, 30),
                (Some(t(8)), Some(t(1)), Some(secs(10, 30)), Some(t(11))),
            ),
            (
                "behind, no coalesce, all in grace",
                1,
                None,
                false,
                secs(3, 0),
                (Some(t(1)), None, Some(t(3)), Some(t(4))),
            ),
            (
                "behind, no coalesce, none in grace",
                1,
                Some(1),
                false,
                secs(10, 30),
                (None, Some(t(1)), None, Some(t(11))),
            ),
        ];
        let trigger = every_minute();
        for (case, at, grace, coalesce, now, (run, missed, until, next)) in rows {
            let decision = decide(&trigger, due(at), options(grace, coalesce), now);
            assert_eq!(
                decision,
                Decision {
                    run,
                    missed,
                    catch_up_until: until,
                    next: Ok(next),
                },
                "{case}"
            );
        }
    }

    #[test]
    fn a_finished_trigger_has_no_next_run() {
        let once: Trigger = Date::at(t(1)).into();
        let decision = decide(&once, due(1), options(Some(1), true), t(1));
        assert_eq!(decision.run, Some(t(1)));
        assert_eq!(decision.next, Ok(None));
    }

    #[test]
    fn ten_years_behind_costs_a_bounded_search() {
        let trigger = every_minute();
        let now = t(0) + TimeDelta::days(3653) + TimeDelta::seconds(30);
        let decision = decide(&trigger, due(1), options(None, true), now);
        assert_eq!(decision.run, Some(now - TimeDelta::seconds(30)));
        assert_eq!(decision.next, Ok(Some(now + TimeDelta::seconds(30))));
        // Cron: the latest fire time of a daily pattern.
        let daily: Trigger = Cron::parse("0 6 * * *")
            .unwrap()
            .into_trigger()
            .prepared(Zone::UTC, t(0))
            .unwrap();
        let known = Utc.with_ymd_and_hms(2024, 1, 1, 6, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2034, 5, 7, 5, 0, 0).unwrap();
        assert_eq!(
            latest_fire_at_or_before(&daily, known, now),
            Utc.with_ymd_and_hms(2034, 5, 6, 6, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_catch_up_goes_on_in_order_and_skips_what_fell_out_of_grace() {
        let trigger = every_minute();
        let grace = Some(TimeDelta::seconds(150));
        // The next one, in grace.
        assert_eq!(
            next_catch_up(&trigger, t(8), t(10), grace, t(10)),
            (Some(t(9)), None)
        );
        // Past the catch-up's end: none.
        assert_eq!(
            next_catch_up(&trigger, t(10), t(10), grace, t(10)),
            (None, None)
        );
        // The runs took long: 00:09 fell out of grace; the first in grace is 00:10.
        assert_eq!(
            next_catch_up(&trigger, t(8), t(10), grace, secs_after(12, 20)),
            (Some(t(10)), Some(t(9)))
        );
    }

    fn secs_after(m: i64, s: i64) -> DateTime<Utc> {
        t(m) + TimeDelta::seconds(s)
    }
}
