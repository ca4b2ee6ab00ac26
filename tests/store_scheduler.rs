//! A scheduler with a durable store: every change is written before the caller hears `Ok`, a
//! new scheduler on the same store finds everything as it was, runs missed while it was down
//! follow the misfire rules, and a store that goes away is reported and recovered from.
//!
//! The store here is the in-memory `TestStore` (tests/common/store.rs), so these tests are
//! about the scheduler; `store_backends.rs` holds the SQLite and PostgreSQL backends to the
//! same contract.
mod common;

use std::time::Duration;

use apsched::store::{RunState, StoredJob, UnreadableRow};
use apsched::trigger::{Date, Interval};
use apsched::{Error, Event, MisfireGrace, Scheduler, TestClock, Zone};
use chrono::{DateTime, TimeDelta, Utc};
use common::store::{note, tasks, Seen, TestStore};
use common::*;

/// A started scheduler on `clock` with `store` as its "durable" store.
async fn scheduler_on(store: &TestStore, clock: &TestClock, seen: &Seen) -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .store("durable", store.clone())
        .tasks(tasks(seen))
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

#[tokio::test(start_paused = true)]
async fn a_durable_job_is_written_before_its_add_returns_and_found_by_the_next_scheduler() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    let job = scheduler
        .add_job(note(&tasks(&seen), "hi"), Interval::minutes(10))
        .id("n")
        .name("a note")
        .store("durable")
        .max_instances(2)
        .await
        .unwrap();
    assert_eq!((&*job.store, job.task), ("durable", Some("note")));
    let row = store
        .jobs()
        .remove("n")
        .expect("written before add returned");
    assert_eq!(row.task, "note");
    assert_eq!(row.args, serde_json::json!({ "text": "hi" }));
    assert_eq!(row.name.as_deref(), Some("a note"));
    assert_eq!(row.next_run_time, Some(minutes(10)));
    scheduler.shutdown().await.unwrap();

    let again = scheduler_on(&store, &clock, &seen).await;
    let restored = again.get_job("n").await.unwrap();
    assert_eq!(
        restored, job,
        "the job as it was: trigger, next run, options, name"
    );
    advance(Duration::from_secs(601)).await;
    assert_eq!(*seen.lock().unwrap(), ["hi"]);
}

