//! Durable stores at scale: the scheduler against a bare-sqlx floor doing the same writes, in
//! the same run, on SQLite (a file, WAL) and PostgreSQL (when `APSCHED_TEST_POSTGRES_URL` is
//! set).
//!
//! ```text
//! cargo bench --features sqlite,postgres --bench store_scale
//! APSCHED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --features sqlite,postgres --bench store_scale
//! cargo bench --features sqlite,postgres --bench store_scale -- --quick   # a tenth
//! ```
//!
//! Scenarios, as the stores issue states them:
//! - 10,000 durable jobs added one by one, each awaited (goal: SQLite >= 5,000 adds/s,
//!   PostgreSQL >= 2,000), against the floor: one `INSERT` per transaction, same data;
//! - PostgreSQL, the same from 32 concurrent callers (goal >= 10,000 adds/s), against 32
//!   concurrent inserting tasks;
//! - `add_jobs` of 50,000 jobs in one call (goal >= 50,000 jobs/s);
//! - 10,000 durable jobs due at one instant: every one runs once, its run row and next run
//!   written (goal: within 2 s of the due instant).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::store::{JobStore, PostgresStore, RunState, SqliteStore};
use apsched::trigger::Interval;
use apsched::{Scheduler, TaskRegistry};
use chrono::{TimeDelta, Utc};
use serde_json::json;

struct Scale {
    quick: bool,
}

impl Scale {
    fn n(&self, full: usize) -> usize {
        if self.quick {
            full / 10
        } else {
            full
        }
    }
}

