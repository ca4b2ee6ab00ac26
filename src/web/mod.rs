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
//! | `GET /scheduler/jobs?q=&offset=&limit=` | lists the jobs, soonest next run first (paused last); `q` keeps those whose id or name contains it (ignoring case), `offset` and `limit` (1 to 1000) cut a page; without parameters, every job | `200` `[Job, ..]`, header `X-Total-Count`: how many match `q` over all pages |
//! | `POST /scheduler/jobs` | adds a job from a registered task (off unless [`Api::tasks`]) | `201` `Job` |
//! | `GET /scheduler/jobs/{id}` | one job | `200` `Job` |
//! | `GET /scheduler/jobs/{id}/preview?n=10` | the job's next `n` fire times (default 10, at most 100), RFC 3339 in its trigger's zone; none while paused | `200` `["2024-03-30T02:30:00+01:00", ..]` |
//! | `GET /scheduler/jobs/{id}/runs?limit=20` | the job's most recent runs, newest first (default 20, at most 1000), runs under way included; a removed job's durable history too, `[]` for an unknown id | `200` `[RunRecord, ..]` |
//! | `DELETE /scheduler/jobs/{id}` | removes a job | `204` |
//! | `POST /scheduler/jobs/{id}/pause` | pauses a job | `200` `Job` |
//! | `POST /scheduler/jobs/{id}/resume` | resumes a job | `200` `Job`; `204` if its trigger had no fire time left, so it was removed |
//! | `POST /scheduler/jobs/{id}/run` | submits one run now, outside its schedule (counted against `max_instances`) | `202` |
//! | `GET /scheduler/nodes` | the live nodes of the scheduler's clusters, by id; `[]` outside a cluster | `200` `[Node, ..]` |
//! | `GET /scheduler/events?kinds=job_executed,job_error` | the [`Event`](crate::Event)s from now on, live, as Server-Sent Events, only the `kinds` given (default all) | `200` `text/event-stream` |
//! | `GET /scheduler/openapi.json` | this table as an OpenAPI 3.1 document, with every schema | `200` JSON |
//! | `GET /scheduler/ui` | the dashboard (feature `dashboard`) | `200` HTML |
//!
//! A `RunRecord` is the [`RunRecord`] as JSON: `{"job_id": "cleanup", "fire_time":
//! "2024-01-01T00:01:00Z", "state": "succeeded", "started_at": "..", "finished_at": "..",
//! "result": null, "error": null, "node": null}`. A `Node` is `{"id": "..", "started_at": "..",
//! "renewed_at": "..", "lease_until": "..", "running": 2}` ([`NodeInfo`]).
//!
//! # Live events
//!
//! `GET .../events` answers Server-Sent Events: each message is `event: <kind>` (the event's
//! snake_case tag, `job_executed`) and `data: <the event's JSON>`
//! (`{"event": "job_executed", "job_id": "cleanup", ..}`). Each client reads its own
//! subscription, bounded by the scheduler's
//! [`event_capacity`](crate::SchedulerBuilder::event_capacity): a client that reads too slowly
//! never holds the scheduler back, it skips the oldest events and is told so with
//! `event: lagged`, `data: {"missed": 12}`. An unknown kind is `400` `invalid_option`, field
//! `kinds`.
//!
//! # The OpenAPI document
//!
//! `GET .../openapi.json` is generated from the handlers and the types that serialize their
//! answers (with [utoipa](https://docs.rs/utoipa)), so it cannot drift from the routes: a route
//! is registered together with its documentation. It lists the bearer scheme and `401` on the
//! routes that [`Api::guard_mutations`] and [`Api::guard_reads`] guard, the error body on
//! every error; its paths are full paths, the mount point included (`/scheduler/jobs`).
//!
//! # The dashboard
//!
//! With the `dashboard` feature, `GET .../ui` is a page compiled into the crate (HTML, CSS and
//! plain JavaScript; no CDN, no build step) showing the scheduler's state, the jobs (paged and
//! filtered on the server), each job's recent runs and next fire times and the cluster's
//! nodes, updated live from `events`. Its pause, resume, run-now and remove buttons call the
//! same routes as any client, with the token typed into its token field as a bearer token:
//! the guard decides.
//!
//! A `Job` is the [`Job`] snapshot as JSON (durations in seconds, times in RFC 3339 in the
//! trigger's zone):
//!
//! ```json
//! { "id": "cleanup", "name": "cleanup",
//!   "trigger": { "type": "interval", "period": 60.0, "start": "2024-01-01T00:01:00Z", "timezone": "UTC" },
//!   "trigger_text": "every 1 minute",
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
//! [`RunRecord`]: crate::store::RunRecord
//! [`NodeInfo`]: https://docs.rs/apsched/latest/apsched/cluster/struct.NodeInfo.html

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_layer::Layer;
use tower_service::Service;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::job::JobJson;
use crate::store::RunRecord;
use crate::trigger::Trigger;
use crate::{Error, Job, MisfireGrace, RetryPolicy, Scheduler, SchedulerState, TaskRegistry, Zone};

