//! Jobs: what runs (tasks), how (options), and what a caller sees of one (the [`Job`] snapshot).
//!
//! A task is any async closure or `async fn` with no arguments or one [`JobContext`], or a plain
//! blocking closure or `fn` of the same shapes. Each returns `()` or `Result<(), E>` with
//! `E: Display`. Async tasks run as their own Tokio task; blocking ones on Tokio's blocking pool,
//! bounded by the scheduler's `max_blocking_jobs`. [`IntoTask`] turns each shape into a
//! [`Task`], so `add_job` takes them all.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::core::{Launch, RunEnv};
use crate::trigger::Trigger;
use crate::{Scheduler, Zone};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A job's id: the one given with `.id(..)`, or a random UUID (32 hex digits, as APScheduler).
///
/// Cheap to clone; compares with and derefs to `&str`, so `scheduler.remove_job(&job.id)` works.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Arc<str>);

impl JobId {
    pub(crate) fn new(id: &str) -> JobId {
        JobId(Arc::from(id))
    }

    pub(crate) fn random() -> JobId {
        use rand::{Rng, SeedableRng};
        thread_local! {
            // Ids must be unique, not secret: a fast generator seeded once per thread from the
            // OS-seeded one (`Uuid::new_v4` asks the OS for every id; ChaCha costs a refill).
            static IDS: std::cell::RefCell<rand::rngs::SmallRng> =
                std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
        }
        let bytes = IDS
            .with(|rng| rng.borrow_mut().random::<u128>())
            .to_le_bytes();
        let mut buf = [0u8; 32];
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let hex = uuid.simple().encode_lower(&mut buf);
        JobId(Arc::from(&*hex))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's text, shared (no copy).
    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for JobId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for JobId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for JobId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A job id is a string in the web API's schema.
#[cfg(feature = "axum")]
impl utoipa::PartialSchema for JobId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "axum")]
impl utoipa::ToSchema for JobId {}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JobId::new(&String::deserialize(d)?))
    }
}

/// How late a run may start and still run: APScheduler's `misfire_grace_time`.
///
/// A `Duration` converts into it, so `.misfire_grace_time(Duration::from_secs(30))` reads as
/// it says. In JSON it is a number of seconds, or `null` for [`Unlimited`](Self::Unlimited).
///
/// ```
/// use apsched::{JobOptions, MisfireGrace};
/// use std::time::Duration;
///
/// let lenient = JobOptions::default().misfire_grace_time(Duration::from_secs(300));
/// assert_eq!(lenient.misfire_grace_time, MisfireGrace::Within(Duration::from_secs(300)));
/// let always = JobOptions::default().misfire_grace_time(MisfireGrace::Unlimited);
/// assert_eq!(serde_json::to_value(always)?["misfire_grace_time"], serde_json::Value::Null);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MisfireGrace {
    /// A run later than this is skipped and reported as [`JobMissed`](crate::Event::JobMissed).
    Within(Duration),
    /// A run runs however late (APScheduler's `misfire_grace_time=None`).
    Unlimited,
}

impl From<Duration> for MisfireGrace {
    fn from(grace: Duration) -> MisfireGrace {
        MisfireGrace::Within(grace)
    }
}

impl Serialize for MisfireGrace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let seconds = match self {
            MisfireGrace::Within(grace) => Some(*grace),
            MisfireGrace::Unlimited => None,
        };
        crate::serde_util::opt_seconds::serialize(&seconds, s)
    }
}

impl<'de> Deserialize<'de> for MisfireGrace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(crate::serde_util::opt_seconds::deserialize(d)?
            .map_or(MisfireGrace::Unlimited, MisfireGrace::Within))
    }
}

