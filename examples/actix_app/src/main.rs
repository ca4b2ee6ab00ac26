//! apsched in an actix-web service.
//!
//! actix-web runs on actix-rt, which is Tokio underneath: the scheduler is started inside
//! actix's runtime (in `main`), and its handle, a cheap `Clone + Send + Sync` value, goes into
//! `web::Data` for the handlers, which run on actix's worker threads (each its own
//! single-threaded runtime). The handle talks to the scheduler over channels, so that works
//! across runtimes.
//!
//! - a cleanup job runs every minute;
//! - a small management API at `/scheduler` (`GET /scheduler`, `GET /scheduler/jobs`,
//!   `GET /scheduler/jobs/{id}`, `POST /scheduler/jobs/{id}/{pause,resume,run}`,
//!   `DELETE /scheduler/jobs/{id}`), the mutating routes behind a bearer token
//!   (`APSCHED_TOKEN`, or `change-me`);
//! - Ctrl-C (or the end of `--seconds N`) stops the server, then the scheduler.
//!
//! ```text
//! cargo run --manifest-path examples/actix_app/Cargo.toml -- --seconds 3 --port 0
//! cargo test --manifest-path examples/actix_app/Cargo.toml
//! ```
//!
//! (For axum, `apsched::web` has the full API ready-made; see `examples/axum_app.rs`.)

use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, App, FromRequest, HttpRequest, HttpResponse, HttpServer, ResponseError};
use apsched::trigger::Interval;
use apsched::Scheduler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The background job: pretends to drop stale sessions.
async fn cleanup() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    println!(
        "[job] cleanup run #{run}: removed {} stale sessions",
        run * 3
    );
}

// ---- the API ----

/// apsched's errors as actix responses: the same statuses and JSON as `apsched::web`.
#[derive(Debug)]
struct ApiError(apsched::Error);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<apsched::Error> for ApiError {
    fn from(error: apsched::Error) -> ApiError {
        ApiError(error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            apsched::Error::JobNotFound(_) => StatusCode::NOT_FOUND,
            apsched::Error::ConflictingId(_) | apsched::Error::InvalidState { .. } => {
                StatusCode::CONFLICT
            }
            apsched::Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let kind = match self.status_code() {
            StatusCode::NOT_FOUND => "job_not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "shutdown",
            _ => "bad_request",
        };
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.0.to_string(), "kind": kind }))
    }
}

/// The bearer token the mutating routes want, in app data.
#[derive(Clone)]
struct Token(String);

/// Proof that the request carried the token: mutating handlers take it as an argument, so a
/// request without it never reaches them.
struct Authorized;

impl FromRequest for Authorized {
    type Error = actix_web::Error;
    type Future = Ready<Result<Authorized, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let expected = request
            .app_data::<web::Data<Token>>()
            .map(|token| format!("Bearer {}", token.0));
        let given = request.headers().get(header::AUTHORIZATION);
        ready(match (expected, given) {
            (Some(expected), Some(given)) if given.as_bytes() == expected.as_bytes() => {
                Ok(Authorized)
            }
            _ => Err(actix_web::error::InternalError::from_response(
                "unauthorized",
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .json(serde_json::json!({
                        "error": "a valid bearer token is required",
                        "kind": "unauthorized"
                    })),
            )
            .into()),
        })
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

async fn status(scheduler: web::Data<Scheduler>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "state": scheduler.state(),
        "timezone": scheduler.timezone(),
        "job_count": scheduler.job_count(),
        "running_count": scheduler.running_jobs(),
    }))
}

async fn list_jobs(scheduler: web::Data<Scheduler>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(scheduler.get_jobs().await?))
}

async fn get_job(scheduler: web::Data<Scheduler>, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(scheduler.get_job(&id).await?))
}

async fn pause_job(
    _: Authorized,
    scheduler: web::Data<Scheduler>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(scheduler.pause_job(&id).await?))
}

async fn resume_job(
    _: Authorized,
    scheduler: web::Data<Scheduler>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(match scheduler.resume_job(&id).await? {
        Some(job) => HttpResponse::Ok().json(job),
        None => HttpResponse::NoContent().finish(),
    })
}

async fn run_job(
    _: Authorized,
    scheduler: web::Data<Scheduler>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    scheduler.run_job_now(&id).await?;
    Ok(HttpResponse::Accepted().finish())
}

async fn remove_job(
    _: Authorized,
    scheduler: web::Data<Scheduler>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    scheduler.remove_job(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The management routes, under `/scheduler`.
fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/scheduler")
            .route("", web::get().to(status))
            .route("/jobs", web::get().to(list_jobs))
            .route("/jobs/{id}", web::get().to(get_job))
            .route("/jobs/{id}", web::delete().to(remove_job))
            .route("/jobs/{id}/pause", web::post().to(pause_job))
            .route("/jobs/{id}/resume", web::post().to(resume_job))
            .route("/jobs/{id}/run", web::post().to(run_job)),
    );
}

// ---- the program ----

