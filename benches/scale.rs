//! Scale benchmark: apsched against a plain-Tokio floor (one task per job sleeping with
//! `tokio::time::sleep_until`), printed as a table of goals.
//!
//! ```text
//! cargo bench --bench scale                      # every scenario, full scale (a few minutes)
//! cargo bench --bench scale -- --quick           # a tenth of the jobs, short spans (seconds)
//! cargo bench --bench scale -- burst random      # a subset, by scenario name
//! APSCHED_SCALE_QUICK=1 cargo bench --bench scale
//! ```
//!
//! Scenarios: `add`, `remove`, `burst`, `random`, `interval`, `idle`. Each (scenario, system)
//! pair runs in a fresh child process of this binary, on the default multi-thread runtime:
//! RSS and CPU time are per process, so a run sharing the process with an earlier one would
//! reuse that one's freed heap and undercount its own memory.
//!
//! With `--features metrics`, `burst` and `interval` also run with metrics on (a Prometheus
//! recorder installed, `apsched_metrics`) and off (none), alternately, best of three each (one
//! in quick mode), and a second table compares them:
//!
//! ```text
//! cargo bench --features metrics --bench scale -- burst interval
//! ```
//!
//! Job bodies record cheaply (atomics in a pre-sized, leaked table) so the figures measure the
//! scheduler, not the recording.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::trigger::{Date, Interval};
use apsched::{JobContext, JobId, Scheduler};
use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

#[path = "common/table.rs"]
mod table;
#[cfg(feature = "metrics")]
use table::print_table_as;
use table::{print_table, Kind, Row};

const SCENARIOS: [&str; 8] = [
    "add",
    "add_arc",
    "remove",
    "burst",
    "random",
    "interval",
    "interval_arc",
    "idle",
];
const SYSTEMS: [&str; 2] = ["floor", "apsched"];

/// How big and how long the scenarios are.
#[derive(Clone, Copy, Debug)]
struct Scale {
    quick: bool,
}

impl Scale {
    fn jobs(self, full: usize) -> usize {
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

    fn args(self) -> Vec<&'static str> {
        if self.quick {
            vec!["--quick"]
        } else {
            vec![]
        }
    }
}

