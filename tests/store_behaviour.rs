//! One behaviour suite for every durable store, at the level a user meets it: a scheduler on
//! the store, then a new scheduler on the same database. Run against the in-memory test store
//! and SQLite always, and PostgreSQL when `APSCHED_TEST_POSTGRES_URL` is set.
//!
//! Real databases do real I/O, so these tests run on real time (Tokio's paused clock would
//! jump timers while a query is in flight); downtime is a `TestClock` jump, runs are started
//! with `run_job_now`, and every wait for an event is bounded.
mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apsched::store::{JobStore, RunState};
use apsched::trigger::{Cron, Date, Interval};
use apsched::{
    Error, Event, EventStream, Job, RetryPolicy, Scheduler, TaskRegistry, TestClock, Zone,
};
use chrono::{TimeDelta, Utc};
use common::store::{note, tasks, Seen, TestStore};

/// Opens a handle on the suite's database: each call a new one, on the same data.
type Open = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn JobStore>> + Send>> + Send + Sync>;

async fn scheduler(open: &Open, clock: &TestClock, tasks: &TaskRegistry) -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .store("durable", open().await)
        .default_store("durable")
        .tasks(tasks.clone())
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

/// The next event `wanted` accepts, within ten seconds.
async fn next_event(events: &mut EventStream, wanted: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => panic!("the scheduler stopped"),
            }
        }
    })
    .await
    .expect("the event within 10 s")
}

/// Jobs as compared across a restart: databases keep times to the microsecond.
fn comparable(jobs: Vec<Job>) -> Vec<(String, String, serde_json::Value, Option<i64>, bool)> {
    let mut jobs: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            (
                job.id.to_string(),
                job.name.clone(),
                serde_json::to_value(&job.trigger).unwrap(),
                job.next_run_time.map(|t| t.timestamp_micros()),
                job.options.coalesce,
            )
        })
        .collect();
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    jobs
}

fn clock() -> TestClock {
    TestClock::new(Utc::now())
}

async fn every_change_persists(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    for (id, trigger) in [
        (
            "interval",
            apsched::trigger::Trigger::from(Interval::hours(1)),
        ),
        ("cron", Cron::parse("30 6 * * mon-fri").unwrap().into()),
        ("date", Date::at(clock.now() + TimeDelta::days(3)).into()),
        ("gone", Interval::minutes(5).into()),
    ] {
        first
            .add_job(note(&tasks, id), trigger)
            .id(id)
            .await
            .unwrap();
    }
    first
        .modify_job("interval")
        .name("renamed")
        .coalesce(false)
        .max_instances(3)
        .await
        .unwrap();
    first
        .reschedule_job("cron", Cron::new().hour(7).minute(15))
        .await
        .unwrap();
    first.pause_job("date").await.unwrap();
    first.remove_job("gone").await.unwrap();
    let before = first.get_jobs().await.unwrap();
    assert_eq!(before.len(), 3);
    first.shutdown().await.unwrap();

    let second = scheduler(&open, &clock, &tasks).await;
    let after = second.get_jobs().await.unwrap();
    assert_eq!(comparable(after.clone()), comparable(before));
    let interval = after.iter().find(|j| j.id == "interval").unwrap();
    assert_eq!(
        (interval.options.max_instances, &*interval.store),
        (3, "durable")
    );
    assert_eq!(interval.task, Some("note"));
    assert!(after.iter().find(|j| j.id == "date").unwrap().is_paused());
    second.resume_job("date").await.unwrap();
    second.remove_all_jobs().await.unwrap();
    second.shutdown().await.unwrap();

    let third = scheduler(&open, &clock, &tasks).await;
    assert!(third.get_jobs().await.unwrap().is_empty());
    third.shutdown().await.unwrap();
}

