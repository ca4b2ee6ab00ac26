//! Cluster mode on a real PostgreSQL (`APSCHED_TEST_POSTGRES_URL`; without it each test says
//! `skipped` and passes): several schedulers in this process, nodes of one cluster, each test
//! in a schema of its own. Tasks write every run into a table with a unique constraint on
//! (job, fire time), so a fire time run twice fails its insert, and the test sees it.
//!
//! These tests run in real time (the database's clock decides); every wait is bounded.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use apsched::cluster::Cluster;
use apsched::store::PostgresStore;
use apsched::trigger::{Date, Interval};
use apsched::{Error, Event, JobContext, Scheduler, TaskRegistry};
use chrono::{DateTime, TimeDelta, Utc};
use common::pg::{scratch, Scratch};
use sqlx::PgPool;

/// A schema of this test's own, with the `fires` table the tasks write to.
struct Db(Scratch);

impl std::ops::Deref for Db {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

async fn db() -> Option<Db> {
    let db = scratch("apsched_cluster").await?;
    // The store creates the schema; the fires table goes beside its tables.
    drop(
        PostgresStore::options(&db.url)
            .schema(&db.schema)
            .connect()
            .await
            .unwrap(),
    );
    sqlx::query(&db.sql(
        "CREATE TABLE {s}.fires (job_id text NOT NULL, fire_time timestamptz NOT NULL, \
         node text NOT NULL, fence bigint NOT NULL, started timestamptz NOT NULL DEFAULT clock_timestamp(), \
         finished timestamptz, UNIQUE (job_id, fire_time))",
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    Some(Db(db))
}

impl Db {
    async fn store(&self) -> PostgresStore {
        PostgresStore::options(&self.url)
            .schema(&self.schema)
            .connect()
            .await
            .unwrap()
    }

    /// Tasks: `record` writes its run, `slow` writes its run and takes `args` milliseconds.
    fn tasks(&self) -> TaskRegistry {
        let fires = format!("\"{}\".fires", self.schema);
        let pool = self.pool.clone();
        let record = {
            let (fires, pool) = (fires.clone(), pool.clone());
            move |run: JobContext, (): ()| {
                let (fires, pool) = (fires.clone(), pool.clone());
                async move { insert(&pool, &fires, &run).await }
            }
        };
        let slow = move |run: JobContext, millis: u64| {
            let (fires, pool) = (fires.clone(), pool.clone());
            async move {
                insert(&pool, &fires, &run).await?;
                tokio::time::sleep(Duration::from_millis(millis)).await;
                sqlx::query(&format!(
                    "UPDATE {fires} SET finished = clock_timestamp() WHERE job_id = $1 AND fire_time = $2"
                ))
                .bind(run.job_id().as_str())
                .bind(run.scheduled_run_time())
                .execute(&pool)
                .await
                .map(drop)
            }
        };
        TaskRegistry::new()
            .register_with_context("record", record)
            .register_with_context("slow", slow)
    }

    async fn node(&self, id: &str, cluster: impl FnOnce(Cluster) -> Cluster) -> Scheduler {
        let scheduler = Scheduler::builder()
            .cluster(
                "shared",
                cluster(Cluster::new(self.store().await).node_id(id)),
            )
            .default_store("shared")
            .tasks(self.tasks())
            .build();
        scheduler.start().await.unwrap();
        scheduler
    }
}

/// Every event received so far, without waiting.
fn drain(events: &mut apsched::EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(event)) = futures::FutureExt::now_or_never(events.recv()) {
        out.push(event);
    }
    out
}

async fn insert(pool: &PgPool, fires: &str, run: &JobContext) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {fires} (job_id, fire_time, node, fence) VALUES ($1, $2, $3, $4)"
    ))
    .bind(run.job_id().as_str())
    .bind(run.scheduled_run_time())
    .bind(run.node_id().unwrap_or("not a cluster run"))
    .bind(run.fence().map_or(-1, |f| f as i64))
    .execute(pool)
    .await
    .map(drop)
}

