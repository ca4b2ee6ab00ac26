//! The job-store contract, run against every durable backend: SQLite in a file and in memory,
//! and PostgreSQL when `APSCHED_TEST_POSTGRES_URL` names a server (each test in a schema of
//! its own, dropped at the end, so the tests run in parallel). Without the variable the
//! PostgreSQL tests say `skipped: APSCHED_TEST_POSTGRES_URL is not set` on stderr and pass;
//! with it, a server that cannot be reached fails them.
//!
//! Then what differs by backend: schema migrations, SQLite's lock timeout, PostgreSQL's NUL.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use apsched::store::{JobStore, RunRecord, RunState, StoredJob, UnreadableRow, Write};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures::FutureExt;
use serde_json::json;

/// Every test's bound: far above what any takes, so a hang fails instead of waiting forever.
const LIMIT: Duration = Duration::from_secs(120);

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(seconds)
}

fn job(id: &str, next_run_time: Option<DateTime<Utc>>) -> StoredJob {
    StoredJob {
        id: id.to_string(),
        name: Some(format!("{id} job")),
        task: "send_report".to_string(),
        args: json!({"to": ["ops@example.com"], "retries": 3}),
        trigger: json!({"interval": {"seconds": 60}}),
        options: json!({"coalesce": true, "max_instances": 1}),
        next_run_time,
    }
}

fn put(job: &StoredJob) -> Write {
    Write::Put(job.clone())
}

fn next(id: &str, next_run_time: Option<DateTime<Utc>>) -> Write {
    Write::Next {
        id: id.to_string(),
        next_run_time,
    }
}

fn delete(id: &str) -> Write {
    Write::Delete { id: id.to_string() }
}

fn run(job_id: &str, fire_time: DateTime<Utc>, state: RunState) -> RunRecord {
    RunRecord::new(job_id, fire_time, state)
}

/// The store's jobs sorted by id, and its unreadable rows sorted by reason.
async fn load(store: &dyn JobStore) -> (Vec<StoredJob>, Vec<UnreadableRow>) {
    let (mut jobs, mut unreadable) = (Vec::new(), Vec::new());
    for row in store.load().await.expect("load") {
        match row {
            Ok(job) => jobs.push(job),
            Err(row) => unreadable.push(row),
        }
    }
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    unreadable.sort_by(|a, b| a.reason.cmp(&b.reason));
    (jobs, unreadable)
}

async fn jobs(store: &dyn JobStore) -> Vec<StoredJob> {
    let (jobs, unreadable) = load(store).await;
    assert_eq!(unreadable, vec![]);
    jobs
}

async fn write(store: &dyn JobStore, writes: &[Write]) {
    store.write(writes).await.expect("write");
}

/// A backend under test: its store, and raw SQL on its database for what the contract cannot
/// reach through the trait (a column it does not return, a row it would never write).
trait Backend {
    fn store(&self) -> &dyn JobStore;
    /// The store opened again on the same database (`None` for memory).
    async fn reopen(&self) -> Option<Box<dyn JobStore>>;
    /// Runs SQL with `{jobs}` and `{runs}` as the tables' names.
    async fn exec(&self, sql: &str);
    /// One integer from SQL with `{jobs}` and `{runs}` as the tables' names.
    async fn integer(&self, sql: &str) -> i64;
    /// SQL making any insert of the job `poison` fail.
    fn poison_sql(&self) -> String;
    /// SQL inserting rows that cannot be read as jobs, and the ids they have.
    fn unreadable_sql(&self) -> (&'static str, Vec<Option<&'static str>>);
    /// Cleans up (drops a PostgreSQL test schema).
    async fn finish(self);
}

/// Runs a test to its end, bounded, catching its panic so the caller can clean up first.
async fn bounded(test: impl Future<Output = ()>) -> std::thread::Result<()> {
    let test = async {
        if tokio::time::timeout(LIMIT, test).await.is_err() {
            panic!("the test took more than {LIMIT:?}");
        }
    };
    AssertUnwindSafe(test).catch_unwind().await
}

