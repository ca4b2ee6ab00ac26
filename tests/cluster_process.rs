//! Cluster mode across processes: the nodes are `examples/cluster.rs` processes on a real
//! PostgreSQL (`APSCHED_TEST_POSTGRES_URL`; without it each test says `skipped` and passes),
//! each test in a schema of its own. One node is killed (SIGKILL) or frozen past its lease
//! (SIGSTOP, then SIGCONT); the database then shows what became of every fire time.
//!
//! The example records each run under a unique (job, fire time), so a fire time run twice
//! fails its run. Every wait is bounded, and a node still running when a test ends (a failed
//! assertion, say) is killed.
#![cfg(feature = "postgres")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::pg::{scratch, Scratch};
use tokio::time::{sleep, Instant};

/// The example's executable, built once for every test here, with this test's features and
/// profile so cargo reuses the library it already built.
fn example() -> &'static PathBuf {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let mut features = vec!["postgres"];
        if cfg!(feature = "sqlite") {
            features.push("sqlite");
        }
        if cfg!(feature = "axum") {
            features.push("axum");
        }
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", "cluster"])
            .args(["--message-format", "json-render-diagnostics"])
            .args(["--features", &features.join(",")]);
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let built = cargo.stderr(Stdio::inherit()).output().expect("cargo runs");
        assert!(built.status.success(), "the cluster example did not build");
        String::from_utf8_lossy(&built.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|m| {
                m["reason"] == "compiler-artifact"
                    && m["target"]["name"] == "cluster"
                    && m["target"]["kind"][0] == "example"
            })
            .and_then(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the example's executable")
    })
}

/// A schema of this test's own.
struct Db(Scratch);