/// How a job's runs are admitted: APScheduler's `misfire_grace_time`, `coalesce` and
/// `max_instances`, with the same defaults.
///
/// Build from the default with the setters; a value out of range is refused with
/// [`Error::InvalidOption`](crate::Error::InvalidOption) when a job is added with it.
///
/// ```
/// use apsched::JobOptions;
/// use std::time::Duration;
///
/// let defaults = JobOptions::default()
///     .misfire_grace_time(Duration::from_secs(30))
///     .coalesce(false)
///     .max_instances(3);
/// assert_eq!(defaults.max_instances, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobOptions {
    /// How late a run may start and still run; a later one is skipped with a
    /// [`JobMissed`](crate::Event::JobMissed) event. Default 1 s.
    pub misfire_grace_time: MisfireGrace,
    /// Whether several missed runs collapse into one (the latest). Default `true`.
    pub coalesce: bool,
    /// How many runs of the job may go at once; a run beyond that is skipped with a
    /// [`JobMaxInstances`](crate::Event::JobMaxInstances) event. Default 1.
    pub max_instances: u32,
    /// In [cluster mode](crate::cluster): whether a run whose node died (its lease expired
    /// while the run was going) is run again by another node (at least once), instead of
    /// being reported abandoned (at most once, the default). Unused outside a cluster.
    #[serde(default)]
    pub retry_abandoned: bool,
    /// How long a run may take. Past it, the run's
    /// [`cancellation_token`](JobContext::cancellation_token) is cancelled; an async run still
    /// going after the scheduler's [timeout grace](crate::SchedulerBuilder::timeout_grace) is
    /// dropped, and the run is reported [`JobTimedOut`](crate::Event::JobTimedOut). A blocking
    /// run cannot be stopped: it is reported timed out and keeps its blocking worker and its
    /// place under `max_instances` until it returns. Default: none. In JSON, seconds or `null`.
    #[serde(default, with = "crate::serde_util::opt_seconds")]
    pub timeout: Option<Duration>,
    /// Whether and how a failed run is tried again. Default: none (a failed run stays failed).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            misfire_grace_time: MisfireGrace::Within(Duration::from_secs(1)),
            coalesce: true,
            max_instances: 1,
            retry_abandoned: false,
            timeout: None,
            retry: None,
        }
    }
}

impl JobOptions {
    /// How late a run may start and still run.
    #[must_use]
    pub fn misfire_grace_time(mut self, grace: impl Into<MisfireGrace>) -> Self {
        self.misfire_grace_time = grace.into();
        self
    }

    /// Whether missed runs collapse into one.
    #[must_use]
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// How many runs may go at once (at least 1).
    #[must_use]
    pub fn max_instances(mut self, max: u32) -> Self {
        self.max_instances = max;
        self
    }

    /// In a cluster, whether a run its node abandoned (by dying) runs again elsewhere.
    #[must_use]
    pub fn retry_abandoned(mut self, retry: bool) -> Self {
        self.retry_abandoned = retry;
        self
    }

    /// How long a run may take before it is cancelled (see [`timeout`](Self::timeout)).
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// How failed runs are tried again (`None`: they are not).
    #[must_use]
    pub fn retry(mut self, policy: impl Into<Option<RetryPolicy>>) -> Self {
        self.retry = policy.into();
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.max_instances == 0 {
            return Err(crate::Error::InvalidOption {
                option: "max_instances",
                value: "0".into(),
                reason: "at least one instance must be allowed".into(),
            });
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(crate::Error::InvalidOption {
                option: "timeout",
                value: "0s".into(),
                reason: "a run needs some time: give a positive timeout, or none".into(),
            });
        }
        if let Some(retry) = &self.retry {
            retry.validate()?;
        }
        Ok(())
    }

    /// The options that change how a run goes once started, if any is set.
    pub(crate) fn run_control(&self) -> Option<RunControl> {
        (self.timeout.is_some() || self.retry.is_some()).then_some(RunControl {
            timeout: self.timeout,
            retry: self.retry,
        })
    }
}

/// A job's [`timeout`](JobOptions::timeout) and [`retry`](JobOptions::retry): kept apart from
/// the other options, which every job pays for, since few jobs set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunControl {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
}