type Figures = BTreeMap<String, f64>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("APSCHED_SCALE_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let scale = Scale { quick };
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let scenario = args.get(pos + 1).expect("--child <scenario> <system>");
        let system = args.get(pos + 2).expect("--child <scenario> <system>");
        let figures = run_child(scenario, system, scale);
        let mut line = String::from("RESULT");
        for (k, v) in &figures {
            let _ = write!(line, " {k}={v}");
        }
        println!("{line}");
        return;
    }
    // `cargo bench` passes `--bench`; anything else that is not a flag names a scenario.
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for name in &chosen {
        assert!(
            SCENARIOS.contains(name),
            "unknown scenario '{name}'; known: {}",
            SCENARIOS.join(", ")
        );
    }
    let scenarios: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| chosen.is_empty() || chosen.contains(s))
        .collect();

    println!(
        "apsched scale benchmark ({} scale, {} CPUs, multi-thread runtime)",
        if quick { "quick: 1/10" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    #[cfg(feature = "metrics")]
    let mut metrics_rows: Vec<Row> = Vec::new();
    for scenario in scenarios {
        let mut results = BTreeMap::new();
        for system in SYSTEMS {
            eprintln!("running {scenario} / {system} ...");
            results.insert(system, spawn_child(scenario, system, scale));
        }
        rows.extend(rows_for(
            scenario,
            &results["apsched"],
            &results["floor"],
            scale,
        ));
        #[cfg(feature = "metrics")]
        if matches!(scenario, "burst" | "interval") {
            metrics_rows.extend(metrics::compare(scenario, &results["apsched"], scale));
        }
    }
    print_table(
        &rows,
        "ratio: apsched's cost over the floor's (time, bytes, lateness, CPU; for rates floor/apsched), so above 1 means apsched does worse.",
    );
    #[cfg(feature = "metrics")]
    if !metrics_rows.is_empty() {
        println!();
        print_table_as(
            &metrics_rows,
            ["metrics on", "metrics off"],
            "metrics on: a Prometheus recorder installed before the scheduler is built; off: none. \
             Best of the interleaved child runs of each (three at full scale, one in quick mode).",
        );
    }
    if scale.quick {
        println!(
            "quick mode: 1/10 scale and short spans, a smoke run. The goals are set for full \
             scale, where fixed costs (runtime start, first allocations) weigh a tenth as much: \
             judge them with a full run."
        );
    }
}

/// Runs one scenario for one system in a fresh process of this binary.
fn spawn_child(scenario: &str, system: &str, scale: Scale) -> Figures {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let output = std::process::Command::new(exe)
        .args(["--child", scenario, system])
        .args(scale.args())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("spawn the benchmark child");
    assert!(
        output.status.success(),
        "{scenario}/{system} failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("{scenario}/{system} printed no RESULT line:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

fn run_child(scenario: &str, system: &str, scale: Scale) -> Figures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let apsched = match system {
        "apsched" => true,
        #[cfg(feature = "metrics")]
        "apsched_metrics" => true,
        "floor" => false,
        other => panic!("unknown system '{other}'"),
    };
    // Installed before the scenario builds its scheduler, which registers its metrics.
    #[cfg(feature = "metrics")]
    let prometheus = (system == "apsched_metrics").then(metrics::install);
    let scenario = scenario.to_string();
    // The body runs as a spawned task, on a worker, as application code would.
    let figures = runtime.block_on(async move {
        tokio::spawn(async move {
            match (scenario.as_str(), apsched) {
                ("add", true) => add_apsched(scale).await,
                ("add", false) => add_floor(scale).await,
                ("add_arc", true) => add_arc_apsched(scale).await,
                ("add_arc", false) => add_arc_floor(scale).await,
                ("interval_arc", true) => interval_arc_apsched(scale).await,
                ("interval_arc", false) => interval_arc_floor(scale).await,
                ("remove", true) => remove_apsched(scale).await,
                ("remove", false) => remove_floor(scale).await,
                ("burst", true) => burst_apsched(scale).await,
                ("burst", false) => burst_floor(scale).await,
                ("random", true) => random_apsched(scale).await,
                ("random", false) => random_floor(scale).await,
                ("interval", true) => interval_apsched(scale).await,
                ("interval", false) => interval_floor(scale).await,
                ("idle", true) => idle_apsched(scale).await,
                ("idle", false) => idle_floor(scale).await,
                (other, _) => panic!("unknown scenario '{other}'"),
            }
        })
        .await
        .expect("the scenario task")
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    #[cfg(feature = "metrics")]
    let figures = match prometheus {
        Some(handle) => metrics::with_recorded(figures, &handle),
        None => figures,
    };
    figures
}

// ---- measuring ----

/// Resident set size, from `/proc/self/status`.
fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

/// CPU time of every thread of the process, in seconds, from `/proc/self/task/*/schedstat`
/// (nanosecond resolution; `/proc/self/stat` counts 10 ms ticks).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

/// CPU time of the process from `/proc/self/stat` (utime + stime), in seconds, assuming the
/// usual 100 ticks a second: a coarse cross-check of `cpu_seconds`.
fn cpu_seconds_ticks() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (tick(11), tick(12)) {
        (Some(utime), Some(stime)) => (utime + stime) / 100.0,
        _ => f64::NAN,
    }
}

/// What the jobs of one scenario did: how often each ran, and how late each run was.
struct Recorder {
    counts: Box<[AtomicU32]>,
    late_us: Box<[AtomicI64]>,
    next: AtomicUsize,
    expected: usize,
    done: Notify,
}

impl Recorder {
    /// A recorder for `jobs` jobs and `fires` runs in all; leaked, as the child process ends
    /// with the scenario.
    fn leak(jobs: usize, fires: usize) -> &'static Recorder {
        Box::leak(Box::new(Recorder {
            counts: (0..jobs).map(|_| AtomicU32::new(0)).collect(),
            late_us: (0..fires).map(|_| AtomicI64::new(i64::MIN)).collect(),
            next: AtomicUsize::new(0),
            expected: fires,
            done: Notify::new(),
        }))
    }

    fn record(&self, job: usize, scheduled_us: i64) {
        let late = Utc::now().timestamp_micros() - scheduled_us;
        self.counts[job].fetch_add(1, Ordering::Relaxed);
        let slot = self.next.fetch_add(1, Ordering::AcqRel);
        if let Some(s) = self.late_us.get(slot) {
            s.store(late, Ordering::Relaxed);
        }
        if slot + 1 == self.expected {
            self.done.notify_one();
        }
    }

    /// Waits for every expected run, or until `deadline`.
    async fn wait(&self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, self.done.notified()).await;
    }

    fn figures(&self, prefix: &str, per_job: u32) -> Figures {
        let mut late: Vec<i64> = self
            .late_us
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&v| v != i64::MIN)
            .collect();
        late.sort_unstable();
        let pct = |p: f64| -> f64 {
            if late.is_empty() {
                return f64::NAN;
            }
            let i = ((late.len() as f64 - 1.0) * p).round() as usize;
            late[i] as f64 / 1000.0
        };
        let (mut lost, mut doubled, mut wrong) = (0u64, 0u64, 0u64);
        for c in self.counts.iter() {
            let c = c.load(Ordering::Relaxed);
            if c != per_job {
                wrong += 1;
            }
            lost += u64::from(per_job.saturating_sub(c));
            doubled += u64::from(c.saturating_sub(per_job));
        }
        let mut f = Figures::new();
        f.insert(
            format!("{prefix}runs"),
            self.next.load(Ordering::Relaxed) as f64,
        );
        f.insert(format!("{prefix}lost"), lost as f64);
        f.insert(format!("{prefix}doubled"), doubled as f64);
        f.insert(format!("{prefix}wrong_count_jobs"), wrong as f64);
        f.insert(
            format!("{prefix}early"),
            late.iter().filter(|&&v| v < 0).count() as f64,
        );
        f.insert(format!("{prefix}min_ms"), pct(0.0));
        f.insert(format!("{prefix}p50_ms"), pct(0.5));
        f.insert(format!("{prefix}p99_ms"), pct(0.99));
        f.insert(format!("{prefix}max_ms"), pct(1.0));
        f
    }
}