async fn runs_missed_while_down_follow_the_misfire_rules(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    // To the microsecond, as a database keeps it.
    let start = chrono::DateTime::from_timestamp_micros(clock.now().timestamp_micros()).unwrap()
        + TimeDelta::minutes(1);
    first
        .add_job(note(&tasks, "coalesced"), Interval::minutes(1).start(start))
        .id("coalesced")
        .misfire_grace_time(apsched::MisfireGrace::Unlimited)
        .await
        .unwrap();
    first
        .add_job(note(&tasks, "each"), Interval::minutes(1).start(start))
        .id("each")
        .coalesce(false)
        .misfire_grace_time(Duration::from_secs(150))
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    // Down for a hundred minutes and twenty seconds (real time goes on a little, too).
    clock.jump(TimeDelta::minutes(100) + TimeDelta::seconds(20));
    let second = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .store("durable", open().await)
        .tasks(tasks.clone())
        .build();
    let mut events = second.subscribe();
    second.start().await.unwrap();
    let (mut executed, mut missed) = (Vec::new(), Vec::new());
    while executed.len() < 4 {
        match next_event(&mut events, |e| {
            matches!(e, Event::JobExecuted { .. } | Event::JobMissed { .. })
        })
        .await
        {
            Event::JobExecuted {
                job_id,
                scheduled_run_time,
                ..
            } => executed.push((job_id.to_string(), scheduled_run_time)),
            Event::JobMissed {
                job_id,
                scheduled_run_time,
            } => missed.push((job_id.to_string(), scheduled_run_time)),
            _ => {}
        }
    }
    assert_eq!(
        missed,
        [("each".to_string(), start)],
        "one event for the stretch"
    );
    executed.sort();
    let at = |m: i64| start + TimeDelta::minutes(m - 1);
    assert_eq!(
        executed,
        [
            ("coalesced".to_string(), at(100)),
            ("each".to_string(), at(98)),
            ("each".to_string(), at(99)),
            ("each".to_string(), at(100)),
        ]
    );
    // Their history says so, and the schedule goes on from the next regular time.
    let runs = second.get_job_runs("each", 10).await.unwrap();
    let states: Vec<_> = runs.iter().map(|r| (r.fire_time, r.state)).collect();
    assert!(states.contains(&(start, RunState::Missed)), "{states:?}");
    assert_eq!(
        second
            .get_job("coalesced")
            .await
            .unwrap()
            .next_run_time
            .map(|t| t.timestamp_micros()),
        Some(at(101).timestamp_micros())
    );
    second.shutdown().await.unwrap();
}

async fn a_job_whose_task_is_gone_is_reported_and_kept(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    first
        .add_job(note(&tasks, "x"), Interval::hours(1))
        .id("orphan")
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    // A scheduler that no longer registers "note".
    let other = Scheduler::builder()
        .clock(clock.clone())
        .store("durable", open().await)
        .tasks(TaskRegistry::new())
        .build();
    let mut events = other.subscribe();
    other.start().await.unwrap();
    let reported = next_event(&mut events, |e| matches!(e, Event::JobNotLoaded { .. })).await;
    assert!(
        matches!(&reported, Event::JobNotLoaded { job_id: Some(id), reason, .. }
            if id == "orphan" && reason.contains("note")),
        "{reported:?}"
    );
    assert!(other.get_jobs().await.unwrap().is_empty());
    other.shutdown().await.unwrap();
    // Untouched: a scheduler that knows the task finds it again.
    let again = scheduler(&open, &clock, &tasks).await;
    assert_eq!(again.get_job("orphan").await.unwrap().task, Some("note"));
    again.shutdown().await.unwrap();
}