async fn shut_down(nodes: &[Scheduler]) {
    for node in nodes {
        tokio::time::timeout(Duration::from_secs(20), node.shutdown())
            .await
            .expect("a node shuts down within 20 s")
            .unwrap();
    }
}

fn record(tasks: &TaskRegistry) -> apsched::Task {
    tasks.task("record", serde_json::Value::Null).unwrap()
}

/// The acceptance test of cluster mode: three nodes, 200 jobs every second, over 3,000 fire
/// times; each ran exactly once, none was lost, and all three nodes did some of the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_run_every_fire_time_exactly_once_and_share_the_work() {
    let Some(db) = db().await else { return };
    let nodes = [
        db.node("n1", |c| c).await,
        db.node("n2", |c| c).await,
        db.node("n3", |c| c).await,
    ];
    let tasks = db.tasks();
    let start = Utc::now() + TimeDelta::seconds(1);
    let jobs = (0..200).map(|i| {
        nodes[i % 3]
            .add_job(record(&tasks), Interval::seconds(1).start(start))
            .id(format!("job-{i}"))
    });
    nodes[0].add_jobs(jobs).await.unwrap();
    assert_eq!(nodes[1].get_jobs().await.unwrap().len(), 200);
    let names: Vec<String> = nodes[2]
        .get_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"]);

    tokio::time::sleep(Duration::from_secs(17)).await;
    for node in &nodes {
        node.remove_all_jobs().await.unwrap();
    }
    shut_down(&nodes).await;

    let fired = db.count("SELECT count(*) FROM {s}.fires").await;
    assert!(fired >= 3000, "only {fired} fire times ran");
    // One run row per fire time, each succeeded: an insert that hit the unique constraint
    // would have failed its run.
    let runs = db.count("SELECT count(*) FROM {s}.runs").await;
    let succeeded = db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'succeeded'")
        .await;
    assert_eq!((runs, succeeded), (fired, fired));
    // No fire time lost: per job, one row for every second from its first to its last.
    let gaps = db
        .count(
            "SELECT count(*) FROM (SELECT job_id FROM {s}.fires GROUP BY job_id \
             HAVING count(*) <> EXTRACT(EPOCH FROM max(fire_time) - min(fire_time))::bigint + 1) g",
        )
        .await;
    assert_eq!(gaps, 0, "some job skipped a fire time");
    for node in ["n1", "n2", "n3"] {
        let share = db
            .count(&format!(
                "SELECT count(*) FROM {{s}}.fires WHERE node = '{node}'"
            ))
            .await;
        assert!(share > fired / 20, "{node} ran {share} of {fired}");
    }
    // Every node left: no live node rows.
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    db.0.drop_schema().await;
}

/// `max_instances = 1` holds across nodes: a job slower than its interval never runs twice at
/// once anywhere, and the fire times it overlaps are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_instances_holds_across_nodes() {
    let Some(db) = db().await else { return };
    let nodes = [db.node("a", |c| c).await, db.node("b", |c| c).await];
    let slow = db.tasks().task("slow", serde_json::json!(700)).unwrap();
    nodes[0]
        .add_job(slow, Interval::every(Duration::from_millis(250)))
        .id("slow")
        .max_instances(1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    nodes[1].remove_job("slow").await.unwrap();
    shut_down(&nodes).await;

    let overlapping = db
        .count(
            "SELECT count(*) FROM {s}.fires a JOIN {s}.fires b ON a.fire_time < b.fire_time \
             AND b.started < a.finished",
        )
        .await;
    assert_eq!(overlapping, 0, "two runs of one job went at once");
    let ran = db.count("SELECT count(*) FROM {s}.fires").await;
    assert!((3..=7).contains(&ran), "{ran} runs of a 700 ms job in 4 s");
    let skipped = db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'skipped'")
        .await;
    assert!(skipped >= 5, "only {skipped} fire times were skipped");
    db.0.drop_schema().await;
}

