//! One node of a cluster: start it several times, on one database, and every fire time of the
//! shared jobs runs once, on one of the nodes.
//!
//! ```text
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! cargo run --example cluster --features postgres -- --node n1 --seconds 10 &
//! cargo run --example cluster --features postgres -- --node n2 --seconds 10
//! ```
//!
//! Options: `--url URL` (default `$DATABASE_URL`), `--node NAME` (default: host, pid and a
//! random suffix), `--jobs N` (10), `--every-ms MS` (each job's interval, 1000), `--seconds S`
//! (default: until Ctrl-C or SIGTERM), `--schema NAME` (`apsched_cluster_example`),
//! `--lease-ms MS` (the crate's default, 15 s), `--work-ms MS` (how long each run takes, 0).
//!
//! Every run writes `(job_id, fire_time, node, fence)` to the table `cluster_example_runs`,
//! whose unique constraint on `(job_id, fire_time)` would fail a fire time run twice. Kill a
//! node (`kill -9`) and the others reap its runs once its lease expires, and take its work on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apsched::cluster::Cluster;
use apsched::store::PostgresStore;
use apsched::trigger::Interval;
use apsched::{Error, Event, JobContext, Scheduler, TaskRegistry};
use sqlx::PgPool;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url")
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("give --url or set DATABASE_URL")?;
    let schema = arg("--schema").unwrap_or_else(|| "apsched_cluster_example".into());
    let jobs: usize = number("--jobs").unwrap_or(10);
    let every = Duration::from_millis(number("--every-ms").unwrap_or(1000));
    let work = Duration::from_millis(number("--work-ms").unwrap_or(0));

    // The store creates the schema and its tables; the example's table goes beside them.
    let store = PostgresStore::options(&url)
        .schema(&schema)
        .connect()
        .await?;
    let table = format!("\"{schema}\".cluster_example_runs");
    // Nodes starting together would race on `CREATE TABLE IF NOT EXISTS`: one at a time.
    let mut tx = store.pool().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&table)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (job_id text NOT NULL, fire_time timestamptz NOT NULL, \
         node text NOT NULL, fence bigint NOT NULL, UNIQUE (job_id, fire_time))"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut cluster = Cluster::new(store.clone());
    if let Some(node) = arg("--node") {
        cluster = cluster.node_id(node);
    }
    if let Some(lease) = number("--lease-ms") {
        cluster = cluster.lease(Duration::from_millis(lease));
    }
    let ran = Arc::new(AtomicU64::new(0));
    let tasks = TaskRegistry::new().register_with_context("record", {
        let (pool, ran) = (store.pool().clone(), Arc::clone(&ran));
        move |run: JobContext, (): ()| record(pool.clone(), table.clone(), run, work, ran.clone())
    });
    let scheduler = Scheduler::builder()
        .cluster("shared", cluster)
        .default_store("shared")
        .tasks(tasks.clone())
        .build();
    let mut events = scheduler.subscribe();
    scheduler.start().await?; // joins the cluster
    let node = scheduler.node_id().unwrap_or_default().to_string();

    // Every node adds the same jobs: the first one to start adds them, the others find them
    // there. (`replace_existing(true)` would restart their schedules at each node's start.)
    for i in 0..jobs {
        let added = scheduler
            .add_job(
                tasks.task("record", serde_json::Value::Null)?,
                Interval::every(every),
            )
            .id(format!("job-{i}"))
            .await;
        match added {
            Ok(_) | Err(Error::ConflictingId(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    println!("node {node}: started, {jobs} jobs every {every:?}");

    let stop = stop_signal(number("--seconds"));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(event) = events.recv() => print_event(&node, &event),
        }
    }
    scheduler.shutdown().await?; // waits for this node's runs, then leaves the cluster
    while let Some(event) = events.recv().await {
        print_event(&node, &event); // the stream ends after the shutdown
    }
    println!("node {node}: ran {} runs", ran.load(Ordering::Relaxed));
    Ok(())
}

/// The task: writes the run to the example's table, then works for `work`.
async fn record(
    pool: PgPool,
    table: String,
    run: JobContext,
    work: Duration,
    ran: Arc<AtomicU64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (job_id, fire_time, node, fence) VALUES ($1, $2, $3, $4)"
    ))
    .bind(run.job_id().as_str())
    .bind(run.scheduled_run_time())
    .bind(run.node_id())
    .bind(run.fence().map(|f| f as i64))
    .execute(&pool)
    .await?;
    tokio::time::sleep(work).await;
    ran.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The cluster's own events, one line each.
fn print_event(node: &str, event: &Event) {
    match event {
        Event::RunAbandoned {
            job_id,
            scheduled_run_time,
            node: dead,
            retried,
        } => println!(
            "node {node}: RunAbandoned {job_id} at {scheduled_run_time} of node {dead} (retried: {retried})"
        ),
        Event::RunFenced {
            job_id,
            scheduled_run_time,
            ..
        } => println!("node {node}: RunFenced {job_id} at {scheduled_run_time}"),
        Event::NodeLeaseLost { .. } => println!("node {node}: NodeLeaseLost"),
        _ => {}
    }
}

/// The end of `--seconds`, Ctrl-C or SIGTERM, whichever comes first.
async fn stop_signal(seconds: Option<u64>) {
    let timer = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = timer => {}
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

/// The number after `name` on the command line; exits if it is not one.
fn number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = arg(name)?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{name} takes a number, not {value:?}");
            std::process::exit(2);
        }
    }
}
