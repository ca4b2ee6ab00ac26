//! Run control: timeouts, retries and run outcomes, on paused Tokio time and the test clock.
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::store::RunState;
use apsched::trigger::Interval;
use apsched::{Error, Event, EventMask, JobContext, JobOptions, RetryPolicy, Scheduler, TestClock};
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use futures::future::BoxFuture;

/// A scheduler on a test clock at `t0()`, with a 2 s timeout grace and room for one blocking
/// run at a time.
async fn scheduler() -> (Scheduler, TestClock) {
    let clock = TestClock::new(t0());
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(apsched::Zone::UTC)
        .timeout_grace(Duration::from_secs(2))
        .max_blocking_jobs(1)
        .build();
    scheduler.start().await.unwrap();
    (scheduler, clock)
}

/// Lets the runtime's tasks (the core, the runs) take every step they can without time
/// passing.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// Waits (bounded, in real time) until `done` holds, letting the runtime run meanwhile: for
/// what a blocking thread does, which paused time does not drive.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if done() {
            return;
        }
        settle().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("timed out waiting until {what}");
}

fn of_kind(events: &[Event], mask: EventMask) -> Vec<Event> {
    events.iter().filter(|e| mask.matches(e)).cloned().collect()
}

/// Notes when a hanging run's token was cancelled and when its future was dropped.
#[derive(Clone, Default)]
struct Hang {
    cancelled_at: Arc<Mutex<Option<DateTime<Utc>>>>,
    dropped_at: Arc<Mutex<Option<DateTime<Utc>>>>,
}

struct OnDrop(Hang, TestClock);

