//! Metrics (feature `metrics`): what a scheduler reports through the [`metrics`] facade, so the
//! application picks the exporter (Prometheus, StatsD, OpenTelemetry, ...).
//!
//! Every scheduler built while the feature is on reports these, named `apsched_*`:
//!
//! | metric | kind | labels | what it counts |
//! |---|---|---|---|
//! | `apsched_runs_total` | counter | `outcome`, [`job`](Metrics::job_labels) | runs by how they ended: `success`, `error` (an `Err`, a panic, or cancelled at shutdown), `timed_out` (past its [`timeout`](crate::JobOptions::timeout)), `retrying` (an attempt that failed and is tried again: each attempt counts once), `missed` (later than `misfire_grace_time`; a stretch of missed fire times counts once, as its [`JobMissed`](crate::Event::JobMissed) event), `max_instances` (skipped while `max_instances` runs were going), `abandoned` (still going when a shutdown stopped waiting) |
//! | `apsched_run_duration_seconds` | histogram | [`job`](Metrics::job_labels) | how long each attempt that ended took |
//! | `apsched_run_lateness_seconds` | histogram | [`job`](Metrics::job_labels) | how long after its fire time each run started (jitter included; retries are not counted) |
//! | `apsched_runs_in_progress` | gauge | | runs started and not yet ended |
//! | `apsched_jobs` | gauge | `store` | jobs the scheduler holds, by store (a cluster's jobs live in its database and are not counted) |
//! | `apsched_store_errors_total` | counter | `store`, `operation` | failed store operations (`write`, `load jobs`, `delete old runs`, a cluster's `claim`, ...), each retry that fails included |
//! | `apsched_runs_fenced_total` | counter | | runs of this cluster node whose outcome was dropped because the cluster had reaped them ([`RunFenced`](crate::Event::RunFenced)) |
//!
//! Gauges move by increments, so several schedulers in one process add up. Histograms are in
//! seconds; an exporter chooses their buckets (Prometheus:
//! `PrometheusBuilder::set_buckets_for_metric`).
//!
//! # The recorder
//!
//! Install the recorder (`metrics::set_global_recorder`, or an exporter's `install`) before
//! building the scheduler: the label-free series are registered once, when the scheduler is
//! built, so the hot path costs one atomic operation a metric and no lookup. Without a
//! recorder the calls do nothing and cost next to nothing. With
//! [`job_labels`](Metrics::job_labels) on, the labelled series are looked up at each run, in the
//! recorder current then.
//!
//! # Example
//!
//! ```
//! use apsched::metrics::Metrics;
//! use apsched::Scheduler;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?; first, then:
//! let scheduler = Scheduler::builder()
//!     .metrics(Metrics::new().job_labels(true)) // a few named jobs, not a million
//!     .build();
//! # drop(scheduler);
//! # }
//! ```
//!
//! The module owns every metric name and label; the core calls it where it already tracks runs
//! and jobs, and without the feature those calls are not compiled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use metrics::{Counter, Gauge, Histogram, SharedString, Unit};

use crate::core::{Entry, StoreInfo};
use crate::JobId;

const RUNS: &str = "apsched_runs_total";
const DURATION: &str = "apsched_run_duration_seconds";
const LATENESS: &str = "apsched_run_lateness_seconds";
const IN_PROGRESS: &str = "apsched_runs_in_progress";
const JOBS: &str = "apsched_jobs";
const STORE_ERRORS: &str = "apsched_store_errors_total";
const FENCED: &str = "apsched_runs_fenced_total";

/// How a scheduler reports [metrics](self); set with
/// [`SchedulerBuilder::metrics`](crate::SchedulerBuilder::metrics).
///
/// The default reports every metric without job labels.
///
/// ```
/// use apsched::metrics::Metrics;
///
/// let metrics = Metrics::new().job_labels(true);
/// assert!(metrics.has_job_labels());
/// assert!(!Metrics::default().has_job_labels());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Metrics {
    job_labels: bool,
}

impl Metrics {
    /// The default settings: every metric, no job labels.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Whether the run metrics (`apsched_runs_total`, `apsched_run_duration_seconds`,
    /// `apsched_run_lateness_seconds`) carry a `job` label with the job's name (its id where the
    /// name is not known: a cluster's missed runs). Default off: each job name is
    /// a series of its own, and a million jobs must not become a million series. Labelled
    /// series are also looked up in the recorder at each run, where the label-free ones are
    /// registered once.
    pub fn job_labels(mut self, on: bool) -> Metrics {
        self.job_labels = on;
        self
    }

