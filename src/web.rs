//! A job-management REST API for [axum], in the spirit of Flask-APScheduler's.
//!
//! [`router`] gives an axum [`Router`] over a [`Scheduler`] handle: mount it where you like
//! (`.nest("/scheduler", ..)`) in any app, whatever its state type. [`Api`] sets the options:
//! adding jobs over HTTP from a [`TaskRegistry`], and a guard (an auth layer) on the routes that
//! change anything.
//!
//! This module only translates HTTP to [`Scheduler`] calls and [`Error`]s to JSON responses; it
//! holds no state of its own and never decides when a job runs.
//!
//! # Routes
//!
//! Paths are relative to where the router is mounted; mounted at `/scheduler` (as below) they
//! are Flask-APScheduler's:
//!
//! | method and path | does | answers |
//! |---|---|---|
//! | `GET /scheduler` | the scheduler's status | `200` `Status` |
//! | `POST /scheduler/pause` | pauses the scheduler | `200` `Status` |
//! | `POST /scheduler/resume` | resumes the scheduler | `200` `Status` |
//! | `GET /scheduler/jobs` | lists the jobs, soonest next run first | `200` `[Job, ..]` |
//! | `POST /scheduler/jobs` | adds a job from a registered task (off unless [`Api::tasks`]) | `201` `Job` |
//! | `GET /scheduler/jobs/{id}` | one job | `200` `Job` |
//! | `GET /scheduler/jobs/{id}/preview?n=10` | the job's next `n` fire times (default 10, at most 100), RFC 3339 in its trigger's zone; none while paused | `200` `["2024-03-30T02:30:00+01:00", ..]` |
//! | `DELETE /scheduler/jobs/{id}` | removes a job | `204` |
//! | `POST /scheduler/jobs/{id}/pause` | pauses a job | `200` `Job` |
//! | `POST /scheduler/jobs/{id}/resume` | resumes a job | `200` `Job`; `204` if its trigger had no fire time left, so it was removed |
//! | `POST /scheduler/jobs/{id}/run` | submits one run now, outside its schedule (counted against `max_instances`) | `202` |
//!
//! A `Job` is the [`Job`] snapshot as JSON (durations in seconds, times in RFC 3339 in the
//! trigger's zone):
//!
//! ```json
//! { "id": "cleanup", "name": "cleanup",
//!   "trigger": { "type": "interval", "period": 60.0, "start": "2024-01-01T00:01:00Z", "timezone": "UTC" },
//!   "next_run_time": "2024-01-01T00:01:00Z",
//!   "misfire_grace_time": 1.0, "coalesce": true, "max_instances": 1, "paused": false,
//!   "store": "default", "task": null }
//! ```
//!
//! A `Status` is `{"state": "running", "timezone": "UTC", "job_count": 3, "running_count": 1}`
//! (`state` is one of `stopped`, `running`, `paused`, `shut_down`; see [`SchedulerState`]).
//!
//! # Errors
//!
//! Every error is JSON: `{"error": "no job with id 'x'", "kind": "job_not_found"}`, plus
//! `"field"` when the error names the input at fault. `kind` is stable; `error` is for people.
//!
//! | status | kinds |
//! |---|---|
//! | `400 Bad Request` | `bad_request` (malformed JSON, unknown field), `invalid_trigger`, `invalid_cron_field`, `trigger_never_fires`, `unknown_time_zone`, `invalid_option`, `task_not_found`, `invalid_task_args`, `not_durable` (a closure for a durable store), `unknown_store` |
//! | `404 Not Found` | `job_not_found` |
//! | `405 Method Not Allowed` | `adding_disabled` (`POST .../jobs` without [`Api::tasks`]) |
//! | `409 Conflict` | `conflicting_id` (the id is taken), `invalid_state` (e.g. pausing a scheduler not started) |
//! | `503 Service Unavailable` | `shutdown`, `closed` (the scheduler's core task stopped without a shutdown), `store` (a job store cannot be reached) |
//! | `500 Internal Server Error` | `runtime`, `store_schema` (a store's schema is newer than this apsched) |
//!
//! [`Error`] implements [`IntoResponse`] with the same mapping, so your own handlers can return
//! `Result<_, apsched::Error>` and `?` scheduler calls.
//!
//! # Adding jobs over HTTP
//!
//! Off by default: `POST /scheduler/jobs` answers `405` until [`Api::tasks`] hands the router a
//! [`TaskRegistry`]. Then a request names a registered task and gives its arguments as JSON; it
//! can choose which registered code runs, never send code:
//!
//! ```json
//! { "id": "nightly", "task": "cleanup", "args": { "older_than_days": 30 },
//!   "trigger": { "type": "interval", "period": 86400.0, "start": "2024-01-02T03:00:00Z" },
//!   "misfire_grace_time": 60, "coalesce": true, "max_instances": 1,
//!   "replace_existing": false, "paused": false, "store": "durable" }
//! ```
//!
//! Only `task` and `trigger` are required; `args` defaults to `null` (a task taking `()`),
//! `name` to the task's name, `id` to a random one, `store` to the scheduler's default store,
//! the options to the scheduler's job defaults (`"misfire_grace_time": null` means however
//! late). The trigger is the
//! [`Trigger`] JSON, tagged by `type`: `{"type": "interval",
//! "period": 60.0}`, `{"type": "date", "run_date": "2030-01-01T00:00:00Z"}`, ...
//!
//! # Guarding the routes that change things
//!
//! [`Api::guard_mutations`] puts a layer (any tower layer: an axum middleware, a tower-http
//! auth layer) on the mutating routes only (`POST` and `DELETE`), so dashboards and health
//! checks can read without credentials. A bearer token check:
//!
//! ```
//! use apsched::{web, Scheduler};
//! use axum::extract::{Request, State};
//! use axum::http::{header, StatusCode};
//! use axum::middleware::{self, Next};
//! use axum::response::{IntoResponse, Response};
//! use std::sync::Arc;
//!
//! async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
//!     let expected = format!("Bearer {token}");
//!     match request.headers().get(header::AUTHORIZATION) {
//!         Some(given) if given.as_bytes() == expected.as_bytes() => next.run(request).await,
//!         _ => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scheduler = Scheduler::new();
//! let token: Arc<str> = Arc::from("s3cret");
//! let app: axum::Router = axum::Router::new().nest(
//!     "/scheduler",
//!     web::Api::new(scheduler)
//!         .guard_mutations(middleware::from_fn_with_state(token, require_token))
//!         .into_router(),
//! );
//! # drop(app);
//! # }
//! ```
//!
//! # Mounting it
//!
//! ```no_run
//! use apsched::{trigger::Interval, web, Scheduler};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let scheduler = Scheduler::new();
//!     scheduler.start().await?;
//!     scheduler.add_job(|| async { println!("tick") }, Interval::seconds(60)).await?;
//!
//!     let app = axum::Router::new().nest("/scheduler", web::router(scheduler.clone()));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     scheduler.shutdown().await?;
//!     Ok(())
//! }
//! ```
//!
//! [`SchedulerState`]: crate::SchedulerState

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, Route};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_service::Service;