impl std::ops::Deref for Db {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

async fn db() -> Option<Db> {
    scratch("apsched_cluster_process").await.map(Db)
}

impl Db {
    /// The database's clock, which the nodes' leases and run rows go by.
    async fn now(&self) -> DateTime<Utc> {
        sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The runs `node` has going, as (job, fire time).
    async fn running(&self, node: &str) -> Vec<(String, DateTime<Utc>)> {
        sqlx::query_as(&self.sql(
            "SELECT job_id, fire_time FROM {s}.runs WHERE owner = $1 AND state = 'running' \
             ORDER BY job_id, fire_time",
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn state(&self, job: &str, fire_time: DateTime<Utc>) -> String {
        sqlx::query_scalar(
            &self.sql("SELECT state FROM {s}.runs WHERE job_id = $1 AND fire_time = $2"),
        )
        .bind(job)
        .bind(fire_time)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Waits until `sql` counts at least one row.
    async fn wait_for(&self, sql: &str, times: &[DateTime<Utc>], within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.count_at(sql, times).await == 0 {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node process, killed if still running when dropped.
struct Node {
    name: String,
    child: Child,
    /// Its stdout, line by line, as read so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts a node: `args` are the example's options, split on whitespace.
    fn start(db: &Db, name: &str, args: &str) -> Node {
        let mut child = Command::new(example())
            .args(["--url", &db.url, "--schema", &db.schema, "--node", name])
            // A cap, so a node outlives no test run even if nothing stops it.
            .args(["--seconds", "60"])
            .args(args.split_whitespace())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Node {
            name: name.to_string(),
            child,
            lines,
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {}", self.name);
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn printed(&self, line: &str) -> bool {
        self.output().iter().any(|l| l == line)
    }

    async fn wait_for_line(&self, part: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().iter().any(|l| l.contains(part)) {
            assert!(
                Instant::now() < deadline,
                "{} printed no {part:?} within {within:?}: {:?}",
                self.name,
                self.output()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to end.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.name
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the graceful shutdown and the summary line.
    async fn stop(&mut self) {
        self.signal("TERM");
        let status = self.exit(Duration::from_secs(20)).await;
        assert!(status.success(), "{} exited with {status}", self.name);
        self.wait_for_line(" runs", Duration::from_secs(2)).await;
    }

    /// The count from its summary line, `node NAME: ran N runs`.
    fn ran(&self) -> i64 {
        let prefix = format!("node {}: ran ", self.name);
        self.output()
            .iter()
            .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(" runs")?.parse().ok())
            .expect("a summary line")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill(); // SIGKILL: ends a stopped process too
            let _ = self.child.wait();
        }
    }
}

async fn start_nodes(db: &Db, names: &[&str], args: &str) -> Vec<Node> {
    let nodes: Vec<Node> = names.iter().map(|n| Node::start(db, n, args)).collect();
    for node in &nodes {
        // The first start may create the schema; allow for a slow machine.
        node.wait_for_line(": started", Duration::from_secs(30))
            .await;
    }
    nodes
}

fn ms(millis: i64) -> TimeDelta {
    TimeDelta::milliseconds(millis)
}

/// A node killed with runs in flight: those runs end abandoned (at most once, no duplicate),
/// no fire time of any job is lost, and the survivors run everything from a lease after the
/// kill on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_runs_are_abandoned_and_the_others_take_its_work_on() {
    let Some(db) = db().await else { return };
    let (lease, every) = (1500, 500);
    let args = "--jobs 20 --every-ms 500 --work-ms 300 --lease-ms 1500";
    let mut nodes = start_nodes(&db, &["k1", "k2", "k3"], args).await;
    sleep(Duration::from_secs(4)).await;

    // Kill k2 while it has runs going (300 ms runs every 500 ms: it nearly always has).
    db.wait_for(
        "SELECT count(*) FROM {s}.runs WHERE owner = 'k2' AND state = 'running'",
        &[],
        Duration::from_secs(5),
        "k2 has a run going",
    )
    .await;
    nodes[1].child.kill().unwrap();
    nodes[1].child.wait().unwrap();
    let killed_at = db.now().await;
    // Dead, it writes no more: what it had going is what was in flight at the kill.
    let in_flight = db.running("k2").await;
    assert!(!in_flight.is_empty(), "k2 had no run in flight at the kill");

    sleep(Duration::from_secs(5)).await;
    let stopped_at = db.now().await;
    nodes[0].stop().await;
    nodes[2].stop().await;

    // No fire time ran twice: a second insert would have failed its run.
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'failed'")
            .await,
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM (SELECT 1 FROM {s}.cluster_example_runs \
             GROUP BY job_id, fire_time HAVING count(*) > 1) d"
        )
        .await,
        0
    );
    // The runs in flight at the kill were reaped, abandoned; nothing is left running.
    for (job, fire_time) in &in_flight {
        assert_eq!(
            db.state(job, *fire_time).await,
            "abandoned",
            "{job} {fire_time}"
        );
        let reported = format!("RunAbandoned {job} at {fire_time} of node k2 (retried: false)");
        let reporters = [&nodes[0], &nodes[2]]
            .iter()
            .filter(|n| n.printed(&format!("node {}: {reported}", n.name)))
            .count();
        assert_eq!(reporters, 1, "{reported}: reported by {reporters} nodes");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'abandoned'")
            .await,
        in_flight.len() as i64,
        "abandoned runs other than k2's in-flight ones"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'running'")
            .await,
        0
    );

    // No fire time lost: per job, a run row (in any state) for every step of its interval
    // from its first fire time to its last.
    let per_job: Vec<(String, i64, i64, i64)> = sqlx::query_as(&db.sql(
        "SELECT job_id, count(DISTINCT fire_time), \
           round(EXTRACT(EPOCH FROM max(fire_time) - min(fire_time)) * 1000 / $1)::bigint + 1, \
           count(*) FILTER (WHERE state = 'abandoned') \
         FROM {s}.runs GROUP BY job_id ORDER BY job_id",
    ))
    .bind(every as f64)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(per_job.len(), 20);
    for (job, rows, steps, _) in &per_job {
        assert_eq!(
            rows, steps,
            "{job}: {rows} fire times with a row of {steps}"
        );
    }
    let rows: i64 = per_job.iter().map(|j| j.1).sum();
    eprintln!(
        "{rows} fire times, none lost; {} abandoned, all in flight on k2 at the kill: {in_flight:?}",
        in_flight.len()
    );

    // From a lease (and a second to spare) after the kill, the survivors run the fire times,
    // k2's former jobs' included: up to a second before the stop, each fire time ran on k1 or
    // k3, or was skipped (`max_instances = 1`: its previous run, started late on a loaded
    // machine, was still going). None was abandoned, left pending or lost.
    let taken_over = killed_at + ms(lease + 1000);
    let after: Vec<(String, Option<String>)> = sqlx::query_as(
        &db.sql("SELECT state, owner FROM {s}.runs WHERE fire_time > $1 AND fire_time < $2"),
    )
    .bind(taken_over)
    .bind(stopped_at - ms(1000))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let succeeded = after
        .iter()
        .filter(|(state, _)| state == "succeeded")
        .count();
    assert!(
        succeeded >= 20,
        "{succeeded} of {} fire times after the takeover succeeded",
        after.len()
    );
    for (state, owner) in &after {
        match state.as_str() {
            "succeeded" => assert!(matches!(owner.as_deref(), Some("k1" | "k3")), "{owner:?}"),
            "skipped" => {}
            _ => panic!("a fire time after the takeover is {state}"),
        }
    }
    eprintln!(
        "after the takeover: {succeeded} fire times run by k1 and k3, {} skipped",
        after.len() - succeeded
    );
    let k2_jobs_run_later = db
        .count_at(
            "SELECT count(DISTINCT job_id) FROM {s}.runs WHERE state = 'succeeded' \
             AND fire_time > $1 AND job_id IN (SELECT job_id FROM {s}.runs WHERE owner = 'k2')",
            &[taken_over],
        )
        .await;
    let k2_jobs = db
        .count("SELECT count(DISTINCT job_id) FROM {s}.runs WHERE owner = 'k2'")
        .await;
    assert_eq!(
        k2_jobs_run_later, k2_jobs,
        "jobs k2 ran, run again after the kill"
    );

    // Each survivor's count of its runs is its succeeded rows; every node's row is gone (the
    // survivors left, k2's was reaped).
    for node in [&nodes[0], &nodes[2]] {
        let succeeded = db
            .count(&format!(
                "SELECT count(*) FROM {{s}}.runs WHERE state = 'succeeded' AND owner = '{}'",
                node.name
            ))
            .await;
        assert_eq!(node.ran(), succeeded, "{}", node.name);
    }
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    drop(nodes);
    db.0.drop_schema().await;
}

/// A node frozen (SIGSTOP) past its lease with runs going: the other node reaps them; woken
/// (SIGCONT), the frozen node finds its lease lost, its runs' outcomes are fenced off (the
/// rows stay abandoned), and it rejoins and runs new fire times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_fenced_off_and_rejoins() {
    let Some(db) = db().await else { return };
    let lease = 1000;
    let args = "--jobs 10 --every-ms 2500 --work-ms 2000 --lease-ms 1000";
    let mut nodes = start_nodes(&db, &["s1", "s2"], args).await;

    db.wait_for(
        "SELECT count(*) FROM {s}.runs WHERE owner = 's2' AND state = 'running'",
        &[],
        Duration::from_secs(10),
        "s2 has a run going",
    )
    .await;
    let stopped_at = db.now().await;
    nodes[1].signal("STOP");
    // A statement sent just before the stop may still finish; nothing after it.
    sleep(Duration::from_millis(200)).await;
    let in_flight = db.running("s2").await;
    assert!(!in_flight.is_empty(), "s2 had no run in flight at the stop");
    // Frozen three leases long: s1 reaps s2's runs and forgets its row.
    sleep(Duration::from_millis(3 * lease as u64)).await;
    for (job, fire_time) in &in_flight {
        assert_eq!(
            db.state(job, *fire_time).await,
            "abandoned",
            "{job} {fire_time}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.nodes WHERE id = 's2'")
            .await,
        0,
        "s2's row outlived its lease"
    );

    nodes[1].signal("CONT");
    let woken_at = db.now().await;
    // It rejoins: a new row, started after the stop.
    db.wait_for(
        "SELECT count(*) FROM {s}.nodes WHERE id = 's2' AND started_at > $1",
        &[stopped_at],
        Duration::from_secs(5),
        "s2 rejoins",
    )
    .await;
    sleep(Duration::from_secs(3)).await;
    nodes[0].stop().await;
    nodes[1].stop().await;

    let s2 = &nodes[1];
    assert!(s2.printed("node s2: NodeLeaseLost"), "{:?}", s2.output());
    for (job, fire_time) in &in_flight {
        // Its end came after the reaping: fenced off, and the row stays abandoned.
        assert!(
            s2.printed(&format!("node s2: RunFenced {job} at {fire_time}")),
            "{job} {fire_time} not fenced: {:?}",
            s2.output()
        );
        assert_eq!(
            db.state(job, *fire_time).await,
            "abandoned",
            "{job} {fire_time}"
        );
        assert!(nodes[0].printed(&format!(
            "node s1: RunAbandoned {job} at {fire_time} of node s2 (retried: false)"
        )));
    }
    // Nothing ran twice, nothing is left running, and s2 ran new fire times once back.
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'failed'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'running'")
            .await,
        0
    );
    let s2_after = db
        .count_at(
            "SELECT count(*) FROM {s}.runs WHERE owner = 's2' AND state = 'succeeded' \
             AND started_at > $1",
            &[woken_at],
        )
        .await;
    assert!(s2_after >= 1, "s2 ran nothing after it was woken");
    eprintln!(
        "s2: {} runs in flight when frozen, fenced off; {s2_after} runs after it woke",
        in_flight.len()
    );
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    drop(nodes);
    db.0.drop_schema().await;
}

/// Runs start on time across processes, each node taking its turns. (A node that found
/// something due which another node held in a transaction under way once slept its whole poll
/// interval; when every node did, runs waited for the next wakeup, here another run's end
/// about 300 ms later, and with `max_instances = 1` the next fire times were skipped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_on_time_across_processes() {
    let Some(db) = db().await else { return };
    // A long lease: its renewals (every 2 s) wake no node in time for a run.
    let args = "--jobs 20 --every-ms 500 --work-ms 300 --lease-ms 6000";
    let mut nodes = start_nodes(&db, &["t1", "t2", "t3"], args).await;
    sleep(Duration::from_secs(6)).await;
    for node in &mut nodes {
        node.stop().await;
    }
    let started = db
        .count("SELECT count(*) FROM {s}.runs WHERE started_at IS NOT NULL")
        .await;
    assert!(started >= 150, "only {started} runs in 6 s");
    let late_ms = db
        .count(
            "SELECT (EXTRACT(EPOCH FROM max(started_at - fire_time)) * 1000)::bigint \
             FROM {s}.runs WHERE started_at IS NOT NULL",
        )
        .await;
    let skipped = db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'skipped'")
        .await;
    eprintln!("{started} runs, the latest {late_ms} ms after its fire time; {skipped} skipped");
    assert!(
        late_ms < 200,
        "a run started {late_ms} ms after its fire time"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state NOT IN ('succeeded', 'pending')")
            .await,
        skipped
    );
    drop(nodes);
    db.0.drop_schema().await;
}