#[tokio::test(start_paused = true)]
async fn closures_cannot_go_to_a_durable_store_and_unknown_stores_are_refused() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    let closure = scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .store("durable")
        .await;
    assert_eq!(
        closure,
        Err(Error::NotDurable {
            store: "durable".into()
        })
    );
    let nowhere = scheduler
        .add_job(note(&tasks(&seen), "x"), Interval::minutes(1))
        .store("nowhere")
        .await;
    assert_eq!(nowhere, Err(Error::UnknownStore("nowhere".into())));
    assert!(store.jobs().is_empty());
    assert_eq!(scheduler.job_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_change_persists() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    for id in ["a", "b", "c"] {
        scheduler
            .add_job(note(&tasks, id), Interval::minutes(5))
            .id(id)
            .store("durable")
            .await
            .unwrap();
    }
    scheduler
        .modify_job("a")
        .name("renamed")
        .coalesce(false)
        .await
        .unwrap();
    scheduler
        .reschedule_job("b", Interval::hours(1))
        .await
        .unwrap();
    scheduler.pause_job("c").await.unwrap();
    let rows = store.jobs();
    assert_eq!(rows["a"].name.as_deref(), Some("renamed"));
    assert_eq!(rows["a"].options["coalesce"], false);
    assert_eq!(rows["b"].trigger["period"], 3600.0);
    assert_eq!(rows["b"].next_run_time, Some(minutes(60)));
    assert_eq!(rows["c"].next_run_time, None, "paused");
    scheduler.resume_job("c").await.unwrap();
    assert_eq!(store.jobs()["c"].next_run_time, Some(minutes(5)));
    scheduler.remove_job("a").await.unwrap();
    assert!(!store.jobs().contains_key("a"));
    assert_eq!(
        scheduler.get_job("a").await,
        Err(Error::JobNotFound("a".into()))
    );

    // A new scheduler finds what is left as it was.
    let before = scheduler.get_jobs().await.unwrap();
    scheduler.shutdown().await.unwrap();
    let again = scheduler_on(&store, &clock, &seen).await;
    assert_eq!(again.get_jobs().await.unwrap(), before);

    again.remove_all_jobs().await.unwrap();
    assert!(store.jobs().is_empty());
    assert!(again.get_jobs().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn runs_missed_while_down_follow_the_misfire_rules() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    // Every minute, coalesced: 100 runs missed become one.
    scheduler
        .add_job(note(&tasks, "coalesced"), Interval::minutes(1))
        .id("coalesced")
        .store("durable")
        .misfire_grace_time(MisfireGrace::Unlimited)
        .await
        .unwrap();
    // Every minute, not coalesced, 150 s of grace: the runs within it run, one after another.
    scheduler
        .add_job(note(&tasks, "each"), Interval::minutes(1))
        .id("each")
        .store("durable")
        .coalesce(false)
        .misfire_grace_time(Duration::from_secs(150))
        .await
        .unwrap();
    scheduler.shutdown().await.unwrap();
    // Down for 100 minutes and 30 seconds.
    clock.jump(TimeDelta::minutes(100) + TimeDelta::seconds(30));
    let mut events = {
        let again = Scheduler::builder()
            .clock(clock.clone())
            .timezone(Zone::UTC)
            .store("durable", store.clone())
            .tasks(tasks.clone())
            .build();
        let events = again.subscribe();
        again.start().await.unwrap();
        advance(Duration::from_millis(10)).await;
        let mut seen_now: Vec<String> = seen.lock().unwrap().clone();
        seen_now.sort();
        assert_eq!(seen_now, ["coalesced", "each", "each", "each"]);
        // The schedule goes on from the next regular fire time.
        assert_eq!(
            again.get_job("coalesced").await.unwrap().next_run_time,
            Some(minutes(101).with_timezone(&Zone::UTC))
        );
        drop(again);
        events
    };
    let missed: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            Event::JobMissed {
                job_id,
                scheduled_run_time,
            } => Some((job_id.to_string(), scheduled_run_time)),
            _ => None,
        })
        .collect();
    // "each" ran 00:98, 00:99 and 00:100 (within 150 s of 00:100:30); one event for the rest.
    assert_eq!(missed, [("each".to_string(), minutes(1))]);
    let each_runs: Vec<_> = store
        .runs()
        .into_iter()
        .filter(|r| r.job_id == "each" && r.state == RunState::Succeeded)
        .map(|r| r.fire_time)
        .collect();
    assert_eq!(each_runs, [minutes(98), minutes(99), minutes(100)]);
}