use crate::trigger::Trigger;
use crate::{Error, Job, MisfireGrace, RetryPolicy, Scheduler, SchedulerState, TaskRegistry, Zone};

/// The management routes over `scheduler`, with the defaults: no adding over HTTP, no guard.
/// Mount it with `app.nest("/scheduler", web::router(scheduler))`.
///
/// The same as `Api::new(scheduler).into_router()`; see [`Api`] for the options and the
/// [module docs](self) for the routes. The router carries its own state, so it nests into an
/// app of any state type `S`.
pub fn router<S>(scheduler: Scheduler) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Api::new(scheduler).into_router()
}

type Guard = Box<dyn FnOnce(Router<Arc<ApiState>>) -> Router<Arc<ApiState>> + Send>;

/// The management API's settings; [`into_router`](Api::into_router) makes the axum
/// [`Router`].
///
/// Default: every route of the [module docs](self) but `POST .../jobs`, none guarded;
/// [`guard_mutations`](Api::guard_mutations) and [`guard_reads`](Api::guard_reads) put an
/// auth layer on the routes that change things and on those that read.
///
/// ```
/// use apsched::{web, Scheduler, TaskRegistry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scheduler = Scheduler::new();
/// let tasks = TaskRegistry::new().register("ping", |(): ()| async { println!("ping") });
/// let api: axum::Router = web::Api::new(scheduler).tasks(tasks).into_router();
/// # drop(api);
/// # }
/// ```
#[must_use]
pub struct Api {
    scheduler: Scheduler,
    tasks: Option<TaskRegistry>,
    guards: Vec<Guard>,
    read_guards: Vec<Guard>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("scheduler", &self.scheduler)
            .field("tasks", &self.tasks)
            .field("guards", &self.guards.len())
            .field("read_guards", &self.read_guards.len())
            .finish()
    }
}