#[cfg(feature = "dashboard")]
mod dashboard;
mod events;
pub(crate) mod openapi;

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

type Routes = OpenApiRouter<Arc<ApiState>>;
type Guard = Box<dyn FnOnce(Routes) -> Routes + Send>;

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
        let guarded_mutations = !self.guards.is_empty();
        let guarded_reads = !self.read_guards.is_empty();
        // Every route goes in with `routes!`, which takes its path from the handler's
        // `#[utoipa::path]`: a route cannot be served without being in the document.
        let mut mutations = Routes::new()
            .routes(routes!(add_job))
            .routes(routes!(remove_job))
            .routes(routes!(pause_job))
            .routes(routes!(resume_job))
            .routes(routes!(run_job))
            .routes(routes!(pause_scheduler))
            .routes(routes!(resume_scheduler));
        for guard in self.guards {
            mutations = guard(mutations);
        }
        let mut reads = Routes::new()
            .routes(routes!(list_jobs))
            .routes(routes!(get_job))
            .routes(routes!(preview_job))
            .routes(routes!(job_runs))
            .routes(routes!(nodes))
            .routes(routes!(events::events))
            .routes(routes!(openapi_json))
            .routes(routes!(status));
        #[cfg(feature = "dashboard")]
        {
            reads = reads.routes(routes!(dashboard::page));
        }
        for guard in self.read_guards {
            reads = guard(reads);
        }
        // Merged into the mutations (not the other way round) so that a path shared by both
        // keeps the unguarded 405 fallback: a wrong method is not an auth question.
        let (router, mut doc) = Routes::with_openapi(<openapi::Base as utoipa::OpenApi>::openapi())
            .merge(mutations)
            .merge(reads)
            .split_for_parts();
        openapi::finish(&mut doc, guarded_mutations, guarded_reads);
        let state = Arc::new(ApiState {
            scheduler: self.scheduler,
            tasks: self.tasks,
            openapi: doc,
        });
        router.with_state(state)
    }
}

struct ApiState {
    scheduler: Scheduler,
    tasks: Option<TaskRegistry>,
    /// The router's own document, without the server prefix (added per request).
    openapi: utoipa::openapi::OpenApi,
}

type ApiResult<T> = Result<T, Failure>;