/// How a failed run is tried again: up to `max_attempts` attempts in all, the `n`th retry
/// after a delay drawn uniformly from zero to `min(cap, base × 2ⁿ⁻¹)` (exponential backoff
/// with full jitter, so many jobs failing together do not retry together).
///
/// Errors and panics are retried; a timed-out run only with
/// [`retry_timeouts`](Self::retry_timeouts). Each retry is an attempt of the same run: the
/// same fire time, [`JobContext::attempt`] counting up, a
/// [`JobRetrying`](crate::Event::JobRetrying) event before it, and one final outcome. A run
/// waiting for its retry counts against `max_instances`; a durable job's pending retry is in
/// its store, so a restarted scheduler carries it out. A one-shot job stays (shown paused)
/// until its run's last attempt; a job removed meanwhile ends the run with its last error.
///
/// In JSON: `{"max_attempts": 3, "base": 1.0, "cap": 60.0, "retry_timeouts": false}`
/// (seconds).
///
/// ```
/// use apsched::{JobOptions, RetryPolicy};
/// use std::time::Duration;
///
/// let retry = RetryPolicy::new(5).backoff(Duration::from_secs(2), Duration::from_secs(60));
/// let options = JobOptions::default().retry(retry).timeout(Duration::from_secs(30));
/// assert_eq!(options.retry.unwrap().max_attempts, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1; 1 never retries).
    pub max_attempts: u32,
    /// The first retry's delay bound; each further retry doubles it. Default 1 s.
    #[serde(
        with = "crate::serde_util::seconds",
        default = "RetryPolicy::default_base"
    )]
    #[cfg_attr(feature = "axum", schema(value_type = f64))]
    pub base: Duration,
    /// The bound no delay goes past. Default 5 minutes.
    #[serde(
        with = "crate::serde_util::seconds",
        default = "RetryPolicy::default_cap"
    )]
    #[cfg_attr(feature = "axum", schema(value_type = f64))]
    pub cap: Duration,
    /// Whether a timed-out run is retried too. Default `false`: a run that hangs once is
    /// likely to hang again.
    #[serde(default)]
    pub retry_timeouts: bool,
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts in all, after 1 s, 2 s, 4 s, ... (at most 5 minutes),
    /// each jittered.
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: RetryPolicy::default_base(),
            cap: RetryPolicy::default_cap(),
            retry_timeouts: false,
        }
    }

    fn default_base() -> Duration {
        Duration::from_secs(1)
    }

    fn default_cap() -> Duration {
        Duration::from_secs(300)
    }

    /// The first retry's delay bound, and the bound no delay passes.
    #[must_use]
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap;
        self
    }

    /// Whether timed-out runs are retried too.
    #[must_use]
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// The bound of the delay before attempt `next` (2 for the first retry):
    /// `min(cap, base × 2^(next - 2))`.
    pub fn max_delay(&self, next: u32) -> Duration {
        2_u32
            .checked_pow(next.saturating_sub(2))
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |delay| delay.min(self.cap))
    }

    /// A delay before attempt `next`, drawn uniformly up to [`max_delay`](Self::max_delay).
    pub(crate) fn delay(&self, next: u32) -> Duration {
        use rand::Rng;
        let bound = self.max_delay(next);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    fn validate(&self) -> crate::Result<()> {
        let refuse = |option, value: String, reason: &str| {
            Err(crate::Error::InvalidOption {
                option,
                value,
                reason: reason.into(),
            })
        };
        if self.max_attempts == 0 {
            return refuse(
                "retry.max_attempts",
                "0".into(),
                "at least one attempt is made: give 1 for none after it",
            );
        }
        if self.cap < self.base {
            return refuse(
                "retry.cap",
                format!("{:?} (base {:?})", self.cap, self.base),
                "the cap must not be below the base",
            );
        }
        Ok(())
    }
}