/// A job added on one node, due in 100 ms, runs within 200 ms of its due time on another
/// node that was asleep for its poll interval: the notification woke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_wakes_a_sleeping_node_for_a_job_due_soon() {
    let Some(db) = db().await else { return };
    let poll = Duration::from_secs(30);
    let sleeper = db.node("sleeper", |c| c.poll_interval(poll)).await;
    // The adding node claims nothing: it is paused.
    let adder = db.node("adder", |c| c.poll_interval(poll)).await;
    adder.pause().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // both asleep now
    let due = Utc::now() + TimeDelta::milliseconds(100);
    adder
        .add_job(record(&db.tasks()), Date::at(due))
        .id("soon")
        .await
        .unwrap();
    let late = wait_for_run(&db, "soon", Duration::from_secs(5)).await;
    assert!(
        late < TimeDelta::milliseconds(200),
        "started {late} after its due time"
    );
    // A one-shot job is gone once its run is claimed, as in a single process.
    assert!(matches!(
        sleeper.get_job("soon").await,
        Err(Error::JobNotFound(_))
    ));
    assert_eq!(db.count("SELECT count(*) FROM {s}.jobs").await, 0);
    shut_down(&[sleeper, adder]).await;
    db.0.drop_schema().await;
}

/// With notifications off, a node finds a job added elsewhere within its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_notifications_polling_finds_the_job_within_the_poll_interval() {
    let Some(db) = db().await else { return };
    let poll = Duration::from_millis(500);
    let poller = db
        .node("poller", |c| c.poll_interval(poll).notify(false))
        .await;
    let adder = db.node("adder", |c| c.notify(false)).await;
    adder.pause().await.unwrap();
    let due = Utc::now() + TimeDelta::milliseconds(100);
    adder
        .add_job(record(&db.tasks()), Date::at(due))
        .id("polled")
        .await
        .unwrap();
    let late = wait_for_run(&db, "polled", Duration::from_secs(5)).await;
    assert!(
        late < TimeDelta::milliseconds(600),
        "started {late} after its due time, poll interval {poll:?}"
    );
    shut_down(&[poller, adder]).await;
    db.0.drop_schema().await;
}

/// How late the run of `job` started, once it has.
async fn wait_for_run(db: &Db, job: &str, within: Duration) -> TimeDelta {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let row: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(&format!(
            "SELECT fire_time, started FROM \"{}\".fires WHERE job_id = $1",
            db.schema
        ))
        .bind(job)
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        if let Some((fire_time, started)) = row {
            return started - fire_time;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job} did not run within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A run longer than the lease, on a healthy node, keeps going: the node's renewals keep its
/// claim, and no other node reaps it or starts a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_longer_than_the_lease_on_a_healthy_node_is_not_reaped() {
    let Some(db) = db().await else { return };
    let lease = Duration::from_millis(600);
    let nodes = [
        db.node("a", |c| c.lease(lease)).await,
        db.node("b", |c| c.lease(lease)).await,
    ];
    let mut events = [nodes[0].subscribe(), nodes[1].subscribe()];
    let slow = db.tasks().task("slow", serde_json::json!(2500)).unwrap();
    nodes[0]
        .add_job(slow, Date::at(Utc::now()))
        .id("long")
        .retry_abandoned(true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    shut_down(&nodes).await;
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.fires WHERE finished IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'succeeded'")
            .await,
        1
    );
    for stream in &mut events {
        for event in drain(stream) {
            assert!(
                !matches!(
                    event,
                    Event::RunAbandoned { .. }
                        | Event::RunFenced { .. }
                        | Event::NodeLeaseLost { .. }
                ),
                "{event:?}"
            );
        }
    }
    db.0.drop_schema().await;
}