/// What a handler can fail with: the scheduler's errors and the HTTP layer's own.
enum Failure {
    Scheduler(Error),
    BadJson(JsonRejection),
    /// A query string that does not decode.
    BadQuery(String),
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
            Failure::BadQuery(error) => ErrorBody {
                error,
                kind: "bad_request",
                field: None,
            }
            .with_status(StatusCode::BAD_REQUEST),
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
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
struct ErrorBody {
    /// What went wrong, for people.
    error: String,
    /// What went wrong, stable, for programs (`job_not_found`, `invalid_option`, ...).
    kind: &'static str,
    /// The input at fault, when the error names one (`n`, `trigger.period`).
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
#[derive(Serialize, ToSchema)]
struct Status {
    /// Where the scheduler is in its life.
    state: SchedulerState,
    /// The scheduler's default time zone (an IANA name, or `UTC`).
    #[schema(value_type = String)]
    timezone: Zone,
    /// How many jobs it has.
    job_count: usize,
    /// How many runs are going.
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewJob {
    /// The job's id; absent: a random one.
    id: Option<String>,
    /// The job's name; absent: the task's name.
    name: Option<String>,
    /// The registered task to run.
    task: String,
    /// The task's arguments as JSON; absent: `null` (a task taking `()`).
    #[serde(default)]
    #[schema(value_type = Value)]
    args: serde_json::Value,
    /// When it runs.
    #[schema(value_type = openapi::TriggerDoc)]
    trigger: Trigger,
    /// Seconds a run may start late. Absent: the scheduler's default; `null`: however late.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    misfire_grace_time: Option<MisfireGrace>,
    /// Whether missed runs collapse into one; absent: the scheduler's default.
    coalesce: Option<bool>,
    /// How many runs may go at once; absent: the scheduler's default.
    max_instances: Option<u32>,
    /// Seconds a run may take before it is cancelled. Absent: the scheduler's default;
    /// `null`: no limit.
    #[serde(default, deserialize_with = "present_seconds")]
    #[schema(value_type = Option<f64>)]
    timeout: Option<Option<Duration>>,
    /// How failed runs are tried again. Absent: the scheduler's default; `null`: not at all.
    #[serde(default, deserialize_with = "present_retry")]
    #[schema(value_type = Option<RetryPolicy>)]
    retry: Option<Option<RetryPolicy>>,
    /// Whether a job with the same id is replaced (else `409`).
    #[serde(default)]
    replace_existing: bool,
    /// Whether the job starts paused.
    #[serde(default)]
    paused: bool,
    /// The store to keep it in; absent: the scheduler's default store.
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

/// The `X-Total-Count` header of `GET .../jobs`: how many jobs match, over all pages.
const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

/// The most jobs one page of `GET .../jobs` gives.
const MAX_PAGE: usize = 1000;

/// A query's pairs, decoded, or a `400 bad_request` naming what would not decode.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn pairs(query: Pairs) -> ApiResult<Vec<(String, String)>> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| Failure::BadQuery(rejection.body_text()))
}

/// The whole number `value` of the query parameter `name`, within `range`.
fn number(
    name: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<usize>,
) -> ApiResult<usize> {
    match value.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::InvalidOption {
            option: name,
            value: format!("{value:?}"),
            reason: if *range.end() == usize::MAX {
                format!("must be a whole number from {}", range.start())
            } else {
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            },
        }
        .into()),
    }
}

/// Lists the jobs, soonest next run first (paused jobs last).
///
/// Without parameters, every job. `q` keeps the jobs whose id or name contains it (ignoring
/// case); `offset` and `limit` cut one page out of what is kept. The `X-Total-Count` header
/// says how many jobs were kept before the page was cut.
#[utoipa::path(
    get, path = "/jobs", tag = "jobs",
    params(
        ("q" = Option<String>, Query, description = "Keep the jobs whose id or name contains this, ignoring case"),
        ("offset" = Option<usize>, Query, description = "Skip this many jobs (default 0)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many jobs (1 to 1000; default: all)"),
    ),
    responses(
        (status = 200, description = "The jobs (one page of them with `offset` or `limit`)",
         body = Vec<JobJson<'static>>,
         headers(("X-Total-Count" = usize, description = "How many jobs match `q`, over all pages"))),
        (status = 400, description = "A bad `offset` or `limit` (`invalid_option`)", body = ErrorBody),
    )
)]
async fn list_jobs(State(api): State<Arc<ApiState>>, query: Pairs) -> ApiResult<Response> {
    let mut filter = None;
    let mut offset = 0;
    let mut limit = usize::MAX;
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "q" => filter = Some(value.to_lowercase()).filter(|q| !q.is_empty()),
            "offset" => offset = number("offset", &value, 0..=usize::MAX)?,
            "limit" => limit = number("limit", &value, 1..=MAX_PAGE)?,
            _ => {}
        }
    }
    let mut jobs = api.scheduler.get_jobs().await?;
    if let Some(q) = filter {
        jobs.retain(|job| {
            job.id.to_lowercase().contains(&q) || job.name.to_lowercase().contains(&q)
        });
    }
    let total = jobs.len();
    let page: Vec<&Job> = jobs.iter().skip(offset).take(limit).collect();
    Ok(([(TOTAL_COUNT, total.to_string())], Json(page)).into_response())
}

