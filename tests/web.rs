//! The management router, driven in-process with `tower::ServiceExt::oneshot`.
#![cfg(feature = "axum")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apsched::trigger::{Date, Interval, Trigger};
use apsched::{web, Scheduler, TaskRegistry, TestClock, Zone};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tower::ServiceExt;

/// Sends one request; answers the status and the JSON body (`Null` when empty).
async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    send(app, method, uri, body, None).await
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    raw(app, request).await
}

async fn raw(app: &Router, request: Request) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

async fn tick() {}

/// The router where the docs put it.
fn mounted(api: Router) -> Router {
    Router::new().nest("/scheduler", api)
}

/// A started scheduler at `t0()` with one job, `tick`, every minute; and its router.
async fn app_with_tick() -> (Scheduler, Router) {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(tick, Interval::minutes(1))
        .id("tick")
        .await
        .unwrap();
    let app = mounted(web::router(scheduler.clone()));
    (scheduler, app)
}

fn tick_json() -> Value {
    json!({
        "id": "tick",
        "name": "tick",
        "trigger": {
            "type": "interval",
            "period": 60.0,
            "start": "2024-01-01T00:01:00Z",
            "timezone": "UTC"
        },
        "trigger_text": "every 1 minute",
        "next_run_time": "2024-01-01T00:01:00Z",
        "misfire_grace_time": 1.0,
        "coalesce": true,
        "max_instances": 1,
        "timeout": null,
        "retry": null,
        "paused": false,
        "store": "default",
        "task": null
    })
}

fn error(kind: &str, message: &str) -> Value {
    json!({ "error": message, "kind": kind })
}

// ---- reads ----

#[tokio::test(start_paused = true)]
async fn get_job_shows_the_snapshot_as_json() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs/tick", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, tick_json());
}

#[tokio::test(start_paused = true)]
async fn preview_lists_the_next_fire_times_and_refuses_a_bad_n() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs/tick/preview?n=3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([
            "2024-01-01T00:01:00+00:00",
            "2024-01-01T00:02:00+00:00",
            "2024-01-01T00:03:00+00:00"
        ])
    );
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs/tick/preview", None).await;
    assert_eq!(
        (status, body.as_array().map(Vec::len)),
        (StatusCode::OK, Some(10))
    );
    for bad in ["0", "101", "ten", "-1"] {
        let uri = format!("/scheduler/jobs/tick/preview?n={bad}");
        let (status, body) = call(&app, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "n={bad}");
        assert_eq!(
            (body["kind"].as_str(), body["field"].as_str()),
            (Some("invalid_option"), Some("n"))
        );
    }
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs/nope/preview", None).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("job_not_found"))
    );
}

#[tokio::test(start_paused = true)]
async fn get_jobs_lists_soonest_first() {
    let (scheduler, app) = app_with_tick().await;
    scheduler
        .add_job(tick, Interval::seconds(30))
        .id("sooner")
        .await
        .unwrap();
    scheduler
        .add_job(tick, Interval::seconds(1))
        .id("held")
        .paused()
        .await
        .unwrap();
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sooner", "tick", "held"]);
    assert_eq!(body[1], tick_json());
    assert_eq!(body[2]["next_run_time"], Value::Null);
}

#[tokio::test(start_paused = true)]
async fn unknown_ids_are_404_on_every_job_route() {
    let (_scheduler, app) = app_with_tick().await;
    let expected = error("job_not_found", "no job with id 'nope'");
    for (method, uri) in [
        (Method::GET, "/scheduler/jobs/nope"),
        (Method::POST, "/scheduler/jobs/nope/pause"),
        (Method::POST, "/scheduler/jobs/nope/resume"),
        (Method::POST, "/scheduler/jobs/nope/run"),
        (Method::DELETE, "/scheduler/jobs/nope"),
    ] {
        let (status, body) = call(&app, method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(body, expected, "{method} {uri}");
    }
}

// ---- job changes ----

#[tokio::test(start_paused = true)]
async fn pause_and_resume_a_job() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs/tick/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["paused"], true);
    assert_eq!(body["next_run_time"], Value::Null);

    advance(Duration::from_secs(90)).await;
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs/tick/resume", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["paused"], false);
    assert_eq!(body["next_run_time"], "2024-01-01T00:02:00Z");
}

#[tokio::test(start_paused = true)]
async fn resuming_a_finished_job_removes_it_with_204() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(
            tick,
            Interval::seconds(10).end(t0() + chrono::TimeDelta::seconds(30)),
        )
        .id("once")
        .paused()
        .await
        .unwrap();
    let app = mounted(web::router(scheduler.clone()));
    advance(Duration::from_secs(60)).await;
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs/once/resume", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(scheduler.job_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn run_submits_a_run_now() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let runs = Arc::new(AtomicUsize::new(0));
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
    let app = mounted(web::router(scheduler.clone()));
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs/hourly/run", None).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    advance(Duration::from_millis(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The schedule is unchanged.
    let (_, job) = call(&app, Method::GET, "/scheduler/jobs/hourly", None).await;
    assert_eq!(job["next_run_time"], "2024-01-01T01:00:00Z");
}