impl Api {
    /// The API over `scheduler`, with the defaults.
    pub fn new(scheduler: Scheduler) -> Api {
        Api {
            scheduler,
            tasks: None,
            guards: Vec::new(),
            read_guards: Vec::new(),
        }
    }

    /// Enables `POST .../jobs` for the tasks in `registry`: a request names a registered task
    /// and gives its JSON arguments. Default: off (`405`, kind `adding_disabled`).
    pub fn tasks(mut self, registry: TaskRegistry) -> Api {
        self.tasks = Some(registry);
        self
    }

    /// Puts `layer` on the routes that change anything (every `POST` and `DELETE`), leaving
    /// the `GET` routes open: typically an auth check answering `401` (see the
    /// [module docs](self#guarding-the-routes-that-change-things) for a bearer token).
    ///
    /// The layer runs only for requests that match a mutating route (it is applied with
    /// axum's `route_layer`), so unknown paths still answer `404`. Called again, the new
    /// layer wraps the earlier ones (it runs first).
    pub fn guard_mutations<L>(mut self, layer: L) -> Api
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.guards
            .push(Box::new(move |router| router.route_layer(layer)));
        self
    }

    /// Puts `layer` on the routes that only read (every `GET`: the job list, a job, the
    /// status), for deployments where even the job list is not public. Use it with
    /// [`guard_mutations`](Self::guard_mutations) to guard every route, with the same layer or
    /// a stricter one for changes. As there, unknown paths and wrong methods still answer
    /// `404` and `405`.
    pub fn guard_reads<L>(mut self, layer: L) -> Api
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.read_guards
            .push(Box::new(move |router| router.route_layer(layer)));
        self
    }

    /// The axum router. It carries its own state, so it fits an app of any state type `S`
    /// (`app.nest("/scheduler", api.into_router())`).
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let state = Arc::new(ApiState {
            scheduler: self.scheduler,
            tasks: self.tasks,
        });
        let mut mutations = Router::new()
            .route("/jobs", post(add_job))
            .route("/jobs/{id}", axum::routing::delete(remove_job))
            .route("/jobs/{id}/pause", post(pause_job))
            .route("/jobs/{id}/resume", post(resume_job))
            .route("/jobs/{id}/run", post(run_job))
            .route("/pause", post(pause_scheduler))
            .route("/resume", post(resume_scheduler));
        for guard in self.guards {
            mutations = guard(mutations);
        }
        let mut reads = Router::new()
            .route("/jobs", get(list_jobs))
            .route("/jobs/{id}", get(get_job))
            .route("/jobs/{id}/preview", get(preview_job))
            .route("/", get(status));
        for guard in self.read_guards {
            reads = guard(reads);
        }
        // Merged into the mutations (not the other way round) so that a path shared by both
        // keeps the unguarded 405 fallback: a wrong method is not an auth question.
        mutations.merge(reads).with_state(state)
    }
}

struct ApiState {
    scheduler: Scheduler,
    tasks: Option<TaskRegistry>,
}

type ApiResult<T> = Result<T, Failure>;

/// What a handler can fail with: the scheduler's errors and the HTTP layer's own.
enum Failure {
    Scheduler(Error),
    BadJson(JsonRejection),
    AddingDisabled,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Scheduler(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Scheduler(error) => error.into_response(),
            Failure::BadJson(rejection) => {
                // axum answers 422 for JSON of the wrong shape; to a client that is bad input
                // like any other here, so 400. Other rejections (415: no JSON content type,
                // 413: too large) keep their status.
                let status = match rejection {
                    JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    _ => rejection.status(),
                };
                ErrorBody {
                    error: rejection.body_text(),
                    kind: "bad_request",
                    field: json_field(&rejection),
                }
                .with_status(status)
            }
            Failure::AddingDisabled => ErrorBody {
                error: "adding jobs over HTTP is not enabled on this router \
                        (enable it with apsched::web::Api::tasks)"
                    .into(),
                kind: "adding_disabled",
                field: None,
            }
            .with_status(StatusCode::METHOD_NOT_ALLOWED),
        }
    }
}