/// One job.
#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobJson<'static>),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
async fn get_job(State(api): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<Json<Job>> {
    Ok(Json(api.scheduler.get_job(&id).await?))
}

/// The most fire times `GET /jobs/{id}/preview` gives.
const MAX_HTTP_PREVIEW: usize = 100;

/// The job's next `n` fire times, RFC 3339 in its trigger's zone; none while it is paused.
#[utoipa::path(
    get, path = "/jobs/{id}/preview", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("n" = Option<usize>, Query, minimum = 1, maximum = 100, description = "How many (1 to 100; default 10)"),
    ),
    responses(
        (status = 200, description = "The fire times, soonest first", body = Vec<String>),
        (status = 400, description = "A bad `n` (`invalid_option`)", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
async fn preview_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Pairs,
) -> ApiResult<Json<Vec<String>>> {
    let mut n = 10;
    for (key, value) in pairs(query)? {
        if key == "n" {
            n = number("n", &value, 1..=MAX_HTTP_PREVIEW)?;
        }
    }
    let times = api.scheduler.preview_job(&id, n).await?;
    Ok(Json(times.iter().map(|t| t.to_rfc3339()).collect()))
}

/// The most runs `GET /jobs/{id}/runs` gives.
const MAX_HTTP_RUNS: usize = 1000;

/// The job's most recent runs, newest fire time first, runs under way included: from its
/// durable store's history, or for a memory-store job the runs the scheduler remembers. A job
/// removed since still has its durable history; an unknown id has none (`[]`).
#[utoipa::path(
    get, path = "/jobs/{id}/runs", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many (1 to 1000; default 20)"),
    ),
    responses(
        (status = 200, description = "The runs, newest first", body = Vec<RunRecord>),
        (status = 400, description = "A bad `limit` (`invalid_option`)", body = ErrorBody),
    )
)]
async fn job_runs(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Pairs,
) -> ApiResult<Json<Vec<RunRecord>>> {
    let mut limit = 20;
    for (key, value) in pairs(query)? {
        if key == "limit" {
            limit = number("limit", &value, 1..=MAX_HTTP_RUNS)?;
        }
    }
    Ok(Json(api.scheduler.get_job_runs(&id, limit).await?))
}

/// A live node of the scheduler's cluster, as `GET .../nodes` lists it (times are the
/// database's).
#[derive(Serialize, ToSchema)]
#[schema(as = Node)]
struct NodeJson {
    /// The node's id.
    id: String,
    /// When it joined.
    started_at: chrono::DateTime<chrono::Utc>,
    /// When it last renewed its lease.
    renewed_at: chrono::DateTime<chrono::Utc>,
    /// Until when its lease holds.
    lease_until: chrono::DateTime<chrono::Utc>,
    /// How many runs it has going.
    running: u64,
}

#[cfg(feature = "postgres")]
impl From<crate::cluster::NodeInfo> for NodeJson {
    fn from(node: crate::cluster::NodeInfo) -> NodeJson {
        // In full, so that a new field does not compile until it shows here too.
        let crate::cluster::NodeInfo {
            id,
            started_at,
            renewed_at,
            lease_until,
            running,
        } = node;
        NodeJson {
            id,
            started_at,
            renewed_at,
            lease_until,
            running,
        }
    }
}