/// Maps wall-clock instants to Tokio instants from one reading of both clocks, as the floor
/// must to sleep until a wall-clock time.
#[derive(Clone, Copy)]
struct WallToMono {
    wall: DateTime<Utc>,
    mono: tokio::time::Instant,
}

impl WallToMono {
    fn now() -> WallToMono {
        WallToMono {
            wall: Utc::now(),
            mono: tokio::time::Instant::now(),
        }
    }

    fn at(self, t: DateTime<Utc>) -> tokio::time::Instant {
        match (t - self.wall).to_std() {
            Ok(ahead) => self.mono + ahead,
            Err(_) => self.mono,
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).expect("a short span")
}

async fn started_scheduler() -> Scheduler {
    let scheduler = Scheduler::new();
    scheduler.start().await.expect("start");
    // Warm up: the first add and round trip pay one-time costs (thread-locals, channel blocks,
    // the zone lookup) that are not per job.
    let job = scheduler
        .add_job(|| async {}, Interval::hours(1))
        .await
        .expect("add");
    scheduler.remove_job(&job.id).await.expect("remove");
    scheduler.get_jobs().await.expect("get_jobs");
    scheduler
}

/// A floor task's "I have started sleeping" signal, so the floor's taken-in time counts the
/// time until every task has polled once and registered its timer.
struct Started {
    count: AtomicUsize,
    all: Notify,
    expected: usize,
}

impl Started {
    fn leak(expected: usize) -> &'static Started {
        Box::leak(Box::new(Started {
            count: AtomicUsize::new(0),
            all: Notify::new(),
            expected,
        }))
    }

    fn arrive(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.expected {
            self.all.notify_one();
        }
    }

    async fn wait(&self) {
        self.all.notified().await;
    }
}

// ---- add ----

const ADD_JOBS: usize = 100_000;

async fn add_apsched(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let scheduler = started_scheduler().await;
    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut last = None;
    for _ in 0..n {
        let job = scheduler
            .add_job(|| async {}, Interval::hours(1))
            .await
            .expect("add");
        last = Some(job.id);
    }
    let enqueued = start.elapsed();
    let last = last.expect("at least one job");
    scheduler.get_job(&last).await.expect("the last job");
    let taken_in = start.elapsed();
    let rss_after = rss_bytes();
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    f.insert("bytes_per_job".into(), (rss_after - rss_before) / n as f64);
    drop(scheduler);
    f
}

async fn add_floor(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let started = Started::leak(n);
    // Warm up the spawn path and the timer as the apsched run warms up its scheduler.
    tokio::spawn(tokio::time::sleep(Duration::from_millis(1)))
        .await
        .expect("warm-up");
    let rss_before = rss_bytes();
    let start = Instant::now();
    for _ in 0..n {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        // Dropping the handle detaches the task; it keeps sleeping.
        drop(tokio::spawn(async move {
            started.arrive();
            tokio::time::sleep_until(deadline).await;
        }));
    }
    let enqueued = start.elapsed();
    started.wait().await;
    let taken_in = start.elapsed();
    let rss_after = rss_bytes();
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    f.insert("bytes_per_job".into(), (rss_after - rss_before) / n as f64);
    f
}

/// The work a job of the `_arc` scenarios does: what an application's job body usually is, a
/// shared handle to its state, cloned into the run and called.
type Work = Arc<dyn Fn() + Send + Sync>;

fn work() -> Work {
    let calls = Arc::new(AtomicU32::new(0));
    Arc::new(move || {
        calls.fetch_add(1, Ordering::Relaxed);
    })
}

/// `add` as an application writes it: each `add_job` awaited, the body cloning an `Arc` and
/// calling it (goal: at least 0.85x the floor's adds/s).
async fn add_arc_apsched(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let scheduler = started_scheduler().await;
    let work = work();
    let start = Instant::now();
    let mut last = None;
    for _ in 0..n {
        let work = Arc::clone(&work);
        let job = scheduler
            .add_job(
                move || {
                    let work = Arc::clone(&work);
                    async move { work() }
                },
                Interval::hours(1),
            )
            .await
            .expect("add");
        last = Some(job.id);
    }
    let enqueued = start.elapsed();
    scheduler
        .get_job(&last.expect("a job"))
        .await
        .expect("the last job");
    let taken_in = start.elapsed();
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    drop(scheduler);
    f
}