impl Drop for OnDrop {
    fn drop(&mut self) {
        *self.0.dropped_at.lock().unwrap() = Some(self.1.now());
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_async_run_is_cancelled_at_its_timeout_and_dropped_after_the_grace() {
    let (scheduler, clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let hang = Hang::default();
    let (seen, at) = (hang.clone(), clock.clone());
    scheduler
        .add_job(
            move |ctx: JobContext| {
                let (seen, at) = (seen.clone(), at.clone());
                async move {
                    let _guard = OnDrop(seen.clone(), at.clone());
                    // Hears the cancellation, and hangs on regardless.
                    ctx.cancellation_token().cancelled().await;
                    *seen.cancelled_at.lock().unwrap() = Some(at.now());
                    std::future::pending::<()>().await;
                }
            },
            Interval::hours(1),
        )
        .id("hang")
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    let ticks = Runs::default();
    scheduler
        .add_job(record_now(&ticks), Interval::seconds(5))
        .id("tick")
        .await
        .unwrap();

    let outcome = scheduler.run_job_now("hang").await.unwrap().outcome();
    let outcome = tokio::time::timeout(Duration::from_secs(60), outcome)
        .await
        .expect("the hanging run has an outcome")
        .unwrap();
    assert_eq!(outcome.state, RunState::TimedOut);
    let started = outcome.started_at.unwrap();
    assert_eq!(
        *hang.cancelled_at.lock().unwrap(),
        Some(started + TimeDelta::seconds(10)),
        "its token is cancelled at the timeout"
    );
    assert_eq!(
        *hang.dropped_at.lock().unwrap(),
        Some(started + TimeDelta::seconds(12)),
        "it is dropped after the 2 s grace"
    );
    let timed_out = of_kind(&drain(&mut events), EventMask::JOB_TIMED_OUT);
    assert!(
        matches!(
            &timed_out[..],
            [Event::JobTimedOut { job_id, scheduled_run_time, elapsed }]
                if **job_id == *"hang"
                    && *scheduled_run_time == outcome.fire_time
                    && *elapsed == Duration::from_secs(12)
        ),
        "{timed_out:?}"
    );
    let runs = scheduler.get_job_runs("hang", 10).await.unwrap();
    assert_eq!(runs[0].state, RunState::TimedOut);
    assert_eq!(scheduler.running_jobs(), 0, "its place is free");
    assert!(ticks.count() >= 2, "other jobs went on meanwhile");
    // It may run again, and a graceful shutdown waits for that run no longer than its timeout
    // and grace.
    drop(scheduler.run_job_now("hang").await.unwrap());
    settle().await;
    tokio::time::timeout(Duration::from_secs(13), scheduler.shutdown())
        .await
        .expect("the timeout bounds how long a shutdown waits")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_run_that_stops_when_cancelled_ends_timed_out_within_the_grace() {
    let (scheduler, _clock) = scheduler().await;
    scheduler
        .add_job(
            |ctx: JobContext| async move {
                ctx.cancellation_token().cancelled().await;
                Ok::<_, String>("stopped cleanly")
            },
            Interval::hours(1),
        )
        .id("polite")
        .timeout(Duration::from_secs(3))
        .await
        .unwrap();
    let outcome = scheduler
        .run_job_now("polite")
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(outcome.state, RunState::TimedOut);
    assert_eq!(outcome.duration(), Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn a_blocking_run_past_its_timeout_is_reported_and_keeps_its_permit_until_it_returns() {
    let (scheduler, _clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    scheduler
        .add_job(
            move || {
                let _ = released.lock().unwrap().recv();
            },
            Interval::hours(1),
        )
        .id("stuck")
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    let others = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&others);
    scheduler
        .add_job(
            move || {
                count.fetch_add(1, Ordering::SeqCst);
            },
            Interval::hours(1),
        )
        .id("other")
        .await
        .unwrap();

    let stuck = scheduler.run_job_now("stuck").await.unwrap();
    settle().await;
    // Paused time does not move on its own while a blocking run goes: move it.
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut seen = Vec::new();
    until("the stuck run is reported timed out", || {
        seen.extend(drain(&mut events));
        !of_kind(&seen, EventMask::JOB_TIMED_OUT).is_empty()
    })
    .await;
    let outcome = stuck.outcome().await.unwrap();
    assert_eq!(outcome.state, RunState::TimedOut);

    // Still going: it holds the one blocking permit and its place under max_instances.
    let other = scheduler.run_job_now("other").await.unwrap();
    let skipped = scheduler.run_job_now("stuck").await.unwrap();
    assert_eq!(skipped.outcome().await.unwrap().state, RunState::Skipped);
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(
        others.load(Ordering::SeqCst),
        0,
        "no permit for another run"
    );
    assert_eq!(scheduler.running_jobs(), 2);

    release.send(()).unwrap();
    let other = other.outcome();
    let mut other = std::pin::pin!(other);
    let mut done = None;
    until("the other blocking run ends", || {
        done = futures::FutureExt::now_or_never(other.as_mut());
        done.is_some()
    })
    .await;
    assert_eq!(done.unwrap().unwrap().state, RunState::Succeeded);
    assert_eq!(others.load(Ordering::SeqCst), 1);
    let runs = scheduler.get_job_runs("stuck", 10).await.unwrap();
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert!(states.contains(&RunState::TimedOut), "{states:?}");
    assert!(!states.contains(&RunState::Running), "{states:?}");
}

/// The attempt and time of each run of a job.
type Attempts = Arc<Mutex<Vec<(u32, DateTime<Utc>)>>>;

/// A job failing its first `failures` attempts (by error, or by panic with `panics`), then
/// succeeding; it notes the attempt and time of each run.
fn flaky(
    failures: u32,
    panics: bool,
    clock: &TestClock,
    seen: &Attempts,
) -> impl Fn(JobContext) -> BoxFuture<'static, Result<u32, String>> + Send + Sync + 'static {
    let (clock, seen) = (clock.clone(), Arc::clone(seen));
    move |ctx: JobContext| {
        seen.lock().unwrap().push((ctx.attempt(), clock.now()));
        Box::pin(async move {
            let attempt = ctx.attempt();
            if attempt <= failures {
                if panics {
                    panic!("attempt {attempt} panicked");
                }
                return Err(format!("attempt {attempt} failed"));
            }
            Ok(attempt)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_failing_twice_succeeds_on_its_third_attempt_at_the_backoff_times() {
    let (scheduler, clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let seen = Attempts::default();
    let policy = RetryPolicy::new(3).backoff(Duration::from_secs(10), Duration::from_secs(15));
    scheduler
        .add_job(flaky(2, false, &clock, &seen), Interval::hours(1))
        .id("flaky")
        .retry(policy)
        .await
        .unwrap();
    let outcome = scheduler.run_job_now("flaky").await.unwrap().outcome();
    let outcome = tokio::time::timeout(Duration::from_secs(120), outcome)
        .await
        .expect("the run ends within its backoff bounds")
        .unwrap();
    assert_eq!(outcome.state, RunState::Succeeded);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.result, Some(serde_json::json!(3)));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [1, 2, 3]);
    let gaps: Vec<TimeDelta> = seen.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        gaps[0] <= TimeDelta::seconds(10),
        "first retry within base: {gaps:?}"
    );
    assert!(
        gaps[1] <= TimeDelta::seconds(15),
        "second within the cap: {gaps:?}"
    );

    let events = drain(&mut events);
    let retrying = of_kind(&events, EventMask::JOB_RETRYING);
    assert_eq!(retrying.len(), 2);
    for (event, (attempt, gap)) in retrying.iter().zip([(2, gaps[0]), (3, gaps[1])]) {
        let Event::JobRetrying {
            attempt: a,
            delay,
            message,
            scheduled_run_time,
            ..
        } = event
        else {
            unreachable!()
        };
        assert_eq!(*a, attempt);
        // The core's timer wakes to the millisecond.
        let late = gap - TimeDelta::from_std(*delay).unwrap();
        assert!(
            late >= TimeDelta::zero() && late < TimeDelta::milliseconds(2),
            "{late:?}"
        );
        assert_eq!(*message, format!("attempt {} failed", attempt - 1));
        assert_eq!(*scheduled_run_time, outcome.fire_time, "the same run");
    }
    assert_eq!(of_kind(&events, EventMask::JOB_EXECUTED).len(), 1);
    assert!(of_kind(&events, EventMask::JOB_ERROR).is_empty());
    let runs = scheduler.get_job_runs("flaky", 10).await.unwrap();
    assert_eq!(runs.len(), 1, "one run in the history: {runs:?}");
    assert_eq!((runs[0].state, runs[0].attempts), (RunState::Succeeded, 3));
}

#[tokio::test(start_paused = true)]
async fn a_run_out_of_attempts_ends_failed_and_a_panic_is_retried_like_an_error() {
    let (scheduler, clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let (errors, panics) = (Attempts::default(), Attempts::default());
    let policy = RetryPolicy::new(2).backoff(Duration::from_secs(1), Duration::from_secs(1));
    scheduler
        .add_job(flaky(2, false, &clock, &errors), Interval::hours(1))
        .id("errors")
        .retry(policy)
        .await
        .unwrap();
    scheduler
        .add_job(flaky(1, true, &clock, &panics), Interval::hours(1))
        .id("panics")
        .retry(policy)
        .await
        .unwrap();
    let failed = scheduler.run_job_now("errors").await.unwrap().outcome();
    let failed = tokio::time::timeout(Duration::from_secs(10), failed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((failed.state, failed.attempts), (RunState::Failed, 2));
    assert_eq!(failed.error.as_deref(), Some("attempt 2 failed"));
    let recovered = scheduler.run_job_now("panics").await.unwrap().outcome();
    let recovered = tokio::time::timeout(Duration::from_secs(10), recovered)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (recovered.state, recovered.attempts),
        (RunState::Succeeded, 2)
    );
    let events = drain(&mut events);
    assert_eq!(of_kind(&events, EventMask::JOB_RETRYING).len(), 2);
    let errors: Vec<Event> = of_kind(&events, EventMask::JOB_ERROR);
    assert_eq!(
        errors.len(),
        1,
        "one final error, for the run out of attempts"
    );
    assert!(matches!(
        &of_kind(&events, EventMask::JOB_RETRYING)[1],
        Event::JobRetrying { message, .. } if message == "panicked: attempt 1 panicked"
    ));
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_only_when_the_policy_says_so() {
    let (scheduler, _clock) = scheduler().await;
    let attempts = Arc::new(AtomicU32::new(0));
    for (id, retry_timeouts) in [("kept", false), ("retried", true)] {
        let attempts = Arc::clone(&attempts);
        scheduler
            .add_job(
                move || {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>()
                },
                Interval::hours(1),
            )
            .id(id)
            .timeout(Duration::from_secs(1))
            .retry(
                RetryPolicy::new(2)
                    .backoff(Duration::from_secs(1), Duration::from_secs(1))
                    .retry_timeouts(retry_timeouts),
            )
            .await
            .unwrap();
        let outcome = scheduler.run_job_now(id).await.unwrap().outcome();
        let outcome = tokio::time::timeout(Duration::from_secs(30), outcome)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome.state, RunState::TimedOut);
        let expected = if retry_timeouts { 2 } else { 1 };
        assert_eq!(outcome.attempts, expected, "{id}");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_pending_retry_holds_its_place_under_max_instances() {
    let (scheduler, clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let seen = Attempts::default();
    // Fails once; retried within the hour; fires every 10 s meanwhile.
    let policy = RetryPolicy::new(2).backoff(Duration::from_secs(3600), Duration::from_secs(3600));
    scheduler
        .add_job(flaky(1, false, &clock, &seen), Interval::seconds(10))
        .id("busy")
        .retry(policy)
        .await
        .unwrap();
    advance(Duration::from_secs(3611)).await;
    let events = drain(&mut events);
    let Some(Event::JobRetrying { delay, .. }) =
        of_kind(&events, EventMask::JOB_RETRYING).first().cloned()
    else {
        panic!("no retry: {events:?}")
    };
    let skipped = of_kind(&events, EventMask::JOB_MAX_INSTANCES).len() as u64;
    // Each fire time while the retry waited was skipped, not run.
    assert!(
        skipped + 1 >= delay.as_secs() / 10,
        "{skipped} skipped in {delay:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[1].0, 2, "the retry ran next: {:?}", &seen[..2]);
}

#[tokio::test(start_paused = true)]
async fn run_now_gives_the_json_result_or_the_error_and_can_be_dropped() {
    let (scheduler, _clock) = scheduler().await;
    scheduler
        .add_job(
            || async { Ok::<_, std::io::Error>(serde_json::json!({ "rows": 3 })) },
            Interval::hours(1),
        )
        .id("report")
        .await
        .unwrap();
    scheduler
        .add_job(|| async { 7_u64 }, Interval::hours(1))
        .id("plain")
        .await
        .unwrap();
    scheduler
        .add_job(
            || async { Err::<(), _>(std::io::Error::other("disk full")) },
            Interval::hours(1),
        )
        .id("broken")
        .await
        .unwrap();
    let report = scheduler.run_job_now("report").await.unwrap();
    let outcome = report.outcome().await.unwrap();
    assert_eq!(outcome.state, RunState::Succeeded);
    assert_eq!(outcome.result, Some(serde_json::json!({ "rows": 3 })));
    let runs = scheduler.get_job_runs("report", 1).await.unwrap();
    assert_eq!(runs[0].result, Some(serde_json::json!({ "rows": 3 })));
    let plain = scheduler.run_job_now("plain").await.unwrap();
    assert_eq!(
        plain.outcome().await.unwrap().result,
        Some(serde_json::json!(7))
    );
    let broken = scheduler.run_job_now("broken").await.unwrap();
    let outcome = broken.outcome().await.unwrap();
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.error.as_deref(), Some("disk full"));
    // A dropped handle changes nothing: the run goes on and is recorded.
    drop(scheduler.run_job_now("broken").await.unwrap());
    settle().await;
    assert_eq!(scheduler.get_job_runs("broken", 10).await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_answers_a_waiting_retry_with_its_last_error() {
    let (scheduler, clock) = scheduler().await;
    let seen = Attempts::default();
    let policy = RetryPolicy::new(5).backoff(Duration::from_secs(600), Duration::from_secs(600));
    scheduler
        .add_job(flaky(5, false, &clock, &seen), Interval::hours(1))
        .id("doomed")
        .retry(policy)
        .await
        .unwrap();
    let handle = scheduler.run_job_now("doomed").await.unwrap();
    settle().await;
    tokio::time::timeout(Duration::from_secs(1), scheduler.shutdown())
        .await
        .expect("a waiting retry does not hold up a shutdown")
        .unwrap();
    let outcome = handle.outcome().await.unwrap();
    assert_eq!((outcome.state, outcome.attempts), (RunState::Failed, 1));
    assert_eq!(outcome.error.as_deref(), Some("attempt 1 failed"));
}

#[tokio::test(start_paused = true)]
async fn bad_run_control_options_are_typed_errors_that_change_nothing() {
    let (scheduler, _clock) = scheduler().await;
    let invalid = |option: &str, error: Error| match error {
        Error::InvalidOption { option: o, .. } => assert_eq!(o, option),
        other => panic!("{option}: {other:?}"),
    };
    let add = |options: JobOptions| {
        let scheduler = scheduler.clone();
        async move {
            let mut add = scheduler.add_job(|| async {}, Interval::hours(1)).id("bad");
            if let Some(timeout) = options.timeout {
                add = add.timeout(timeout);
            }
            add.retry(options.retry).await
        }
    };
    let zero_timeout = JobOptions::default().timeout(Duration::ZERO);
    invalid("timeout", add(zero_timeout).await.unwrap_err());
    let no_attempts = JobOptions::default().retry(RetryPolicy::new(0));
    invalid("retry.max_attempts", add(no_attempts).await.unwrap_err());
    let low_cap = RetryPolicy::new(3).backoff(Duration::from_secs(10), Duration::from_secs(1));
    invalid(
        "retry.cap",
        add(JobOptions::default().retry(low_cap)).await.unwrap_err(),
    );
    assert_eq!(scheduler.job_count(), 0, "nothing was added");

    let job = scheduler
        .add_job(|| async {}, Interval::hours(1))
        .id("good")
        .timeout(Duration::from_secs(30))
        .await
        .unwrap();
    let refused = scheduler.modify_job("good").retry(low_cap).await;
    invalid("retry.cap", refused.unwrap_err());
    let refused = scheduler.modify_job("good").timeout(Duration::ZERO).await;
    invalid("timeout", refused.unwrap_err());
    assert_eq!(scheduler.get_job("good").await.unwrap(), job, "unchanged");
    let modified = scheduler
        .modify_job("good")
        .timeout(None)
        .retry(RetryPolicy::new(2))
        .await
        .unwrap();
    assert_eq!(modified.options.timeout, None);
    assert_eq!(modified.options.retry, Some(RetryPolicy::new(2)));
    // Job defaults apply, and a job can unset them.
    let with_defaults = Scheduler::builder()
        .job_defaults(JobOptions::default().timeout(Duration::from_secs(9)))
        .build();
    let job = with_defaults
        .add_job(|| async {}, Interval::hours(1))
        .await
        .unwrap();
    assert_eq!(job.options.timeout, Some(Duration::from_secs(9)));
    let job = with_defaults
        .add_job(|| async {}, Interval::hours(1))
        .timeout(None)
        .await
        .unwrap();
    assert_eq!(job.options.timeout, None);
}

#[tokio::test(start_paused = true)]
async fn a_one_shot_job_is_retried_and_goes_after_its_last_attempt() {
    let (scheduler, clock) = scheduler().await;
    let mut events = scheduler.subscribe();
    let seen = Attempts::default();
    let policy = RetryPolicy::new(3).backoff(Duration::from_secs(5), Duration::from_secs(5));
    let at = t0() + TimeDelta::seconds(10);
    scheduler
        .add_job(
            flaky(1, false, &clock, &seen),
            apsched::trigger::Date::at(at),
        )
        .id("once")
        .retry(policy)
        .await
        .unwrap();
    advance(Duration::from_secs(11)).await;
    let waiting = scheduler.get_job("once").await.unwrap();
    assert!(
        waiting.is_paused(),
        "kept, with no next run, while its retry waits"
    );
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|(a, _)| *a)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(matches!(
        scheduler.get_job("once").await,
        Err(Error::JobNotFound(_))
    ));
    let events = drain(&mut events);
    assert_eq!(of_kind(&events, EventMask::JOB_EXECUTED).len(), 1);
    assert_eq!(of_kind(&events, EventMask::JOB_REMOVED).len(), 1);
    let runs = scheduler.get_job_runs("once", 5).await.unwrap();
    assert_eq!((runs[0].state, runs[0].attempts), (RunState::Succeeded, 2));
}