/// The live nodes of the scheduler's clusters, ordered by id; `[]` for a scheduler that is
/// no node of a cluster.
#[utoipa::path(
    get, path = "/nodes", tag = "scheduler",
    responses((status = 200, description = "The nodes", body = Vec<NodeJson>))
)]
async fn nodes(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Vec<NodeJson>>> {
    #[cfg(feature = "postgres")]
    let nodes = api
        .scheduler
        .get_nodes()
        .await?
        .into_iter()
        .map(NodeJson::from)
        .collect();
    // Without the postgres feature there is no cluster.
    #[cfg(not(feature = "postgres"))]
    let nodes = {
        let _ = &api;
        Vec::new()
    };
    Ok(Json(nodes))
}

/// This document: every route, its parameters, bodies and answers, in OpenAPI 3.1. Its paths
/// are the routes' full paths as this request reached them (`/scheduler/jobs` when the router
/// is mounted at `/scheduler`), so that the root is `/scheduler`, not `/scheduler/`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "scheduler",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Value))
)]
async fn openapi_json(State(api): State<Arc<ApiState>>, OriginalUri(uri): OriginalUri) -> Response {
    let mut doc = api.openapi.clone();
    // Nested at `/scheduler`, the request's full path is `/scheduler/openapi.json`.
    let prefix = uri.path().strip_suffix("/openapi.json").unwrap_or_default();
    if !prefix.is_empty() {
        let paths = std::mem::take(&mut doc.paths.paths);
        doc.paths.paths = paths
            .into_iter()
            .map(|(path, item)| {
                let full = if path == "/" {
                    prefix.to_string()
                } else {
                    format!("{prefix}{path}")
                };
                (full, item)
            })
            .collect();
    }
    ([(header::CACHE_CONTROL, "no-cache")], Json(doc)).into_response()
}

/// Adds a job from a registered task (only with `Api::tasks`; else `405 adding_disabled`).
#[utoipa::path(
    post, path = "/jobs", tag = "jobs",
    request_body(content = NewJob, content_type = "application/json"),
    responses(
        (status = 201, description = "The job, added", body = JobJson<'static>),
        (status = 400, description = "Bad input: `bad_request`, `invalid_trigger`, `invalid_cron_field`, `trigger_never_fires`, `unknown_time_zone`, `invalid_option`, `task_not_found`, `invalid_task_args`, `not_durable`, `unknown_store`", body = ErrorBody),
        (status = 405, description = "Adding over HTTP is not enabled (`adding_disabled`)", body = ErrorBody),
        (status = 409, description = "The id is taken (`conflicting_id`)", body = ErrorBody),
        (status = 413, description = "The body is too large (`bad_request`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON (`bad_request`)", body = ErrorBody),
    )
)]
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

/// Removes a job.
#[utoipa::path(
    delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
async fn remove_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api.scheduler.remove_job(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a job: it has no next run until resumed.
#[utoipa::path(
    post, path = "/jobs/{id}/pause", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, paused", body = JobJson<'static>),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
async fn pause_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(api.scheduler.pause_job(&id).await?))
}

/// Resumes a job; one whose trigger has no fire time left is removed instead (`204`).
#[utoipa::path(
    post, path = "/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, resumed", body = JobJson<'static>),
        (status = 204, description = "Its trigger had no fire time left, so it was removed"),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
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

/// Submits one run of the job now, outside its schedule (counted against `max_instances`).
#[utoipa::path(
    post, path = "/jobs/{id}/run", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The run is submitted, not finished"),
        (status = 404, description = "No such job (`job_not_found`)", body = ErrorBody),
    )
)]
async fn run_job(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api.scheduler.run_job_now(&id).await?;
    // The run is submitted, not finished.
    Ok(StatusCode::ACCEPTED)
}

/// The scheduler's status.
#[utoipa::path(
    get, path = "/", tag = "scheduler",
    responses((status = 200, description = "The status", body = Status))
)]
async fn status(State(api): State<Arc<ApiState>>) -> Json<Status> {
    Status::of(&api.scheduler)
}

/// Pauses the scheduler: no job runs until it is resumed.
#[utoipa::path(
    post, path = "/pause", tag = "scheduler",
    responses(
        (status = 200, description = "The status, paused", body = Status),
        (status = 409, description = "Not started (`invalid_state`)", body = ErrorBody),
    )
)]
async fn pause_scheduler(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Status>> {
    api.scheduler.pause().await?;
    Ok(Status::of(&api.scheduler))
}

/// Resumes the scheduler.
#[utoipa::path(
    post, path = "/resume", tag = "scheduler",
    responses(
        (status = 200, description = "The status, running", body = Status),
        (status = 409, description = "Not started (`invalid_state`)", body = ErrorBody),
    )
)]
async fn resume_scheduler(State(api): State<Arc<ApiState>>) -> ApiResult<Json<Status>> {
    api.scheduler.resume().await?;
    Ok(Status::of(&api.scheduler))
}