/// A snapshot of a job, as returned by `add_job`, `get_job` and `get_jobs`.
///
/// It does not change when the job does: ask the scheduler again for a fresh one. In JSON
/// (the web API) it has these fields, the options flattened in, and `"paused"`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// The job's name: the one given, else the task's function name, else (for a closure) its
    /// id.
    pub name: String,
    /// When it runs.
    pub trigger: Trigger,
    /// The next run, in the trigger's time zone; `None` while the job is paused.
    pub next_run_time: Option<DateTime<Zone>>,
    /// How its runs are admitted.
    pub options: JobOptions,
    /// The store it lives in (`"default"`: the memory store, unless the builder said else).
    pub store: Arc<str>,
    /// The registered task it runs, for a job built from a
    /// [`TaskRegistry`](crate::TaskRegistry) (every job of a durable store is); `None` for a
    /// closure.
    pub task: Option<&'static str>,
}

impl Job {
    pub(crate) fn new(
        id: JobId,
        name: String,
        trigger: Trigger,
        next_run_time: Option<DateTime<Zone>>,
        options: JobOptions,
        store: Arc<str>,
        task: Option<&'static str>,
    ) -> Job {
        Job {
            id,
            name,
            trigger,
            next_run_time,
            options,
            store,
            task,
        }
    }

    /// Whether the job is paused (it has no next run until resumed).
    pub fn is_paused(&self) -> bool {
        self.next_run_time.is_none()
    }
}

impl Serialize for Job {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JobJson::of(self).serialize(s)
    }
}

/// A [`Job`]'s JSON form: what `Job` serializes as, and (with the `axum` feature) the schema
/// of the web API's `Job`, derived from this one struct so that the two cannot differ.
#[derive(Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "axum", schema(as = Job))]
pub(crate) struct JobJson<'a> {
    /// The job's id.
    id: &'a str,
    /// The job's name.
    name: &'a str,
    /// When it runs: the trigger's JSON, tagged by `type`.
    #[cfg_attr(feature = "axum", schema(value_type = crate::web::openapi::TriggerDoc))]
    trigger: &'a Trigger,
    /// The trigger in words (`every 1 minute`), for people.
    trigger_text: String,
    /// The next run, RFC 3339 in the trigger's zone; `null` while paused.
    #[cfg_attr(feature = "axum", schema(value_type = Option<String>, format = DateTime))]
    next_run_time: Option<DateTime<Zone>>,
    /// Seconds a run may start late; `null`: however late.
    #[cfg_attr(feature = "axum", schema(value_type = Option<f64>))]
    misfire_grace_time: MisfireGrace,
    /// Whether missed runs collapse into one.
    coalesce: bool,
    /// How many runs may go at once.
    max_instances: u32,
    /// Seconds a run may take before it is cancelled; `null`: no limit.
    #[cfg_attr(feature = "axum", schema(value_type = Option<f64>))]
    timeout: Option<f64>,
    /// How failed runs are tried again; `null`: they are not.
    retry: Option<RetryPolicy>,
    /// Whether the job is paused.
    paused: bool,
    /// The store it lives in.
    store: &'a str,
    /// The registered task it runs; `null` for a closure.
    task: Option<&'a str>,
}