async fn add_arc_floor(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let started = Started::leak(n);
    let work = work();
    tokio::spawn(tokio::time::sleep(Duration::from_millis(1)))
        .await
        .expect("warm-up");
    let start = Instant::now();
    for _ in 0..n {
        let work = Arc::clone(&work);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        drop(tokio::spawn(async move {
            started.arrive();
            tokio::time::sleep_until(deadline).await;
            work();
        }));
    }
    let enqueued = start.elapsed();
    started.wait().await;
    let taken_in = start.elapsed();
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    f
}

// ---- remove ----

async fn remove_apsched(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let scheduler = started_scheduler().await;
    let mut ids: Vec<JobId> = Vec::with_capacity(n);
    for _ in 0..n {
        let job = scheduler
            .add_job(|| async {}, Interval::hours(1))
            .await
            .expect("add");
        ids.push(job.id);
    }
    scheduler.get_job(&ids[n - 1]).await.expect("the last job");
    let start = Instant::now();
    for id in &ids {
        scheduler.remove_job(id).await.expect("remove");
    }
    let enqueued = start.elapsed();
    let left = scheduler.get_jobs().await.expect("get_jobs").len();
    let taken_in = start.elapsed();
    assert_eq!(left, 0, "every job removed");
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    f
}

async fn remove_floor(scale: Scale) -> Figures {
    let n = scale.jobs(ADD_JOBS);
    let started = Started::leak(n);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::spawn(async move {
                started.arrive();
                tokio::time::sleep_until(deadline).await;
            })
        })
        .collect();
    started.wait().await;
    let start = Instant::now();
    for handle in &handles {
        handle.abort();
    }
    let enqueued = start.elapsed();
    for handle in handles {
        let _ = handle.await;
    }
    let taken_in = start.elapsed();
    let mut f = Figures::new();
    f.insert("enqueue_per_s".into(), n as f64 / enqueued.as_secs_f64());
    f.insert("taken_in_per_s".into(), n as f64 / taken_in.as_secs_f64());
    f
}

// ---- burst: one-shot jobs all due at one instant ----

const BURST_JOBS: usize = 100_000;

/// How far ahead the burst's instant is set: long enough for the adds
/// (`APSCHED_SCALE_MARGIN_MS` overrides it, e.g. under valgrind).
fn burst_margin(scale: Scale) -> Duration {
    if let Some(ms) = std::env::var("APSCHED_SCALE_MARGIN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    scale.span(Duration::from_secs(2), Duration::from_millis(500))
}

/// Waits for the burst to drain, and measures the process's CPU time from just before the
/// due instant to the last run: robust to a shared machine, where wall time is not.
async fn drain(rec: &'static Recorder, at: DateTime<Utc>, scale: Scale) -> Figures {
    let setup_overran = Utc::now() >= at;
    let before = (at - Utc::now() - TimeDelta::milliseconds(20))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(before).await;
    let cpu0 = cpu_seconds();
    rec.wait(Instant::now() + burst_margin(scale) + Duration::from_secs(30))
        .await;
    let cpu = cpu_seconds() - cpu0;
    let mut f = rec.figures("", 1);
    f.insert("setup_overran".into(), f64::from(u8::from(setup_overran)));
    f.insert("drain_cpu_ms".into(), cpu * 1000.0);
    f
}

async fn burst_apsched(scale: Scale) -> Figures {
    let n = scale.jobs(BURST_JOBS);
    let rec = Recorder::leak(n, n);
    let scheduler = started_scheduler().await;
    let at = Utc::now() + delta(burst_margin(scale));
    let at_us = at.timestamp_micros();
    for i in 0..n {
        scheduler
            .add_job(move || async move { rec.record(i, at_us) }, Date::at(at))
            .await
            .expect("add");
    }
    scheduler.get_jobs().await.expect("round trip");
    drain(rec, at, scale).await
}

async fn burst_floor(scale: Scale) -> Figures {
    let n = scale.jobs(BURST_JOBS);
    let rec = Recorder::leak(n, n);
    let at = Utc::now() + delta(burst_margin(scale));
    let at_us = at.timestamp_micros();
    let deadline = WallToMono::now().at(at);
    let started = Started::leak(n);
    for i in 0..n {
        drop(tokio::spawn(async move {
            started.arrive();
            tokio::time::sleep_until(deadline).await;
            rec.record(i, at_us);
        }));
    }
    started.wait().await;
    drain(rec, at, scale).await
}

// ---- random: jobs at random instants ----

const RANDOM_JOBS: usize = 1_000;

fn random_instants(scale: Scale) -> Vec<DateTime<Utc>> {
    let span = scale.span(Duration::from_secs(5), Duration::from_secs(1));
    let start = Utc::now() + delta(Duration::from_millis(300));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // The job count stays at 1,000 in quick mode: it is already small.
    (0..RANDOM_JOBS)
        .map(|_| start + TimeDelta::microseconds(rng.random_range(0..span.as_micros() as i64)))
        .collect()
}

async fn random_apsched(scale: Scale) -> Figures {
    let scheduler = started_scheduler().await;
    let instants = random_instants(scale);
    let last = *instants.iter().max().expect("some instants");
    let rec = Recorder::leak(instants.len(), instants.len());
    for (i, &at) in instants.iter().enumerate() {
        let at_us = at.timestamp_micros();
        scheduler
            .add_job(move || async move { rec.record(i, at_us) }, Date::at(at))
            .await
            .expect("add");
    }
    let until = Instant::now() + (last - Utc::now()).to_std().unwrap_or_default();
    rec.wait(until + Duration::from_secs(5)).await;
    rec.figures("", 1)
}

async fn random_floor(scale: Scale) -> Figures {
    let instants = random_instants(scale);
    let last = *instants.iter().max().expect("some instants");
    let rec = Recorder::leak(instants.len(), instants.len());
    let clocks = WallToMono::now();
    for (i, &at) in instants.iter().enumerate() {
        let at_us = at.timestamp_micros();
        let deadline = clocks.at(at);
        drop(tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            rec.record(i, at_us);
        }));
    }
    let until = Instant::now() + (last - Utc::now()).to_std().unwrap_or_default();
    rec.wait(until + Duration::from_secs(5)).await;
    rec.figures("", 1)
}

