//! Metrics (feature `metrics`): what a recorder sees for a success, an error, a miss and a
//! max-instances skip, the gauges, store errors, and job labels off by default, on when asked.
//!
//! Each test installs its own `DebuggingRecorder` as the thread's default recorder before it
//! builds its scheduler: `#[tokio::test]` runs every task (the core, the runs, the store's
//! writer) on the test's thread, so the tests of this binary run in parallel without sharing
//! a series.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apsched::metrics::Metrics;
use apsched::trigger::{Date, Interval};
use apsched::{Event, Scheduler, TestClock, Zone};
use chrono::TimeDelta;
use common::store::{note, tasks, Seen, TestStore};
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// A series: its kind, its name, its labels sorted.
type Series = (MetricKind, String, Vec<(String, String)>);

/// What a recorder has seen so far. The debugging recorder's snapshots take what they read
/// (counters and gauges back to zero, histograms emptied), so this adds each snapshot up.
struct Recorded {
    snapshotter: Snapshotter,
    counters: HashMap<Series, u64>,
    gauges: HashMap<Series, f64>,
    histograms: HashMap<Series, Vec<f64>>,
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Recorded {
        Recorded {
            snapshotter: recorder.snapshotter(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            let series = (key.kind(), key.key().name().to_string(), labels);
            match value {
                DebugValue::Counter(n) => *self.counters.entry(series).or_default() += n,
                DebugValue::Gauge(v) => *self.gauges.entry(series).or_default() += v.0,
                DebugValue::Histogram(vs) => self
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(vs.into_iter().map(|v| v.0)),
            }
        }
    }

    fn series(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Series {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        (kind, name.to_string(), labels)
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.refresh();
        let series = Recorded::series(MetricKind::Counter, name, labels);
        self.counters.get(&series).copied().unwrap_or(0)
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.refresh();
        let series = Recorded::series(MetricKind::Gauge, name, labels);
        self.gauges.get(&series).copied().unwrap_or(0.0)
    }

    /// A histogram's values, sorted.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.refresh();
        let series = Recorded::series(MetricKind::Histogram, name, labels);
        let mut values = self.histograms.get(&series).cloned().unwrap_or_default();
        values.sort_by(f64::total_cmp);
        values
    }

    /// Every series seen with a `job` label.
    fn job_labelled(&mut self) -> Vec<Series> {
        self.refresh();
        let all = self.counters.keys().chain(self.histograms.keys());
        let mut labelled: Vec<Series> = all
            .filter(|(_, _, labels)| labels.iter().any(|(k, _)| k == "job"))
            .cloned()
            .collect();
        labelled.sort();
        labelled
    }
}

fn runs(seen: &mut Recorded, outcome: &str) -> u64 {
    seen.counter("apsched_runs_total", &[("outcome", outcome)])
}

/// `a` and `b` within a millisecond: Tokio's timer rounds up to whole milliseconds.
fn close(values: &[f64], wanted: &[f64]) -> bool {
    values.len() == wanted.len()
        && values
            .iter()
            .zip(wanted)
            .all(|(a, b)| (a - b).abs() <= 0.001)
}

/// A started scheduler on a test clock with `store` as its store "durable".
async fn durable_scheduler(store: &TestStore, notes: &Seen) -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(TestClock::new(t0()))
        .timezone(Zone::UTC)
        .store("durable", store.clone())
        .tasks(tasks(notes))
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

async fn scheduler_with(clock: &TestClock, metrics: Metrics) -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .timezone(Zone::UTC)
        .metrics(metrics)
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

#[tokio::test(start_paused = true)]
async fn a_success_and_an_error_are_counted_with_their_durations_and_lateness() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let at = t0() + TimeDelta::seconds(10);
    scheduler
        .add_job(|| tokio::time::sleep(Duration::from_secs(2)), Date::at(at))
        .await
        .unwrap();
    scheduler
        .add_job(
            || async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Err::<(), _>("the disk is full")
            },
            Date::at(at),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(20)).await;

    assert_eq!(runs(&mut seen, "success"), 1);
    assert_eq!(runs(&mut seen, "error"), 1);
    assert_eq!(runs(&mut seen, "missed"), 0);
    let durations = seen.histogram("apsched_run_duration_seconds", &[]);
    assert!(close(&durations, &[0.5, 2.0]), "{durations:?}");
    let lateness = seen.histogram("apsched_run_lateness_seconds", &[]);
    assert!(close(&lateness, &[0.0, 0.0]), "{lateness:?}");
    scheduler.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_run_later_than_its_grace_time_counts_as_missed() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(|| async {}, Interval::minutes(10))
        .misfire_grace_time(Duration::from_secs(30))
        .await
        .unwrap();
    // Starve the core: the clock moves 10 min 45 s before it gets to run again.
    tokio::time::advance(Duration::from_secs(645)).await;
    advance(Duration::from_millis(1)).await;
    assert_eq!(runs(&mut seen, "missed"), 1);
    assert_eq!(runs(&mut seen, "success"), 0);
    assert!(seen
        .histogram("apsched_run_lateness_seconds", &[])
        .is_empty());
    // The next fire time runs, on time.
    advance(Duration::from_secs(600)).await;
    assert_eq!(runs(&mut seen, "success"), 1);
    assert_eq!(runs(&mut seen, "missed"), 1);
    let lateness = seen.histogram("apsched_run_lateness_seconds", &[]);
    assert!(close(&lateness, &[0.0]), "{lateness:?}");
    scheduler.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_instances_skips_are_counted_and_runs_in_progress_is_a_gauge() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(
            // Each run takes 150 s: two later fire times fall while it runs.
            || tokio::time::sleep(Duration::from_secs(150)),
            Interval::minutes(1),
        )
        .await
        .unwrap();
    advance(Duration::from_secs(60 * 6 + 1)).await;
    // Runs start at 1 and 4; 2, 3, 5 and 6 are skipped; the run of 4 goes on to 6:30.
    assert_eq!(runs(&mut seen, "max_instances"), 4);
    assert_eq!(runs(&mut seen, "success"), 1);
    assert_eq!(seen.gauge("apsched_runs_in_progress", &[]), 1.0);
    let durations = seen.histogram("apsched_run_duration_seconds", &[]);
    assert!(close(&durations, &[150.0]), "{durations:?}");
    advance(Duration::from_secs(30)).await;
    assert_eq!(runs(&mut seen, "success"), 2);
    assert_eq!(seen.gauge("apsched_runs_in_progress", &[]), 0.0);
    scheduler.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn jobs_are_a_gauge_by_store_and_leave_it_at_shutdown() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (store, notes) = (TestStore::new(), Seen::default());
    let scheduler = durable_scheduler(&store, &notes).await;
    for id in ["a", "b", "c"] {
        scheduler
            .add_job(|| async {}, Interval::minutes(1))
            .id(id)
            .await
            .unwrap();
    }
    scheduler
        .add_job(note(&tasks(&notes), "hi"), Interval::minutes(1))
        .store("durable")
        .await
        .unwrap();
    scheduler.get_jobs().await.unwrap();
    let jobs = |seen: &mut Recorded, store| seen.gauge("apsched_jobs", &[("store", store)]);
    assert_eq!(jobs(&mut seen, "default"), 3.0);
    assert_eq!(jobs(&mut seen, "durable"), 1.0);
    scheduler.remove_job("b").await.unwrap();
    scheduler.get_jobs().await.unwrap();
    assert_eq!(jobs(&mut seen, "default"), 2.0);
    // A one-shot job leaves once it ran.
    scheduler
        .add_job(|| async {}, Date::at(t0() + TimeDelta::seconds(5)))
        .await
        .unwrap();
    scheduler.get_jobs().await.unwrap();
    assert_eq!(jobs(&mut seen, "default"), 3.0);
    advance(Duration::from_secs(6)).await;
    assert_eq!(jobs(&mut seen, "default"), 2.0);
    scheduler.shutdown().await.unwrap();
    assert_eq!(jobs(&mut seen, "default"), 0.0);
    assert_eq!(jobs(&mut seen, "durable"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_counted_by_store_and_operation() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (store, notes) = (TestStore::new(), Seen::default());
    let scheduler = durable_scheduler(&store, &notes).await;
    let mut events = scheduler.subscribe();
    scheduler
        .add_job(note(&tasks(&notes), "tick"), Interval::minutes(1))
        .store("durable")
        .await
        .unwrap();
    let errors = |seen: &mut Recorded| {
        seen.counter(
            "apsched_store_errors_total",
            &[("store", "durable"), ("operation", "write")],
        )
    };
    assert_eq!(errors(&mut seen), 0);
    store.go_down();
    // The run's write after a minute fails, and is retried.
    tokio::time::timeout(Duration::from_secs(120), async {
        while !matches!(events.recv().await, Some(Event::StoreError { .. }) | None) {}
    })
    .await
    .expect("a StoreError event within two minutes");
    assert!(errors(&mut seen) >= 1);
    scheduler.shutdown_timeout(Duration::ZERO).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn job_labels_are_off_by_default() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let scheduler = scheduler_with(&TestClock::new(t0()), Metrics::new()).await;
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .name("report")
        .await
        .unwrap();
    advance(Duration::from_secs(61)).await;
    assert_eq!(runs(&mut seen, "success"), 1);
    assert_eq!(seen.job_labelled(), Vec::<Series>::new());
    scheduler.shutdown().await.unwrap();
}

async fn nightly() {}

#[tokio::test(start_paused = true)]
async fn job_labels_name_each_job_when_enabled() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let scheduler = scheduler_with(&TestClock::new(t0()), Metrics::new().job_labels(true)).await;
    // Named by `.name`, by its function, and (a closure) by its id.
    scheduler
        .add_job(|| async {}, Interval::minutes(1))
        .name("report")
        .await
        .unwrap();
    scheduler
        .add_job(nightly, Date::at(t0() + TimeDelta::seconds(30)))
        .await
        .unwrap();
    scheduler
        .add_job(
            || async { Err::<(), _>("no") },
            Date::at(t0() + TimeDelta::seconds(30)),
        )
        .id("closure")
        .await
        .unwrap();
    advance(Duration::from_secs(61)).await;
    let job_runs = |seen: &mut Recorded, job, outcome| {
        seen.counter("apsched_runs_total", &[("outcome", outcome), ("job", job)])
    };
    assert_eq!(job_runs(&mut seen, "report", "success"), 1);
    assert_eq!(job_runs(&mut seen, "nightly", "success"), 1);
    assert_eq!(job_runs(&mut seen, "closure", "error"), 1);
    assert_eq!(runs(&mut seen, "success"), 0, "no label-free series");
    let durations = seen.histogram("apsched_run_duration_seconds", &[("job", "nightly")]);
    assert!(close(&durations, &[0.0]), "{durations:?}");
    let lateness = seen.histogram("apsched_run_lateness_seconds", &[("job", "report")]);
    assert!(close(&lateness, &[0.0]), "{lateness:?}");
    scheduler.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retried_attempts_and_timeouts_count_by_their_outcome() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::new(&recorder);
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let policy =
        apsched::RetryPolicy::new(3).backoff(Duration::from_secs(1), Duration::from_secs(1));
    scheduler
        .add_job(
            |run: apsched::JobContext| async move {
                match run.attempt() {
                    1 | 2 => Err("not yet"),
                    _ => Ok(()),
                }
            },
            Interval::hours(1),
        )
        .id("flaky")
        .retry(policy)
        .await
        .unwrap();
    scheduler
        .add_job(std::future::pending::<()>, Interval::hours(1))
        .id("hangs")
        .timeout(Duration::from_secs(1))
        .await
        .unwrap();
    for id in ["flaky", "hangs"] {
        let outcome = scheduler.run_job_now(id).await.unwrap().outcome();
        tokio::time::timeout(Duration::from_secs(30), outcome)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        runs(&mut seen, "retrying"),
        2,
        "two attempts failed and were retried"
    );
    assert_eq!(runs(&mut seen, "success"), 1);
    assert_eq!(runs(&mut seen, "error"), 0);
    assert_eq!(runs(&mut seen, "timed_out"), 1);
    // One lateness per run, not per attempt.
    assert_eq!(seen.histogram("apsched_run_lateness_seconds", &[]).len(), 2);
    assert_eq!(seen.histogram("apsched_run_duration_seconds", &[]).len(), 4);
    scheduler.shutdown().await.unwrap();
}
