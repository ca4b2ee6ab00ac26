//! Cluster mode on a real PostgreSQL (`APSCHED_TEST_POSTGRES_URL`; without it the benchmark
//! says it skipped): several nodes sharing one store, against a bare-SQL floor issuing the
//! same statements, in the same run.
//!
//! ```text
//! export APSCHED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
//! cargo bench --features postgres --bench cluster                   # throughput, lateness, idle
//! cargo bench --features postgres --bench cluster -- --quick        # a tenth, short spans (CI)
//! cargo bench --features postgres --bench cluster -- idle lateness  # a subset, by name
//! cargo bench --features postgres --bench cluster -- chaos          # only when named
//! cargo bench --features postgres --bench cluster -- chaos --minutes 1
//! ```
//!
//! Scenarios (each in a fresh schema, dropped after):
//! - `throughput`: 10,000 interval jobs (every hour) all due at one instant, so each has
//!   exactly one run to materialize, claim and complete (one-shot `Date` jobs would add the
//!   deletion of finished jobs; interval jobs every second would mix in the next fire times):
//!   from that instant until every run row is `succeeded`, as runs/s, with 1, 2 and 3 nodes in
//!   this process (each a `Scheduler` with its own pool; `max_running` 1,000 so that a claim
//!   takes a whole batch of 500, plus one row with the default 256), no-op tasks. The floor:
//!   as many plain loops, each on its own connection, materializing (`SELECT .. FOR UPDATE
//!   SKIP LOCKED`, insert the pending run rows, advance `next_run_time`), claiming (`SELECT ..
//!   FOR UPDATE OF r, j SKIP LOCKED`, `UPDATE .. fence + 1`) and completing (`UPDATE .. WHERE
//!   id, fence, state, owner`) batches of 500, with the node's statements (less its
//!   `max_instances` count and notifications). Each figure is the best of 3 rounds, floor
//!   and apsched interleaved (1 with `--quick`). Goal: >= 5,000 runs/s, within 1.5x of the
//!   floor.
//! - `lateness`: 3 nodes, 200 jobs every second for 10 s; each run records its start minus its
//!   fire time. p99 goal: < 100 ms with notifications, < poll interval (1 s) + 100 ms without.
//! - `idle`: one node, 1,000 jobs due in an hour, for 10 s: its statements/s, counted exactly
//!   by a proxy between the node and the server (simple-protocol queries plus extended-protocol
//!   executions, `BEGIN`/`COMMIT` included), and its transactions/s from
//!   `pg_stat_database.xact_commit + xact_rollback` deltas in a database made for it (so no
//!   other session is counted; `pg_stat_statements` is not loaded on this server, and loading
//!   it takes a restart). The transactions also count each statement's first parse on each
//!   of the node's connections. Goal: <= 2/s.
//! - `chaos` (only when named): 3 node processes (this binary in `--node` mode), 1,000 jobs
//!   every second, one node killed with SIGKILL and restarted under the same id every 20 s
//!   for 5 minutes (`--minutes M`), each kill at another point of its second. Each run
//!   inserts its fire time into a table with `UNIQUE (job_id, fire_time)` (a second insert is
//!   counted as a duplicate). Goals: no duplicate; no fire time lost beyond those reported
//!   abandoned: of every job's fire times from the first until 2 s before the last that ran
//!   anywhere, those without a row in the table, less those whose run row is `abandoned`.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apsched::cluster::Cluster;
use apsched::store::PostgresStore;
use apsched::trigger::{Interval, Trigger};
use apsched::{JobContext, Scheduler, TaskRegistry};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::Row as _;

#[path = "common/table.rs"]
mod table;
use table::{print_table, Kind, Row};

const SCENARIOS: [&str; 4] = ["throughput", "lateness", "idle", "chaos"];
/// Run when no scenario is named (chaos takes minutes and kills processes: only on request).
const DEFAULT: [&str; 3] = ["throughput", "lateness", "idle"];
/// The node's claim batch (`Cluster`'s default), and the floor's.
const BATCH: i64 = 500;

#[derive(Clone, Copy)]
struct Scale {
    quick: bool,
}

impl Scale {
    fn n(self, full: usize) -> usize {
        if self.quick {
            full / 10
        } else {
            full
        }
    }