// ---- interval: many jobs every second ----

const INTERVAL_JOBS: usize = 10_000;

/// The jobs' first runs are spread evenly over one second (job `i` at `start + i/n s`), each
/// fires `fires` times, a second apart.
fn interval_plan(scale: Scale) -> (usize, u32, DateTime<Utc>) {
    let n = scale.jobs(INTERVAL_JOBS);
    let fires = scale.span(Duration::from_secs(10), Duration::from_secs(3));
    let start = Utc::now() + delta(Duration::from_millis(1000));
    (n, fires.as_secs() as u32, start)
}

fn offset(i: usize, n: usize) -> TimeDelta {
    TimeDelta::microseconds((i as i64 * 1_000_000) / n as i64)
}

async fn interval_apsched(scale: Scale) -> Figures {
    let (n, fires, start) = interval_plan(scale);
    let rec = Recorder::leak(n, n * fires as usize);
    let scheduler = started_scheduler().await;
    for i in 0..n {
        let first = start + offset(i, n);
        // The end bound falls half a period after the last wanted run.
        let end = first + TimeDelta::milliseconds(i64::from(fires) * 1000 - 500);
        let trigger = Interval::seconds(1).start(first).end(end);
        scheduler
            .add_job(
                move |ctx: JobContext| async move {
                    rec.record(i, ctx.scheduled_run_time().timestamp_micros())
                },
                trigger,
            )
            .await
            .expect("add");
    }
    scheduler.get_jobs().await.expect("round trip");
    let setup_overran = Utc::now() >= start;
    let end = start + TimeDelta::seconds(i64::from(fires));
    let until = Instant::now() + (end - Utc::now()).to_std().unwrap_or_default();
    let cpu0 = cpu_seconds();
    rec.wait(until + Duration::from_secs(5)).await;
    let cpu = cpu_seconds() - cpu0;
    // Give a doubled run the chance to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut f = rec.figures("", fires);
    f.insert("setup_overran".into(), f64::from(u8::from(setup_overran)));
    f.insert("cpu_ms".into(), cpu * 1000.0);
    f
}

