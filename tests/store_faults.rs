//! A database that goes away mid-run: the scheduler keeps running the jobs it knows, reports
//! the outage, fails callers' changes to that store fast, recovers by itself once the database
//! is back, and loses no change it acknowledged.
//!
//! PostgreSQL (when `APSCHED_TEST_POSTGRES_URL` is set): a database of the test's own whose
//! connections are refused and terminated (`pg_terminate_backend`). SQLite: a file whose
//! write-ahead log is made immutable (`chattr +i`, which needs root on ext4-like file
//! systems; `.ci/run` sets `APSCHED_TEST_STRICT=1`, so there the test fails instead of being
//! skipped). Real databases, so real time; every wait is bounded.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::store::{JobStore, PostgresStore, SqliteStore};
use apsched::trigger::Interval;
use apsched::{Error, Event, EventStream, Scheduler, TaskRegistry};
use serde::Deserialize;

#[derive(Clone, Deserialize)]
struct Tick {
    label: String,
}

type Seen = Arc<Mutex<Vec<String>>>;

fn tasks(seen: &Seen) -> TaskRegistry {
    let seen = Arc::clone(seen);
    TaskRegistry::new().register("tick", move |tick: Tick| {
        let seen = Arc::clone(&seen);
        async move { seen.lock().unwrap().push(tick.label) }
    })
}

fn tick(tasks: &TaskRegistry, label: &str) -> apsched::Task {
    tasks
        .task("tick", serde_json::json!({ "label": label }))
        .unwrap()
}

async fn next_event(
    events: &mut EventStream,
    within: Duration,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => panic!("the scheduler stopped"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event within {within:?}"))
}

fn strict() -> bool {
    std::env::var("APSCHED_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// The outage itself: start it, end it.
trait Outage {
    async fn begin(&self);
    async fn end(&self);
}

/// What every outage must show, whatever the backend. `open` gives a new handle on the
/// database each call.
async fn outage_is_survived<O: Outage, S: JobStore, F: std::future::Future<Output = S>>(
    outage: &O,
    open: impl Fn() -> F,
) {
    let seen = Seen::default();
    let tasks = tasks(&seen);
    let scheduler = Scheduler::builder()
        .store("durable", open().await)
        .default_store("durable")
        .tasks(tasks.clone())
        .build();
    let mut events = scheduler.subscribe();
    scheduler.start().await.unwrap();
    scheduler
        .add_job(
            tick(&tasks, "before"),
            Interval::every(Duration::from_millis(200)),
        )
        .id("before")
        .await
        .expect("acknowledged before the outage");
    next_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::JobExecuted { .. })
    })
    .await;

    outage.begin().await;
    let reported = next_event(&mut events, Duration::from_secs(30), |e| {
        matches!(e, Event::StoreError { .. })
    })
    .await;
    assert!(
        matches!(&reported, Event::StoreError { store, .. } if store == "durable"),
        "{reported:?}"
    );
    // The job it knows keeps running while its store is away.
    let runs_then = seen.lock().unwrap().len();
    next_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::JobExecuted { .. })
    })
    .await;
    assert!(seen.lock().unwrap().len() > runs_then);
    // A caller's change to that store fails fast with a typed error, and changes nothing.
    let started = std::time::Instant::now();
    let refused = scheduler.pause_job("before").await;
    assert!(matches!(refused, Err(Error::Store { .. })), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!scheduler.get_job("before").await.unwrap().is_paused());

    outage.end().await;
    next_event(&mut events, Duration::from_secs(60), |e| {
        matches!(e, Event::StoreRecovered { .. })
    })
    .await;
    scheduler
        .add_job(tick(&tasks, "after"), Interval::hours(1))
        .id("after")
        .await
        .expect("acknowledged after the recovery");
    let next_before = scheduler.get_job("before").await.unwrap().next_run_time;
    scheduler.shutdown().await.unwrap();

    // Nothing acknowledged is lost, and the advances made during the outage were written.
    let again = Scheduler::builder()
        .store("durable", open().await)
        .tasks(tasks.clone())
        .build();
    let mut restored = again.get_jobs().await.unwrap();
    assert!(restored.is_empty(), "jobs load at start");
    again.start().await.unwrap();
    restored = again.get_jobs().await.unwrap();
    let ids: Vec<_> = restored.iter().map(|j| j.id.to_string()).collect();
    assert!(
        ids.contains(&"before".to_string()) && ids.contains(&"after".to_string()),
        "{ids:?}"
    );
    let stored_next = restored
        .iter()
        .find(|j| j.id == "before")
        .and_then(|j| j.next_run_time);
    assert!(
        stored_next.map(|t| t.timestamp_micros())
            >= next_before.map(|t| t.timestamp_micros() - 1000),
        "{stored_next:?} against {next_before:?}"
    );
    again.shutdown().await.unwrap();
}

/// A PostgreSQL database of the test's own, whose connections are refused and terminated.
struct PgOutage {
    admin: sqlx::PgPool,
    database: String,
}

impl Outage for PgOutage {
    async fn begin(&self) {
        let db = &self.database;
        sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
            .execute(&self.admin)
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(db)
            .execute(&self.admin)
            .await
            .unwrap();
    }

    async fn end(&self) {
        let db = &self.database;
        sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_run_is_survived() {
    let Ok(url) = std::env::var("APSCHED_TEST_POSTGRES_URL") else {
        eprintln!("skipped: APSCHED_TEST_POSTGRES_URL is not set");
        return;
    };
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("the server answers");
    let database = format!("apsched_fault_{}", std::process::id());
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').expect("a URL naming a database");
    let store_url = format!("{base}/{database}");
    let outage = PgOutage {
        admin: admin.clone(),
        database: database.clone(),
    };
    outage_is_survived(&outage, || {
        let url = store_url.clone();
        async move {
            PostgresStore::options(&url)
                .acquire_timeout(Duration::from_millis(500))
                .connect()
                .await
                .unwrap()
        }
    })
    .await;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&admin)
    .await
    .unwrap();
}

/// An SQLite file whose write-ahead log (where every write goes first) is made immutable.
struct SqliteOutage {
    wal: std::path::PathBuf,
}

impl Outage for SqliteOutage {
    async fn begin(&self) {
        assert!(
            chattr("+i", &self.wal),
            "the store's write-ahead log is there to freeze"
        );
    }

    async fn end(&self) {
        chattr("-i", &self.wal);
    }
}

fn chattr(flag: &str, path: &std::path::Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_file_made_read_only_mid_run_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    // Whether this machine can make a file immutable at all.
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    if !chattr("+i", &probe) || !chattr("-i", &probe) {
        assert!(
            !strict(),
            "chattr +i must work here (root, ext4): APSCHED_TEST_STRICT=1"
        );
        eprintln!("skipped: chattr +i does not work here (it needs root and ext4 or alike)");
        return;
    }
    // The log exists while the store's connections are open; the outage freezes it then.
    let wal = dir.path().join("jobs.db-wal");
    let outage = SqliteOutage { wal: wal.clone() };
    outage_is_survived(&outage, || {
        let path = path.clone();
        async move {
            SqliteStore::options(&path)
                .busy_timeout(Duration::from_millis(200))
                .open()
                .await
                .unwrap()
        }
    })
    .await;
    chattr("-i", &wal);
}