/// The runs of a node whose lease expired are reaped by a live one: abandoned by default (at
/// most once), pending again, and run, for a job with `retry_abandoned` (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_runs_are_reaped_abandoned_or_retried() {
    let Some(db) = db().await else { return };
    let lease = Duration::from_millis(600);
    let live = db.node("live", |c| c.lease(lease)).await;
    let mut events = live.subscribe();
    let tasks = db.tasks();
    // Two jobs due in an hour, each with a run a dead node had claimed.
    let later = Utc::now() + TimeDelta::hours(1);
    live.add_job(record(&tasks), Interval::hours(1).start(later))
        .id("at-most-once")
        .await
        .unwrap();
    live.add_job(record(&tasks), Interval::hours(1).start(later))
        .id("at-least-once")
        .retry_abandoned(true)
        .await
        .unwrap();
    let s = &db.schema;
    for statement in [
        format!("INSERT INTO \"{s}\".nodes (id, lease_until) VALUES ('dead', now() - interval '1 second')"),
        format!(
            "INSERT INTO \"{s}\".runs (job_id, fire_time, due_at, state, owner, fence, started_at) \
             VALUES ('at-most-once', now() - interval '5 seconds', now(), 'running', 'dead', 1, now()), \
             ('at-least-once', now() - interval '5 seconds', now(), 'running', 'dead', 1, now())"
        ),
    ] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while db.count("SELECT count(*) FROM {s}.fires").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retried run did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shut_down(&[live]).await;
    let state = |job: &'static str| {
        let pool = db.pool.clone();
        let sql = format!("SELECT state FROM \"{s}\".runs WHERE job_id = $1");
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .bind(job)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(state("at-most-once").await, "abandoned");
    assert_eq!(state("at-least-once").await, "succeeded");
    // The retry is a new claim: its fence is above the dead node's.
    assert_eq!(
        db.count("SELECT fence FROM {s}.fires WHERE job_id = 'at-least-once'")
            .await,
        2
    );
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    let mut reaped = Vec::new();
    for event in drain(&mut events) {
        if let Event::RunAbandoned {
            job_id,
            node,
            retried,
            ..
        } = event
        {
            reaped.push((job_id.to_string(), node, retried));
        }
    }
    reaped.sort();
    assert_eq!(
        reaped,
        [
            ("at-least-once".to_string(), "dead".to_string(), true),
            ("at-most-once".to_string(), "dead".to_string(), false)
        ]
    );
    db.0.drop_schema().await;
}

/// A node restarted under its old id (killed, so it never left) reaps the runs its previous
/// life had going when it joins: its renewed lease would keep the other nodes from reaping
/// them, and the job's `max_instances` would skip every later fire time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_under_its_id_reaps_its_previous_lifes_runs() {
    let Some(db) = db().await else { return };
    let s = &db.schema;
    let due = Utc::now() + TimeDelta::milliseconds(1500);
    // The previous life: its node row (lease still live) and a run it had claimed.
    let previous = db.node("n1", |c| c).await;
    previous
        .add_job(record(&db.tasks()), Interval::seconds(1).start(due))
        .id("every-second")
        .await
        .unwrap();
    previous.pause().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".runs (job_id, fire_time, due_at, state, owner, fence, started_at) \
         VALUES ('every-second', now() - interval '5 seconds', now(), 'running', 'n1', 1, now())"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    std::mem::forget(previous); // killed: it never leaves, its row stays
    let restarted = db.node("n1", |c| c).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    restarted.remove_all_jobs().await.unwrap();
    shut_down(&[restarted]).await;
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'abandoned'")
            .await,
        1
    );
    // Not held back by the old run: the job's fire times ran.
    assert!(db.count("SELECT count(*) FROM {s}.fires").await >= 1);
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.runs WHERE state = 'skipped'")
            .await,
        0
    );
    db.0.drop_schema().await;
}