/// The field a JSON body's shape error is about, if it names one (`trigger.period`).
fn json_field(rejection: &JsonRejection) -> Option<String> {
    // axum keeps serde_path_to_error's error (with the path) in the rejection's source chain.
    let mut source = std::error::Error::source(rejection);
    while let Some(error) = source {
        if let Some(error) = error.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let field =
                crate::registry::field_at(&error.path().to_string(), &error.inner().to_string());
            return (field != ".").then_some(field);
        }
        source = error.source();
    }
    None
}

/// The JSON body of every error response.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ErrorBody {
    fn with_status(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

/// The status, `kind` and offending field of each error, as the module docs' table says.
fn classify(error: &Error) -> (StatusCode, &'static str, Option<String>) {
    use StatusCode as S;
    match error {
        Error::InvalidCronField { field, .. } => (
            S::BAD_REQUEST,
            "invalid_cron_field",
            Some(field.to_string()),
        ),
        Error::InvalidTrigger { field, .. } => {
            (S::BAD_REQUEST, "invalid_trigger", Some(field.to_string()))
        }
        Error::TriggerNeverFires { .. } => (S::BAD_REQUEST, "trigger_never_fires", None),
        Error::UnknownTimeZone(_) => (S::BAD_REQUEST, "unknown_time_zone", None),
        Error::InvalidOption { option, .. } => {
            (S::BAD_REQUEST, "invalid_option", Some(option.to_string()))
        }
        Error::TaskNotFound(_) => (S::BAD_REQUEST, "task_not_found", Some("task".into())),
        Error::InvalidTaskArgs { field, .. } => {
            (S::BAD_REQUEST, "invalid_task_args", Some(field.clone()))
        }
        Error::JobNotFound(_) => (S::NOT_FOUND, "job_not_found", None),
        Error::ConflictingId(_) => (S::CONFLICT, "conflicting_id", Some("id".into())),
        Error::InvalidState { .. } => (S::CONFLICT, "invalid_state", None),
        Error::Shutdown => (S::SERVICE_UNAVAILABLE, "shutdown", None),
        Error::Closed => (S::SERVICE_UNAVAILABLE, "closed", None),
        Error::Runtime { .. } => (S::INTERNAL_SERVER_ERROR, "runtime", None),
        Error::Store { .. } => (S::SERVICE_UNAVAILABLE, "store", None),
        Error::StoreSchema { .. } => (S::INTERNAL_SERVER_ERROR, "store_schema", None),
        Error::NotDurable { .. } => (S::BAD_REQUEST, "not_durable", Some("task".into())),
        Error::UnknownStore(_) => (S::BAD_REQUEST, "unknown_store", Some("store".into())),
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl IntoResponse for Error {
    /// A JSON error response: `{"error": "<message>", "kind": "<kind>"}` (plus `"field"` when
    /// the error names one), with the status of the [module docs' table](crate::web#errors).
    fn into_response(self) -> Response {
        let (status, kind, field) = classify(&self);
        ErrorBody {
            error: self.to_string(),
            kind,
            field,
        }
        .with_status(status)
    }
}

/// `GET /scheduler`'s answer (the router's root).
#[derive(Serialize)]
struct Status {
    state: SchedulerState,
    timezone: Zone,
    job_count: usize,
    running_count: usize,
}

impl Status {
    fn of(scheduler: &Scheduler) -> Json<Status> {
        Json(Status {
            state: scheduler.state(),
            timezone: scheduler.timezone(),
            job_count: scheduler.job_count(),
            running_count: scheduler.running_jobs(),
        })
    }
}

/// `POST /scheduler/jobs`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    id: Option<String>,
    name: Option<String>,
    task: String,
    #[serde(default)]
    args: serde_json::Value,
    trigger: Trigger,
    /// Absent: the scheduler's default; `null`: however late.
    #[serde(default, deserialize_with = "present")]
    misfire_grace_time: Option<MisfireGrace>,
    coalesce: Option<bool>,
    max_instances: Option<u32>,
    /// Absent: the scheduler's default; `null`: none.
    #[serde(default, deserialize_with = "present_seconds")]
    timeout: Option<Option<Duration>>,
    /// Absent: the scheduler's default; `null`: none.
    #[serde(default, deserialize_with = "present_retry")]
    retry: Option<Option<RetryPolicy>>,
    #[serde(default)]
    replace_existing: bool,
    #[serde(default)]
    paused: bool,
    /// Absent: the scheduler's default store.
    store: Option<String>,
}

/// A field that is present, `null` included: `null` is [`MisfireGrace::Unlimited`], not
/// "absent".
fn present<'de, D>(d: D) -> Result<Option<MisfireGrace>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    MisfireGrace::deserialize(d).map(Some)
}

/// As [`present`], for a timeout in seconds.
fn present_seconds<'de, D>(d: D) -> Result<Option<Option<Duration>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    crate::serde_util::opt_seconds::deserialize(d).map(Some)
}