    /// Whether [`job_labels`](Self::job_labels) is on.
    pub fn has_job_labels(&self) -> bool {
        self.job_labels
    }
}

/// How a run ended, or why it did not start: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Error,
    TimedOut,
    /// An attempt that failed and is tried again.
    Retrying,
    Missed,
    MaxInstances,
    Abandoned,
}

impl Outcome {
    /// Every outcome, in the order of the cached counters; a new one goes here and in `label`.
    const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::Error,
        Outcome::TimedOut,
        Outcome::Retrying,
        Outcome::Missed,
        Outcome::MaxInstances,
        Outcome::Abandoned,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::TimedOut => "timed_out",
            Outcome::Retrying => "retrying",
            Outcome::Missed => "missed",
            Outcome::MaxInstances => "max_instances",
            Outcome::Abandoned => "abandoned",
        }
    }

    /// An ended attempt's outcome, from its run state.
    pub(crate) fn of_state(state: crate::store::RunState) -> Outcome {
        use crate::store::RunState;
        match state {
            RunState::Succeeded => Outcome::Success,
            RunState::TimedOut => Outcome::TimedOut,
            _ => Outcome::Error,
        }
    }

    /// A cluster run's outcome, from how it ended.
    pub(crate) fn of_end(end: &crate::core::End) -> Outcome {
        match end {
            crate::core::End::Returned(Ok(_)) => Outcome::Success,
            crate::core::End::Returned(Err(_)) => Outcome::Error,
            crate::core::End::TimedOut | crate::core::End::StillGoing => Outcome::TimedOut,
        }
    }
}

/// A run's `job` label, kept from its start to its end: `None` unless job labels are on.
pub(crate) type JobLabel = Option<SharedString>;

/// A scheduler's instruments: the label-free series registered once, and what the core last
/// published to the gauges (they move by increments, so schedulers in one process add up).
pub(crate) struct Instruments {
    job_labels: bool,
    runs: [Counter; Outcome::ALL.len()],
    duration: Histogram,
    lateness: Histogram,
    in_progress: Gauge,
    /// By store index.
    jobs: Box<[Gauge]>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fenced: Counter,
    /// The values the gauges were last moved to; only the core writes them.
    published_runs: AtomicUsize,
    published_jobs: Box<[AtomicUsize]>,
}

impl Default for Instruments {
    /// Instruments that record nothing (before the builder's are in place).
    fn default() -> Instruments {
        Instruments {
            job_labels: false,
            runs: std::array::from_fn(|_| Counter::noop()),
            duration: Histogram::noop(),
            lateness: Histogram::noop(),
            in_progress: Gauge::noop(),
            jobs: Box::new([]),
            fenced: Counter::noop(),
            published_runs: AtomicUsize::new(0),
            published_jobs: Box::new([]),
        }
    }
}