#[tokio::test(start_paused = true)]
async fn delete_removes_the_job() {
    let (scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::DELETE, "/scheduler/jobs/tick", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(scheduler.job_count(), 0);
    let (status, _) = call(&app, Method::GET, "/scheduler/jobs/tick", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---- the scheduler ----

#[tokio::test(start_paused = true)]
async fn status_counts_jobs_and_running_runs() {
    let (scheduler, app) = app_with_tick().await;
    let release = Arc::new(Notify::new());
    let r = Arc::clone(&release);
    scheduler
        .add_job(
            move || {
                let r = Arc::clone(&r);
                async move { r.notified().await }
            },
            Interval::seconds(10),
        )
        .id("slow")
        .await
        .unwrap();
    let (status, body) = call(&app, Method::GET, "/scheduler", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "state": "running", "timezone": "UTC", "job_count": 2, "running_count": 0 })
    );
    advance(Duration::from_secs(11)).await;
    let (_, body) = call(&app, Method::GET, "/scheduler", None).await;
    assert_eq!(body["running_count"], 1);
    release.notify_one();
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_the_scheduler() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::POST, "/scheduler/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "paused");
    let (status, body) = call(&app, Method::POST, "/scheduler/resume", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "running");
}

#[tokio::test(start_paused = true)]
async fn calls_that_do_not_fit_the_state_are_409() {
    let scheduler = Scheduler::builder()
        .clock(TestClock::new(t0()))
        .timezone(Zone::UTC)
        .build();
    scheduler
        .add_job(tick, Interval::minutes(1))
        .id("tick")
        .await
        .unwrap();
    let app = mounted(web::router(scheduler.clone()));
    let (status, body) = call(&app, Method::POST, "/scheduler/pause", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        error("invalid_state", "the scheduler is stopped: cannot pause")
    );
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs/tick/run", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["kind"], "invalid_state");
    let (_, body) = call(&app, Method::GET, "/scheduler", None).await;
    assert_eq!(body["state"], "stopped");
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_calls_are_503_and_status_still_answers() {
    let (scheduler, app) = app_with_tick().await;
    scheduler.shutdown().await.unwrap();
    let expected = error("shutdown", "the scheduler is shut down");
    for (method, uri) in [
        (Method::GET, "/scheduler/jobs"),
        (Method::GET, "/scheduler/jobs/tick"),
        (Method::POST, "/scheduler/jobs/tick/pause"),
        (Method::DELETE, "/scheduler/jobs/tick"),
        (Method::POST, "/scheduler/pause"),
        (Method::POST, "/scheduler/resume"),
    ] {
        let (status, body) = call(&app, method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
        assert_eq!(body, expected, "{method} {uri}");
    }
    let (status, body) = call(&app, Method::GET, "/scheduler", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "shut_down");
    assert_eq!(body["job_count"], 0);
}

// ---- adding over HTTP ----

#[derive(Clone, serde::Deserialize)]
struct Greet {
    name: String,
    times: u32,
}

/// A router that may add `greet` jobs; each run records its arguments.
async fn app_with_tasks() -> (Scheduler, Router, Arc<Mutex<Vec<String>>>) {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let tasks = TaskRegistry::new().register("greet", move |args: Greet| {
        let s = Arc::clone(&s);
        async move {
            s.lock()
                .unwrap()
                .push(format!("{} x{}", args.name, args.times));
        }
    });
    let app = mounted(web::Api::new(scheduler.clone()).tasks(tasks).into_router());
    (scheduler, app, seen)
}

#[tokio::test(start_paused = true)]
async fn adding_is_refused_unless_enabled() {
    let (scheduler, app) = app_with_tick().await;
    let body = json!({ "task": "greet", "trigger": { "type": "interval", "period": 60.0 } });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["kind"], "adding_disabled");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not enabled on this router"));
    assert_eq!(scheduler.job_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn adding_a_registered_task_schedules_it_with_its_arguments() {
    let (scheduler, app, seen) = app_with_tasks().await;
    let request = json!({
        "id": "hello",
        "task": "greet",
        "args": { "name": "Ada", "times": 2 },
        "trigger": { "type": "interval", "period": 30.0 },
        "misfire_grace_time": null,
        "max_instances": 3,
        "timeout": 30,
        "retry": { "max_attempts": 3, "cap": 10 }
    });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(request)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({
            "id": "hello",
            "name": "greet",
            "trigger": {
                "type": "interval",
                "period": 30.0,
                "start": "2024-01-01T00:00:30Z",
                "timezone": "UTC"
            },
            "trigger_text": "every 30 seconds",
            "next_run_time": "2024-01-01T00:00:30Z",
            "misfire_grace_time": null,
            "coalesce": true,
            "max_instances": 3,
            "timeout": 30.0,
            "retry": { "max_attempts": 3, "base": 1.0, "cap": 10.0, "retry_timeouts": false },
            "paused": false,
            "store": "default",
            "task": "greet"
        })
    );
    advance(Duration::from_secs(61)).await;
    assert_eq!(*seen.lock().unwrap(), ["Ada x2", "Ada x2"]);
    assert_eq!(scheduler.get_job("hello").await.unwrap().name, "greet");

    // A second add with a random id, a name, paused, at a date.
    let request = json!({
        "name": "once",
        "task": "greet",
        "args": { "name": "Bob", "times": 1 },
        "trigger": { "type": "date", "run_date": "2024-01-02T00:00:00Z" },
        "paused": true
    });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(request)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["name"], "once");
    assert_eq!(body["paused"], true);
    assert_eq!(body["id"].as_str().unwrap().len(), 32);
}

#[tokio::test(start_paused = true)]
async fn adding_takes_cron_triggers_as_a_crontab_string_or_fields() {
    let (scheduler, app, seen) = app_with_tasks().await;
    let args = json!({ "name": "Ada", "times": 1 });
    let crontab = json!({ "id": "crontab", "task": "greet", "args": args,
        "trigger": { "type": "cron", "expression": "30 6 * * *", "timezone": "Asia/Shanghai" } });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(crontab)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The test clock starts at 08:00 in Shanghai (UTC+8): the next 06:30 is tomorrow's.
    assert_eq!(body["next_run_time"], "2024-01-02T06:30:00+08:00");
    let fields = json!({ "id": "fields", "task": "greet", "args": args,
        "trigger": { "type": "cron", "fields": { "day_of_week": "mon-fri", "hour": "1" } } });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(fields)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["next_run_time"], "2024-01-01T01:00:00Z");
    advance(Duration::from_secs(86_400)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "one run of each in a day");
    let bad = json!({ "task": "greet", "args": args,
        "trigger": { "type": "cron", "expression": "61 * * * *" } });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(scheduler.job_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn adding_refuses_bad_input_with_400() {
    let (scheduler, app, _seen) = app_with_tasks().await;
    let every_minute = json!({ "type": "interval", "period": 60.0 });

    let cases = [
        (
            json!({ "task": "shout", "trigger": every_minute }),
            "task_not_found",
            Some("task"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": "twice" }, "trigger": every_minute }),
            "invalid_task_args",
            Some("times"),
        ),
        (
            json!({ "task": "greet", "args": { "times": 1 }, "trigger": every_minute }),
            "invalid_task_args",
            Some("name"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": 1 }, "trigger": { "type": "interval", "period": 0.0 } }),
            "invalid_trigger",
            Some("interval"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": 1 }, "trigger": every_minute, "max_instances": 0 }),
            "invalid_option",
            Some("max_instances"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": 1 }, "trigger": every_minute, "timeout": 0 }),
            "invalid_option",
            Some("timeout"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": 1 }, "trigger": every_minute, "retry": { "max_attempts": 0 } }),
            "invalid_option",
            Some("retry.max_attempts"),
        ),
        (
            json!({ "task": "greet", "args": { "name": "Ada", "times": 1 }, "trigger": every_minute, "retry": { "max_attempts": 2, "base": 5, "cap": 1 } }),
            "invalid_option",
            Some("retry.cap"),
        ),
        (
            json!({ "task": "greet", "trigger": every_minute, "retry": { "max_attempts": 2, "bsae": 5 } }),
            "bad_request",
            Some("retry.bsae"),
        ),
        (
            json!({ "task": "greet", "trigger": every_minute, "timeout": -1 }),
            "bad_request",
            Some("timeout"),
        ),
        (
            json!({ "task": "greet", "trigger": { "type": "hourly" } }),
            "bad_request",
            Some("trigger.type"),
        ),
        (
            json!({ "task": "greet", "trigger": { "type": "interval" } }),
            "bad_request",
            Some("trigger.period"),
        ),
        (json!({ "task": "greet" }), "bad_request", Some("trigger")),
        (
            json!({ "task": "greet", "trigger": every_minute, "colaesce": false }),
            "bad_request",
            Some("colaesce"),
        ),
    ];
    for (request, kind, field) in cases {
        let (status, body) =
            call(&app, Method::POST, "/scheduler/jobs", Some(request.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert_eq!(body["kind"], kind, "{request}: {body}");
        assert_eq!(body["field"].as_str(), field, "{request}: {body}");
    }
    let (_, body) = call(
        &app,
        Method::POST,
        "/scheduler/jobs",
        Some(json!({ "task": "shout", "trigger": every_minute })),
    )
    .await;
    assert_eq!(body["error"], "no task registered under the name 'shout'");
    let (_, body) = call(
        &app,
        Method::POST,
        "/scheduler/jobs",
        Some(json!({ "task": "greet", "args": { "name": "Ada", "times": -1 }, "trigger": every_minute })),
    )
    .await;
    assert_eq!(
        body["error"],
        "invalid arguments for task 'greet': at 'times': invalid value: integer `-1`, expected u32"
    );

    // Not JSON at all, and JSON without its content type.
    let request = Request::post("/scheduler/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{ not json"))
        .unwrap();
    let (status, body) = raw(&app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["kind"], "bad_request");
    let request = Request::post("/scheduler/jobs")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = raw(&app, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["kind"], "bad_request");

    assert_eq!(scheduler.job_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn adding_a_taken_id_is_409_unless_replacing() {
    let (_scheduler, app, _seen) = app_with_tasks().await;
    let request = json!({
        "id": "dup",
        "task": "greet",
        "args": { "name": "Ada", "times": 1 },
        "trigger": { "type": "interval", "period": 60.0 }
    });
    let (status, _) = call(&app, Method::POST, "/scheduler/jobs", Some(request.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(request.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({
            "error": "a job with id 'dup' exists already (use replace_existing to replace it)",
            "kind": "conflicting_id",
            "field": "id"
        })
    );
    let mut replacing = request;
    replacing["replace_existing"] = json!(true);
    replacing["trigger"]["period"] = json!(120.0);
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(replacing)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["trigger"]["period"], 120.0);
}

// ---- the bearer-token guard, as in the module docs ----

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {token}");
    match request.headers().get(header::AUTHORIZATION) {
        Some(given) if given.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response(),
    }
}

#[tokio::test(start_paused = true)]
async fn the_guard_protects_mutations_and_leaves_reads_open() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(tick, Interval::minutes(1))
        .id("tick")
        .await
        .unwrap();
    let token: Arc<str> = Arc::from("s3cret");
    let app = mounted(
        web::Api::new(scheduler.clone())
            .tasks(TaskRegistry::new().register("noop", |(): ()| async {}))
            .guard_mutations(middleware::from_fn_with_state(token, require_token))
            .into_router(),
    );

    for uri in ["/scheduler/jobs", "/scheduler/jobs/tick", "/scheduler"] {
        let (status, _) = send(&app, Method::GET, uri, None, None).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}");
    }
    let add = json!({ "task": "noop", "trigger": { "type": "interval", "period": 5.0 } });
    let mutations = [
        (Method::POST, "/scheduler/jobs", Some(add)),
        (Method::POST, "/scheduler/jobs/tick/pause", None),
        (Method::POST, "/scheduler/jobs/tick/resume", None),
        (Method::POST, "/scheduler/jobs/tick/run", None),
        (Method::POST, "/scheduler/pause", None),
        (Method::POST, "/scheduler/resume", None),
        (Method::DELETE, "/scheduler/jobs/tick", None),
    ];
    for (method, uri, body) in &mutations {
        for token in [None, Some("wrong")] {
            let (status, _) = send(&app, method.clone(), uri, body.clone(), token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
        }
    }
    assert_eq!(scheduler.job_count(), 1);
    for (method, uri, body) in mutations {
        let (status, _) = send(&app, method.clone(), uri, body, Some("s3cret")).await;
        assert!(status.is_success(), "{method} {uri}: {status}");
    }
    // A wrong method is a routing answer, not an auth one.
    let (status, _) = send(&app, Method::PUT, "/scheduler/jobs/tick", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

// ---- mounting ----

#[derive(Clone)]
struct AppState {
    scheduler: Scheduler,
}

async fn count_jobs(State(state): State<AppState>) -> Result<String, apsched::Error> {
    Ok(state.scheduler.get_jobs().await?.len().to_string())
}

#[tokio::test(start_paused = true)]
async fn nests_into_an_app_with_its_own_state() {
    let (scheduler, app) = app_with_tick().await;
    drop(app);
    let app: Router = Router::new()
        .route("/count", axum::routing::get(count_jobs))
        .nest("/scheduler", web::router(scheduler.clone()))
        .with_state(AppState {
            scheduler: scheduler.clone(),
        });
    let (status, body) = call(&app, Method::GET, "/scheduler/jobs/tick", None).await;
    assert_eq!((status, body), (StatusCode::OK, tick_json()));
    let (status, body) = call(&app, Method::GET, "/count", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!(1)));
    // apsched::Error is a response too, for the app's own handlers.
    scheduler.shutdown().await.unwrap();
    let (status, body) = call(&app, Method::GET, "/count", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, error("shutdown", "the scheduler is shut down"));
}

// ---- the trigger JSON the API takes ----

#[test]
fn triggers_are_tagged_json() {
    let interval: Trigger = serde_json::from_value(json!({ "type": "interval", "period": 60.0 }))
        .expect("a bare interval");
    assert_eq!(interval, Trigger::from(Interval::minutes(1)));
    assert_eq!(
        serde_json::to_value(&interval).unwrap(),
        json!({ "type": "interval", "period": 60.0 })
    );
    let date = Trigger::from(Date::at(t0()));
    let as_json = json!({ "type": "date", "run_date": "2024-01-01T00:00:00Z" });
    assert_eq!(serde_json::to_value(&date).unwrap(), as_json);
    assert_eq!(serde_json::from_value::<Trigger>(as_json).unwrap(), date);
    let unknown = serde_json::from_value::<Trigger>(json!({ "type": "hourly" })).unwrap_err();
    assert!(unknown.to_string().contains("unknown variant `hourly`"));
}

#[tokio::test(start_paused = true)]
async fn serves_at_the_root_too() {
    let (scheduler, _app) = app_with_tick().await;
    let app: Router = web::router(scheduler);
    let (status, body) = call(&app, Method::GET, "/", None).await;
    assert_eq!(
        (status, &body["state"]),
        (StatusCode::OK, &json!("running"))
    );
    let (status, body) = call(&app, Method::GET, "/jobs/tick", None).await;
    assert_eq!((status, body), (StatusCode::OK, tick_json()));
    let (status, _) = call(&app, Method::POST, "/pause", None).await;
    assert_eq!(status, StatusCode::OK);
}

// ---- concurrency ----

#[test]
fn concurrent_replacing_adds_and_deletes_over_http_leave_no_orphans() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scheduler = Scheduler::builder().timezone(Zone::UTC).build();
        scheduler.start().await.unwrap();
        let tasks = TaskRegistry::new().register("tick", |(): ()| async {});
        let app = mounted(web::Api::new(scheduler.clone()).tasks(tasks).into_router());
        let body = json!({
            "id": "y", "task": "tick", "replace_existing": true,
            "trigger": { "type": "interval", "period": 3600.0 }
        });
        let mut callers = Vec::new();
        for caller in 0..8 {
            let (app, body) = (app.clone(), body.clone());
            callers.push(tokio::spawn(async move {
                for _ in 0..500 {
                    if caller % 2 == 0 {
                        let (status, _) =
                            call(&app, Method::POST, "/scheduler/jobs", Some(body.clone())).await;
                        assert_eq!(status, StatusCode::CREATED);
                    } else {
                        let (status, _) =
                            call(&app, Method::DELETE, "/scheduler/jobs/y", None).await;
                        assert!(
                            matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND),
                            "{status}"
                        );
                    }
                }
            }));
        }
        for caller in callers {
            caller.await.unwrap();
        }
        let (_, listed) = call(&app, Method::GET, "/scheduler/jobs", None).await;
        let listed = listed.as_array().unwrap().len();
        assert!(listed <= 1, "{listed} jobs named y");
        let (_, status) = call(&app, Method::GET, "/scheduler", None).await;
        assert_eq!(status["job_count"], listed);
        let (deleted, _) = call(&app, Method::DELETE, "/scheduler/jobs/y", None).await;
        assert_eq!(deleted == StatusCode::NO_CONTENT, listed == 1);
        let (_, listed) = call(&app, Method::GET, "/scheduler/jobs", None).await;
        assert_eq!(listed, json!([]));
    });
}

#[tokio::test(start_paused = true)]
async fn guard_reads_closes_the_read_routes_too() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler
        .add_job(tick, Interval::minutes(1))
        .id("tick")
        .await
        .unwrap();
    let token: Arc<str> = Arc::from("s3cret");
    let guard = middleware::from_fn_with_state(token, require_token);
    let app = mounted(
        web::Api::new(scheduler.clone())
            .guard_mutations(guard.clone())
            .guard_reads(guard)
            .into_router(),
    );
    for uri in ["/scheduler/jobs", "/scheduler/jobs/tick", "/scheduler"] {
        let (status, _) = send(&app, Method::GET, uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "GET {uri}");
        let (status, _) = send(&app, Method::GET, uri, None, Some("s3cret")).await;
        assert_eq!(status, StatusCode::OK, "GET {uri} with the token");
    }
    let (status, _) = send(&app, Method::POST, "/scheduler/jobs/tick/pause", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, Method::GET, "/scheduler/nowhere", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_hostile_cron_step_over_http_is_refused_and_the_scheduler_keeps_time() {
    let (scheduler, app, _seen) = app_with_tasks().await;
    let runs = Runs::default();
    scheduler
        .add_job(record_now(&runs), Interval::seconds(1))
        .await
        .unwrap();
    let body = json!({
        "task": "greet", "args": { "name": "x", "times": 1 },
        "trigger": { "type": "cron", "fields": { "year": "1970/4294967295", "week": "1" } }
    });
    let (status, body) = call(&app, Method::POST, "/scheduler/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["kind"], "invalid_cron_field");
    assert_eq!(body["field"], "year");
    advance(Duration::from_millis(3500)).await;
    assert_eq!(runs.count(), 3, "the other job ran on time");
}

// ---- reads for the dashboard: paging, runs, nodes ----

/// Sends one request; answers the whole response.
async fn response(app: &Router, uri: &str) -> Response {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    app.clone().oneshot(request).await.unwrap()
}

fn ids(body: &Value) -> Vec<&str> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_job_list_filters_and_pages_on_the_server() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    for i in 0..25 {
        let id = format!("job-{i:02}");
        let name = if i % 5 == 0 { "Nightly Report" } else { "tick" };
        scheduler
            .add_job(tick, Interval::seconds(60 + i))
            .id(id)
            .name(name)
            .await
            .unwrap();
    }
    let app = mounted(web::router(scheduler.clone()));

    // Without parameters: every job, as before, and the total in a header.
    let res = response(&app, "/scheduler/jobs").await;
    assert_eq!(res.headers()["x-total-count"], "25");
    let (status, all) = call(&app, Method::GET, "/scheduler/jobs", None).await;
    assert_eq!(
        (status, all.as_array().unwrap().len()),
        (StatusCode::OK, 25)
    );
    assert_eq!(all[0]["trigger_text"], "every 1 minute");

    // A page keeps the order of the whole list.
    let (_, page) = call(&app, Method::GET, "/scheduler/jobs?offset=10&limit=5", None).await;
    assert_eq!(ids(&page), ids(&all)[10..15]);
    let res = response(&app, "/scheduler/jobs?offset=24&limit=5").await;
    assert_eq!(res.headers()["x-total-count"], "25");

    // `q` matches the id or the name, ignoring case; the total counts the matches.
    let res = response(&app, "/scheduler/jobs?q=nightly%20REPORT&limit=2").await;
    assert_eq!(res.headers()["x-total-count"], "5");
    let (_, found) = call(
        &app,
        Method::GET,
        "/scheduler/jobs?q=nightly%20REPORT&limit=2",
        None,
    )
    .await;
    assert_eq!(ids(&found), ["job-00", "job-05"]);
    let (_, found) = call(&app, Method::GET, "/scheduler/jobs?q=JOB-1", None).await;
    assert_eq!(found.as_array().unwrap().len(), 10);
    let (_, none) = call(&app, Method::GET, "/scheduler/jobs?q=zzz", None).await;
    assert_eq!(none, json!([]));

    for (bad, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ] {
        let (status, body) = call(&app, Method::GET, &format!("/scheduler/jobs?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            (body["kind"].as_str(), body["field"].as_str()),
            (Some("invalid_option"), Some(field)),
            "{bad}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn runs_list_a_jobs_history_newest_first() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let flips = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&flips);
    scheduler
        .add_job(
            move || {
                let f = Arc::clone(&f);
                async move {
                    if f.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                        Err("disk full")
                    } else {
                        Ok(())
                    }
                }
            },
            Interval::seconds(10),
        )
        .id("flaky")
        .await
        .unwrap();
    let app = mounted(web::router(scheduler.clone()));
    advance(Duration::from_secs(35)).await;

    let (status, runs) = call(
        &app,
        Method::GET,
        "/scheduler/jobs/flaky/runs?limit=2",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["job_id"], "flaky");
    assert_eq!(runs[0]["fire_time"], "2024-01-01T00:00:30Z");
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[1]["fire_time"], "2024-01-01T00:00:20Z");
    assert_eq!(runs[1]["state"], "failed");
    assert_eq!(runs[1]["error"], "disk full");
    assert!(runs[1]["started_at"].is_string() && runs[1]["finished_at"].is_string());

    let (_, runs) = call(&app, Method::GET, "/scheduler/jobs/flaky/runs", None).await;
    assert_eq!(runs.as_array().unwrap().len(), 3);
    let (status, runs) = call(&app, Method::GET, "/scheduler/jobs/nope/runs", None).await;
    assert_eq!((status, runs), (StatusCode::OK, json!([])));
    for bad in ["0", "1001", "x"] {
        let uri = format!("/scheduler/jobs/flaky/runs?limit={bad}");
        let (status, body) = call(&app, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert_eq!(body["field"], "limit");
    }
}

#[tokio::test(start_paused = true)]
async fn nodes_are_an_empty_list_outside_a_cluster() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(&app, Method::GET, "/scheduler/nodes", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}

// ---- live events (SSE) ----

/// The next SSE message of `body` (`event:` and the JSON of `data:`), skipping keep-alive
/// comments; `None` when the stream ends. Waits at most a minute of (paused) time.
async fn next_message(body: &mut Body) -> Option<(String, Value)> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
            .await
            .expect("no SSE message within a minute")?
            .unwrap();
        let Ok(bytes) = frame.into_data() else {
            continue;
        };
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(kind), Some(data)) = (field("event: "), field("data: ")) {
            return Some((kind, serde_json::from_str(&data).unwrap()));
        }
    }
}

async fn sse(app: &Router, uri: &str) -> Body {
    let res = response(app, uri).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    res.into_body()
}

/// A started scheduler on a test clock whose event channel holds only `capacity` events.
async fn scheduler_with_event_capacity(capacity: usize) -> Scheduler {
    let scheduler = Scheduler::builder()
        .clock(TestClock::new(t0()))
        .timezone(Zone::UTC)
        .event_capacity(capacity)
        .build();
    scheduler.start().await.unwrap();
    scheduler
}

#[tokio::test(start_paused = true)]
async fn events_stream_job_events_in_order_with_a_kind_filter() {
    let scheduler = scheduler_with_event_capacity(64).await;
    let app = mounted(web::router(scheduler.clone()));
    let mut body = sse(&app, "/scheduler/events?kinds=job_submitted,job_executed").await;
    let mut all = sse(&app, "/scheduler/events").await;
    scheduler
        .add_job(tick, Interval::seconds(1))
        .id("tick")
        .await
        .unwrap();

    let mut last = None;
    for _ in 0..5 {
        let (kind, submitted) = next_message(&mut body).await.unwrap();
        assert_eq!(
            (kind.as_str(), &submitted["event"]),
            ("job_submitted", &json!("job_submitted"))
        );
        let (kind, executed) = next_message(&mut body).await.unwrap();
        assert_eq!(kind, "job_executed");
        assert_eq!(executed["job_id"], "tick");
        assert_eq!(
            executed["scheduled_run_time"],
            submitted["scheduled_run_time"]
        );
        let at = executed["scheduled_run_time"].as_str().unwrap().to_string();
        assert!(
            last.as_ref().is_none_or(|last| *last < at),
            "{last:?} then {at}"
        );
        last = Some(at);
    }
    // Unfiltered, the first job event is the add.
    let (kind, added) = next_message(&mut all).await.unwrap();
    assert_eq!(
        (kind.as_str(), added),
        ("job_added", json!({"event": "job_added", "job_id": "tick"}))
    );

    scheduler.shutdown().await.unwrap();
    let mut kinds = Vec::new();
    while let Some((kind, _)) = next_message(&mut all).await {
        kinds.push(kind);
    }
    assert_eq!(kinds.last().map(String::as_str), Some("scheduler_shutdown"));
}

#[tokio::test(start_paused = true)]
async fn events_refuse_an_unknown_kind() {
    let (_scheduler, app) = app_with_tick().await;
    let (status, body) = call(
        &app,
        Method::GET,
        "/scheduler/events?kinds=job_executed,job_exploded",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (body["kind"].as_str(), body["field"].as_str()),
        (Some("invalid_option"), Some("kinds"))
    );
    assert!(
        body["error"].as_str().unwrap().contains("\"job_exploded\""),
        "{body}"
    );
    let (status, _) = call(
        &app,
        Method::GET,
        "/scheduler/events?kinds=JOB_EXECUTED",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_holds_back_neither_the_scheduler_nor_other_clients() {
    const CAPACITY: usize = 8;
    let scheduler = scheduler_with_event_capacity(CAPACITY).await;
    let app = mounted(web::router(scheduler.clone()));
    // Subscribed, then never read while the rest goes on.
    let mut stalled = sse(&app, "/scheduler/events").await;
    let mut reader = sse(&app, "/scheduler/events?kinds=job_executed").await;
    scheduler
        .add_job(tick, Interval::seconds(1))
        .id("tick")
        .await
        .unwrap();

    // Ten runs: 20 job events and more, far beyond what the channel holds for the stalled client.
    for second in 1..=10 {
        let (kind, executed) = next_message(&mut reader).await.unwrap();
        assert_eq!(kind, "job_executed");
        assert_eq!(
            executed["scheduled_run_time"],
            format!("2024-01-01T00:00:{second:02}Z")
        );
    }
    // The scheduler kept its schedule meanwhile, and answers.
    let (_, job) = call(&app, Method::GET, "/scheduler/jobs/tick", None).await;
    assert_eq!(job["next_run_time"], "2024-01-01T00:00:11Z");

    // The stalled client lost the oldest events, and is told how many, then goes on.
    let (kind, lagged) = next_message(&mut stalled).await.unwrap();
    assert_eq!(kind, "lagged");
    let missed = lagged["missed"].as_u64().unwrap();
    assert!(missed >= 10, "missed {missed}");
    let mut after = 0;
    while let Some((kind, _)) =
        futures::FutureExt::now_or_never(next_message(&mut stalled)).flatten()
    {
        assert_ne!(kind, "lagged");
        after += 1;
    }
    // What it still gets is bounded by the channel, not by how long it stalled.
    assert!(
        after <= CAPACITY,
        "{after} events held for a stalled client"
    );
}

// ---- the OpenAPI document ----

/// Every route `into_router` registers, as the document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("post", "/pause"),
    ("post", "/resume"),
    ("get", "/jobs"),
    ("post", "/jobs"),
    ("get", "/jobs/{id}"),
    ("delete", "/jobs/{id}"),
    ("get", "/jobs/{id}/preview"),
    ("get", "/jobs/{id}/runs"),
    ("post", "/jobs/{id}/pause"),
    ("post", "/jobs/{id}/resume"),
    ("post", "/jobs/{id}/run"),
    ("get", "/nodes"),
    ("get", "/events"),
    ("get", "/openapi.json"),
    #[cfg(feature = "dashboard")]
    ("get", "/ui"),
];

fn guarded(scheduler: Scheduler) -> Router {
    let token: Arc<str> = Arc::from("s3cret");
    mounted(
        web::Api::new(scheduler)
            .guard_mutations(middleware::from_fn_with_state(token, require_token))
            .into_router(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_openapi_document_lists_every_route_and_each_answers() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let app = guarded(scheduler.clone());
    let (status, doc) = call(&app, Method::GET, "/scheduler/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // Full paths, the mount point included; the root is `/scheduler`, as it is served.
    assert!(doc.get("servers").is_none());

    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(full, item)| {
            let path = match full.strip_prefix("/scheduler").unwrap() {
                "" => "/".to_string(),
                path => path.to_string(),
            };
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    for (method, path) in &documented {
        let full = format!("/scheduler{path}");
        let operation = &doc["paths"][full.trim_end_matches('/')][method];
        let mutating = method != "get";
        // The guard is on exactly the mutating routes; every operation documents errors.
        assert_eq!(
            operation.get("security").is_some(),
            mutating,
            "{method} {path}"
        );
        assert_eq!(
            operation["responses"].get("401").is_some(),
            mutating,
            "{method} {path}"
        );
        assert_eq!(
            operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{method} {path}"
        );
        // Documented means served: a route answers neither 404 for its path nor 405.
        if path == "/events" {
            continue;
        }
        let uri = format!("/scheduler{}", path.replace("{id}", "nope"));
        let uri = uri.trim_end_matches('/');
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.clone())
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {status}"
        );
        if status == StatusCode::NOT_FOUND {
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            assert_eq!(body["kind"], "job_not_found", "{method} {uri}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({ "type": "http", "scheme": "bearer" })
    );
}

#[tokio::test(start_paused = true)]
async fn the_documents_schemas_have_the_fields_the_answers_have() {
    let (_scheduler, app) = app_with_tick().await;
    let (_, doc) = call(&app, Method::GET, "/scheduler/openapi.json", None).await;
    // Unguarded: no bearer scheme, no 401.
    assert!(doc["components"].get("securitySchemes").is_none());
    assert!(doc["paths"]["/jobs/{id}/pause"]["post"]
        .get("security")
        .is_none());
    let schemas = &doc["components"]["schemas"];
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let (_, job) = call(&app, Method::GET, "/scheduler/jobs/tick", None).await;
    assert_eq!(keys(&schemas["Job"]["properties"]), keys(&job));
    let (_, status) = call(&app, Method::GET, "/scheduler", None).await;
    assert_eq!(keys(&schemas["Status"]["properties"]), keys(&status));
    let (_, error) = call(&app, Method::GET, "/scheduler/jobs/tick/preview?n=0", None).await;
    assert_eq!(keys(&schemas["Error"]["properties"]), keys(&error));
    assert_eq!(
        schemas["RunRecord"]["required"].as_array().map(Vec::len),
        Some(3),
        "{}",
        schemas["RunRecord"]
    );
    assert!(schemas["Event"]["oneOf"].as_array().unwrap().len() >= 20);
}

// ---- the dashboard page ----

#[cfg(feature = "dashboard")]
#[tokio::test(start_paused = true)]
async fn the_dashboard_is_one_self_contained_page() {
    let (_scheduler, app) = app_with_tick().await;
    let res = response(&app, "/scheduler/ui").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("connect-src 'self'"));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8(bytes.to_vec()).unwrap();
    // Nothing fetched from elsewhere: no CDN, no external script, style or font.
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
    for needle in [
        "EventSource(base + \"/events\")",
        "Authorization = \"Bearer \"",
        "/runs?limit=",
        "/preview?n=",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
}