impl<'a> JobJson<'a> {
    fn of(job: &'a Job) -> JobJson<'a> {
        // Destructured in full, so that a new field of `Job` or `JobOptions` does not compile
        // until its JSON (and with it the web API's schema) says whether it shows.
        let Job {
            id,
            name,
            trigger,
            next_run_time,
            options,
            store,
            task,
        } = job;
        let JobOptions {
            misfire_grace_time,
            coalesce,
            max_instances,
            timeout,
            retry,
            // A cluster detail, not part of the JSON.
            retry_abandoned: _,
        } = options;
        JobJson {
            id,
            name,
            trigger,
            trigger_text: trigger.to_string(),
            next_run_time: *next_run_time,
            misfire_grace_time: *misfire_grace_time,
            coalesce: *coalesce,
            max_instances: *max_instances,
            timeout: timeout.map(|timeout| timeout.as_secs_f64()),
            retry: *retry,
            paused: job.is_paused(),
            store,
            task: *task,
        }
    }
}

impl fmt::Display for Job {
    /// `name (trigger: every 2 seconds, next run at: 2024-05-01 12:00:02 CEST)`, as APScheduler.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.next_run_time {
            Some(next) => write!(
                f,
                "{} (trigger: {}, next run at: {})",
                self.name,
                self.trigger,
                next.format("%Y-%m-%d %H:%M:%S %Z")
            ),
            None => write!(f, "{} (trigger: {}, paused)", self.name, self.trigger),
        }
    }
}

/// What a running job knows about its run.
///
/// Tasks that take a `JobContext` get one per run.
#[derive(Clone)]
pub struct JobContext {
    id: JobId,
    name: Name,
    scheduled_run_time: DateTime<Utc>,
    env: Arc<RunEnv>,
    /// Set for a run a cluster node claimed.
    claim: Option<Arc<Claim>>,
    attempt: u32,
    /// The run's own token, for a run with a timeout (a child of the scheduler's or the
    /// claim's).
    token: Option<CancellationToken>,
}

/// What a run claimed in a cluster carries: its fence, and the token its node cancels when
/// it loses its lease.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) fence: u64,
    pub(crate) token: CancellationToken,
    pub(crate) node: Arc<str>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("name", &&*self.name)
            .field("scheduled_run_time", &self.scheduled_run_time)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        id: JobId,
        name: Name,
        scheduled_run_time: DateTime<Utc>,
        env: Arc<RunEnv>,
        claim: Option<Arc<Claim>>,
        attempt: u32,
        token: Option<CancellationToken>,
    ) -> JobContext {
        JobContext {
            id,
            name,
            scheduled_run_time,
            env,
            claim,
            attempt,
            token,
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> &JobId {
        &self.id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.name
    }

    /// The fire time this run stands for (without jitter). For a coalesced run, the latest of
    /// the runs it stands for.
    pub fn scheduled_run_time(&self) -> DateTime<Utc> {
        self.scheduled_run_time
    }

    /// Which attempt of the run this is: 1, then 2 for the first retry (see
    /// [`RetryPolicy`]).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Cancelled when the run passes its job's [`timeout`](JobOptions::timeout), when the
    /// scheduler stops waiting for it (`shutdown_timeout` expired), and in a cluster also when
    /// this node loses its lease (the run may be reaped and its outcome fenced off). Long jobs
    /// can select on `cancelled()` to stop cleanly.
    pub fn cancellation_token(&self) -> &CancellationToken {
        match (&self.token, &self.claim) {
            (Some(token), _) => token,
            (None, Some(claim)) => &claim.token,
            (None, None) => self.env.cancellation_token(),
        }
    }

    /// In a [cluster](crate::cluster), this run's fence token: it grows with every claim of
    /// the run's row, so an outside system that remembers the highest fence it has seen per
    /// (job, fire time) can refuse a write from an attempt that has lost its claim. `None`
    /// outside a cluster.
    pub fn fence(&self) -> Option<u64> {
        self.claim.as_ref().map(|claim| claim.fence)
    }

    /// In a [cluster](crate::cluster), the id of the node running this run; `None` outside
    /// a cluster.
    pub fn node_id(&self) -> Option<&str> {
        self.claim.as_ref().map(|claim| &*claim.node)
    }

    /// A handle to the scheduler running this job, so the job can add, modify or remove jobs
    /// (itself included). `None` once every other handle is gone and the scheduler is
    /// stopping.
    ///
    /// Prefer this to capturing a `Scheduler` in the job's closure: a captured handle lives
    /// in the job table and keeps the scheduler from stopping when the last outside handle
    /// is dropped.
    pub fn scheduler(&self) -> Option<Scheduler> {
        self.env.scheduler()
    }
}

/// A job name as a run sees it: the task's function name (no allocation) or one given with
/// `.name(..)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// What a job run returned: the value it gave (as JSON, `None` for `()`), or the error's
/// message (or the panic's).
pub(crate) type RunResult = Result<Option<serde_json::Value>, String>;

/// The value a task returns: `()`; a plain value (a number, `bool`, `String`,
/// `serde_json::Value`, or a `Vec` or `Option` of any `Serialize` type), kept in the run's
/// history as JSON; or `Result<T, E>` where `T` is `()` or any `Serialize` value and `E`
/// converts into `Box<dyn Error + Send + Sync>` (any `std::error::Error + Send + Sync`,
/// `anyhow::Error`, `String`, `&str`). Another `Serialize` type is returned as
/// `Ok::<_, Infallible>(value)`.
///
/// An error becomes the run's message with its whole `source()` chain, `outer: inner: root`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not something a job may return",
    label = "a job returns `()` or `Result<T, E>`",
    note = "`E` must convert into `Box<dyn std::error::Error + Send + Sync>`: a `Send + Sync` error type, `anyhow::Error`, `String` or `&str`; `Box<dyn Error>` without `+ Send + Sync` cannot cross to the scheduler's threads"
)]
pub trait JobOutput: Send + 'static {
    /// The value as JSON (`None` for `()`), or the error's message with its causes.
    fn into_result(self) -> Result<Option<serde_json::Value>, String>;
}

