//! An axum service with a background job and the job-management API.
//!
//! - a cleanup job runs every minute in the background;
//! - the management API is mounted at `/scheduler` (`GET /scheduler/jobs`, ...), its mutating
//!   routes guarded by a bearer token (reads stay open), with its dashboard at
//!   `/scheduler/ui`, its live events at `/scheduler/events` and its OpenAPI document at
//!   `/scheduler/openapi.json`;
//! - the scheduler handle sits in the app state, for the app's own handlers (`GET /`);
//! - the scheduler's metrics are served at `/metrics` in Prometheus' text format, through
//!   `metrics-exporter-prometheus` (installed before the scheduler is built, which registers
//!   them);
//! - Ctrl-C (or the end of `--seconds N`) stops the server, then the scheduler, which waits for
//!   the runs under way.
//!
//! ```text
//! cargo run --example axum_app --features dashboard,metrics             # until Ctrl-C, on port 3000
//! cargo run --example axum_app --features dashboard,metrics -- --seconds 3 --port 0
//! cargo run --example axum_app --features dashboard,metrics -- --jobs 10000   # and 10,000 more jobs
//! ```
//!
//! Then open <http://localhost:3000/scheduler/ui> (type the token into its token field to
//! pause, resume, run or remove jobs).
//!
//! With `--seconds`, the example also calls its own API once up, to show the guard at work.
//! The token is `APSCHED_TOKEN` from the environment, or `change-me`:
//!
//! ```text
//! curl localhost:3000/scheduler/jobs
//! curl -X POST -H 'Authorization: Bearer change-me' localhost:3000/scheduler/jobs/cleanup/run
//! curl localhost:3000/metrics
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Interval;
use apsched::{web, Scheduler};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
struct AppState {
    scheduler: Scheduler,
    metrics: PrometheusHandle,
}

/// The background job: pretends to drop stale sessions.
async fn cleanup() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    println!(
        "[job] cleanup run #{run}: removed {} stale sessions",
        run * 3
    );
}

/// A second job, which fails now and then, so the dashboard has errors to show.
async fn report() -> Result<(), String> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    match RUNS.fetch_add(1, Ordering::Relaxed) % 4 {
        3 => Err("the mail server refused the report".into()),
        _ => Ok(()),
    }
}

/// The app's own handler, using the scheduler from the state.
async fn index(State(state): State<AppState>) -> Result<Json<serde_json::Value>, apsched::Error> {
    let jobs = state.scheduler.get_jobs().await?;
    Ok(Json(serde_json::json!({
        "service": "axum_app",
        "jobs": jobs.iter().map(|job| job.to_string()).collect::<Vec<_>>(),
    })))
}

/// The metrics in Prometheus' text format, for a scraper.
async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

/// The Prometheus recorder, installed for the whole process; histograms get buckets (without
/// them the exporter renders summaries).
fn install_metrics() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let seconds = [0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("apsched_run_".into()), &seconds)?
        .install_recorder()?;
    // The exporter leaves draining its histograms to the application.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Lets a request through only with `Authorization: Bearer <token>`.
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {token}");
    match request.headers().get(header::AUTHORIZATION) {
        Some(given) if given.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "a valid bearer token is required", "kind": "unauthorized" })),
        )
            .into_response(),
    }
}

struct Args {
    seconds: Option<u64>,
    port: u16,
    /// How many extra jobs to add, to see the dashboard with many.
    jobs: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: None,
        port: 3000,
        jobs: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next();
        match (arg.as_str(), value.as_deref().map(str::parse::<u64>)) {
            ("--seconds", Some(Ok(n))) => args.seconds = Some(n),
            ("--port", Some(Ok(n))) if n <= u64::from(u16::MAX) => args.port = n as u16,
            ("--jobs", Some(Ok(n))) => args.jobs = n,
            _ => {
                eprintln!("usage: axum_app [--seconds N] [--port P] [--jobs N]");
                std::process::exit(2);
            }
        }
    }
    args
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let token: Arc<str> = std::env::var("APSCHED_TOKEN")
        .unwrap_or_else(|_| "change-me".into())
        .into();

    let metrics_handle = install_metrics()?;
    let scheduler = Scheduler::new();
    scheduler.start().await?;
    let job = scheduler
        .add_job(cleanup, Interval::minutes(1))
        .id("cleanup")
        .await?;
    println!("[scheduler] started; {job}");
    scheduler
        .add_job(report, Interval::seconds(20))
        .id("report")
        .name("sales report")
        .await?;
    for i in 0..args.jobs {
        scheduler
            .add_job(cleanup, Interval::seconds(3600 + i))
            .id(format!("bulk-{i:05}"))
            .name(format!("bulk job {i}"))
            .await?;
    }

    let api = web::Api::new(scheduler.clone())
        .guard_mutations(middleware::from_fn_with_state(
            Arc::clone(&token),
            require_token,
        ))
        .into_router();
    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .nest("/scheduler", api)
        .with_state(AppState {
            scheduler: scheduler.clone(),
            metrics: metrics_handle,
        });

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let addr = listener.local_addr()?;
    println!("[http] listening on http://{addr} (API at /scheduler, token from APSCHED_TOKEN, metrics at /metrics)");
    println!("[http] dashboard at http://{addr}/scheduler/ui, OpenAPI at http://{addr}/scheduler/openapi.json");

    if args.seconds.is_some() {
        tokio::spawn(demo(addr, Arc::clone(&token)));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal(args.seconds))
        .await?;
    println!("[http] server stopped; shutting the scheduler down");
    scheduler.shutdown().await?;
    println!("[scheduler] shut down");
    Ok(())
}

/// Ctrl-C, or the end of `--seconds`.
async fn stop_signal(seconds: Option<u64>) {
    let deadline = async {
        match seconds {
            Some(n) => tokio::time::sleep(Duration::from_secs(n)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("[signal] Ctrl-C"),
        () = deadline => println!("[signal] --seconds elapsed"),
    }
}

/// Calls the API as a client would, to show reads open and mutations guarded.
async fn demo(addr: SocketAddr, token: Arc<str>) {
    let bearer = format!("Bearer {token}");
    let calls = [
        ("GET", "/scheduler/jobs", None, ""),
        ("POST", "/scheduler/jobs/cleanup/run", None, " (no token)"),
        (
            "POST",
            "/scheduler/jobs/cleanup/run",
            Some("Bearer wrong"),
            " (wrong token)",
        ),
        (
            "POST",
            "/scheduler/jobs/cleanup/run",
            Some(bearer.as_str()),
            " (token)",
        ),
        ("GET", "/scheduler", None, ""),
        ("GET", "/", None, ""),
        ("GET", "/metrics", None, ""),
    ];
    for (method, path, auth, note) in calls {
        match http(addr, method, path, auth).await {
            // A scrape is long: its counters and gauges are enough to show.
            Ok((status, body)) if path == "/metrics" => {
                let series: Vec<&str> = body
                    .lines()
                    .filter(|l| {
                        l.starts_with("apsched_runs_total") || l.starts_with("apsched_jobs")
                    })
                    .collect();
                println!("[client] {method} {path} -> {status} {}", series.join("; "));
            }
            Ok((status, body)) => println!("[client] {method} {path}{note} -> {status} {body}"),
            Err(error) => println!("[client] {method} {path} failed: {error}"),
        }
        // Lets the submitted run print before the next call does.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A minimal HTTP/1.1 request over TCP, so the example needs no HTTP client crate.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default();
    let status = status
        .split_once(' ')
        .map_or(status, |(_, s)| s)
        .to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}
