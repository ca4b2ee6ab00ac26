//! Store throughput: `JobStore::write` with one-row batches (each its own transaction, as the
//! scheduler's writer sends a lone change) and with one batch of 50,000 new jobs (a bulk add),
//! then a 50,000-row batch of next-run moves, of run records, and a `load` of them all.
//!
//! ```text
//! cargo bench --features sqlite,postgres --bench store_write
//! APSCHED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --features sqlite,postgres --bench store_write
//! cargo bench --features sqlite,postgres --bench store_write -- --quick   # a tenth
//! ```
//!
//! SQLite runs on a file in a temporary directory (WAL, `synchronous = NORMAL`); PostgreSQL,
//! when `APSCHED_TEST_POSTGRES_URL` is set, in a schema of its own, dropped at the end. The
//! figures are printed, not judged.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use apsched::store::{JobStore, PostgresStore, RunRecord, RunState, SqliteStore, StoredJob, Write};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(seconds)
}

/// A job as a durable add makes one: a registered task, small JSON arguments, a trigger.
fn job(i: usize) -> StoredJob {
    StoredJob {
        id: format!("job-{i:06}"),
        name: Some(format!("report {i}")),
        task: "send_report".into(),
        args: json!({"to": ["ops@example.com"], "customer": i, "retries": 3}),
        trigger: json!({"interval": {"seconds": 3600, "start_date": "2030-01-01T00:00:00Z"}}),
        options: json!({"misfire_grace_time": 1.0, "coalesce": true, "max_instances": 1}),
        next_run_time: Some(t(i as i64)),
    }
}

fn line(what: &str, rows: usize, took: Duration) {
    let per_second = rows as f64 / took.as_secs_f64();
    let per_row = took.as_secs_f64() * 1e6 / rows as f64;
    println!("  {what:<42} {rows:>7} rows  {took:>10.1?}  {per_second:>10.0} rows/s  {per_row:>8.1} µs/row");
}

async fn measure(store: &dyn JobStore, singles: usize, bulk: usize) {
    println!("{}", store.describe());
    let started = Instant::now();
    for i in 0..singles {
        store
            .write(&[Write::Put(job(1_000_000 + i))])
            .await
            .unwrap();
    }
    line("write: one-row batches (Put)", singles, started.elapsed());

    let puts: Vec<Write> = (0..bulk).map(|i| Write::Put(job(i))).collect();
    let started = Instant::now();
    store.write(&puts).await.unwrap();
    line(
        "write: one batch of new jobs (Put)",
        bulk,
        started.elapsed(),
    );

    let started = Instant::now();
    store.write(&puts).await.unwrap();
    line(
        "write: one batch replacing them (Put)",
        bulk,
        started.elapsed(),
    );

    let nexts: Vec<Write> = (0..bulk)
        .map(|i| Write::Next {
            id: format!("job-{i:06}"),
            next_run_time: Some(t(i as i64 + 3600)),
        })
        .collect();
    let started = Instant::now();
    store.write(&nexts).await.unwrap();
    line(
        "write: one batch of next-run moves (Next)",
        bulk,
        started.elapsed(),
    );

    let runs: Vec<Write> = (0..bulk)
        .map(|i| {
            Write::Run(RunRecord::new(
                &format!("job-{i:06}"),
                t(i as i64),
                RunState::Succeeded,
            ))
        })
        .collect();
    let started = Instant::now();
    store.write(&runs).await.unwrap();
    line(
        "write: one batch of run records (Run)",
        bulk,
        started.elapsed(),
    );

    let started = Instant::now();
    let loaded = store.load().await.unwrap();
    line("load", loaded.len(), started.elapsed());
    println!();
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (singles, bulk) = if quick { (200, 5_000) } else { (2_000, 50_000) };

    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("bench.db"))
        .await
        .unwrap();
    measure(&sqlite, singles, bulk).await;
    let memory = SqliteStore::open("sqlite::memory:").await.unwrap();
    measure(&memory, singles, bulk).await;

    match std::env::var("APSCHED_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("apsched_bench_{}", std::process::id());
            let store = PostgresStore::options(&url)
                .schema(&schema)
                .connect()
                .await
                .unwrap();
            measure(&store, singles, bulk).await;
            sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(store.pool())
                .await
                .unwrap();
        }
        Err(_) => println!("PostgreSQL skipped: APSCHED_TEST_POSTGRES_URL is not set"),
    }
}