/// Job calls on any node change the job for the whole cluster; pausing a scheduler pauses
/// that node only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_calls_reach_the_whole_cluster_and_pause_is_per_node() {
    let Some(db) = db().await else { return };
    let (a, b) = (db.node("a", |c| c).await, db.node("b", |c| c).await);
    let tasks = db.tasks();
    let job = a
        .add_job(record(&tasks), Interval::hours(1))
        .id("shared-job")
        .name("the shared job")
        .await
        .unwrap();
    assert_eq!(job.store, "shared".into());
    let seen = b.get_job("shared-job").await.unwrap();
    assert_eq!(
        (seen.name.as_str(), seen.next_run_time),
        ("the shared job", job.next_run_time)
    );
    assert!(matches!(
        b.add_job(record(&tasks), Interval::hours(1)).id("shared-job").await,
        Err(Error::ConflictingId(id)) if id == "shared-job"
    ));
    assert!(b
        .pause_job("shared-job")
        .await
        .unwrap()
        .next_run_time
        .is_none());
    assert!(a
        .get_job("shared-job")
        .await
        .unwrap()
        .next_run_time
        .is_none());
    assert!(a
        .resume_job("shared-job")
        .await
        .unwrap()
        .unwrap()
        .next_run_time
        .is_some());
    let modified = b.modify_job("shared-job").max_instances(3).await.unwrap();
    assert_eq!(modified.options.max_instances, 3);
    // A closure cannot live in a database.
    assert!(matches!(
        a.add_job(|| async {}, Interval::hours(1)).await,
        Err(Error::NotDurable { store }) if store == "shared"
    ));

    // Node a paused: b runs what is run now, a claims nothing.
    a.pause().await.unwrap();
    a.run_job_now("shared-job").await.unwrap();
    wait_for_run(&db, "shared-job", Duration::from_secs(5)).await;
    let ran_on: String = sqlx::query_scalar(&format!("SELECT node FROM \"{}\".fires", db.schema))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(ran_on, "b");
    let runs = a.get_job_runs("shared-job", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].node.as_deref(), Some("b"));

    // A change dropped wherever a timeout finds it (inside its transaction, say) leaves no
    // lock behind: the job can still be changed, at once, from another node.
    for ms in [0, 0, 0, 1, 1, 2, 5] {
        let _ = tokio::time::timeout(Duration::from_millis(ms), b.pause_job("shared-job")).await;
        let _ = tokio::time::timeout(Duration::from_millis(ms), b.resume_job("shared-job")).await;
    }
    tokio::time::timeout(Duration::from_secs(5), a.resume_job("shared-job"))
        .await
        .expect("no dropped change holds the job's row")
        .unwrap();
    a.remove_job("shared-job").await.unwrap();
    assert!(matches!(
        b.get_job("shared-job").await,
        Err(Error::JobNotFound(_))
    ));
    assert!(b.get_jobs().await.unwrap().is_empty());

    // Export and import move a cluster's jobs like any store's.
    a.add_job(record(&tasks), Interval::hours(2))
        .id("moved")
        .await
        .unwrap();
    let mut export = Vec::new();
    assert_eq!(a.export_jobs("shared", &mut export).await.unwrap(), 1);
    b.remove_all_jobs().await.unwrap();
    let report = b
        .import_jobs("shared", &export[..], apsched::OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(a.get_job("moved").await.unwrap().store, "shared".into());
    let again = a
        .import_jobs("shared", &export[..], apsched::OnConflict::Skip)
        .await
        .unwrap();
    assert_eq!(
        (again.imported, again.skipped),
        (0, vec!["moved".to_string()])
    );
    shut_down(&[a, b]).await;
    db.0.drop_schema().await;
}