/// Fails the test as it failed, once its backend is cleaned up.
fn report(outcome: std::thread::Result<()>) {
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// The contract, for any store.

async fn an_empty_store_loads_nothing_and_takes_an_empty_batch(store: &dyn JobStore) {
    assert_eq!(load(store).await, (vec![], vec![]));
    write(store, &[]).await;
    assert_eq!(store.runs("a", 10).await.unwrap(), vec![]);
    assert_eq!(store.prune_runs(t(0), 10).await.unwrap(), 0);
}

async fn every_field_of_a_job_round_trips(store: &dyn JobStore) {
    let full = StoredJob {
        args: json!({
            "to": ["a@example.com", "b@example.com"], "n": 3, "negative": -7, "half": 1.5,
            "quarter": -0.25, "huge": 1e300, "max": u64::MAX, "min": i64::MIN,
            "nested": {"deep": [null, true, false, {"x": []}]}, "text": "é ✓ 🦀",
        }),
        trigger: json!({"cron": {"expression": "30 6 * * mon-fri", "timezone": "Europe/Berlin"}}),
        options: json!({"misfire_grace_time": 1.0, "coalesce": false, "max_instances": 3}),
        ..job(
            "full",
            Some(Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap()),
        )
    };
    let bare = StoredJob {
        name: None,
        args: json!(null),
        trigger: json!("date"),
        options: json!(7),
        ..job("bare", None)
    };
    let far = StoredJob {
        args: json!([]),
        ..job(
            "far",
            Some(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()),
        )
    };
    let old = job("old", Some(Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()));
    write(store, &[put(&full), put(&bare), put(&far), put(&old)]).await;
    assert_eq!(jobs(store).await, vec![bare, far, full, old]);
}

async fn times_are_kept_to_the_microsecond_truncated(store: &dyn JobStore) {
    let after = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
    let before = Utc.timestamp_opt(-315_619_200, 999).unwrap(); // 1960, a few ns past
    write(
        store,
        &[put(&job("a", Some(after))), put(&job("b", Some(before)))],
    )
    .await;
    let loaded: Vec<_> = jobs(store)
        .await
        .into_iter()
        .map(|job| job.next_run_time)
        .collect();
    assert_eq!(
        loaded,
        vec![
            Some(Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap()),
            Some(Utc.timestamp_opt(-315_619_200, 0).unwrap()),
        ]
    );
}

async fn a_put_replaces_the_job_with_its_id(store: &dyn JobStore) {
    write(
        store,
        &[put(&job("a", Some(t(60)))), put(&job("b", Some(t(60))))],
    )
    .await;
    let replaced = StoredJob {
        name: None,
        task: "other".into(),
        args: json!({"v": 2}),
        trigger: json!({"date": "2030-01-01T00:00:00Z"}),
        options: json!({}),
        ..job("a", None)
    };
    write(store, &[put(&replaced)]).await;
    assert_eq!(jobs(store).await, vec![replaced, job("b", Some(t(60)))]);
}

async fn next_moves_pauses_and_resumes_and_a_missing_job_is_no_error(store: &dyn JobStore) {
    write(store, &[put(&job("a", Some(t(60))))]).await;
    write(store, &[next("a", Some(t(120)))]).await;
    assert_eq!(jobs(store).await, vec![job("a", Some(t(120)))]);
    write(store, &[next("a", None)]).await;
    assert_eq!(jobs(store).await, vec![job("a", None)]);
    write(store, &[next("a", Some(t(180))), next("gone", Some(t(1)))]).await;
    assert_eq!(jobs(store).await, vec![job("a", Some(t(180)))]);
}

async fn delete_and_delete_all_remove_jobs_but_not_their_runs(store: &dyn JobStore) {
    let jobs_abc = ["a", "b", "c"].map(|id| put(&job(id, Some(t(60)))));
    write(store, &jobs_abc).await;
    write(store, &[Write::Run(run("a", t(0), RunState::Succeeded))]).await;
    write(store, &[delete("b"), delete("gone")]).await;
    assert_eq!(
        jobs(store).await,
        vec![job("a", Some(t(60))), job("c", Some(t(60)))]
    );
    write(store, &[Write::DeleteAll]).await;
    assert_eq!(jobs(store).await, vec![]);
    assert_eq!(
        store.runs("a", 10).await.unwrap(),
        vec![run("a", t(0), RunState::Succeeded)]
    );
    // A batch that empties the store and fills it again, in order.
    write(
        store,
        &[put(&job("x", None)), Write::DeleteAll, put(&job("y", None))],
    )
    .await;
    assert_eq!(jobs(store).await, vec![job("y", None)]);
}

async fn a_batch_applies_in_order_touching_one_row_many_times(store: &dyn JobStore) {
    let writes = [
        put(&job("a", Some(t(1)))),
        put(&job("b", Some(t(1)))),
        put(&job("a", Some(t(2)))),
        next("a", Some(t(3))),
        next("a", Some(t(4))),
        delete("b"),
        put(&job("b", None)),
        delete("b"),
        Write::Run(run("a", t(1), RunState::Running)),
        Write::Run(run("a", t(1), RunState::Failed)),
    ];
    write(store, &writes).await;
    assert_eq!(jobs(store).await, vec![job("a", Some(t(4)))]);
    assert_eq!(
        store.runs("a", 10).await.unwrap(),
        vec![run("a", t(1), RunState::Failed)]
    );
}

async fn runs_upsert_by_job_and_fire_time_newest_first(store: &dyn JobStore) {
    write(
        store,
        &[
            Write::Run(run("a", t(10), RunState::Running)),
            Write::Run(run("a", t(30), RunState::Missed)),
            Write::Run(run("b", t(10), RunState::Skipped)),
        ],
    )
    .await;
    let mut ended = run("a", t(10), RunState::Failed);
    ended.started_at = Some(t(10) + TimeDelta::microseconds(1500));
    ended.finished_at = Some(t(12));
    ended.result = Some(json!({"rows": 3, "note": "partial"}));
    ended.error = Some("timed out: connection reset".into());
    // A run written after its job's delete, in the same batch: history outlives the job.
    write(
        store,
        &[
            delete("a"),
            Write::Run(ended.clone()),
            Write::Run(run("a", t(20), RunState::Abandoned)),
        ],
    )
    .await;
    let newest_first = vec![
        run("a", t(30), RunState::Missed),
        run("a", t(20), RunState::Abandoned),
        ended,
    ];
    assert_eq!(store.runs("a", 10).await.unwrap(), newest_first);
    assert_eq!(store.runs("a", 2).await.unwrap(), newest_first[..2]);
    assert_eq!(store.runs("a", 0).await.unwrap(), vec![]);
    assert_eq!(
        store.runs("b", 10).await.unwrap(),
        vec![run("b", t(10), RunState::Skipped)]
    );
    assert_eq!(store.runs("nobody", 10).await.unwrap(), vec![]);
}

async fn every_run_state_round_trips(store: &dyn JobStore) {
    let states = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Missed,
        RunState::Skipped,
        RunState::Abandoned,
    ];
    let runs: Vec<Write> = (0..)
        .zip(states)
        .map(|(i, state)| Write::Run(run("a", t(i), state)))
        .collect();
    write(store, &runs).await;
    let mut read: Vec<RunState> = store
        .runs("a", 10)
        .await
        .unwrap()
        .iter()
        .map(|run| run.state)
        .collect();
    read.reverse();
    assert_eq!(read, states);
}

