//! Registered tasks: named job bodies built from JSON arguments.
//!
//! A closure cannot travel over HTTP or sit in a database row, so jobs that come from outside
//! the program (the [`web`](crate::web) API's `POST /jobs`, durable stores) name a task
//! registered here and carry its arguments as JSON. Only registered names can run: a request
//! can choose which registered code runs and with which arguments, never arbitrary code.
//!
//! This module owns the name → factory table and the typed decoding of arguments; it does not
//! schedule anything.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::job::marker;
use crate::{Error, IntoTask, JobOutput, Result, Task};

type Factory = dyn Fn(serde_json::Value) -> Result<Task> + Send + Sync;

/// Task names mapped to async functions of typed, JSON-decoded arguments.
///
/// Each task is an `Fn(Args) -> impl Future` whose `Args: DeserializeOwned + Clone`; its
/// future returns `()` or `Result<(), E: Display>`, as any job body. Arguments are decoded once,
/// when the job is built, so bad arguments are refused before anything is scheduled; each run
/// gets a clone of them.
///
/// Cheap to clone (the tasks are shared).
///
/// ```
/// use apsched::TaskRegistry;
/// use serde::Deserialize;
///
/// #[derive(Clone, Deserialize)]
/// struct Cleanup {
///     older_than_days: u32,
/// }
///
/// async fn cleanup(args: Cleanup) -> Result<(), std::io::Error> {
///     println!("removing files older than {} days", args.older_than_days);
///     Ok(())
/// }
///
/// let tasks = TaskRegistry::new()
///     .register("cleanup", cleanup)
///     .register("ping", |(): ()| async { println!("ping") });
///
/// let task = tasks.task("cleanup", serde_json::json!({ "older_than_days": 30 }))?;
/// assert_eq!(task.name(), Some("cleanup"));
///
/// let error = tasks.task("cleanup", serde_json::json!({ "older_than_days": "a month" }));
/// assert!(matches!(
///     error,
///     Err(apsched::Error::InvalidTaskArgs { field, .. }) if field == "older_than_days"
/// ));
/// # Ok::<(), apsched::Error>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct TaskRegistry {
    tasks: BTreeMap<&'static str, Arc<Factory>>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> TaskRegistry {
        TaskRegistry::default()
    }

    /// Registers an async task under `name`, replacing any task registered under it before.
    ///
    /// Jobs built from it are named `name` unless given another name. A task without
    /// arguments takes `()` (arguments `null` or absent).
    pub fn register<Args, F, Fut>(self, name: &'static str, task: F) -> TaskRegistry
    where
        Args: DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(Args) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: JobOutput,
    {
        let task = Arc::new(task);
        self.insert::<Args, (marker::Async, Fut), _>(name, move |args| {
            let task = Arc::clone(&task);
            move || task(args.clone())
        })
    }

    /// Registers an async task that also takes the run's [`JobContext`](crate::JobContext)
    /// (its scheduled time, its cancellation token, and in a cluster its node and fence), under
    /// `name`: as [`register`](Self::register) otherwise.
    ///
    /// ```
    /// use apsched::{JobContext, TaskRegistry};
    ///
    /// let tasks = TaskRegistry::new().register_with_context("bill", |run: JobContext, account: u64| async move {
    ///     // The fire time names the run: a retried or duplicated attempt writes the same key.
    ///     println!("billing {account} for {}", run.scheduled_run_time());
    /// });
    /// assert!(tasks.contains("bill"));
    /// ```
    pub fn register_with_context<Args, F, Fut>(self, name: &'static str, task: F) -> TaskRegistry
    where
        Args: DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(crate::JobContext, Args) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: JobOutput,
    {
        let task = Arc::new(task);
        self.insert::<Args, (marker::AsyncWithContext, Fut), _>(name, move |args| {
            let task = Arc::clone(&task);
            move |run: crate::JobContext| task(run, args.clone())
        })
    }

    /// Registers a blocking task under `name`: as [`register`](Self::register), but `task` is
    /// a plain `Fn(Args) -> R` run on the scheduler's blocking pool.
    pub fn register_blocking<Args, F, R>(self, name: &'static str, task: F) -> TaskRegistry
    where
        Args: DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(Args) -> R + Send + Sync + 'static,
        R: JobOutput,
    {
        let task = Arc::new(task);
        self.insert::<Args, (marker::Blocking, R), _>(name, move |args| {
            let task = Arc::clone(&task);
            move || task(args.clone())
        })
    }

    /// Registers the factory that decodes a job's arguments and builds its body from them.
    fn insert<Args, M, B>(
        mut self,
        name: &'static str,
        body_for: impl Fn(Args) -> B + Send + Sync + 'static,
    ) -> TaskRegistry
    where
        Args: DeserializeOwned,
        B: IntoTask<M>,
    {
        let factory = move |value: serde_json::Value| -> Result<Task> {
            let args: Args = decode(name, value.clone())?;
            Ok(body_for(args).into_task().registered_as(name, value))
        };
        self.tasks.insert(name, Arc::new(factory));
        self
    }

    /// Builds the task registered under `name` with these arguments, ready for
    /// [`Scheduler::add_job`](crate::Scheduler::add_job).
    ///
    /// # Errors
    /// [`Error::TaskNotFound`] for a name never registered; [`Error::InvalidTaskArgs`] when
    /// `args` does not decode into the task's argument type (the error names the field).
    pub fn task(&self, name: &str, args: serde_json::Value) -> Result<Task> {
        let factory = self
            .tasks
            .get(name)
            .ok_or_else(|| Error::TaskNotFound(name.to_string()))?;
        factory(args)
    }

    /// Whether a task is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    /// The registered names, in alphabetical order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.keys().copied()
    }

    /// How many tasks are registered.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.tasks.keys()).finish()
    }
}