struct Args {
    seconds: Option<u64>,
    port: u16,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: None,
        port: 8080,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next();
        match (arg.as_str(), value.as_deref().map(str::parse::<u64>)) {
            ("--seconds", Some(Ok(n))) => args.seconds = Some(n),
            ("--port", Some(Ok(n))) if n <= u64::from(u16::MAX) => args.port = n as u16,
            _ => {
                eprintln!("usage: actix_app [--seconds N] [--port P]");
                std::process::exit(2);
            }
        }
    }
    args
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args();
    let token = Token(std::env::var("APSCHED_TOKEN").unwrap_or_else(|_| "change-me".into()));

    // Inside actix's runtime: the scheduler's core task is spawned on it.
    let scheduler = Scheduler::new();
    scheduler.start().await.map_err(std::io::Error::other)?;
    let job = scheduler
        .add_job(cleanup, Interval::minutes(1))
        .id("cleanup")
        .await
        .map_err(std::io::Error::other)?;
    println!("[scheduler] started; {job}");

    let data = web::Data::new(scheduler.clone());
    let token_data = web::Data::new(token.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(token_data.clone())
            .configure(routes)
    })
    .workers(2)
    // One stop signal for both server and scheduler: ours (Ctrl-C or --seconds).
    .disable_signals()
    .bind(("127.0.0.1", args.port))?;
    let addr = server.addrs()[0];
    let server = server.run();
    println!("[http] listening on http://{addr} (API at /scheduler)");

    let handle = server.handle();
    let seconds = args.seconds;
    actix_web::rt::spawn(async move {
        stop_signal(seconds).await;
        handle.stop(true).await;
    });
    if seconds.is_some() {
        actix_web::rt::spawn(demo(addr, token));
    }
    server.await?;
    println!("[http] server stopped; shutting the scheduler down");
    scheduler.shutdown().await.map_err(std::io::Error::other)?;
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
async fn demo(addr: SocketAddr, token: Token) {
    let bearer = format!("Bearer {}", token.0);
    let calls = [
        ("GET", "/scheduler/jobs", None, ""),
        ("POST", "/scheduler/jobs/cleanup/run", None, " (no token)"),
        (
            "POST",
            "/scheduler/jobs/cleanup/run",
            Some(bearer.as_str()),
            " (token)",
        ),
        ("GET", "/scheduler", None, ""),
    ];
    for (method, path, auth, note) in calls {
        match http(addr, method, path, auth).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;
    use apsched::trigger::Date;
    use std::sync::Arc;
    use tokio::sync::Notify;

    fn app_data(scheduler: &Scheduler) -> (web::Data<Scheduler>, web::Data<Token>) {
        (
            web::Data::new(scheduler.clone()),
            web::Data::new(Token("s3cret".into())),
        )
    }

    /// The scheduler started inside actix's runtime runs jobs there (its timer and its task
    /// spawning work), and the handle answers from handlers.
    #[actix_web::test]
    async fn the_scheduler_works_inside_actix() {
        let scheduler = Scheduler::new();
        scheduler.start().await.unwrap();

        // A timed job: due now, so the core's timer and spawn must work in this runtime.
        let ran = Arc::new(Notify::new());
        let r = Arc::clone(&ran);
        scheduler
            .add_job(
                move || {
                    let r = Arc::clone(&r);
                    async move { r.notify_one() }
                },
                Date::at(chrono::Utc::now()),
            )
            .id("now")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), ran.notified())
            .await
            .expect("the job ran inside actix's runtime");

        let runs = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&runs);
        scheduler
            .add_job(
                move || {
                    let r = Arc::clone(&r);
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                },
                Interval::hours(1),
            )
            .id("hourly")
            .await
            .unwrap();

        let (data, token) = app_data(&scheduler);
        let app =
            test::init_service(App::new().app_data(data).app_data(token).configure(routes)).await;

        let jobs: serde_json::Value = test::call_and_read_body_json(
            &app,
            test::TestRequest::get().uri("/scheduler/jobs").to_request(),
        )
        .await;
        assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
        assert_eq!(jobs[0]["id"], "hourly");

        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/scheduler/jobs/hourly/run")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let response = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/scheduler/jobs/hourly/run")
                .insert_header((header::AUTHORIZATION, "Bearer s3cret"))
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        for _ in 0..100 {
            if runs.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let response = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/scheduler/jobs/nope")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["kind"], "job_not_found");

        scheduler.shutdown().await.unwrap();
    }

    /// Handlers on actix's worker threads (other runtimes than the scheduler's) reach it.
    #[actix_web::test]
    async fn handlers_on_worker_threads_reach_the_scheduler() {
        let scheduler = Scheduler::new();
        scheduler.start().await.unwrap();
        scheduler
            .add_job(cleanup, Interval::minutes(1))
            .id("cleanup")
            .await
            .unwrap();
        let (data, token) = app_data(&scheduler);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(token.clone())
                .configure(routes)
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);

        let (status, body) = http(addr, "GET", "/scheduler/jobs", None).await.unwrap();
        assert_eq!(status, "200 OK");
        assert!(body.contains(r#""id":"cleanup""#), "{body}");
        let (status, body) = http(addr, "GET", "/scheduler", None).await.unwrap();
        assert_eq!(status, "200 OK");
        assert!(body.contains(r#""job_count":1"#), "{body}");

        handle.stop(true).await;
        scheduler.shutdown().await.unwrap();
    }
}