#[tokio::test(start_paused = true)]
async fn a_row_that_cannot_be_rebuilt_is_reported_skipped_and_kept() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let unregistered = StoredJob {
        id: "old".into(),
        name: None,
        task: "gone_task".into(),
        args: serde_json::Value::Null,
        trigger: serde_json::json!({ "type": "interval", "period": 60.0, "start": "2024-01-01T00:01:00Z" }),
        options: serde_json::to_value(apsched::JobOptions::default()).unwrap(),
        next_run_time: Some(minutes(1)),
    };
    store.put_row(unregistered.clone());
    store.put_unreadable(UnreadableRow {
        id: Some("garbled".into()),
        reason: "its trigger column is not JSON".into(),
    });
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .store("durable", store.clone())
        .tasks(tasks(&seen))
        .build();
    let mut events = scheduler.subscribe();
    scheduler.start().await.unwrap();
    let not_loaded: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            Event::JobNotLoaded { job_id, reason, .. } => Some((job_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(not_loaded.len(), 2, "{not_loaded:?}");
    assert!(not_loaded
        .iter()
        .any(|(id, reason)| id.as_deref() == Some("old") && reason.contains("gone_task")));
    assert!(not_loaded
        .iter()
        .any(|(id, _)| id.as_deref() == Some("garbled")));
    assert!(scheduler.get_jobs().await.unwrap().is_empty());
    advance(Duration::from_secs(120)).await;
    assert_eq!(store.jobs()["old"], unregistered, "left as it was");
}

#[tokio::test(start_paused = true)]
async fn run_history_is_kept_for_durable_and_memory_jobs() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    scheduler
        .add_job(note(&tasks, "x"), Interval::minutes(1))
        .id("durable")
        .store("durable")
        .await
        .unwrap();
    scheduler
        .add_job(
            tasks.task("fail", serde_json::Value::Null).unwrap(),
            Interval::minutes(1),
        )
        .id("failing")
        .store("durable")
        .await
        .unwrap();
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("memory")
        .await
        .unwrap();
    advance(Duration::from_secs(121)).await;
    let runs = scheduler.get_job_runs("durable", 10).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.fire_time, r.state))
            .collect::<Vec<_>>(),
        [
            (minutes(2), RunState::Succeeded),
            (minutes(1), RunState::Succeeded)
        ]
    );
    assert_eq!(runs[0].result, Some(serde_json::json!({ "noted": "x" })));
    assert!(runs[0].duration().is_some());
    let failed = scheduler.get_job_runs("failing", 1).await.unwrap();
    assert_eq!(failed[0].state, RunState::Failed);
    assert_eq!(failed[0].error.as_deref(), Some("the disk is full"));
    let memory = scheduler.get_job_runs("memory", 10).await.unwrap();
    assert_eq!(memory.len(), 2);
    assert_eq!(memory[0].state, RunState::Succeeded);
    // History outlives the job in its durable store.
    scheduler.remove_job("durable").await.unwrap();
    assert_eq!(
        scheduler.get_job_runs("durable", 10).await.unwrap().len(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_goes_away_is_reported_and_recovered_from_without_losing_a_change() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    let mut events = scheduler.subscribe();
    scheduler
        .add_job(note(&tasks, "tick"), Interval::minutes(1))
        .id("tick")
        .store("durable")
        .await
        .unwrap();
    store.go_down();
    // The job keeps running while its store is away; its next-run advances wait.
    advance(Duration::from_secs(61)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    let errors = drain(&mut events)
        .into_iter()
        .filter(|e| matches!(e, Event::StoreError { store, .. } if store == "durable"))
        .count();
    assert!(errors >= 1, "reported");
    // A caller's change to that store fails at once, and changes nothing.
    let refused = tokio::time::timeout(Duration::from_secs(1), scheduler.pause_job("tick"))
        .await
        .expect("fails fast, no hang");
    assert!(matches!(refused, Err(Error::Store { .. })), "{refused:?}");
    assert!(!scheduler.get_job("tick").await.unwrap().is_paused());
    // Memory jobs are not affected.
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .id("memory")
        .await
        .unwrap();
    store.come_back();
    advance(Duration::from_secs(60)).await;
    assert!(drain(&mut events)
        .iter()
        .any(|e| matches!(e, Event::StoreRecovered { store } if store == "durable")));
    // The advances made while it was away were written once it came back.
    assert_eq!(store.jobs()["tick"].next_run_time, Some(minutes(3)));
    scheduler.pause_job("tick").await.unwrap();
    assert_eq!(store.jobs()["tick"].next_run_time, None);
}

#[tokio::test(start_paused = true)]
async fn add_jobs_writes_a_store_s_share_in_one_batch_or_adds_nothing() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    scheduler.get_jobs().await.unwrap();
    let before = store.batches();
    let jobs = scheduler
        .add_jobs((0..100).map(|i| {
            scheduler
                .add_job(note(&tasks, "x"), Date::at(minutes(5)))
                .id(format!("job-{i}"))
                .store("durable")
        }))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 100);
    assert_eq!(store.jobs().len(), 100);
    assert_eq!(store.batches() - before, 1, "one transaction");
    // One taken id refuses the whole batch.
    let refused = scheduler
        .add_jobs(["new", "job-7"].map(|id| {
            scheduler
                .add_job(note(&tasks, "x"), Date::at(minutes(5)))
                .id(id)
                .store("durable")
        }))
        .await;
    assert_eq!(refused, Err(Error::ConflictingId("job-7".into())));
    assert_eq!(
        scheduler.get_job("new").await,
        Err(Error::JobNotFound("new".into()))
    );
    assert_eq!(scheduler.job_count(), 100);
}