impl JobOutput for () {
    fn into_result(self) -> Result<Option<serde_json::Value>, String> {
        Ok(None)
    }
}

impl<T, E> JobOutput for Result<T, E>
where
    T: Serialize + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    fn into_result(self) -> Result<Option<serde_json::Value>, String> {
        match self {
            Ok(value) => match serde_json::to_value(value) {
                Ok(serde_json::Value::Null) => Ok(None),
                Ok(value) => Ok(Some(value)),
                Err(error) => Err(format!("its result does not serialize as JSON: {error}")),
            },
            Err(error) => Err(error_chain(&*error.into())),
        }
    }
}

/// A plain value is a success, kept as JSON; any other `Serialize` type can be returned as
/// `Ok::<_, Infallible>(value)` (a blanket impl would overlap `Result`'s).
macro_rules! plain_outputs {
    ($($t:ty),* $(,)?) => {$(
        impl JobOutput for $t {
            fn into_result(self) -> Result<Option<serde_json::Value>, String> {
                Ok::<_, std::convert::Infallible>(self).into_result()
            }
        }
    )*};
}

plain_outputs!(
    serde_json::Value,
    String,
    &'static str,
    bool,
    i8,
    i16,
    i32,
    i64,
    isize,
    u8,
    u16,
    u32,
    u64,
    usize,
    f32,
    f64,
);

impl<T: Serialize + Send + 'static> JobOutput for Vec<T> {
    fn into_result(self) -> Result<Option<serde_json::Value>, String> {
        Ok::<_, std::convert::Infallible>(self).into_result()
    }
}

impl<T: Serialize + Send + 'static> JobOutput for Option<T> {
    fn into_result(self) -> Result<Option<serde_json::Value>, String> {
        Ok::<_, std::convert::Infallible>(self).into_result()
    }
}

/// An error's message followed by its causes: `outer: inner: root`.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors repeat their cause in their own message: say it once.
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// A task's body with its type erased; implemented by the wrappers [`IntoTask`] builds.
pub(crate) trait TaskBody: Send + Sync + 'static {
    /// Starts one run through `launch`, which owns how runs are spawned and accounted for.
    /// The run's whole future (job, panic catching, cancellation, completion report) is built
    /// in one monomorphized step and boxed once; no separate allocation for the job's future.
    fn start(&self, launch: Launch);
    /// The function's name, the job's default name; `None` for a closure, whose jobs are
    /// named after their id.
    fn name(&self) -> Option<&'static str>;
    /// For a registered task, its name and arguments.
    fn registered(&self) -> Option<(&'static str, &serde_json::Value)> {
        None
    }
}