async fn interval_floor(scale: Scale) -> Figures {
    let (n, fires, start) = interval_plan(scale);
    let rec = Recorder::leak(n, n * fires as usize);
    let clocks = WallToMono::now();
    for i in 0..n {
        let first = start + offset(i, n);
        drop(tokio::spawn(async move {
            for k in 0..fires {
                let at = first + TimeDelta::seconds(i64::from(k));
                tokio::time::sleep_until(clocks.at(at)).await;
                rec.record(i, at.timestamp_micros());
            }
        }));
    }
    let setup_overran = Utc::now() >= start;
    let end = start + TimeDelta::seconds(i64::from(fires));
    let until = Instant::now() + (end - Utc::now()).to_std().unwrap_or_default();
    rec.wait(until + Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut f = rec.figures("", fires);
    f.insert("setup_overran".into(), f64::from(u8::from(setup_overran)));
    f
}

/// `interval` with the body an application has: it clones an `Arc` and calls it (goal:
/// lateness p99 no worse than max(5 ms, 1.5x the floor's)).
async fn interval_arc_apsched(scale: Scale) -> Figures {
    let (n, fires, start) = interval_plan(scale);
    let rec = Recorder::leak(n, n * fires as usize);
    let scheduler = started_scheduler().await;
    let work = work();
    for i in 0..n {
        let first = start + offset(i, n);
        let end = first + TimeDelta::milliseconds(i64::from(fires) * 1000 - 500);
        let work = Arc::clone(&work);
        scheduler
            .add_job(
                move |ctx: JobContext| {
                    let work = Arc::clone(&work);
                    async move {
                        work();
                        rec.record(i, ctx.scheduled_run_time().timestamp_micros());
                    }
                },
                Interval::seconds(1).start(first).end(end),
            )
            .await
            .expect("add");
    }
    scheduler.get_jobs().await.expect("round trip");
    let setup_overran = Utc::now() >= start;
    let end = start + TimeDelta::seconds(i64::from(fires));
    let until = Instant::now() + (end - Utc::now()).to_std().unwrap_or_default();
    rec.wait(until + Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut f = rec.figures("", fires);
    f.insert("setup_overran".into(), f64::from(u8::from(setup_overran)));
    f
}

async fn interval_arc_floor(scale: Scale) -> Figures {
    let (n, fires, start) = interval_plan(scale);
    let rec = Recorder::leak(n, n * fires as usize);
    let clocks = WallToMono::now();
    let work = work();
    for i in 0..n {
        let first = start + offset(i, n);
        let work = Arc::clone(&work);
        drop(tokio::spawn(async move {
            for k in 0..fires {
                let at = first + TimeDelta::seconds(i64::from(k));
                tokio::time::sleep_until(clocks.at(at)).await;
                let work = Arc::clone(&work);
                work();
                rec.record(i, at.timestamp_micros());
            }
        }));
    }
    let setup_overran = Utc::now() >= start;
    let end = start + TimeDelta::seconds(i64::from(fires));
    let until = Instant::now() + (end - Utc::now()).to_std().unwrap_or_default();
    rec.wait(until + Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut f = rec.figures("", fires);
    f.insert("setup_overran".into(), f64::from(u8::from(setup_overran)));
    f
}

// ---- idle: many far-off jobs, nothing due ----

const IDLE_JOBS: usize = 100_000;

fn idle_span(scale: Scale) -> Duration {
    scale.span(Duration::from_secs(10), Duration::from_secs(1))
}

async fn measure_idle(scale: Scale) -> Figures {
    // Let the setup's after-effects (the core taking in its backlog, worker threads parking)
    // settle before the window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu0, ticks0) = (cpu_seconds(), cpu_seconds_ticks());
    tokio::time::sleep(idle_span(scale)).await;
    let (cpu1, ticks1) = (cpu_seconds(), cpu_seconds_ticks());
    let mut f = Figures::new();
    f.insert("cpu_s".into(), cpu1 - cpu0);
    f.insert("cpu_s_ticks".into(), ticks1 - ticks0);
    f
}

async fn idle_apsched(scale: Scale) -> Figures {
    let n = scale.jobs(IDLE_JOBS);
    let scheduler = started_scheduler().await;
    let mut last = None;
    for _ in 0..n {
        let job = scheduler
            .add_job(|| async {}, Interval::hours(1))
            .await
            .expect("add");
        last = Some(job.id);
    }
    scheduler
        .get_job(&last.expect("a job"))
        .await
        .expect("the last job");
    let f = measure_idle(scale).await;
    drop(scheduler);
    f
}

async fn idle_floor(scale: Scale) -> Figures {
    let n = scale.jobs(IDLE_JOBS);
    let started = Started::leak(n);
    for _ in 0..n {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        drop(tokio::spawn(async move {
            started.arrive();
            tokio::time::sleep_until(deadline).await;
        }));
    }
    started.wait().await;
    measure_idle(scale).await
}

// ---- the table ----

fn rows_for(scenario: &str, a: &Figures, f: &Figures, scale: Scale) -> Vec<Row> {
    let g = |m: &Figures, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    let row = |label: &str, key: &str, kind: Kind, goal: &str, pass: Option<bool>| Row {
        scenario: label.to_string(),
        apsched: g(a, key),
        floor: g(f, key),
        kind,
        goal: goal.to_string(),
        pass,
    };
    let mut rows = Vec::new();
    match scenario {
        "add" | "remove" => {
            let n = scale.jobs(ADD_JOBS);
            let verb = if scenario == "add" { "adds" } else { "removes" };
            let goal = format!(">= 1,000,000 {verb}/s");
            rows.push(row(
                &format!("{scenario} {n}: {verb}/s, enqueued"),
                "enqueue_per_s",
                Kind::Rate,
                &goal,
                Some(g(a, "enqueue_per_s") >= 1e6),
            ));
            rows.push(row(
                &format!("{scenario} {n}: {verb}/s, taken in by the core"),
                "taken_in_per_s",
                Kind::Rate,
                &goal,
                Some(g(a, "taken_in_per_s") >= 1e6),
            ));
            if scenario == "add" {
                rows.push(row(
                    &format!("add {n}: RSS bytes/job (1 h interval)"),
                    "bytes_per_job",
                    Kind::Cost,
                    "<= 300",
                    Some(g(a, "bytes_per_job") <= 300.0),
                ));
            }
        }
        "add_arc" => {
            let n = scale.jobs(ADD_JOBS);
            let ratio = g(a, "enqueue_per_s") / g(f, "enqueue_per_s");
            rows.push(row(
                &format!("add {n}, Arc body, each awaited: adds/s"),
                "enqueue_per_s",
                Kind::Rate,
                ">= 0.85x floor",
                Some(ratio >= 0.85),
            ));
            rows.push(row(
                &format!("add {n}, Arc body: adds/s, taken in"),
                "taken_in_per_s",
                Kind::Rate,
                "",
                None,
            ));
        }
        "interval_arc" => {
            let (n, fires, _) = interval_plan(scale);
            rows.push(row(
                &format!("interval {n} x 1s, Arc body, {fires} fires each: runs"),
                "runs",
                Kind::Count,
                &format!("{}", n * fires as usize),
                Some(
                    g(a, "runs") == (n * fires as usize) as f64 && g(a, "wrong_count_jobs") == 0.0,
                ),
            ));
            rows.push(row(
                "interval, Arc body: lateness p99 (ms)",
                "p99_ms",
                Kind::Cost,
                "<= max(5, 1.5x floor)",
                Some(g(a, "p99_ms") <= f64::max(5.0, 1.5 * g(f, "p99_ms"))),
            ));
        }
        "burst" => {
            let n = scale.jobs(BURST_JOBS) as f64;
            rows.push(row(
                &format!("burst {n}: runs (one-shot, same instant)"),
                "runs",
                Kind::Count,
                "all, none twice",
                Some(g(a, "runs") == n && g(a, "wrong_count_jobs") == 0.0),
            ));
            rows.push(row(
                "burst: runs before their time",
                "early",
                Kind::Count,
                "0",
                Some(g(a, "early") == 0.0),
            ));
            rows.push(row(
                "burst: lateness p50 (ms)",
                "p50_ms",
                Kind::Cost,
                "",
                None,
            ));
            rows.push(row(
                "burst: drain time (ms, due -> last ran)",
                "max_ms",
                Kind::Cost,
                "<= 1.5x floor",
                Some(g(a, "max_ms") <= 1.5 * g(f, "max_ms")),
            ));
            rows.push(row(
                "burst: CPU ms, due -> last ran (all threads)",
                "drain_cpu_ms",
                Kind::Cost,
                "",
                None,
            ));
            if g(a, "setup_overran") > 0.0 || g(f, "setup_overran") > 0.0 {
                rows.push(row(
                    "burst: setup overran the due instant",
                    "setup_overran",
                    Kind::Count,
                    "0",
                    Some(false),
                ));
            }
        }
        "random" => {
            let span = scale.span(Duration::from_secs(5), Duration::from_secs(1));
            rows.push(row(
                &format!("random {RANDOM_JOBS} over {}s: runs", span.as_secs()),
                "runs",
                Kind::Count,
                "all",
                Some(g(a, "runs") == RANDOM_JOBS as f64 && g(a, "wrong_count_jobs") == 0.0),
            ));
            rows.push(row(
                "random: runs before their time",
                "early",
                Kind::Count,
                "0",
                Some(g(a, "early") == 0.0),
            ));
            rows.push(row(
                "random: lateness p50 (ms)",
                "p50_ms",
                Kind::Cost,
                "",
                None,
            ));
            rows.push(row(
                "random: lateness p99 (ms)",
                "p99_ms",
                Kind::Cost,
                "<= 1.5x floor",
                Some(g(a, "p99_ms") <= 1.5 * g(f, "p99_ms")),
            ));
            rows.push(row(
                "random: lateness max (ms)",
                "max_ms",
                Kind::Cost,
                "",
                None,
            ));
        }
        "interval" => {
            let (n, fires, _) = interval_plan(scale);
            rows.push(row(
                &format!("interval {n} x 1s, {fires} fires each: runs"),
                "runs",
                Kind::Count,
                &format!("{}", n * fires as usize),
                Some(g(a, "runs") == (n * fires as usize) as f64),
            ));
            rows.push(row(
                "interval: jobs with a wrong run count",
                "wrong_count_jobs",
                Kind::Count,
                "0 (none lost, none doubled)",
                Some(g(a, "wrong_count_jobs") == 0.0),
            ));
            rows.push(row(
                "interval: runs lost / doubled",
                "lost",
                Kind::Count,
                "0",
                Some(g(a, "lost") == 0.0 && g(a, "doubled") == 0.0),
            ));
            rows.push(row(
                "interval: runs before their time",
                "early",
                Kind::Count,
                "0",
                Some(g(a, "early") == 0.0),
            ));
            rows.push(row(
                "interval: lateness p50 (ms)",
                "p50_ms",
                Kind::Cost,
                "",
                None,
            ));
            rows.push(row(
                "interval: lateness p99 (ms)",
                "p99_ms",
                Kind::Cost,
                "< 5",
                Some(g(a, "p99_ms") < 5.0),
            ));
            rows.push(row(
                "interval: lateness max (ms)",
                "max_ms",
                Kind::Cost,
                "",
                None,
            ));
        }
        "idle" => {
            let n = scale.jobs(IDLE_JOBS);
            let span = idle_span(scale).as_secs();
            rows.push(row(
                &format!("idle {n} x 1h for {span}s: CPU s (schedstat)"),
                "cpu_s",
                Kind::Cost,
                "< 0.01",
                Some(g(a, "cpu_s") < 0.01),
            ));
            rows.push(row(
                "idle: CPU s (utime+stime, 10 ms ticks)",
                "cpu_s_ticks",
                Kind::Cost,
                "",
                None,
            ));
        }
        _ => {}
    }
    rows
}

// ---- metrics on against off ----

#[cfg(feature = "metrics")]
mod metrics {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    use super::{spawn_child, Figures, Kind, Row, Scale, BURST_JOBS};

    /// Installs a Prometheus recorder as an application would, histograms with buckets.
    pub(super) fn install() -> PrometheusHandle {
        let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Prefix("apsched_run_".into()), &buckets)
            .expect("buckets")
            .install_recorder()
            .expect("the only recorder of this process")
    }

    /// Adds what the recorder counted (successful runs), rendered as a scrape would: proof
    /// that the "on" runs recorded.
    pub(super) fn with_recorded(mut figures: Figures, handle: &PrometheusHandle) -> Figures {
        handle.run_upkeep();
        let text = handle.render();
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("apsched_runs_total{outcome=\"success\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        figures.insert("metrics_runs".into(), runs);
        figures
    }

    /// Runs `scenario` with metrics on and off, interleaved (`off` is the main table's run,
    /// the first of the offs), and compares the best of each.
    pub(super) fn compare(scenario: &str, off: &Figures, scale: Scale) -> Vec<Row> {
        let rounds = if scale.quick { 1 } else { 3 };
        let (mut offs, mut ons) = (vec![off.clone()], Vec::new());
        for round in 0..rounds {
            eprintln!(
                "running {scenario} / apsched, metrics on ({}/{rounds}) ...",
                round + 1
            );
            ons.push(spawn_child(scenario, "apsched_metrics", scale));
            if round + 1 < rounds {
                eprintln!(
                    "running {scenario} / apsched, metrics off ({}/{rounds}) ...",
                    round + 2
                );
                offs.push(spawn_child(scenario, "apsched", scale));
            }
        }
        let best = |runs: &[Figures], key: &str| {
            runs.iter()
                .filter_map(|f| f.get(key).copied())
                .fold(f64::NAN, f64::min)
        };
        let row = |label: String, key: &str| {
            let (on, off) = (best(&ons, key), best(&offs, key));
            Row {
                scenario: label,
                apsched: on,
                floor: off,
                kind: Kind::Cost,
                goal: "<= 1.1x off".into(),
                pass: Some(on <= 1.1 * off),
            }
        };
        let recorded = |label: String, wanted: f64| {
            let got = best(&ons, "metrics_runs");
            Row {
                scenario: label,
                apsched: got,
                floor: f64::NAN,
                kind: Kind::Count,
                goal: format!("{wanted}"),
                pass: Some(got == wanted),
            }
        };
        match scenario {
            "burst" => {
                let n = scale.jobs(BURST_JOBS);
                vec![
                    row(format!("burst {n}: drain time (ms)"), "max_ms"),
                    row("burst: CPU ms, due -> last ran".into(), "drain_cpu_ms"),
                    recorded("burst: runs the recorder counted".into(), n as f64),
                ]
            }
            "interval" => {
                let (n, fires, _) = super::interval_plan(scale);
                vec![
                    row(
                        format!("interval {n} x 1s, {fires} fires: lateness p99 (ms)"),
                        "p99_ms",
                    ),
                    row("interval: CPU ms over the runs".into(), "cpu_ms"),
                    recorded(
                        "interval: runs the recorder counted".into(),
                        (n * fires as usize) as f64,
                    ),
                ]
            }
            _ => Vec::new(),
        }
    }
}