#[tokio::test(start_paused = true)]
async fn run_history_past_its_retention_is_deleted_and_zero_keeps_none() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .store("durable", store.clone())
        .tasks(tasks.clone())
        .history_retention(Duration::from_secs(86_400))
        .build();
    scheduler.start().await.unwrap();
    scheduler
        .add_job(note(&tasks, "x"), Interval::hours(6))
        .id("j")
        .store("durable")
        .await
        .unwrap();
    // Runs at 6 h, 12 h, ... 48 h; the hourly delete keeps the last day's.
    advance(Duration::from_secs(48 * 3600 + 1800)).await;
    let kept: Vec<_> = store.runs().iter().map(|r| r.fire_time).collect();
    assert!(!kept.is_empty());
    assert!(
        kept.iter().all(|t| *t >= t0() + TimeDelta::hours(23)),
        "older than a day: {kept:?}"
    );

    let (none, clock) = (TestStore::new(), TestClock::new(t0()));
    let scheduler = Scheduler::builder()
        .clock(clock)
        .store("durable", none.clone())
        .tasks(tasks.clone())
        .history_retention(Duration::ZERO)
        .build();
    scheduler.start().await.unwrap();
    scheduler
        .add_job(note(&tasks, "x"), Interval::hours(1))
        .store("durable")
        .await
        .unwrap();
    advance(Duration::from_secs(3 * 3600 + 1)).await;
    assert!(none.runs().is_empty());
    assert_eq!(seen.lock().unwrap().len(), 8 + 3);
}

#[tokio::test(start_paused = true)]
async fn jobs_export_from_one_store_and_import_into_another_with_a_conflict_policy() {
    let (store, clock, seen) = (TestStore::new(), TestClock::new(t0()), Seen::default());
    let tasks = tasks(&seen);
    let scheduler = scheduler_on(&store, &clock, &seen).await;
    for (id, text) in [("a", "first"), ("b", "second")] {
        scheduler
            .add_job(note(&tasks, text), Interval::minutes(5))
            .id(id)
            .store("durable")
            .await
            .unwrap();
    }
    scheduler
        .add_job(|| async {}, Interval::minutes(5))
        .id("closure")
        .await
        .unwrap();
    let mut exported = Vec::new();
    assert_eq!(
        scheduler
            .export_jobs("durable", &mut exported)
            .await
            .unwrap(),
        2
    );
    let json: serde_json::Value = serde_json::from_slice(&exported).unwrap();
    assert_eq!(
        (json["format"].as_str(), json["version"].as_u64()),
        (Some("apsched-jobs"), Some(1))
    );

    // Into the memory store of another scheduler that has "a" already.
    let other = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .tasks(tasks.clone())
        .build();
    other.start().await.unwrap();
    other
        .add_job(note(&tasks, "mine"), Interval::hours(1))
        .id("a")
        .await
        .unwrap();
    assert_eq!(
        other
            .import_jobs("default", exported.as_slice(), apsched::OnConflict::Fail)
            .await,
        Err(Error::ConflictingId("a".into()))
    );
    assert_eq!(other.job_count(), 1, "nothing imported");
    let skipped = other
        .import_jobs("default", exported.as_slice(), apsched::OnConflict::Skip)
        .await
        .unwrap();
    assert_eq!(
        (skipped.imported, skipped.skipped),
        (1, vec!["a".to_string()])
    );
    assert_eq!(
        other.get_job("b").await.unwrap().next_run_time,
        scheduler.get_job("b").await.unwrap().next_run_time
    );
    let replaced = other
        .import_jobs("default", exported.as_slice(), apsched::OnConflict::Replace)
        .await
        .unwrap();
    assert_eq!(replaced.imported, 2);
    advance(Duration::from_secs(301)).await;
    let mut ran = seen.lock().unwrap().clone();
    ran.sort();
    // The exporting scheduler's two, and the imported two (the replaced "mine" never ran).
    assert_eq!(ran, ["first", "first", "second", "second"]);
    // Not an export: refused, nothing changes.
    let refused = other
        .import_jobs("default", &b"{\"jobs\": 3}"[..], apsched::OnConflict::Skip)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Store {
                operation: "import",
                ..
            })
        ),
        "{refused:?}"
    );
}