/// A type-erased job body; build one with [`IntoTask`] (which `add_job` calls for you).
///
/// A task that captures nothing (an `async fn`, a closure without captures) costs no
/// allocation, which matters at a million jobs.
pub struct Task {
    body: Box<dyn TaskBody>,
}

impl Task {
    pub(crate) fn into_body(self) -> Box<dyn TaskBody> {
        self.body
    }

    /// The task's function name (`report` for `async fn report()`), the default name of its
    /// jobs; `None` for a closure, whose jobs are named after their id unless given a name.
    pub fn name(&self) -> Option<&'static str> {
        self.body.name()
    }

    /// The registered task's name and arguments, for a task built by a
    /// [`TaskRegistry`](crate::TaskRegistry): what a durable store writes, and rebuilds it from.
    pub fn registered(&self) -> Option<(&'static str, &serde_json::Value)> {
        self.body.registered()
    }

    /// The task as registered under `name` with `args`: known by that name, not by its
    /// wrapper closure's, and able to live in a durable store.
    pub(crate) fn registered_as(self, name: &'static str, args: serde_json::Value) -> Task {
        Task {
            body: Box::new(Registered {
                body: self.body,
                name,
                args,
            }),
        }
    }
}

/// A task built by a registry: the body, and the name and arguments it was built from.
struct Registered {
    body: Box<dyn TaskBody>,
    name: &'static str,
    args: serde_json::Value,
}

impl TaskBody for Registered {
    fn start(&self, launch: Launch) {
        self.body.start(launch);
    }
    fn name(&self) -> Option<&'static str> {
        Some(self.name)
    }
    fn registered(&self) -> Option<(&'static str, &serde_json::Value)> {
        Some((self.name, &self.args))
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name())
            .field("registered", &self.registered().is_some())
            .finish()
    }
}

/// Markers that keep the [`IntoTask`] impls apart; never named by users.
#[doc(hidden)]
pub mod marker {
    /// `Fn() -> impl Future`
    pub struct Async;
    /// `Fn(JobContext) -> impl Future`
    pub struct AsyncWithContext;
    /// `Fn() -> ()` or `Fn() -> Result<(), E>`, run on the blocking pool.
    pub struct Blocking;
    /// `Fn(JobContext) -> ...`, run on the blocking pool.
    pub struct BlockingWithContext;
}

/// Something that can be a job's body. Implemented for:
///
/// - `Fn() -> Fut` and `Fn(JobContext) -> Fut` where `Fut: Future<Output = R>` (async tasks);
/// - `Fn() -> R` and `Fn(JobContext) -> R` (blocking tasks, run on the blocking pool);
///
/// with `R` any [`JobOutput`] (`()`, a `Serialize` value, or a `Result`), and a ready [`Task`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a job's task",
    label = "not an async or blocking job body",
    note = "a task is `Fn() -> R`, `Fn(JobContext) -> R`, or the same returning a `Future<Output = R>`; it must be `Send + Sync + 'static` (move captured values in, clone them inside)",
    note = "`R` is `()` or `Result<(), E>` where `E` converts into `Box<dyn std::error::Error + Send + Sync>` (`Box<dyn Error>` needs `+ Send + Sync`)",
    note = "an async closure's future must be `Send`: do not hold a `std::sync::MutexGuard` or an `Rc` across an `.await`"
)]
pub trait IntoTask<Marker>: Send + Sync + 'static {
    /// Erases the task's type.
    fn into_task(self) -> Task;
}

impl IntoTask<()> for Task {
    fn into_task(self) -> Task {
        self
    }
}