/// Bad settings are typed errors at start, naming the setting.
#[tokio::test]
async fn bad_cluster_settings_are_refused_at_start() {
    let Some(db) = db().await else { return };
    for (cluster, option) in [
        (
            Cluster::new(db.store().await).lease(Duration::from_millis(10)),
            "lease",
        ),
        (
            Cluster::new(db.store().await).poll_interval(Duration::ZERO),
            "poll_interval",
        ),
        (Cluster::new(db.store().await).node_id(""), "node_id"),
        (Cluster::new(db.store().await).max_running(0), "max_running"),
    ] {
        let scheduler = Scheduler::builder().cluster("c", cluster).build();
        match scheduler.start().await {
            Err(Error::InvalidOption { option: found, .. }) => assert_eq!(found, option),
            other => panic!("{option}: {other:?}"),
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    db.0.drop_schema().await;
}

/// A graceful shutdown waits for the node's runs going and writes their outcomes before the
/// node leaves: none is left abandoned. (The node once left at its first wakeup after the
/// shutdown began: a poll, here, that comes during the run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_shutdown_writes_the_outcomes_of_the_runs_going() {
    let Some(db) = db().await else { return };
    let node = db
        .node("n", |c| c.poll_interval(Duration::from_millis(100)))
        .await;
    let slow = db.tasks().task("slow", serde_json::json!(700)).unwrap();
    node.add_job(slow, Date::at(Utc::now()))
        .id("going")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'running'")
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shut_down(&[node]).await;
    let state: String = sqlx::query_scalar(&format!(
        "SELECT state FROM \"{}\".runs WHERE job_id = 'going'",
        db.schema
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(state, "succeeded");
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.fires WHERE finished IS NOT NULL")
            .await,
        1
    );
    db.0.drop_schema().await;
}

/// `shutdown_timeout` bounds a node's shutdown as any scheduler's: a cluster run still going
/// at the deadline is cancelled (its token is a child of the scheduler's), and its end is
/// written before the node leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_timeout_cancels_a_cluster_run_and_writes_its_end() {
    let Some(db) = db().await else { return };
    let node = db.node("only", |c| c).await;
    let slow = db.tasks().task("slow", serde_json::json!(60_000)).unwrap();
    node.add_job(slow, Date::at(Utc::now()))
        .id("hangs")
        .await
        .unwrap();
    wait_for_run(&db, "hangs", Duration::from_secs(5)).await;
    let abandoned = tokio::time::timeout(
        Duration::from_secs(5),
        node.shutdown_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("shutdown_timeout is a bound for a cluster node too")
    .unwrap();
    assert!(abandoned.is_empty(), "{abandoned:?}");
    let (state, error): (String, Option<String>) = sqlx::query_as(&format!(
        "SELECT state, error FROM \"{}\".runs WHERE job_id = 'hangs'",
        db.schema
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(state, "failed");
    assert!(error.unwrap_or_default().contains("cancelled"));
    assert_eq!(db.count("SELECT count(*) FROM {s}.nodes").await, 0);
    db.0.drop_schema().await;
}

/// A cluster run past its job's timeout is stopped and written `timed_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_run_past_its_timeout_is_stopped_and_written_timed_out() {
    let Some(db) = db().await else { return };
    let node = db
        .node("n", |c| c.poll_interval(Duration::from_millis(100)))
        .await;
    let mut events = node.subscribe();
    let slow = db.tasks().task("slow", serde_json::json!(60_000)).unwrap();
    node.add_job(slow, Date::at(Utc::now()))
        .id("hangs")
        .timeout(Duration::from_millis(200))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while db
        .count("SELECT count(*) FROM {s}.runs WHERE state = 'timed_out'")
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run was not stopped by its timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(drain(&mut events)
        .iter()
        .any(|e| matches!(e, Event::JobTimedOut { .. })));
    assert_eq!(
        db.count("SELECT count(*) FROM {s}.fires WHERE finished IS NULL")
            .await,
        1,
        "it started and never finished its work"
    );
    shut_down(&[node]).await;
    db.0.drop_schema().await;
}