async fn prune_deletes_ended_runs_before_a_time_at_most_limit_at_once(store: &dyn JobStore) {
    write(
        store,
        &[
            Write::Run(run("a", t(0), RunState::Abandoned)),
            Write::Run(run("a", t(1), RunState::Succeeded)),
            Write::Run(run("a", t(2), RunState::Failed)),
            Write::Run(run("a", t(3), RunState::Running)),
            Write::Run(run("b", t(1), RunState::Missed)),
            Write::Run(run("b", t(5), RunState::Skipped)),
        ],
    )
    .await;
    assert_eq!(store.prune_runs(t(4), 3).await.unwrap(), 3);
    assert_eq!(store.prune_runs(t(4), 3).await.unwrap(), 1);
    assert_eq!(store.prune_runs(t(4), 3).await.unwrap(), 0);
    // The running run and the one at the bound's far side stay.
    assert_eq!(
        store.runs("a", 10).await.unwrap(),
        vec![run("a", t(3), RunState::Running)]
    );
    assert_eq!(
        store.runs("b", 10).await.unwrap(),
        vec![run("b", t(5), RunState::Skipped)]
    );
    assert_eq!(store.prune_runs(t(5), 0).await.unwrap(), 0);
}

async fn batches_of_thousands_go_through(store: &dyn JobStore) {
    // Past the rows a backend puts in one statement, with every kind of write.
    let many: Vec<StoredJob> = (0..5_000)
        .map(|i| job(&format!("job-{i:05}"), Some(t(i))))
        .collect();
    write(store, &many.iter().map(put).collect::<Vec<_>>()).await;
    assert_eq!(jobs(store).await, many);
    let mut changes: Vec<Write> = many.iter().map(|job| next(&job.id, None)).collect();
    changes.extend(many.iter().step_by(2).map(|job| delete(&job.id)));
    changes.extend(
        many.iter()
            .map(|job| Write::Run(run(&job.id, t(0), RunState::Succeeded))),
    );
    write(store, &changes).await;
    let left = jobs(store).await;
    assert_eq!(left.len(), 2_500);
    assert!(left.iter().all(|job| job.next_run_time.is_none()));
    assert_eq!(
        store.runs("job-04999", 10).await.unwrap(),
        vec![run("job-04999", t(0), RunState::Succeeded)]
    );
    assert_eq!(store.prune_runs(t(1), 10_000).await.unwrap(), 5_000);
}

async fn quotes_semicolons_unicode_and_long_strings_round_trip(store: &dyn JobStore) {
    let long = "'\";--".repeat(2048); // 10 KB of quotes and semicolons
    let texts = [
        "'; DROP TABLE jobs; --",
        "a'b\"c\\d",
        "semi;colon; DELETE FROM runs;",
        "$1 ? ?1 :name @p %s",
        "ünïcødé ✓ 🦀 עברית 中文 e\u{301}",
        "\t\r\n trailing space ",
        long.as_str(),
    ];
    let jobs_in: Vec<StoredJob> = texts
        .iter()
        .map(|text| StoredJob {
            id: text.to_string(),
            name: Some(text.to_string()),
            task: text.to_string(),
            args: serde_json::Value::Object(
                [(text.to_string(), json!([text, {"k": text}]))]
                    .into_iter()
                    .collect(),
            ),
            trigger: json!({"date": text}),
            options: json!([text]),
            next_run_time: Some(t(1)),
        })
        .collect();
    write(store, &jobs_in.iter().map(put).collect::<Vec<_>>()).await;
    let mut expected = jobs_in.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(jobs(store).await, expected);
    for text in texts {
        let mut failed = run(text, t(1), RunState::Failed);
        failed.error = Some(text.to_string());
        failed.result = Some(json!(text));
        write(store, &[Write::Run(failed.clone()), next(text, None)]).await;
        assert_eq!(store.runs(text, 5).await.unwrap(), vec![failed]);
    }
    write(store, &texts.map(delete)).await;
    assert_eq!(jobs(store).await, vec![]);
}

async fn a_dropped_write_leaves_all_of_its_batch_or_nothing(store: &dyn JobStore) {
    let many: Vec<Write> = (0..20_000)
        .map(|i| put(&job(&format!("job-{i:05}"), None)))
        .collect();
    // Dropped wherever the timeout finds it: before, inside or after its transaction. A
    // timeout of 0 drops it at its first wait, which may be right after its BEGIN: many of
    // those.
    let zeros = std::iter::repeat_n(0, 20);
    for ms in zeros.chain([1, 2, 5, 20, 50, 100, 10_000]) {
        let _ = tokio::time::timeout(Duration::from_millis(ms), store.write(&many)).await;
        let count = jobs(store).await.len();
        assert!(
            count == 0 || count == many.len(),
            "{count} jobs after {ms} ms"
        );
        write(store, &[Write::DeleteAll]).await;
    }
    write(store, &many[..3]).await;
    assert_eq!(jobs(store).await.len(), 3);
}

/// Text that does not compress: pseudo-random letters and digits (xorshift, from `seed`).
fn noise(len: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
        })
        .collect()
}

async fn ten_kilobytes_of_noise_in_every_value_round_trip(store: &dyn JobStore) {
    let big = StoredJob {
        id: "big".into(),
        name: Some(noise(10_240, 1)),
        task: noise(10_240, 2),
        args: json!({"blob": noise(10_240, 3)}),
        trigger: json!([noise(10_240, 4)]),
        options: json!({ "o": noise(10_240, 5) }),
        next_run_time: Some(t(1)),
    };
    let mut failed = run("big", t(1), RunState::Failed);
    failed.error = Some(noise(10_240, 6));
    failed.result = Some(json!(noise(10_240, 7)));
    write(store, &[put(&big), Write::Run(failed.clone())]).await;
    assert_eq!(jobs(store).await, vec![big]);
    assert_eq!(store.runs("big", 1).await.unwrap(), vec![failed]);
}

// ---------------------------------------------------------------------------------------------
// The contract, where raw SQL shows what the trait does not.

async fn revision_counts_every_put_and_next<B: Backend>(backend: &B) {
    let store = backend.store();
    let revision = "SELECT revision FROM {jobs} WHERE id = 'a'";
    write(store, &[put(&job("a", Some(t(1))))]).await;
    assert_eq!(backend.integer(revision).await, 1);
    write(
        store,
        &[
            put(&job("a", Some(t(1)))),
            next("a", Some(t(2))),
            next("a", None),
        ],
    )
    .await;
    assert_eq!(backend.integer(revision).await, 4);
    write(store, &[put(&job("a", None)), next("b", None), delete("b")]).await;
    assert_eq!(backend.integer(revision).await, 5);
}