impl Instruments {
    /// Describes the metrics to the current recorder and registers the label-free series. A
    /// recorder installed after this never sees them (see the module docs).
    pub(crate) fn new(settings: &Metrics, stores: &[StoreInfo]) -> Instruments {
        // Described by every scheduler, not once per process: a later scheduler may report to
        // another (local) recorder. Describing again is harmless.
        metrics::describe_counter!(RUNS, Unit::Count, "Job runs by outcome");
        metrics::describe_histogram!(DURATION, Unit::Seconds, "How long job runs took");
        metrics::describe_histogram!(
            LATENESS,
            Unit::Seconds,
            "How long after their fire time job runs started"
        );
        metrics::describe_gauge!(IN_PROGRESS, Unit::Count, "Job runs under way");
        metrics::describe_gauge!(JOBS, Unit::Count, "Jobs held, by store");
        metrics::describe_counter!(STORE_ERRORS, Unit::Count, "Failed job store operations");
        metrics::describe_counter!(
            FENCED,
            Unit::Count,
            "Cluster runs whose outcome was dropped because the cluster had reaped them"
        );
        Instruments {
            job_labels: settings.job_labels,
            runs: Outcome::ALL.map(|outcome| metrics::counter!(RUNS, "outcome" => outcome.label())),
            duration: metrics::histogram!(DURATION),
            lateness: metrics::histogram!(LATENESS),
            in_progress: metrics::gauge!(IN_PROGRESS),
            jobs: stores
                .iter()
                .map(|store| metrics::gauge!(JOBS, "store" => SharedString::from(Arc::clone(&store.name))))
                .collect(),
            fenced: metrics::counter!(FENCED),
            published_runs: AtomicUsize::new(0),
            published_jobs: stores.iter().map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// A run of a job in the table started `lateness` after its fire time (`None` for a retry:
    /// its start is late by its backoff, not by the scheduler); returns the run's `job` label,
    /// for its end.
    pub(crate) fn run_started(&self, entry: &Entry, lateness: Option<TimeDelta>) -> JobLabel {
        let job = self.label(entry.given_name(), entry.task.name(), &entry.id);
        if let Some(lateness) = lateness {
            self.record_lateness(&job, lateness);
        }
        job
    }

    /// The same for a cluster run (its job is in the database: the claim carries its names).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn cluster_run_started(
        &self,
        name: Option<&Arc<str>>,
        task: Option<&'static str>,
        id: &JobId,
        lateness: TimeDelta,
    ) -> JobLabel {
        let job = self.label(name, task, id);
        self.record_lateness(&job, lateness);
        job
    }

    /// A run ended after `duration`.
    pub(crate) fn run_ended(&self, job: &JobLabel, outcome: Outcome, duration: Duration) {
        self.count(job, outcome);
        let seconds = duration.as_secs_f64();
        match job {
            None => self.duration.record(seconds),
            Some(job) => metrics::histogram!(DURATION, "job" => job.clone()).record(seconds),
        }
    }

    /// A run of a job in the table (or just gone from it) did not start: missed or skipped.
    pub(crate) fn run_skipped(&self, outcome: Outcome, entry: Option<&Entry>, id: &JobId) {
        let job = match entry {
            Some(entry) => self.label(entry.given_name(), entry.task.name(), &entry.id),
            None => self.label(None, None, id),
        };
        self.count(&job, outcome);
    }

    /// A run not in the table did not start (a cluster's): labelled by `name` as given.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn run_skipped_named(&self, outcome: Outcome, name: &str) {
        let job = self.job_labels.then(|| SharedString::from(name.to_owned()));
        self.count(&job, outcome);
    }

    /// One more run with `outcome`.
    pub(crate) fn count(&self, job: &JobLabel, outcome: Outcome) {
        match job {
            None => self.runs[outcome as usize].increment(1),
            Some(job) => {
                metrics::counter!(RUNS, "outcome" => outcome.label(), "job" => job.clone())
                    .increment(1);
            }
        }
    }

    /// The `job` label, if they are on: the name given, else the task's name, else the id
    /// (as `Entry::name`).
    fn label(&self, name: Option<&Arc<str>>, task: Option<&'static str>, id: &JobId) -> JobLabel {
        self.job_labels.then(|| match (name, task) {
            (Some(name), _) => SharedString::from(Arc::clone(name)),
            (None, Some(name)) => SharedString::const_str(name),
            (None, None) => SharedString::from(id.shared()),
        })
    }

    fn record_lateness(&self, job: &JobLabel, lateness: TimeDelta) {
        // A run never starts before its time; a clock stepped back is not lateness.
        let seconds = lateness.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        match job {
            None => self.lateness.record(seconds),
            Some(job) => metrics::histogram!(LATENESS, "job" => job.clone()).record(seconds),
        }
    }

    /// A cluster run's outcome was fenced off.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn run_fenced(&self) {
        self.fenced.increment(1);
    }

    /// Moves the gauges to the core's counts, by the change since it last did. Called by the
    /// core on every turn of its loop (a comparison a gauge when nothing changed), and with
    /// zeros when it ends.
    pub(crate) fn publish(&self, runs: usize, jobs_by_store: &[usize]) {
        move_gauge(&self.in_progress, &self.published_runs, runs);
        for (i, (gauge, published)) in self.jobs.iter().zip(&*self.published_jobs).enumerate() {
            move_gauge(gauge, published, jobs_by_store.get(i).copied().unwrap_or(0));
        }
    }
}

fn move_gauge(gauge: &Gauge, published: &AtomicUsize, now: usize) {
    let before = published.swap(now, Ordering::Relaxed);
    if now > before {
        gauge.increment((now - before) as f64);
    } else if now < before {
        gauge.decrement((before - now) as f64);
    }
}

/// A store operation failed. Counted where the store's error is made (every failure passes
/// there), so it needs no instruments: failures are rare, the lookup is cheap enough.
pub(crate) fn store_failed(store: &Arc<str>, operation: &'static str) {
    metrics::counter!(
        STORE_ERRORS,
        "store" => SharedString::from(Arc::clone(store)),
        "operation" => operation
    )
    .increment(1);
}