async fn run_history_survives_a_restart(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    let mut events = first.subscribe();
    first
        .add_job(note(&tasks, "hi"), Interval::hours(1))
        .id("ok")
        .await
        .unwrap();
    first
        .add_job(
            tasks.task("fail", serde_json::Value::Null).unwrap(),
            Interval::hours(1),
        )
        .id("bad")
        .await
        .unwrap();
    first.run_job_now("ok").await.unwrap();
    first.run_job_now("bad").await.unwrap();
    for _ in 0..2 {
        next_event(&mut events, |e| {
            matches!(e, Event::JobExecuted { .. } | Event::JobError { .. })
        })
        .await;
    }
    first.shutdown().await.unwrap();
    let second = scheduler(&open, &clock, &tasks).await;
    let ok = second.get_job_runs("ok", 5).await.unwrap();
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0].state, RunState::Succeeded);
    assert_eq!(ok[0].result, Some(serde_json::json!({ "noted": "hi" })));
    assert!(ok[0].duration().is_some());
    let bad = second.get_job_runs("bad", 5).await.unwrap();
    assert_eq!(bad[0].state, RunState::Failed);
    assert_eq!(bad[0].error.as_deref(), Some("the disk is full"));
    second.shutdown().await.unwrap();
}

async fn a_pending_retry_survives_a_restart(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    let mut events = first.subscribe();
    let policy = RetryPolicy::new(3).backoff(Duration::from_secs(3600), Duration::from_secs(3600));
    first
        .add_job(
            tasks.task("flaky", serde_json::Value::Null).unwrap(),
            Interval::hours(24),
        )
        .id("flaky")
        .retry(policy)
        .await
        .unwrap();
    first.run_job_now("flaky").await.unwrap();
    let Event::JobRetrying {
        scheduled_run_time,
        delay,
        ..
    } = next_event(&mut events, |e| matches!(e, Event::JobRetrying { .. })).await
    else {
        unreachable!()
    };
    first.shutdown().await.unwrap();

    // Down past the retry's due time: the next scheduler carries the retry out at start.
    clock.jump(TimeDelta::from_std(delay).unwrap() + TimeDelta::seconds(1));
    let second = scheduler(&open, &clock, &tasks).await;
    // The retry may run as the start restores it: wait for its outcome in the history.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let runs = second.get_job_runs("flaky", 5).await.unwrap();
            if runs.first().is_some_and(|run| run.state.is_final()) {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the retry ran within 10 s");
    assert_eq!(ended[0].fire_time, scheduled_run_time, "the same run");
    let runs = second.get_job_runs("flaky", 5).await.unwrap();
    assert_eq!(runs.len(), 1, "one run, two attempts: {runs:?}");
    assert_eq!((runs[0].state, runs[0].attempts), (RunState::Succeeded, 2));
    assert_eq!(runs[0].result, Some(serde_json::json!(2)));
    second.shutdown().await.unwrap();
    // Nothing is left to retry.
    let third = scheduler(&open, &clock, &tasks).await;
    assert_eq!(third.running_jobs(), 0);
    third.shutdown().await.unwrap();
}

async fn hostile_text_round_trips_exactly(open: Open) {
    let (clock, seen) = (clock(), Seen::default());
    let tasks = tasks(&seen);
    let first = scheduler(&open, &clock, &tasks).await;
    let long = "é'\"; DROP TABLE jobs; --".repeat(400);
    let texts = [
        "it's \"quoted\"",
        "a; DELETE FROM jobs; --",
        "ünïcødé ✓ 日本語 🚀",
        long.as_str(),
    ];
    for (i, text) in texts.iter().enumerate() {
        first
            .add_job(note(&tasks, text), Interval::hours(1))
            .id(format!("{text}#{i}"))
            .name(*text)
            .await
            .unwrap();
    }
    first.shutdown().await.unwrap();
    let second = scheduler(&open, &clock, &tasks).await;
    let mut events = second.subscribe();
    for (i, text) in texts.iter().enumerate() {
        let id = format!("{text}#{i}");
        let job = second.get_job(&id).await.unwrap();
        assert_eq!((job.id.as_str(), job.name.as_str()), (id.as_str(), *text));
        second.run_job_now(&id).await.unwrap();
        next_event(&mut events, |e| matches!(e, Event::JobExecuted { .. })).await;
    }
    let mut ran = seen.lock().unwrap().clone();
    ran.sort();
    let mut expected: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(ran, expected, "the arguments came back exactly");
    // A NUL byte (PostgreSQL text cannot hold one) is stored or refused, never a panic.
    match second
        .add_job(note(&tasks, "nul\0byte"), Interval::hours(1))
        .id("nul")
        .await
    {
        Ok(_) => assert_eq!(second.get_job("nul").await.unwrap().id, "nul"),
        Err(error) => assert!(matches!(error, Error::Store { .. }), "{error:?}"),
    }
    second.shutdown().await.unwrap();
}

/// One test per behaviour for the backend `$open` makes.
macro_rules! suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn every_change_persists() {
                if let Some(open) = $open {
                    super::every_change_persists(open).await;
                }
            }

            #[tokio::test]
            async fn runs_missed_while_down_follow_the_misfire_rules() {
                if let Some(open) = $open {
                    super::runs_missed_while_down_follow_the_misfire_rules(open).await;
                }
            }

            #[tokio::test]
            async fn a_job_whose_task_is_gone_is_reported_and_kept() {
                if let Some(open) = $open {
                    super::a_job_whose_task_is_gone_is_reported_and_kept(open).await;
                }
            }

            #[tokio::test]
            async fn run_history_survives_a_restart() {
                if let Some(open) = $open {
                    super::run_history_survives_a_restart(open).await;
                }
            }

            #[tokio::test]
            async fn a_pending_retry_survives_a_restart() {
                if let Some(open) = $open {
                    super::a_pending_retry_survives_a_restart(open).await;
                }
            }

            #[tokio::test]
            async fn hostile_text_round_trips_exactly() {
                if let Some(open) = $open {
                    super::hostile_text_round_trips_exactly(open).await;
                }
            }
        }
    };
}

