//! Per-operation cost of adding and removing jobs, and of listing 10,000 jobs.
//!
//! `cargo bench --bench add_remove` (under a minute). Runs on the multi-thread runtime; each
//! timed loop runs as a spawned task, as application code would. Adds and removes are timed
//! as the caller sees them (the handle enqueues without waiting for the core); the jobs a
//! sample added are removed outside the timed part, so the table does not grow across samples.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use apsched::trigger::Interval;
use apsched::{JobId, Scheduler};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

fn started(rt: &Runtime) -> Scheduler {
    rt.block_on(async {
        let scheduler = Scheduler::new();
        scheduler.start().await.expect("start");
        scheduler
    })
}

async fn add_many(scheduler: &Scheduler, n: u64) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let job = scheduler
            .add_job(|| async {}, Interval::hours(1))
            .await
            .expect("add");
        ids.push(job.id);
    }
    ids
}

fn add_remove(c: &mut Criterion) {
    let rt = runtime();
    let scheduler = started(&rt);
    let mut group = c.benchmark_group("jobs");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    group.bench_function("add_job (interval 1 h)", |b| {
        b.iter_custom(|iters| {
            let scheduler = scheduler.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        scheduler
                            .add_job(|| async {}, Interval::hours(1))
                            .await
                            .expect("add");
                    }
                    let elapsed = start.elapsed();
                    scheduler.remove_all_jobs().await.expect("remove_all_jobs");
                    elapsed
                })
                .await
                .expect("the timed task")
            })
        });
    });

    group.bench_function("remove_job", |b| {
        b.iter_custom(|iters| {
            let scheduler = scheduler.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let ids = add_many(&scheduler, iters).await;
                    // Let the core take the adds in before the removes are timed.
                    scheduler.get_jobs().await.expect("get_jobs");
                    let start = Instant::now();
                    for id in &ids {
                        scheduler.remove_job(id).await.expect("remove");
                    }
                    let elapsed = start.elapsed();
                    scheduler.get_jobs().await.expect("get_jobs");
                    elapsed
                })
                .await
                .expect("the timed task")
            })
        });
    });

    group.bench_function("add_job + remove_job", |b| {
        b.iter_custom(|iters| {
            let scheduler = scheduler.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let job = scheduler
                            .add_job(|| async {}, Interval::hours(1))
                            .await
                            .expect("add");
                        scheduler.remove_job(&job.id).await.expect("remove");
                    }
                    start.elapsed()
                })
                .await
                .expect("the timed task")
            })
        });
    });
    group.finish();

    // Listing: a round trip to the core plus 10,000 snapshots, soonest first.
    rt.block_on(add_many(&scheduler, 10_000));
    let mut group = c.benchmark_group("get_jobs");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30)
        .throughput(Throughput::Elements(10_000));
    group.bench_function("10000 jobs", |b| {
        b.iter_custom(|iters| {
            let scheduler = scheduler.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let jobs = scheduler.get_jobs().await.expect("get_jobs");
                        assert_eq!(jobs.len(), 10_000);
                    }
                    start.elapsed()
                })
                .await
                .expect("the timed task")
            })
        });
    });
    group.finish();
}

criterion_group!(benches, add_remove);
criterion_main!(benches);