async fn paused_is_a_null_next_run_time<B: Backend>(backend: &B) {
    let store = backend.store();
    let paused =
        "SELECT CAST(CASE WHEN paused THEN 1 ELSE 0 END AS BIGINT) FROM {jobs} WHERE id = 'a'";
    write(store, &[put(&job("a", Some(t(1))))]).await;
    assert_eq!(backend.integer(paused).await, 0);
    write(store, &[next("a", None)]).await;
    assert_eq!(backend.integer(paused).await, 1);
    write(store, &[next("a", Some(t(2)))]).await;
    assert_eq!(backend.integer(paused).await, 0);
}

async fn a_batch_that_fails_leaves_nothing_of_itself<B: Backend>(backend: &B) {
    let store = backend.store();
    write(
        store,
        &[
            put(&job("a", Some(t(1)))),
            put(&job("c", None)),
            Write::Run(run("a", t(0), RunState::Running)),
        ],
    )
    .await;
    backend.exec(&backend.poison_sql()).await;
    let batch = [
        put(&job("b", Some(t(1)))),
        next("a", Some(t(2))),
        Write::Run(run("a", t(0), RunState::Succeeded)),
        Write::Run(run("a", t(5), RunState::Running)),
        delete("c"),
        put(&job("poison", None)),
    ];
    let error = store.write(&batch).await.unwrap_err();
    assert!(error.to_string().contains("poisoned"), "{error}");
    assert_eq!(
        jobs(store).await,
        vec![job("a", Some(t(1))), job("c", None)]
    );
    assert_eq!(
        store.runs("a", 10).await.unwrap(),
        vec![run("a", t(0), RunState::Running)]
    );
    // The store goes on working after the failed batch.
    write(store, &batch[..5]).await;
    assert_eq!(
        jobs(store).await,
        vec![job("a", Some(t(2))), job("b", Some(t(1)))]
    );
}

async fn unreadable_rows_are_reported_and_kept<B: Backend>(backend: &B) {
    let store = backend.store();
    write(store, &[put(&job("good", Some(t(1))))]).await;
    let (sql, ids) = backend.unreadable_sql();
    backend.exec(sql).await;
    for _ in 0..2 {
        let (loaded, unreadable) = load(store).await;
        assert_eq!(loaded, vec![job("good", Some(t(1)))]);
        let mut found: Vec<Option<&str>> = unreadable.iter().map(|row| row.id.as_deref()).collect();
        found.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(found, expected, "{unreadable:#?}");
        for row in &unreadable {
            assert!(row.reason.starts_with("column '"), "{row:?}");
        }
    }
    let count = backend.integer("SELECT COUNT(*) FROM {jobs}").await;
    assert_eq!(count, 1 + ids.len() as i64);
    // Writing other jobs leaves them alone too.
    write(store, &[put(&job("other", None)), next("good", None)]).await;
    assert_eq!(load(store).await.1.len(), ids.len());
}

async fn a_reopened_store_finds_everything<B: Backend>(backend: &B) {
    let store = backend.store();
    let mut done = run("a", t(0), RunState::Succeeded);
    done.result = Some(json!({"ok": true}));
    write(
        store,
        &[
            put(&job("a", Some(t(60)))),
            put(&job("b", None)),
            Write::Run(done.clone()),
        ],
    )
    .await;
    let reopened = backend.reopen().await.expect("a durable backend");
    assert_eq!(
        jobs(&*reopened).await,
        vec![job("a", Some(t(60))), job("b", None)]
    );
    assert_eq!(reopened.runs("a", 10).await.unwrap(), vec![done]);
    assert_eq!(reopened.describe(), store.describe());
}

/// One `#[tokio::test]` per contract test, for a backend built by `$new`.
macro_rules! contract {
    ($backend:ident = $new:expr; store: [$($store_test:ident),* $(,)?]; backend: [$($backend_test:ident),* $(,)?] $(;)?) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $store_test() {
                    let Some(backend) = $new.await else { return };
                    let outcome = bounded(super::$store_test(backend.store())).await;
                    backend.finish().await;
                    report(outcome);
                }
            )*
            $(
                #[tokio::test]
                async fn $backend_test() {
                    let Some(backend) = $new.await else { return };
                    let outcome = bounded(super::$backend_test(&backend)).await;
                    backend.finish().await;
                    report(outcome);
                }
            )*
        }
    };
}

macro_rules! store_contract {
    ($backend:ident = $new:expr; $($more:ident),* $(,)?) => {
        contract! {
            $backend = $new;
            store: [
                an_empty_store_loads_nothing_and_takes_an_empty_batch,
                every_field_of_a_job_round_trips,
                times_are_kept_to_the_microsecond_truncated,
                a_put_replaces_the_job_with_its_id,
                next_moves_pauses_and_resumes_and_a_missing_job_is_no_error,
                delete_and_delete_all_remove_jobs_but_not_their_runs,
                a_batch_applies_in_order_touching_one_row_many_times,
                runs_upsert_by_job_and_fire_time_newest_first,
                every_run_state_round_trips,
                prune_deletes_ended_runs_before_a_time_at_most_limit_at_once,
                batches_of_thousands_go_through,
                quotes_semicolons_unicode_and_long_strings_round_trip,
                ten_kilobytes_of_noise_in_every_value_round_trip,
                a_dropped_write_leaves_all_of_its_batch_or_nothing,
            ];
            backend: [
                revision_counts_every_put_and_next,
                paused_is_a_null_next_run_time,
                a_batch_that_fails_leaves_nothing_of_itself,
                unreadable_rows_are_reported_and_kept,
                $($more),*
            ];
        }
    };
}