/// As [`present`], for a retry policy.
fn present_retry<'de, D>(d: D) -> Result<Option<Option<RetryPolicy>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<RetryPolicy>::deserialize(d).map(Some)
}

async fn list_jobs(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Vec<Job>>> {
    Ok(Json(api.scheduler.get_jobs().await?))
}

async fn get_job(State(api): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Job>> {
    Ok(Json(api.scheduler.get_job(&id).await?))
}

/// The most fire times `GET /jobs/{id}/preview` gives.
const MAX_HTTP_PREVIEW: usize = 100;

async fn preview_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> ApiResult<Json<Vec<String>>> {
    let mut n = 10;
    for (key, value) in query
        .iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.split_once('='))
    {
        if key != "n" {
            continue;
        }
        n = match value.parse::<usize>() {
            Ok(n) if (1..=MAX_HTTP_PREVIEW).contains(&n) => n,
            _ => {
                return Err(Error::InvalidOption {
                    option: "n",
                    value: format!("{value:?}"),
                    reason: format!("must be a whole number from 1 to {MAX_HTTP_PREVIEW}"),
                }
                .into())
            }
        };
    }
    let times = api.scheduler.preview_job(&id, n).await?;
    Ok(Json(times.iter().map(|t| t.to_rfc3339()).collect()))
}

async fn add_job(
    State(api): State<Arc<ApiState>>,
    body: Result<Json<NewJob>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    // Refused before the body is looked at: a disabled feature says so whatever was sent.
    let tasks = api.tasks.as_ref().ok_or(Failure::AddingDisabled)?;
    let Json(new) = body.map_err(Failure::BadJson)?;
    let task = tasks.task(&new.task, new.args)?;
    let mut add = api
        .scheduler
        .add_job(task, new.trigger)
        .replace_existing(new.replace_existing);
    if let Some(id) = new.id {
        add = add.id(id);
    }
    if let Some(name) = new.name {
        add = add.name(name);
    }
    if let Some(grace) = new.misfire_grace_time {
        add = add.misfire_grace_time(grace);
    }
    if let Some(coalesce) = new.coalesce {
        add = add.coalesce(coalesce);
    }
    if let Some(max) = new.max_instances {
        add = add.max_instances(max);
    }
    if let Some(timeout) = new.timeout {
        add = add.timeout(timeout);
    }
    if let Some(retry) = new.retry {
        add = add.retry(retry);
    }
    if new.paused {
        add = add.paused();
    }
    if let Some(store) = new.store {
        add = add.store(store);
    }
    Ok((StatusCode::CREATED, Json(add.await?)))
}

async fn remove_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api.scheduler.remove_job(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(api.scheduler.pause_job(&id).await?))
}

async fn resume_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(match api.scheduler.resume_job(&id).await? {
        Some(job) => Json(job).into_response(),
        // The trigger had no fire time left, so the scheduler removed the job (as APScheduler).
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn run_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api.scheduler.run_job_now(&id).await?;
    // The run is submitted, not finished.
    Ok(StatusCode::ACCEPTED)
}

async fn status(State(api): State<Arc<ApiState>>) -> Json<Status> {
    Status::of(&api.scheduler)
}

async fn pause_scheduler(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Status>> {
    api.scheduler.pause().await?;
    Ok(Status::of(&api.scheduler))
}

async fn resume_scheduler(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Status>> {
    api.scheduler.resume().await?;
    Ok(Status::of(&api.scheduler))
}