fn memory() -> Option<Open> {
    let store = TestStore::new();
    Some(Arc::new(move || {
        let store: Arc<dyn JobStore> = Arc::new(store.clone());
        Box::pin(async move { store })
    }))
}

suite!(in_memory_test_store, memory());

/// A fresh SQLite file (kept in a temporary directory for the test's life).
#[cfg(feature = "sqlite")]
fn sqlite() -> Option<Open> {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("jobs.db");
    Some(Arc::new(move || {
        let (path, dir) = (path.clone(), Arc::clone(&dir));
        Box::pin(async move {
            let _keep = dir;
            let store = apsched::store::SqliteStore::open(&path).await.unwrap();
            Arc::new(store) as Arc<dyn JobStore>
        })
    }))
}

#[cfg(feature = "sqlite")]
suite!(sqlite_file, sqlite());

/// PostgreSQL in a schema of its own (left behind when the test ends: names are unique, and
/// a stale one costs nothing), or `None`, said out loud, without a server to test on.
#[cfg(feature = "postgres")]
fn postgres() -> Option<Open> {
    let Ok(url) = std::env::var("APSCHED_TEST_POSTGRES_URL") else {
        eprintln!("skipped: APSCHED_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("apsched_behaviour_{}", uuid_ish());
    Some(Arc::new(move || {
        let (url, schema) = (url.clone(), schema.clone());
        Box::pin(async move {
            let store = apsched::store::PostgresStore::options(&url)
                .schema(schema)
                .connect()
                .await
                .expect("APSCHED_TEST_POSTGRES_URL is set: the server must answer");
            Arc::new(store) as Arc<dyn JobStore>
        })
    }))
}

#[cfg(feature = "postgres")]
fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(feature = "postgres")]
suite!(postgres, postgres());

/// Opening a store is spawnable (an axum handler, a `tokio::spawn`): its future is `Send`.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[tokio::test]
async fn opening_a_store_is_a_send_future() {
    fn spawnable<F: Future + Send + 'static>(future: F) -> F {
        future
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spawned.db");
    let opened = tokio::spawn(spawnable(async move {
        apsched::store::SqliteStore::open(&path).await.map(drop)
    }));
    opened.await.unwrap().unwrap();
    // Compiled, not run: the PostgreSQL future must be `Send` too.
    let _ = || spawnable(apsched::store::PostgresStore::connect("postgres://unused"));
}