    fn span(self, full: Duration, quick: Duration) -> Duration {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

fn row(scenario: impl Into<String>, apsched: f64, goal: &str, pass: Option<bool>) -> Row {
    Row {
        scenario: scenario.into(),
        apsched,
        floor: f64::NAN,
        kind: Kind::Count,
        goal: goal.to_string(),
        pass,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(name) = value("--node") {
        let schema = value("--schema").expect("--node NAME --schema SCHEMA");
        node_process(&name, &schema);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = Scale { quick };
    let minutes: f64 = value("--minutes").map_or(5.0, |m| m.parse().expect("--minutes M"));
    // `cargo bench` passes `--bench`; anything else that is not a flag (or a flag's value)
    // names a scenario.
    let mut chosen = Vec::new();
    let mut skip = false;
    for arg in &args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if arg == "--minutes" {
            skip = true;
        } else if !arg.starts_with("--") {
            assert!(
                SCENARIOS.contains(&arg.as_str()),
                "unknown scenario '{arg}'; known: {}",
                SCENARIOS.join(", ")
            );
            chosen.push(arg.as_str());
        }
    }
    let scenarios: Vec<&str> = if chosen.is_empty() {
        DEFAULT.to_vec()
    } else {
        SCENARIOS
            .iter()
            .copied()
            .filter(|s| chosen.contains(s))
            .collect()
    };
    let Ok(url) = std::env::var("APSCHED_TEST_POSTGRES_URL") else {
        println!("apsched cluster benchmark: skipped (APSCHED_TEST_POSTGRES_URL is not set)");
        return;
    };
    println!(
        "apsched cluster benchmark ({} scale, {} CPUs, PostgreSQL on {}), against bare SQL",
        if quick { "quick: 1/10" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        url.parse::<PgConnectOptions>()
            .map_or("?".to_string(), |o| format!(
                "{}:{}",
                o.get_host(),
                o.get_port()
            ))
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    runtime.block_on(async {
        for scenario in scenarios {
            eprintln!("running {scenario} ...");
            match scenario {
                "throughput" => throughput(&url, scale, &mut rows, &mut notes).await,
                "lateness" => lateness(&url, scale, &mut rows, &mut notes).await,
                "idle" => idle(&url, scale, &mut rows, &mut notes).await,
                "chaos" => chaos(&url, minutes, &mut rows, &mut notes).await,
                _ => unreachable!(),
            }
        }
    });
    print_table(
        &rows,
        "ratio: for rates floor/apsched, so above 1 means apsched does worse; the floor is bare \
         SQL with the node's statements",
    );
    for note in notes {
        println!("{note}");
    }
    if quick {
        println!(
            "quick mode: 1/10 scale and short spans, a smoke run; judge the goals with a full run"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas, nodes and jobs.

/// A fresh schema, with the store's tables (made by connecting a store), dropped by `drop`.
struct Db {
    url: String,
    schema: String,
    admin: PgPool,
}

impl Db {
    async fn fresh(url: &str) -> Db {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let schema = format!(
            "apsched_bench_cluster_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .expect("APSCHED_TEST_POSTGRES_URL is set: the server must answer");
        let db = Db {
            url: url.to_string(),
            schema,
            admin,
        };
        drop(db.store().await); // creates the schema and its tables
        db
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::options(&self.url)
            .schema(&self.schema)
            .connect()
            .await
            .expect("the store connects")
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".\"{name}\"", self.schema)
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(&sql.replace("{s}", &format!("\"{}\"", self.schema)))
            .fetch_one(&self.admin)
            .await
            .expect("a count")
    }

    async fn drop(self) {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await;
        self.admin.close().await;
    }
}

async fn node(
    store: PostgresStore,
    id: &str,
    tasks: &TaskRegistry,
    tune: impl FnOnce(Cluster) -> Cluster,
) -> Scheduler {
    let scheduler = Scheduler::builder()
        .cluster("shared", tune(Cluster::new(store).node_id(id)))
        .default_store("shared")
        .tasks(tasks.clone())
        .build();
    scheduler.start().await.expect("the node joins");
    scheduler
}

async fn shut_down(nodes: &[Scheduler]) {
    for node in nodes {
        tokio::time::timeout(Duration::from_secs(30), node.shutdown())
            .await
            .expect("a node shuts down within 30 s")
            .expect("shutdown");
    }
}

/// `n` jobs of `task` on `trigger`, ids `job-000000` on: the first added through a paused
/// node (so its row is exactly what apsched writes), the others copied from it in SQL (the
/// add path is not what is measured here, and adding 10,000 cluster jobs one by one would take
/// longer than the runs).
async fn add_jobs(
    db: &Db,
    task: &str,
    trigger: impl Into<Trigger>,
    n: usize,
    tasks: &TaskRegistry,
) {
    let loader = Scheduler::builder()
        .cluster("shared", Cluster::new(db.store().await).node_id("loader"))
        .default_store("shared")
        .tasks(tasks.clone())
        .build();
    loader.start_paused().await.expect("the loader joins");
    loader
        .add_job(
            tasks.task(task, serde_json::Value::Null).expect("a task"),
            trigger,
        )
        .id("job-000000")
        .misfire_grace_time(Duration::from_secs(60))
        .await
        .expect("the first job is added");
    shut_down(&[loader]).await;
    let jobs = db.table("jobs");
    sqlx::query(&format!(
        "INSERT INTO {jobs} (id, name, task, args, trigger, options, next_run_time, revision, finished) \
         SELECT 'job-' || lpad(i::text, 6, '0'), name, task, args, trigger, options, next_run_time, \
           revision, finished \
         FROM {jobs} t, generate_series(1, $1::bigint - 1) i WHERE t.id = 'job-000000'"
    ))
    .bind(n as i64)
    .execute(&db.admin)
    .await
    .expect("the jobs are copied");
}

async fn sleep_until(at: DateTime<Utc>) {
    tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
}

// ---------------------------------------------------------------------------------------------
// throughput

/// How many runs a node has going at most in `throughput`: above the batch, so its claims are
/// full batches of 500 like the floor's (with the default, 256, a claim takes 256 at most).
const THROUGHPUT_MAX_RUNNING: usize = 1_000;
/// `Cluster`'s default.
const DEFAULT_MAX_RUNNING: usize = 256;

async fn throughput(url: &str, scale: Scale, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let n = scale.n(10_000);
    // The machine is shared (PostgreSQL, and whatever else runs on it): each figure is the
    // best of a few rounds, floor and apsched interleaved.
    let rounds = if scale.quick { 1 } else { 3 };
    let mut best = [(0.0f64, 0.0f64); 3];
    let mut default_best = 0.0f64;
    let mut exact = true;
    for _ in 0..rounds {
        for nodes in 1..=3 {
            let floor = throughput_floor(url, n, nodes).await;
            let (apsched, once) = throughput_apsched(url, n, nodes, THROUGHPUT_MAX_RUNNING).await;
            exact &= once;
            let best = &mut best[nodes - 1];
            *best = (best.0.max(apsched), best.1.max(floor));
        }
        let (apsched, once) = throughput_apsched(url, n, 3, DEFAULT_MAX_RUNNING).await;
        exact &= once;
        default_best = default_best.max(apsched);
    }
    for (i, (apsched, floor)) in best.iter().copied().enumerate() {
        rows.push(Row {
            scenario: format!(
                "throughput, {} node(s), {n} runs due at once: claimed+completed runs/s",
                i + 1
            ),
            apsched,
            floor,
            kind: Kind::Rate,
            goal: ">= 5,000/s, <= 1.5x floor".into(),
            pass: Some(exact && apsched >= 5_000.0 && floor / apsched <= 1.5),
        });
    }
    rows.push(Row {
        scenario: "throughput, 3 nodes, default max_running (256): runs/s".into(),
        apsched: default_best,
        floor: best[2].1,
        kind: Kind::Rate,
        goal: "(for comparison)".into(),
        pass: None,
    });
    if !exact {
        notes.push("throughput: some fire time did NOT run exactly once (counts above)".into());
    }
    let scaling = |i: usize| {
        format!(
            "{:.2}x (floor {:.2}x)",
            best[i].0 / best[0].0,
            best[i].1 / best[0].1
        )
    };
    notes.push(format!(
        "throughput: best of {rounds} round(s); nodes in this process, each a Scheduler with \
         its own pool, max_running {THROUGHPUT_MAX_RUNNING}; {} CPUs shared with PostgreSQL; \
         over 1 node: 2 nodes {}, 3 nodes {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scaling(1),
        scaling(2)
    ));
}

/// `nodes` nodes, `n` hourly jobs due at one instant: runs/s from that instant until every
/// run row is `succeeded`, and whether every fire time ran exactly once.
async fn throughput_apsched(url: &str, n: usize, nodes: usize, max_running: usize) -> (f64, bool) {
    let db = Db::fresh(url).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let tasks = {
        let ran = Arc::clone(&ran);
        TaskRegistry::new().register("noop", move |(): ()| {
            ran.fetch_add(1, Ordering::Relaxed);
            async {}
        })
    };
    let at = Utc::now() + TimeDelta::milliseconds(1_000);
    add_jobs(&db, "noop", Interval::hours(1).start(at), n, &tasks).await;
    let mut schedulers = Vec::new();
    for i in 0..nodes {
        schedulers.push(
            node(db.store().await, &format!("node-{i}"), &tasks, |c| {
                c.max_running(max_running)
            })
            .await,
        );
    }
    assert!(Utc::now() < at, "the setup took longer than 1 s");
    sleep_until(at).await;
    let due = Instant::now();
    let deadline = due + Duration::from_secs(120);
    while ran.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'succeeded'")
        .await
        < n as i64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = due.elapsed();
    shut_down(&schedulers).await;
    let runs = db.count("SELECT count(*) FROM {s}.runs").await;
    let succeeded = db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'succeeded'")
        .await;
    let ran = ran.load(Ordering::Relaxed);
    let exact = ran == n && runs == n as i64 && succeeded == n as i64;
    if !exact {
        eprintln!("throughput, {nodes} node(s): ran {ran}, {runs} run rows, {succeeded} succeeded, of {n}");
    }
    db.drop().await;
    (n as f64 / took.as_secs_f64(), exact)
}

/// The floor's statements: the node's, less what bare SQL does not need (the misfire rules
/// are a `+ 1 hour` here; no `max_instances` count, no notifications).
struct FloorSql {
    due_jobs: String,
    insert_runs: String,
    advance: String,
    pending: String,
    claim: String,
    complete: String,
}

impl FloorSql {
    fn new(db: &Db) -> FloorSql {
        let (jobs, runs) = (db.table("jobs"), db.table("runs"));
        FloorSql {
            due_jobs: format!(
                "SELECT id, trigger, options, next_run_time, revision, name, now() FROM {jobs} \
                 WHERE next_run_time <= now() ORDER BY next_run_time LIMIT $1 \
                 FOR UPDATE SKIP LOCKED"
            ),
            insert_runs: format!(
                "INSERT INTO {runs} (job_id, fire_time, due_at, state, finished_at) \
                 SELECT job_id, fire_time, due_at, state, \
                   CASE WHEN state = 'pending' THEN NULL ELSE now() END \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[]) \
                   AS r(job_id, fire_time, due_at, state) \
                 ON CONFLICT (job_id, fire_time) DO NOTHING"
            ),
            advance: format!(
                "UPDATE {jobs} AS j SET next_run_time = v.next_run_time, finished = v.finished, \
                 revision = j.revision + 1, updated_at = now() \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::bool[]) \
                   AS v(id, next_run_time, revision, finished) \
                 WHERE j.id = v.id AND j.revision = v.revision"
            ),
            pending: format!(
                "SELECT r.id, r.job_id, r.fire_time, j.name, j.task, j.args, j.options, r.fence, j.finished \
                 FROM {runs} r JOIN {jobs} j ON j.id = r.job_id \
                 WHERE r.state = 'pending' AND r.due_at <= now() AND j.task = ANY($2::text[]) \
                 ORDER BY r.due_at LIMIT $1 \
                 FOR UPDATE OF r, j SKIP LOCKED"
            ),
            claim: format!(
                "UPDATE {runs} SET state = 'running', owner = $1, fence = fence + 1, \
                 started_at = now(), finished_at = NULL, error = NULL \
                 WHERE id = ANY($2::bigint[]) RETURNING id, fence"
            ),
            complete: format!(
                "UPDATE {runs} AS r SET state = v.state, \
                   finished_at = CASE WHEN v.state = 'pending' THEN NULL ELSE now() END, \
                   started_at = CASE WHEN v.state = 'pending' THEN NULL ELSE r.started_at END, \
                   owner = CASE WHEN v.state = 'pending' THEN NULL ELSE r.owner END, \
                   due_at = CASE WHEN v.state = 'pending' THEN now() ELSE r.due_at END, \
                   result = v.result::jsonb, error = v.error \
                 FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
                   AS v(id, fence, state, result, error) \
                 WHERE r.id = v.id AND r.fence = v.fence AND r.state = 'running' AND r.owner = $1 \
                 RETURNING r.id"
            ),
        }
    }
}

/// `loops` plain loops, each on its own connection, doing the node's work on the same jobs.
async fn throughput_floor(url: &str, n: usize, loops: usize) -> f64 {
    let db = Db::fresh(url).await;
    let tasks = TaskRegistry::new().register("noop", |(): ()| async {});
    let at = Utc::now() + TimeDelta::milliseconds(1_000);
    add_jobs(&db, "noop", Interval::hours(1).start(at), n, &tasks).await;
    let sql = Arc::new(FloorSql::new(&db));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for l in 0..loops {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .expect("the floor connects");
        let (sql, completed) = (Arc::clone(&sql), Arc::clone(&completed));
        handles.push(async move {
            sleep_until(at).await;
            floor_loop(&pool, &sql, &format!("floor-{l}"), &completed, n).await;
            pool.close().await;
        });
    }
    sleep_until(at).await;
    let due = Instant::now();
    futures::future::join_all(handles).await;
    let took = due.elapsed();
    assert_eq!(
        completed.load(Ordering::Relaxed),
        n,
        "the floor completed every run"
    );
    db.drop().await;
    n as f64 / took.as_secs_f64()
}

async fn floor_loop(pool: &PgPool, sql: &FloorSql, owner: &str, completed: &AtomicUsize, n: usize) {
    let tasks = vec!["noop".to_string()];
    let hour = TimeDelta::hours(1);
    while completed.load(Ordering::Relaxed) < n {
        // Materialize: the due jobs' pending runs, and their next run an hour on.
        let mut tx = pool.begin().await.unwrap();
        let due = sqlx::query(&sql.due_jobs)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let worked = !due.is_empty();
        if worked {
            let mut ids = Vec::with_capacity(due.len());
            let mut fire_times = Vec::with_capacity(due.len());
            let mut revisions = Vec::with_capacity(due.len());
            for job in &due {
                ids.push(job.get::<String, _>(0));
                fire_times.push(job.get::<DateTime<Utc>, _>(3));
                revisions.push(job.get::<i64, _>(4));
            }
            let states = vec!["pending"; ids.len()];
            sqlx::query(&sql.insert_runs)
                .bind(&ids)
                .bind(&fire_times)
                .bind(&fire_times)
                .bind(&states)
                .execute(&mut *tx)
                .await
                .unwrap();
            let next: Vec<DateTime<Utc>> = fire_times.iter().map(|t| *t + hour).collect();
            sqlx::query(&sql.advance)
                .bind(&ids)
                .bind(&next)
                .bind(&revisions)
                .bind(vec![false; ids.len()])
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        // Claim.
        let mut tx = pool.begin().await.unwrap();
        let pending = sqlx::query(&sql.pending)
            .bind(BATCH)
            .bind(&tasks)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let ids: Vec<i64> = pending.iter().map(|r| r.get::<i64, _>(0)).collect();
        let claimed: Vec<(i64, i64)> = if ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(&sql.claim)
                .bind(owner)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .unwrap()
        };
        tx.commit().await.unwrap();
        // Complete (the no-op ran).
        if !claimed.is_empty() {
            let (ids, fences): (Vec<i64>, Vec<i64>) = claimed.into_iter().unzip();
            let written: Vec<i64> = sqlx::query_scalar(&sql.complete)
                .persistent(false)
                .bind(owner)
                .bind(&ids)
                .bind(&fences)
                .bind(vec!["succeeded"; ids.len()])
                .bind(vec![None::<String>; ids.len()])
                .bind(vec![None::<String>; ids.len()])
                .fetch_all(pool)
                .await
                .unwrap();
            completed.fetch_add(written.len(), Ordering::Relaxed);
        } else if !worked {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lateness

async fn lateness(url: &str, scale: Scale, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let jobs = scale.n(200);
    let span = scale.span(Duration::from_secs(10), Duration::from_secs(4));
    let poll = Duration::from_secs(1);
    for notify in [true, false] {
        let (p50, p99, max, count) = lateness_run(url, jobs, span, notify, poll).await;
        let (label, goal, limit) = if notify {
            ("notifications on", "< 100 ms".to_string(), 100.0)
        } else {
            (
                "notifications off, poll 1 s",
                format!("< {} ms", poll.as_millis() + 100),
                poll.as_millis() as f64 + 100.0,
            )
        };
        let expected = jobs * span.as_secs() as usize;
        rows.push(row(
            format!(
                "lateness, 3 nodes, {jobs} jobs every 1 s for {} s, {label}: p99 (ms)",
                span.as_secs()
            ),
            p99,
            &goal,
            Some(p99 < limit && count + jobs >= expected),
        ));
        rows.push(row(
            format!("lateness, {label}: p50 / max (ms)"),
            p50,
            &format!("max {max:.1} ms"),
            None,
        ));
        notes.push(format!(
            "lateness, {label}: {count} runs recorded (about {expected} expected)"
        ));
    }
}

/// Lateness samples (ms): p50, p99, max, and how many runs were recorded.
async fn lateness_run(
    url: &str,
    jobs: usize,
    span: Duration,
    notify: bool,
    poll: Duration,
) -> (f64, f64, f64, usize) {
    let db = Db::fresh(url).await;
    let samples = Arc::new(Mutex::new(Vec::<f64>::with_capacity(jobs * 20)));
    let tasks = {
        let samples = Arc::clone(&samples);
        TaskRegistry::new().register_with_context("late", move |run: JobContext, (): ()| {
            let late = Utc::now() - run.scheduled_run_time();
            samples
                .lock()
                .unwrap()
                .push(late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
            async {}
        })
    };
    let start = Utc::now() + TimeDelta::seconds(2);
    add_jobs(&db, "late", Interval::seconds(1).start(start), jobs, &tasks).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            node(db.store().await, &format!("node-{i}"), &tasks, |c| {
                c.notify(notify).poll_interval(poll)
            })
            .await,
        );
    }
    // Until just before the fire time after the span, so every second's fire times had time.
    sleep_until(start + TimeDelta::from_std(span).unwrap() - TimeDelta::milliseconds(500)).await;
    let mut taken = std::mem::take(&mut *samples.lock().unwrap());
    nodes[0].remove_all_jobs().await.expect("remove all");
    shut_down(&nodes).await;
    db.drop().await;
    taken.sort_by(f64::total_cmp);
    let at = |q: f64| {
        taken
            .get(((taken.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (
        at(0.50),
        at(0.99),
        taken.last().copied().unwrap_or(f64::NAN),
        taken.len(),
    )
}

// ---------------------------------------------------------------------------------------------
// idle

async fn idle(url: &str, scale: Scale, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let span = scale.span(Duration::from_secs(10), Duration::from_secs(5));
    let jobs = 1_000;
    let base: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(base.clone())
        .await
        .expect("the server answers");
    // A database of its own, so the server's transaction count is this node's alone.
    let database = format!("apsched_bench_idle_{}", std::process::id());
    let own_database = sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&admin)
        .await
        .is_ok();
    let target = if own_database {
        base.clone().database(&database)
    } else {
        notes.push(
            "idle: could not create a database of its own; transactions/s counts every session \
             of the shared one"
                .into(),
        );
        base.clone()
    };
    let datname: String = if own_database {
        database.clone()
    } else {
        sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    let schema = format!("apsched_bench_idle_{}", std::process::id());
    // The node talks to the server through a proxy that counts its statements.
    let proxy = CountingProxy::start(target.get_host(), target.get_port()).await;
    let via_proxy = target
        .clone()
        .host("127.0.0.1")
        .port(proxy.port)
        .ssl_mode(PgSslMode::Disable);
    let pool = PgPoolOptions::new()
        .connect_with(via_proxy)
        .await
        .expect("the node connects through the proxy");
    let store = PostgresStore::from_pool(pool)
        .schema(&schema)
        .connect()
        .await
        .expect("the store connects");
    let tasks = TaskRegistry::new().register("noop", |(): ()| async {});
    let direct = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(target.clone())
        .await
        .unwrap();
    let db = Db {
        url: String::new(),
        schema: schema.clone(),
        admin: direct,
    };
    let node = node(store.clone(), "idle", &tasks, |c| c).await;
    // The first job through the node, the others copied (see `add_jobs`).
    node.add_job(
        tasks.task("noop", serde_json::Value::Null).unwrap(),
        Interval::hours(1).start(Utc::now() + TimeDelta::hours(1)),
    )
    .id("job-000000")
    .await
    .expect("a job is added");
    let jobs_table = db.table("jobs");
    sqlx::query(&format!(
        "INSERT INTO {jobs_table} (id, name, task, args, trigger, options, next_run_time) \
         SELECT 'job-' || lpad(i::text, 6, '0'), name, task, args, trigger, options, next_run_time \
         FROM {jobs_table} t, generate_series(1, $1::bigint - 1) i WHERE t.id = 'job-000000'"
    ))
    .bind(jobs as i64)
    .execute(&db.admin)
    .await
    .unwrap();
    db.admin.close().await;
    // Settle: the setup's transactions are all counted by then (a backend that goes idle
    // reports its counts to the statistics up to 10 s later).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let xacts = || async {
        let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&admin)
            .await;
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&datname)
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    let (statements_0, xacts_0, started) = (proxy.statements(), xacts().await, Instant::now());
    tokio::time::sleep(span).await;
    let (statements_1, xacts_1, took) = (proxy.statements(), xacts().await, started.elapsed());
    shut_down(&[node]).await;
    store.pool().close().await;
    let statements = (statements_1 - statements_0) as f64 / took.as_secs_f64();
    let transactions = (xacts_1 - xacts_0) as f64 / took.as_secs_f64();
    rows.push(row(
        format!(
            "idle, 1 node, {jobs} jobs due in 1 h, {} s: statements/s (proxy count)",
            span.as_secs()
        ),
        statements,
        "<= 2/s",
        Some(statements <= 2.0),
    ));
    rows.push(row(
        format!(
            "idle: transactions/s (pg_stat_database xact deltas{})",
            if own_database {
                ", own database"
            } else {
                ", SHARED database"
            }
        ),
        transactions,
        "<= 2/s",
        Some(transactions <= 2.0),
    ));
    if own_database {
        let _ = sqlx::query(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
    } else {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&admin)
            .await;
    }
    admin.close().await;
}

/// A TCP proxy to the server counting the statements its clients send: simple-protocol
/// `Query` messages and extended-protocol `Execute` messages.
struct CountingProxy {
    port: u16,
    count: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(host: &str, port: u16) -> CountingProxy {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicU64::new(0));
        let (counter, upstream) = (Arc::clone(&count), (host.to_string(), port));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counter, upstream) = (Arc::clone(&counter), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Each message is written as it comes: no Nagle delay on top.
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (mut from_client, to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let mut to_client = to_client;
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    });
                    let _ = forward_counting(&mut from_client, &mut to_server, &counter).await;
                    let _ = to_server.shutdown().await;
                });
            }
        });
        CountingProxy { port: local, count }
    }

    fn statements(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

async fn forward_counting(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Untyped startup messages first: an SSL or GSSAPI request (refused: TLS is off on the
    // proxied side) comes before the startup message proper.
    loop {
        let mut len = [0u8; 4];
        from.read_exact(&mut len).await?;
        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        from.read_exact(&mut body).await?;
        to.write_all(&len).await?;
        to.write_all(&body).await?;
        let code = body
            .get(..4)
            .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        if code != 80_877_103 && code != 80_877_104 {
            break;
        }
    }
    loop {
        let mut head = [0u8; 5];
        from.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        from.read_exact(&mut body).await?;
        if head[0] == b'Q' || head[0] == b'E' {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        to.write_all(&head).await?;
        to.write_all(&body).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// chaos

/// A node process: joins the cluster in `schema` as `name`, runs `record` (which inserts its
/// fire time, and counts a second insert of one as a duplicate), until its stdin closes.
fn node_process(name: &str, schema: &str) {
    let url = std::env::var("APSCHED_TEST_POSTGRES_URL").expect("APSCHED_TEST_POSTGRES_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("the node's task pool connects");
        let fires = format!("\"{schema}\".fires");
        let dups = format!("\"{schema}\".dups");
        let tasks = TaskRegistry::new().register_with_context(
            "record",
            move |run: JobContext, (): ()| {
                let (pool, fires, dups) = (pool.clone(), fires.clone(), dups.clone());
                async move {
                    let node = run.node_id().unwrap_or("?").to_string();
                    let fence = run.fence().map_or(-1, |f| f as i64);
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO {fires} (job_id, fire_time, node, fence) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (job_id, fire_time) DO NOTHING"
                    ))
                    .bind(run.job_id().as_str())
                    .bind(run.scheduled_run_time())
                    .bind(&node)
                    .bind(fence)
                    .execute(&pool)
                    .await?;
                    if inserted.rows_affected() == 0 {
                        sqlx::query(&format!(
                            "INSERT INTO {dups} (job_id, fire_time, node, fence) VALUES ($1, $2, $3, $4)"
                        ))
                        .bind(run.job_id().as_str())
                        .bind(run.scheduled_run_time())
                        .bind(&node)
                        .bind(fence)
                        .execute(&pool)
                        .await?;
                    }
                    Ok::<_, sqlx::Error>(())
                }
            },
        );
        let store = PostgresStore::options(&url)
            .schema(schema)
            .connect()
            .await
            .expect("the store connects");
        let scheduler = node(store, name, &tasks, |c| c).await;
        println!("ready");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // Until the parent closes stdin.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), scheduler.shutdown()).await;
    });
}

struct NodeChild {
    child: tokio::process::Child,
}

async fn spawn_node(name: &str, schema: &str) -> NodeChild {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--node", name, "--schema", schema])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a node process");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref line))) if line == "ready"),
        "node {name} did not start: {ready:?}"
    );
    NodeChild { child }
}

async fn chaos(url: &str, minutes: f64, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let jobs = 1_000;
    let every = Duration::from_secs(20);
    let span = Duration::from_secs_f64(minutes * 60.0);
    let db = Db::fresh(url).await;
    for table in ["fires", "dups"] {
        let unique = if table == "fires" {
            ", UNIQUE (job_id, fire_time)"
        } else {
            ""
        };
        sqlx::query(&format!(
            "CREATE TABLE {} (job_id text NOT NULL, fire_time timestamptz NOT NULL, \
             node text NOT NULL, fence bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(){unique})",
            db.table(table)
        ))
        .execute(&db.admin)
        .await
        .unwrap();
    }
    let names = ["chaos-0", "chaos-1", "chaos-2"];
    let mut children = Vec::new();
    for name in names {
        children.push(spawn_node(name, &db.schema).await);
    }
    let tasks = TaskRegistry::new().register("record", |(): ()| async {});
    let start = Utc::now() + TimeDelta::seconds(3);
    add_jobs(
        &db,
        "record",
        Interval::seconds(1).start(start),
        jobs,
        &tasks,
    )
    .await;
    sleep_until(start).await;
    let began = Instant::now();
    let mut kills = 0u32;
    // Each kill lands at another point of its second (fire times are whole seconds from
    // `start`): mostly while that second's runs are being claimed and run.
    let kill_at = |k: u32| began + every * (k + 1) + Duration::from_millis(u64::from(k % 8) * 40);
    while kill_at(kills) < began + span {
        tokio::time::sleep_until(kill_at(kills).into()).await;
        let victim = kills as usize % names.len();
        children[victim].child.kill().await.expect("SIGKILL");
        kills += 1;
        eprintln!(
            "chaos: {:>4.0} s: killed {}, restarting it",
            began.elapsed().as_secs_f64(),
            names[victim]
        );
        children[victim] = spawn_node(names[victim], &db.schema).await;
    }
    tokio::time::sleep_until((began + span).into()).await;
    // Stop the jobs through the cluster, then let the last killed node's runs be reaped (its
    // restart took its id over, so they are reaped as its old runs or stay `running`).
    let remover = node(db.store().await, "remover", &tasks, |c| c).await;
    remover.pause().await.unwrap();
    remover.remove_all_jobs().await.unwrap();
    shut_down(&[remover]).await;
    let settle = Instant::now();
    while db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'running'")
        .await
        > 0
        && settle.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut child in children {
        drop(child.child.stdin.take()); // the node shuts down
        if tokio::time::timeout(Duration::from_secs(30), child.child.wait())
            .await
            .is_err()
        {
            let _ = child.child.kill().await;
        }
    }

    let dups = db.count("SELECT count(*) FROM {s}.dups").await;
    // Every job's fire times, each second from `start` until 2 s before the last fire time
    // that ran anywhere (the jobs were removed at one instant, which may catch the last second
    // or so being claimed): the missing ones, by what their run row says.
    let expected_sql = "WITH last AS (SELECT max(fire_time) - interval '2 seconds' AS hi FROM {s}.fires), \
           expected AS (SELECT 'job-' || lpad(i::text, 6, '0') AS job_id, t AS fire_time \
             FROM generate_series(0, $2::bigint - 1) i, last, generate_series($1::timestamptz, last.hi, interval '1 second') t)"
        .replace("{s}", &format!("\"{}\"", db.schema));
    let (expected, fired): (i64, i64) = sqlx::query_as(&format!(
        "{expected_sql} SELECT (SELECT count(*) FROM expected), \
           (SELECT count(*) FROM expected e JOIN {} f ON f.job_id = e.job_id AND f.fire_time = e.fire_time)",
        db.table("fires")
    ))
    .bind(start)
    .bind(jobs as i64)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    let missing: Vec<(String, i64)> = sqlx::query_as(&format!(
        "{expected_sql}, missing AS (SELECT e.job_id, e.fire_time FROM expected e \
             LEFT JOIN {fires} f ON f.job_id = e.job_id AND f.fire_time = e.fire_time \
             WHERE f.job_id IS NULL) \
         SELECT COALESCE(r.state, 'no run row'), count(*) FROM missing m \
           LEFT JOIN {runs} r ON r.job_id = m.job_id AND r.fire_time = m.fire_time \
         GROUP BY 1 ORDER BY 1",
        fires = db.table("fires"),
        runs = db.table("runs"),
    ))
    .bind(start)
    .bind(jobs as i64)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    let states: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT state, count(*) FROM {} GROUP BY 1 ORDER BY 1",
        db.table("runs")
    ))
    .fetch_all(&db.admin)
    .await
    .unwrap();
    let missing_total: i64 = missing.iter().map(|(_, n)| n).sum();
    let abandoned_missing: i64 = missing
        .iter()
        .filter(|(state, _)| state == "abandoned")
        .map(|(_, n)| n)
        .sum();
    let lost = missing_total - abandoned_missing;
    let abandoned = states
        .iter()
        .find(|(s, _)| s == "abandoned")
        .map_or(0, |(_, n)| *n);
    let late: (f64, f64) = sqlx::query_as(&format!(
        "SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0), \
           COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0) \
         FROM (SELECT EXTRACT(EPOCH FROM at - fire_time) * 1000 AS ms FROM {}) l",
        db.table("fires")
    ))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    notes.push(format!(
        "chaos: a run's insert came {:.0} ms (p50), {:.0} ms (p99) after its fire time",
        late.0, late.1
    ));
    let label = format!(
        "chaos, 3 node processes, {jobs} jobs every 1 s, {minutes} min, a SIGKILL every 20 s"
    );
    rows.push(row(
        format!("{label}: duplicate fire times"),
        dups as f64,
        "0",
        Some(dups == 0),
    ));
    rows.push(row(
        "chaos: fire times lost beyond those reported abandoned",
        lost as f64,
        "0",
        Some(lost == 0),
    ));
    rows.push(row(
        "chaos: fire times run",
        fired as f64,
        &format!("of {expected} due"),
        None,
    ));
    rows.push(row(
        "chaos: run rows abandoned",
        abandoned as f64,
        "reported",
        None,
    ));
    rows.push(row("chaos: kills (and restarts)", kills as f64, "", None));
    let mut line = String::from("chaos: run rows by state:");
    for (state, n) in &states {
        let _ = write!(line, " {state} {n};");
    }
    notes.push(line);
    let mut line = String::from("chaos: missing fire times by their run row:");
    for (state, n) in &missing {
        let _ = write!(line, " {state} {n};");
    }
    if missing.is_empty() {
        line.push_str(" none");
    }
    notes.push(line);
    db.drop().await;
}