struct AsyncTask<F>(F);
struct AsyncContextTask<F>(F);
/// Blocking bodies are shared with the blocking thread of each run.
struct BlockingTask<F>(Arc<F>);
struct BlockingContextTask<F>(Arc<F>);

impl<F, Fut> TaskBody for AsyncTask<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: JobOutput,
{
    fn start(&self, launch: Launch) {
        let fut = (self.0)();
        launch.spawn(async move { fut.await.into_result() });
    }
    fn name(&self) -> Option<&'static str> {
        function_name::<F>()
    }
}

impl<F, Fut> TaskBody for AsyncContextTask<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: JobOutput,
{
    fn start(&self, launch: Launch) {
        let fut = (self.0)(launch.context(self.name()));
        launch.spawn(async move { fut.await.into_result() });
    }
    fn name(&self) -> Option<&'static str> {
        function_name::<F>()
    }
}

impl<F, R> TaskBody for BlockingTask<F>
where
    F: Fn() -> R + Send + Sync + 'static,
    R: JobOutput,
{
    fn start(&self, launch: Launch) {
        let body = Arc::clone(&self.0);
        launch.spawn_blocking(move || body().into_result());
    }
    fn name(&self) -> Option<&'static str> {
        function_name::<F>()
    }
}

impl<F, R> TaskBody for BlockingContextTask<F>
where
    F: Fn(JobContext) -> R + Send + Sync + 'static,
    R: JobOutput,
{
    fn start(&self, launch: Launch) {
        let body = Arc::clone(&self.0);
        let ctx = launch.context(self.name());
        launch.spawn_blocking(move || body(ctx).into_result());
    }
    fn name(&self) -> Option<&'static str> {
        function_name::<F>()
    }
}

impl<F, Fut> IntoTask<(marker::Async, Fut)> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: JobOutput,
{
    fn into_task(self) -> Task {
        Task {
            body: Box::new(AsyncTask(self)),
        }
    }
}

impl<F, Fut> IntoTask<(marker::AsyncWithContext, Fut)> for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: JobOutput,
{
    fn into_task(self) -> Task {
        Task {
            body: Box::new(AsyncContextTask(self)),
        }
    }
}

impl<F, R> IntoTask<(marker::Blocking, R)> for F
where
    F: Fn() -> R + Send + Sync + 'static,
    R: JobOutput,
{
    fn into_task(self) -> Task {
        Task {
            body: Box::new(BlockingTask(Arc::new(self))),
        }
    }
}

impl<F, R> IntoTask<(marker::BlockingWithContext, R)> for F
where
    F: Fn(JobContext) -> R + Send + Sync + 'static,
    R: JobOutput,
{
    fn into_task(self) -> Task {
        Task {
            body: Box::new(BlockingContextTask(Arc::new(self))),
        }
    }
}

/// `report` for `fn report`; `None` for a closure (its name would only say where it was
/// written), without allocating: this runs on every `add_job`.
fn function_name<F>() -> Option<&'static str> {
    let full = std::any::type_name::<F>();
    if full.ends_with("{{closure}}") {
        return None;
    }
    // Paths separate segments with `::`, so the last `:` ends the last separator; generic
    // arguments (`report::<u8>`) are not part of a function item's type name.
    Some(full.rfind(':').map_or(full, |i| &full[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn report() {}

    #[test]
    fn names_come_from_the_function() {
        fn name_of<M, T: IntoTask<M>>(t: T) -> Option<&'static str> {
            t.into_task().name()
        }
        assert_eq!(name_of(report), Some("report"));
        assert_eq!(name_of(|| async {}), None);
        assert_eq!(name_of(|| ()), None);
        assert_eq!(
            name_of(|_ctx: JobContext| -> Result<(), String> { Ok(()) }),
            None
        );
    }

    #[test]
    fn random_ids_are_32_hex_digits() {
        let id = JobId::random();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, JobId::random());
    }
}