fn tasks(ran: &Arc<AtomicUsize>) -> TaskRegistry {
    let ran = Arc::clone(ran);
    TaskRegistry::new().register("send_report", move |_: serde_json::Value| {
        let ran = Arc::clone(&ran);
        async move {
            ran.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn args(i: usize) -> serde_json::Value {
    json!({"to": ["ops@example.com"], "customer": i, "retries": 3})
}

fn scheduler(store: impl JobStore, tasks: &TaskRegistry) -> Scheduler {
    Scheduler::builder()
        .store("durable", store)
        .default_store("durable")
        .tasks(tasks.clone())
        .memory_history(0)
        .build()
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn row(what: &str, apsched: f64, floor: Option<f64>, goal: &str, pass: bool) {
    let floor_text = floor.map_or("-".to_string(), |f| format!("{f:.0}"));
    let ratio = floor.map_or("-".to_string(), |f| format!("{:.2}x", f / apsched));
    println!(
        "| {what:<58} | {apsched:>10.1} | {floor_text:>10} | {ratio:>6} | {goal:<22} | {} |",
        if pass { "PASS" } else { "FAIL" }
    );
}

/// Adds `n` durable jobs one by one, each awaited; returns adds/s.
async fn adds_one_by_one(
    scheduler: &Scheduler,
    tasks: &TaskRegistry,
    n: usize,
    from: usize,
) -> f64 {
    let started = Instant::now();
    for i in from..from + n {
        scheduler
            .add_job(
                tasks.task("send_report", args(i)).unwrap(),
                Interval::hours(1),
            )
            .id(format!("job-{i:06}"))
            .await
            .unwrap();
    }
    rate(n, started.elapsed())
}

/// The same from `callers` concurrent callers.
async fn adds_concurrently(
    scheduler: &Scheduler,
    tasks: &TaskRegistry,
    n: usize,
    callers: usize,
    from: usize,
) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..callers {
        let (scheduler, tasks) = (scheduler.clone(), tasks.clone());
        handles.push(tokio::spawn(async move {
            for i in (from + c..from + n).step_by(callers) {
                scheduler
                    .add_job(
                        tasks.task("send_report", args(i)).unwrap(),
                        Interval::hours(1),
                    )
                    .id(format!("job-{i:06}"))
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    rate(n, started.elapsed())
}

async fn batch_add(scheduler: &Scheduler, tasks: &TaskRegistry, n: usize, from: usize) -> f64 {
    let started = Instant::now();
    scheduler
        .add_jobs((from..from + n).map(|i| {
            scheduler
                .add_job(
                    tasks.task("send_report", args(i)).unwrap(),
                    Interval::hours(1),
                )
                .id(format!("job-{i:06}"))
        }))
        .await
        .unwrap();
    rate(n, started.elapsed())
}

/// `n` jobs due at one instant: seconds from it until every run ran and its row and next
/// run are written (read back from the store).
async fn burst(store: Arc<dyn JobStore>, n: usize) -> (f64, bool) {
    let ran = Arc::new(AtomicUsize::new(0));
    let tasks = tasks(&ran);
    let scheduler = scheduler(Arc::clone(&store), &tasks);
    scheduler.start().await.unwrap();
    let at = Utc::now() + TimeDelta::seconds(3);
    scheduler
        .add_jobs((0..n).map(|i| {
            scheduler
                .add_job(
                    tasks.task("send_report", args(i)).unwrap(),
                    Interval::hours(1).start(at),
                )
                .id(format!("burst-{i:06}"))
                .misfire_grace_time(Duration::from_secs(60))
        }))
        .await
        .unwrap();
    tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
    let due = Instant::now();
    // Counted by the task itself: a subscriber 10,000 events behind would skip some.
    while ran.load(Ordering::Relaxed) < n && due.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Written: every job's next run is an hour on, and every run has its row.
    let next = at + TimeDelta::hours(1);
    let written = loop {
        let rows = store.load().await.unwrap();
        let advanced = rows
            .iter()
            .filter(|r| matches!(r, Ok(job) if job.next_run_time.map(|t| t.timestamp_micros()) == Some(next.timestamp_micros())))
            .count();
        let recorded = store.runs("burst-000000", 2).await.unwrap();
        if advanced == n
            && recorded
                .first()
                .is_some_and(|r| r.state == RunState::Succeeded)
        {
            break true;
        }
        if due.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = due.elapsed().as_secs_f64();
    let exact = ran.load(Ordering::Relaxed) == n && written;
    scheduler.shutdown().await.unwrap();
    (took, exact)
}

/// The floor for SQLite: one `INSERT` per `BEGIN IMMEDIATE` transaction, same columns.
async fn sqlite_floor(path: &std::path::Path, n: usize) -> f64 {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query(FLOOR_TABLE_SQLITE)
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query(FLOOR_INSERT_SQLITE)
            .bind(format!("job-{i:06}"))
            .bind("send_report")
            .bind(args(i).to_string())
            .bind(json!({"type": "interval", "period": 3600.0}).to_string())
            .bind(
                json!({"misfire_grace_time": 1.0, "coalesce": true, "max_instances": 1})
                    .to_string(),
            )
            .bind(Utc::now().timestamp_micros())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    rate(n, started.elapsed())
}

const FLOOR_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS floor_jobs (id TEXT PRIMARY KEY, task TEXT NOT NULL, args TEXT NOT NULL, trigger TEXT NOT NULL, options TEXT NOT NULL, next_run_time INTEGER)";
const FLOOR_INSERT_SQLITE: &str = "INSERT INTO floor_jobs (id, task, args, trigger, options, next_run_time) VALUES (?, ?, ?, ?, ?, ?)";

/// The floor for PostgreSQL: one `INSERT` per transaction, from `callers` tasks.
async fn postgres_floor(url: &str, schema: &str, n: usize, callers: usize) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(callers.max(1) as u32)
        .connect(url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE TABLE IF NOT EXISTS \"{schema}\".floor_jobs (id TEXT PRIMARY KEY, task TEXT NOT NULL, args JSONB NOT NULL, trigger JSONB NOT NULL, options JSONB NOT NULL, next_run_time TIMESTAMPTZ)"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("TRUNCATE \"{schema}\".floor_jobs"))
        .execute(&pool)
        .await
        .unwrap();
    let insert = Arc::new(format!("INSERT INTO \"{schema}\".floor_jobs (id, task, args, trigger, options, next_run_time) VALUES ($1, $2, $3, $4, $5, $6)"));
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..callers {
        let (pool, insert) = (pool.clone(), Arc::clone(&insert));
        handles.push(tokio::spawn(async move {
            for i in (c..n).step_by(callers) {
                sqlx::query(&insert)
                    .bind(format!("job-{i:06}"))
                    .bind("send_report")
                    .bind(args(i))
                    .bind(json!({"type": "interval", "period": 3600.0}))
                    .bind(json!({"misfire_grace_time": 1.0, "coalesce": true, "max_instances": 1}))
                    .bind(Utc::now())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    rate(n, started.elapsed())
}

async fn sqlite(scale: &Scale) {
    let dir = tempfile::tempdir().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let tasks = tasks(&ran);
    let n = scale.n(10_000);
    let floor = sqlite_floor(&dir.path().join("floor.db"), n).await;
    let store = SqliteStore::open(dir.path().join("jobs.db")).await.unwrap();
    let scheduler = scheduler(store.clone(), &tasks);
    scheduler.start().await.unwrap();
    let one_by_one = adds_one_by_one(&scheduler, &tasks, n, 0).await;
    row(
        &format!("SQLite: {n} adds, each awaited (adds/s)"),
        one_by_one,
        Some(floor),
        ">= 5,000, <= 1.5x floor",
        one_by_one >= 5_000.0 && floor / one_by_one <= 1.5,
    );
    let batch_n = scale.n(50_000);
    let batch = batch_add(&scheduler, &tasks, batch_n, 1_000_000).await;
    row(
        &format!("SQLite: add_jobs of {batch_n} (jobs/s)"),
        batch,
        None,
        ">= 50,000",
        batch >= 50_000.0,
    );
    scheduler.shutdown().await.unwrap();
    let burst_store = SqliteStore::open(dir.path().join("burst.db"))
        .await
        .unwrap();
    let burst_n = scale.n(10_000);
    let (took, exact) = burst(Arc::new(burst_store), burst_n).await;
    row(
        &format!("SQLite: {burst_n} due at once, all run and written (s)"),
        took,
        None,
        "<= 2 s, each once",
        took <= 2.0 && exact,
    );
}

async fn postgres(scale: &Scale, url: &str) {
    let schema = format!("apsched_bench_{}", std::process::id());
    let admin = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&admin)
        .await
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let tasks = tasks(&ran);
    let n = scale.n(10_000);
    let floor = postgres_floor(url, &schema, n, 1).await;
    let open = |prefix: &'static str| {
        let (url, schema) = (url.to_string(), schema.clone());
        async move {
            PostgresStore::options(&url)
                .schema(schema)
                .table_prefix(prefix)
                .connect()
                .await
                .unwrap()
        }
    };
    let scheduler = scheduler(open("one_").await, &tasks);
    scheduler.start().await.unwrap();
    let one_by_one = adds_one_by_one(&scheduler, &tasks, n, 0).await;
    row(
        &format!("PostgreSQL: {n} adds, each awaited (adds/s)"),
        one_by_one,
        Some(floor),
        ">= 2,000, <= 1.5x floor",
        one_by_one >= 2_000.0 && floor / one_by_one <= 1.5,
    );
    let floor_32 = postgres_floor(url, &schema, n, 32).await;
    let concurrent = adds_concurrently(&scheduler, &tasks, n, 32, 100_000).await;
    row(
        &format!("PostgreSQL: {n} adds from 32 callers (adds/s)"),
        concurrent,
        Some(floor_32),
        ">= 10,000, <= 1.5x floor",
        concurrent >= 10_000.0 && floor_32 / concurrent <= 1.5,
    );
    let batch_n = scale.n(50_000);
    let batch = batch_add(&scheduler, &tasks, batch_n, 1_000_000).await;
    row(
        &format!("PostgreSQL: add_jobs of {batch_n} (jobs/s)"),
        batch,
        None,
        ">= 50,000",
        batch >= 50_000.0,
    );
    scheduler.shutdown().await.unwrap();
    let burst_n = scale.n(10_000);
    let (took, exact) = burst(Arc::new(open("burst_").await), burst_n).await;
    row(
        &format!("PostgreSQL: {burst_n} due at once, all run and written (s)"),
        took,
        None,
        "<= 2 s, each once",
        took <= 2.0 && exact,
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = Scale { quick };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "apsched durable stores ({} scale), against bare sqlx",
        if quick { "quick: 1/10" } else { "full" }
    );
    println!(
        "| {:<58} | {:>10} | {:>10} | {:>6} | {:<22} | result |",
        "scenario", "apsched", "floor", "ratio", "goal"
    );
    println!("|{}|", "-".repeat(126));
    runtime.block_on(async {
        sqlite(&scale).await;
        match std::env::var("APSCHED_TEST_POSTGRES_URL") {
            Ok(url) => postgres(&scale, &url).await,
            Err(_) => println!("PostgreSQL: skipped (APSCHED_TEST_POSTGRES_URL is not set)"),
        }
    });
    if quick {
        println!("quick mode: a smoke run at 1/10 scale; judge the goals with a full run");
    }
}