/// Decodes a task's arguments, naming the field at fault.
fn decode<Args: DeserializeOwned>(task: &str, value: serde_json::Value) -> Result<Args> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        Error::InvalidTaskArgs {
            task: task.to_string(),
            field: field_at(&path, &reason),
            reason,
        }
    })
}

/// The field a serde error is about, from its path (`.` for the root) and message.
pub(crate) fn field_at(path: &str, reason: &str) -> String {
    // serde reports a missing field at the struct that lacks it; name the field itself.
    let missing = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (missing, path) {
        (Some(name), ".") => name.to_string(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, path) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Clone, Debug, Deserialize)]
    #[allow(dead_code)]
    struct Email {
        to: Vec<String>,
        retries: u32,
        options: Options,
    }

    #[derive(Clone, Debug, Deserialize)]
    #[allow(dead_code)]
    struct Options {
        priority: u8,
    }

    fn registry() -> TaskRegistry {
        TaskRegistry::new()
            .register("email", |_: Email| async {})
            .register_blocking("sync", |(): ()| Ok::<(), String>(()))
    }

    fn field_of(result: Result<Task>) -> String {
        match result {
            Err(Error::InvalidTaskArgs { field, task, .. }) => {
                assert_eq!(task, "email");
                field
            }
            other => panic!("expected InvalidTaskArgs, got {other:?}"),
        }
    }

    #[test]
    fn builds_tasks_named_as_registered() {
        let tasks = registry();
        let ok = json!({ "to": ["a@b"], "retries": 2, "options": { "priority": 1 } });
        assert_eq!(tasks.task("email", ok).unwrap().name(), Some("email"));
        assert_eq!(
            tasks.task("sync", json!(null)).unwrap().name(),
            Some("sync")
        );
        assert_eq!(tasks.names().collect::<Vec<_>>(), ["email", "sync"]);
        assert!(tasks.contains("sync") && !tasks.contains("nope"));
        assert_eq!(tasks.len(), 2);
    }

    #[test]
    fn unknown_names_are_task_not_found() {
        assert_eq!(
            registry().task("nope", json!(null)).unwrap_err(),
            Error::TaskNotFound("nope".into())
        );
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let tasks = registry();
        let wrong_type = json!({ "to": ["a@b"], "retries": "x", "options": { "priority": 1 } });
        assert_eq!(field_of(tasks.task("email", wrong_type)), "retries");
        let missing = json!({ "to": ["a@b"], "options": { "priority": 1 } });
        assert_eq!(field_of(tasks.task("email", missing)), "retries");
        let nested_missing = json!({ "to": [], "retries": 1, "options": {} });
        assert_eq!(
            field_of(tasks.task("email", nested_missing)),
            "options.priority"
        );
        let in_list = json!({ "to": ["a", 7], "retries": 1, "options": { "priority": 1 } });
        assert_eq!(field_of(tasks.task("email", in_list)), "to[1]");
        assert_eq!(field_of(tasks.task("email", json!(null))), ".");
    }
}