// ---------------------------------------------------------------------------------------------
// SQLite.

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;

    use apsched::store::{SqliteStore, SCHEMA_VERSION};
    use apsched::Error;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, SqliteConnection};
    use tempfile::TempDir;

    use super::*;

    /// A store in a file of its own (no table prefix).
    pub(super) struct File {
        dir: TempDir,
        store: SqliteStore,
    }

    /// A store in memory, its tables prefixed.
    pub(super) struct Memory {
        store: SqliteStore,
    }

    pub(super) async fn file() -> Option<File> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("jobs.db")).await.unwrap();
        Some(File { dir, store })
    }

    pub(super) async fn memory() -> Option<Memory> {
        let store = SqliteStore::options("sqlite::memory:")
            .table_prefix("mem_")
            .open()
            .await
            .unwrap();
        Some(Memory { store })
    }

    fn tables(sql: &str, prefix: &str) -> String {
        sql.replace("{jobs}", &format!("\"{prefix}jobs\""))
            .replace("{runs}", &format!("\"{prefix}runs\""))
    }

    const POISON: &str = "CREATE TRIGGER poison BEFORE INSERT ON {jobs} WHEN NEW.id = 'poison' \
                          BEGIN SELECT RAISE(ABORT, 'poisoned'); END";

    /// Invalid JSON, a raw NUL inside a JSON string, a time past chrono's range, an id that is
    /// not UTF-8.
    const UNREADABLE: &str = r#"
        INSERT INTO {jobs} (id, name, task, args, trigger, options, next_run_time, created_at, updated_at) VALUES
            ('bad-json', NULL, 't', '{"to": [', '{}', '{}', NULL, 0, 0),
            ('bad-nul', NULL, 't', '{}', '{"a": "' || char(0) || '"}', '{}', NULL, 0, 0),
            ('bad-time', NULL, 't', '{}', '{}', '{}', 9223372036854775807, 0, 0),
            (CAST(x'ff' AS TEXT), NULL, 't', '{}', '{}', '{}', NULL, 0, 0);
    "#;
    const UNREADABLE_IDS: [Option<&str>; 4] =
        [Some("bad-json"), Some("bad-nul"), Some("bad-time"), None];

    async fn exec(store: &SqliteStore, sql: &str) {
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
    }

    async fn integer(store: &SqliteStore, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    impl Backend for File {
        fn store(&self) -> &dyn JobStore {
            &self.store
        }
        async fn reopen(&self) -> Option<Box<dyn JobStore>> {
            let store = SqliteStore::open(self.dir.path().join("jobs.db"))
                .await
                .unwrap();
            Some(Box::new(store))
        }
        async fn exec(&self, sql: &str) {
            exec(&self.store, &tables(sql, "")).await
        }
        async fn integer(&self, sql: &str) -> i64 {
            integer(&self.store, &tables(sql, "")).await
        }
        fn poison_sql(&self) -> String {
            POISON.to_string()
        }
        fn unreadable_sql(&self) -> (&'static str, Vec<Option<&'static str>>) {
            (UNREADABLE, UNREADABLE_IDS.to_vec())
        }
        async fn finish(self) {
            self.store.pool().close().await;
        }
    }

    impl Backend for Memory {
        fn store(&self) -> &dyn JobStore {
            &self.store
        }
        async fn reopen(&self) -> Option<Box<dyn JobStore>> {
            None
        }
        async fn exec(&self, sql: &str) {
            exec(&self.store, &tables(sql, "mem_")).await
        }
        async fn integer(&self, sql: &str) -> i64 {
            integer(&self.store, &tables(sql, "mem_")).await
        }
        fn poison_sql(&self) -> String {
            POISON.to_string()
        }
        fn unreadable_sql(&self) -> (&'static str, Vec<Option<&'static str>>) {
            (UNREADABLE, UNREADABLE_IDS.to_vec())
        }
        async fn finish(self) {}
    }

    store_contract!(file = super::file(); a_reopened_store_finds_everything);
    store_contract!(memory = super::memory(););

    /// The schema as apsched's first release created it, frozen here: a database of that
    /// release must keep opening, whatever the code's migrations become.
    const RELEASE_1: &str = r#"
        CREATE TABLE "apsched_schema" (version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL) STRICT;
        INSERT INTO "apsched_schema" VALUES (1, 0);
        CREATE TABLE "jobs" (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT,
            task TEXT NOT NULL,
            args TEXT NOT NULL,
            trigger TEXT NOT NULL,
            options TEXT NOT NULL,
            paused INTEGER GENERATED ALWAYS AS (next_run_time IS NULL) VIRTUAL,
            next_run_time INTEGER,
            revision INTEGER NOT NULL DEFAULT 1,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX "jobs_next_run_time" ON "jobs" (next_run_time) WHERE next_run_time IS NOT NULL;
        INSERT INTO "jobs" (id, name, task, args, trigger, options, next_run_time, revision, created_at, updated_at)
            VALUES ('kept', 'kept job', 'send_report', '{"to":["ops@example.com"],"retries":3}',
                    '{"interval":{"seconds":60}}', '{"coalesce":true,"max_instances":1}',
                    1704067260000000, 7, 0, 0);
    "#;

    async fn raw(path: &Path) -> SqliteConnection {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        SqliteConnection::connect_with(&options).await.unwrap()
    }

    #[tokio::test]
    async fn a_version_1_schema_is_migrated_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut old = raw(&path).await;
        sqlx::raw_sql(RELEASE_1).execute(&mut old).await.unwrap();
        old.close().await.unwrap();

        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(jobs(&store).await, vec![job("kept", Some(t(60)))]);
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM apsched_schema ORDER BY 1")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(versions, vec![1, 2, 3, 4]);
        assert_eq!(SCHEMA_VERSION, 4);
        write(
            &store,
            &[
                Write::Run(run("kept", t(0), RunState::Succeeded)),
                next("kept", None),
            ],
        )
        .await;
        assert_eq!(
            store.runs("kept", 1).await.unwrap(),
            vec![run("kept", t(0), RunState::Succeeded)]
        );
        let revision: i64 = integer(&store, "SELECT revision FROM jobs").await;
        assert_eq!(revision, 8);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(SqliteStore::open(&path).await.unwrap());
        let mut conn = raw(&path).await;
        sqlx::raw_sql("INSERT INTO apsched_schema VALUES (99, 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        let error = SqliteStore::open(&path).await.unwrap_err();
        match &error {
            Error::StoreSchema {
                store,
                found: 99,
                supported: SCHEMA_VERSION,
            } => assert_eq!(store, &format!("sqlite:{}", path.display())),
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("upgrade apsched"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_opens_at_once_on_a_new_file_both_succeed_and_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        for attempt in 0..20 {
            let path = dir.path().join(format!("race-{attempt}.db"));
            let (left, right) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
            let (left, right) = (left.unwrap(), right.unwrap());
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM apsched_schema ORDER BY 1")
                    .fetch_all(left.pool())
                    .await
                    .unwrap();
            assert_eq!(versions, vec![1, 2, 3, 4]);
            write(&left, &[put(&job("a", None))]).await;
            assert_eq!(jobs(&right).await, vec![job("a", None)]);
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(right.pool())
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }

    #[tokio::test]
    async fn a_write_lock_held_elsewhere_fails_a_write_after_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let store = SqliteStore::options(&path)
            .busy_timeout(Duration::from_millis(100))
            .open()
            .await
            .unwrap();
        let mut other = raw(&path).await;
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();

        let writes = [put(&job("a", None))];
        let error = tokio::time::timeout(Duration::from_secs(30), store.write(&writes))
            .await
            .expect("the busy timeout bounds the wait")
            .unwrap_err();
        let message = apsched::Cause::new(error).chain();
        assert!(
            message.starts_with(
                "the database is locked by another connection, still after the busy timeout (100ms)"
            ),
            "{message}"
        );
        let error = tokio::time::timeout(Duration::from_secs(30), store.prune_runs(t(0), 10))
            .await
            .expect("bounded")
            .unwrap_err();
        assert!(error.to_string().contains("locked"), "{error}");
        // Reading, and opening a store that is current, need no write lock.
        assert_eq!(jobs(&store).await, vec![]);
        let again = SqliteStore::open(&path).await.unwrap();

        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        write(&store, &writes).await;
        assert_eq!(jobs(&again).await, vec![job("a", None)]);
    }

    #[tokio::test]
    async fn a_nul_in_a_string_round_trips() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let nul = StoredJob {
            name: Some("n\0ame".into()),
            args: json!({"k\0": "v\0"}),
            ..job("a\0b", None)
        };
        write(&store, &[put(&nul)]).await;
        assert_eq!(jobs(&store).await, vec![nul]);
    }

    #[tokio::test]
    async fn a_ten_kilobyte_id_round_trips() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let long = job(&noise(10_240, 8), Some(t(1)));
        let ran = run(&long.id, t(1), RunState::Succeeded);
        write(&store, &[put(&long), Write::Run(ran.clone())]).await;
        assert_eq!(jobs(&store).await, vec![long.clone()]);
        assert_eq!(store.runs(&long.id, 1).await.unwrap(), vec![ran]);
    }

    #[tokio::test]
    async fn a_hostile_or_malformed_table_prefix_is_refused() {
        for prefix in [
            "x; DROP TABLE jobs; --",
            "1x",
            "x-y",
            "\"x\"",
            "ü",
            &"x".repeat(33),
        ] {
            let error = SqliteStore::options("sqlite::memory:")
                .table_prefix(prefix)
                .open()
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::InvalidOption {
                        option: "table_prefix",
                        ..
                    }
                ),
                "{prefix:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_url_instead_of_a_path_is_refused() {
        for url in ["sqlite://jobs.db", "sqlite:jobs.db?mode=rwc"] {
            let error = SqliteStore::open(url).await.unwrap_err();
            assert!(
                matches!(&error, Error::InvalidOption { option: "path", .. }),
                "{url}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn stores_with_different_prefixes_share_a_file_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let one = SqliteStore::open(&path).await.unwrap();
        let two = SqliteStore::options(&path)
            .table_prefix("two_")
            .open()
            .await
            .unwrap();
        write(&one, &[put(&job("a", None))]).await;
        write(
            &two,
            &[put(&job("b", None)), Write::DeleteAll, put(&job("c", None))],
        )
        .await;
        assert_eq!(jobs(&one).await, vec![job("a", None)]);
        assert_eq!(jobs(&two).await, vec![job("c", None)]);
        assert_eq!(
            two.describe(),
            format!("sqlite:{} (tables two_*)", path.display())
        );
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_created_fails_open_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("jobs.db");
        let error = SqliteStore::open(&path).await.unwrap_err();
        match &error {
            Error::Store {
                store,
                operation: "open",
                ..
            } => assert_eq!(store, &format!("sqlite:{}", path.display())),
            other => panic!("{other:?}"),
        }
        // Not a database at all.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let error = SqliteStore::open(&junk).await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Store {
                    operation: "open",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("not a database"), "{error}");
    }

    #[tokio::test]
    async fn clones_share_the_database_and_debug_names_it() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let clone = store.clone();
        write(&clone, &[put(&job("a", None))]).await;
        assert_eq!(jobs(&store).await, vec![job("a", None)]);
        let debug = format!("{store:?}");
        assert!(
            debug.contains("sqlite::memory:") && debug.contains("busy_timeout: 5s"),
            "{debug}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.

#[cfg(feature = "postgres")]
mod postgres {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU32, Ordering};

    use apsched::store::{PostgresStore, SCHEMA_VERSION};
    use apsched::Error;
    use sqlx::PgPool;

    use super::*;

    const URL: &str = "APSCHED_TEST_POSTGRES_URL";

    /// A schema name no other test (in this process or another) uses.
    fn fresh_schema() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!(
            "apsched_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        )
    }

    /// The server's URL, or `None` (said on stderr, past the test harness's capture).
    fn url() -> Option<String> {
        match std::env::var(URL) {
            Ok(url) => Some(url),
            Err(_) => {
                let _ = writeln!(std::io::stderr(), "skipped: {URL} is not set");
                None
            }
        }
    }

    /// A connection to the test server, and a schema name to use on it, dropped by `finish`.
    pub(super) struct Scratch {
        url: String,
        admin: PgPool,
        schema: String,
    }

    impl Scratch {
        pub(super) async fn new() -> Option<Scratch> {
            let url = url()?;
            let admin = tokio::time::timeout(Duration::from_secs(30), PgPool::connect(&url))
                .await
                .unwrap_or_else(|_| panic!("{URL} is set, but its server did not answer in 30 s"))
                .unwrap_or_else(|e| panic!("{URL} is set, but its server cannot be reached: {e}"));
            Some(Scratch {
                url,
                admin,
                schema: fresh_schema(),
            })
        }

        fn options(&self) -> apsched::store::PostgresStoreOptions {
            PostgresStore::options(&self.url).schema(&self.schema)
        }

        async fn exec(&self, sql: &str) {
            sqlx::raw_sql(sql).execute(&self.admin).await.unwrap();
        }

        async fn finish(self) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
            sqlx::raw_sql(&drop).execute(&self.admin).await.unwrap();
            self.admin.close().await;
        }
    }

    /// A store in a schema of its own, its tables prefixed.
    pub(super) struct Pg {
        scratch: Scratch,
        store: PostgresStore,
    }

    pub(super) async fn pg() -> Option<Pg> {
        let scratch = Scratch::new().await?;
        let store = scratch
            .options()
            .table_prefix("p_")
            .connect()
            .await
            .unwrap();
        Some(Pg { scratch, store })
    }

    impl Pg {
        fn tables(&self, sql: &str) -> String {
            let schema = &self.scratch.schema;
            sql.replace("{jobs}", &format!("\"{schema}\".\"p_jobs\""))
                .replace("{runs}", &format!("\"{schema}\".\"p_runs\""))
                .replace("{schema}", schema)
        }
    }

    impl Backend for Pg {
        fn store(&self) -> &dyn JobStore {
            &self.store
        }
        async fn reopen(&self) -> Option<Box<dyn JobStore>> {
            let store = self
                .scratch
                .options()
                .table_prefix("p_")
                .connect()
                .await
                .unwrap();
            Some(Box::new(store))
        }
        async fn exec(&self, sql: &str) {
            self.scratch.exec(&self.tables(sql)).await
        }
        async fn integer(&self, sql: &str) -> i64 {
            sqlx::query_scalar(&self.tables(sql))
                .fetch_one(&self.scratch.admin)
                .await
                .unwrap()
        }
        fn poison_sql(&self) -> String {
            self.tables(
                r#"
                CREATE FUNCTION "{schema}".poison() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER poison BEFORE INSERT ON {jobs} FOR EACH ROW EXECUTE FUNCTION "{schema}".poison();
                "#,
            )
        }
        fn unreadable_sql(&self) -> (&'static str, Vec<Option<&'static str>>) {
            // A time that is no instant, a number past f64, JSON nested past serde_json's limit.
            (
                r#"
                INSERT INTO {jobs} (id, name, task, args, trigger, options, next_run_time) VALUES
                    ('bad-time', NULL, 't', '{}', '{}', '{}', 'infinity'),
                    ('bad-number', NULL, 't', '1e400', '{}', '{}', NULL),
                    ('bad-depth', NULL, 't', '{}', (repeat('[', 200) || repeat(']', 200))::jsonb, '{}', NULL);
                "#,
                vec![Some("bad-time"), Some("bad-number"), Some("bad-depth")],
            )
        }
        async fn finish(self) {
            self.store.pool().close().await;
            self.scratch.finish().await;
        }
    }

    store_contract!(pg = super::pg(); a_reopened_store_finds_everything);

    /// The schema as apsched's first release created it, frozen here: a database of that
    /// release must keep opening, whatever the code's migrations become.
    const RELEASE_1: &str = r#"
        CREATE SCHEMA "{schema}";
        CREATE TABLE "{schema}"."apsched_schema" (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO "{schema}"."apsched_schema" (version) VALUES (1);
        CREATE TABLE "{schema}"."jobs" (
            id text PRIMARY KEY,
            name text,
            task text NOT NULL,
            args jsonb NOT NULL,
            trigger jsonb NOT NULL,
            options jsonb NOT NULL,
            paused boolean GENERATED ALWAYS AS (next_run_time IS NULL) STORED,
            next_run_time timestamptz,
            revision bigint NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX "jobs_next_run_time" ON "{schema}"."jobs" (next_run_time) WHERE next_run_time IS NOT NULL;
        INSERT INTO "{schema}"."jobs" (id, name, task, args, trigger, options, next_run_time, revision)
            VALUES ('kept', 'kept job', 'send_report', '{"to":["ops@example.com"],"retries":3}',
                    '{"interval":{"seconds":60}}', '{"coalesce":true,"max_instances":1}',
                    '2024-01-01T00:01:00Z', 7);
    "#;

    async fn versions(scratch: &Scratch) -> Vec<i64> {
        let sql = format!(
            "SELECT version FROM \"{}\".apsched_schema ORDER BY 1",
            scratch.schema
        );
        sqlx::query_scalar(&sql)
            .fetch_all(&scratch.admin)
            .await
            .unwrap()
    }

    /// Runs a test body on a fresh scratch schema (skipped without a server), then drops it.
    macro_rules! with_scratch {
        (|$scratch:ident| $body:block) => {{
            let Some(scratch) = Scratch::new().await else { return };
            let $scratch = &scratch;
            let outcome = bounded(async $body).await;
            scratch.finish().await;
            report(outcome);
        }};
    }

    #[tokio::test]
    async fn a_version_1_schema_is_migrated_and_keeps_its_jobs() {
        with_scratch!(|scratch| {
            scratch
                .exec(&RELEASE_1.replace("{schema}", &scratch.schema))
                .await;
            let store = scratch.options().connect().await.unwrap();
            assert_eq!(jobs(&store).await, vec![job("kept", Some(t(60)))]);
            assert_eq!(versions(scratch).await, vec![1, 2, 3, 4]);
            write(
                &store,
                &[
                    Write::Run(run("kept", t(0), RunState::Succeeded)),
                    next("kept", None),
                ],
            )
            .await;
            assert_eq!(
                store.runs("kept", 1).await.unwrap(),
                vec![run("kept", t(0), RunState::Succeeded)]
            );
            let revision: i64 =
                sqlx::query_scalar(&format!("SELECT revision FROM \"{}\".jobs", scratch.schema))
                    .fetch_one(&scratch.admin)
                    .await
                    .unwrap();
            assert_eq!(revision, 8);
            store.pool().close().await;
        });
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        with_scratch!(|scratch| {
            scratch
                .options()
                .connect()
                .await
                .unwrap()
                .pool()
                .close()
                .await;
            scratch
                .exec(&format!(
                    "INSERT INTO \"{}\".apsched_schema (version) VALUES (99)",
                    scratch.schema
                ))
                .await;
            let error = scratch.options().connect().await.unwrap_err();
            match &error {
                Error::StoreSchema {
                    store,
                    found: 99,
                    supported: SCHEMA_VERSION,
                } => assert!(store.contains(&scratch.schema), "{store}"),
                other => panic!("{other:?}"),
            }
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_connects_at_once_on_a_new_schema_both_succeed_and_migrate_once() {
        with_scratch!(|scratch| {
            let pool = PgPool::connect(&scratch.url).await.unwrap();
            // One from a URL, one from a pool: two pools, as two processes would have.
            let (left, right) = tokio::join!(
                scratch.options().connect(),
                PostgresStore::from_pool(pool)
                    .schema(&scratch.schema)
                    .connect()
            );
            let (left, right) = (left.unwrap(), right.unwrap());
            assert_eq!(versions(scratch).await, vec![1, 2, 3, 4]);
            write(&left, &[put(&job("a", None))]).await;
            assert_eq!(jobs(&right).await, vec![job("a", None)]);
            left.pool().close().await;
            right.pool().close().await;
        });
    }

    #[tokio::test]
    async fn a_nul_is_refused_clearly_and_nothing_of_its_batch_is_written() {
        let Some(backend) = pg().await else { return };
        let outcome = bounded(async {
            let store = backend.store();
            let cases = [
                job("a\0b", None),
                StoredJob {
                    name: Some("n\0".into()),
                    ..job("a", None)
                },
                StoredJob {
                    args: json!({"to": ["x\0"]}),
                    ..job("a", None)
                },
                StoredJob {
                    options: json!({"k\0": 1}),
                    ..job("a", None)
                },
            ];
            for nul in cases {
                let error = store
                    .write(&[put(&job("first", None)), put(&nul)])
                    .await
                    .unwrap_err();
                let message = error.to_string();
                assert!(
                    message.contains("holds a NUL byte, which PostgreSQL text cannot store"),
                    "{message}"
                );
                assert_eq!(jobs(store).await, vec![]);
            }
            let mut failed = run("a", t(0), RunState::Failed);
            failed.error = Some("bad\0".into());
            let error = store.write(&[Write::Run(failed)]).await.unwrap_err();
            assert!(
                error.to_string().contains("the run's error holds a NUL"),
                "{error}"
            );
        })
        .await;
        backend.finish().await;
        report(outcome);
    }

    #[tokio::test]
    async fn an_id_too_long_for_an_index_is_refused_and_nothing_of_its_batch_is_written() {
        // A job id is a btree key, and a btree holds keys up to about 2.7 KB (after
        // compression): 10 KB of noise is refused by the server, with its own message.
        let Some(backend) = pg().await else { return };
        let outcome = bounded(async {
            let store = backend.store();
            let long = job(&noise(10_240, 8), None);
            let error = store
                .write(&[put(&job("first", None)), put(&long)])
                .await
                .unwrap_err();
            assert!(error.to_string().contains("index row"), "{error}");
            assert_eq!(jobs(store).await, vec![]);
            let fits = job(&noise(2_000, 9), None);
            write(store, &[put(&fits)]).await;
            assert_eq!(jobs(store).await, vec![fits]);
        })
        .await;
        backend.finish().await;
        report(outcome);
    }

    #[tokio::test]
    async fn a_hostile_or_malformed_schema_or_prefix_is_refused_before_connecting() {
        // No server needed: the names are checked first.
        let url = "postgres://nobody@127.0.0.1:1/none";
        for schema in [
            "x; DROP TABLE jobs; --",
            "",
            "1x",
            "a.b",
            "\"x\"",
            &"s".repeat(64),
        ] {
            let error = PostgresStore::options(url)
                .schema(schema)
                .connect()
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::InvalidOption {
                        option: "schema",
                        ..
                    }
                ),
                "{schema:?}: {error}"
            );
        }
        for prefix in ["x; DROP TABLE jobs; --", "x y", "é"] {
            let error = PostgresStore::options(url)
                .table_prefix(prefix)
                .connect()
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::InvalidOption {
                        option: "table_prefix",
                        ..
                    }
                ),
                "{prefix:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_or_a_bad_url_fails_connect_as_a_store_error() {
        let connect = PostgresStore::options("postgres://nobody@127.0.0.1:1/none")
            .acquire_timeout(Duration::from_secs(1))
            .connect();
        let error = tokio::time::timeout(LIMIT, connect)
            .await
            .expect("bounded")
            .unwrap_err();
        match &error {
            Error::Store {
                store,
                operation: "open",
                ..
            } => assert_eq!(store, "postgres://127.0.0.1:1/none (schema public)"),
            other => panic!("{other:?}"),
        }
        let error = PostgresStore::connect("not a url").await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Store {
                    operation: "open",
                    ..
                }
            ),
            "{error:?}"
        );
        // The options' Debug never shows the URL (it may hold a password).
        let debug = format!("{:?}", PostgresStore::options("postgres://u:secret@h/db"));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
