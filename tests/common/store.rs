//! A durable store for tests, kept in the test's memory: a new scheduler opened on a clone
//! finds what the last one wrote, and a test can make it fail like a database that went away.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apsched::store::{BackendError, JobStore, RunRecord, StoredJob, UnreadableRow, Write};
use apsched::TaskRegistry;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

#[derive(Clone, Default)]
pub struct TestStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<String, StoredJob>,
    runs: Vec<RunRecord>,
    unreadable: Vec<UnreadableRow>,
    /// While set, every call fails with this message.
    down: Option<String>,
    /// How many write batches were applied.
    batches: usize,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn jobs(&self) -> BTreeMap<String, StoredJob> {
        self.with(|i| i.jobs.clone())
    }

    pub fn runs(&self) -> Vec<RunRecord> {
        self.with(|i| i.runs.clone())
    }

    pub fn batches(&self) -> usize {
        self.with(|i| i.batches)
    }

    pub fn put_row(&self, job: StoredJob) {
        self.with(|i| i.jobs.insert(job.id.clone(), job));
    }

    pub fn put_unreadable(&self, row: UnreadableRow) {
        self.with(|i| i.unreadable.push(row));
    }

    /// Every call fails from now on, as a database that went away.
    pub fn go_down(&self) {
        self.with(|i| i.down = Some("connection refused".into()));
    }

    pub fn come_back(&self) {
        self.with(|i| i.down = None);
    }

    fn check(&self) -> Result<(), BackendError> {
        match self.with(|i| i.down.clone()) {
            Some(message) => Err(message.into()),
            None => Ok(()),
        }
    }
}

impl JobStore for TestStore {
    fn describe(&self) -> String {
        "test:memory".into()
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<Result<StoredJob, UnreadableRow>>, BackendError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.with(|i| {
                let mut rows: Vec<_> = i.jobs.values().cloned().map(Ok).collect();
                rows.extend(i.unreadable.iter().cloned().map(Err));
                rows
            }))
        })
    }

    fn write<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.check()?;
            self.with(|i| {
                i.batches += 1;
                for write in writes {
                    match write {
                        Write::Put(job) => {
                            i.jobs.insert(job.id.clone(), job.clone());
                        }
                        Write::Next { id, next_run_time } => {
                            if let Some(job) = i.jobs.get_mut(id) {
                                job.next_run_time = *next_run_time;
                            }
                        }
                        Write::Delete { id } => {
                            i.jobs.remove(id);
                        }
                        Write::DeleteAll => i.jobs.clear(),
                        Write::Run(run) => {
                            match i
                                .runs
                                .iter_mut()
                                .find(|r| r.job_id == run.job_id && r.fire_time == run.fire_time)
                            {
                                Some(existing) => *existing = run.clone(),
                                None => i.runs.push(run.clone()),
                            }
                        }
                        other => panic!("a write the test store does not know: {other:?}"),
                    }
                }
            });
            Ok(())
        })
    }

    fn runs<'a>(
        &'a self,
        job_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async move {
            self.check()?;
            let mut runs: Vec<_> = self.with(|i| {
                i.runs
                    .iter()
                    .filter(|r| r.job_id == job_id)
                    .cloned()
                    .collect()
            });
            runs.sort_by_key(|run: &RunRecord| std::cmp::Reverse(run.fire_time));
            runs.truncate(limit as usize);
            Ok(runs)
        })
    }

    fn retries(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BackendError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.with(|i| {
                i.runs
                    .iter()
                    .filter(|r| r.state == apsched::store::RunState::Retrying)
                    .cloned()
                    .collect()
            }))
        })
    }

    fn prune_runs(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, BackendError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.with(|i| {
                let mut pruned = 0u64;
                i.runs.retain(|r| {
                    let old =
                        r.state.is_final() && r.fire_time < before && pruned < u64::from(limit);
                    pruned += u64::from(old);
                    !old
                });
                pruned
            }))
        })
    }
}

/// The argument of the `note` task.
#[derive(Clone, serde::Deserialize)]
struct Note {
    text: String,
}

/// The texts the `note` task saw, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Tasks for durable jobs: `note` records its text in `seen` and returns
/// `{"noted": text}`; `fail` always fails with "the disk is full".
pub fn tasks(seen: &Seen) -> TaskRegistry {
    let seen = Arc::clone(seen);
    TaskRegistry::new()
        .register("note", move |note: Note| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(note.text.clone());
                Ok::<_, String>(serde_json::json!({ "noted": note.text }))
            }
        })
        .register("fail", |(): ()| async { Err::<(), _>("the disk is full") })
        // Fails its first attempt of every run, then succeeds.
        .register_with_context("flaky", |run: apsched::JobContext, (): ()| async move {
            match run.attempt() {
                1 => Err("the first attempt fails".to_string()),
                attempt => Ok(attempt),
            }
        })
}

/// The `note` task for `text`.
pub fn note(tasks: &TaskRegistry, text: &str) -> apsched::Task {
    tasks
        .task("note", serde_json::json!({ "text": text }))
        .unwrap()
}
