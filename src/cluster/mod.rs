//! Cluster mode: several scheduler processes (nodes) sharing one PostgreSQL store, every fire
//! time run once.
//!
//! Give a scheduler a cluster with [`SchedulerBuilder::cluster`](crate::SchedulerBuilder::cluster)
//! and send jobs to it by its name, as to any store. Its jobs then live in the database only:
//! no node holds them in memory, and any node may run any of them.
//!
//! ```no_run
//! use apsched::{cluster::Cluster, store::PostgresStore, trigger::Interval, Scheduler, TaskRegistry};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), apsched::Error> {
//! let tasks = TaskRegistry::new().register("sync", |(): ()| async { /* ... */ });
//! let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
//! let scheduler = Scheduler::builder()
//!     .cluster("shared", Cluster::new(store).node_id("web-1"))
//!     .default_store("shared")
//!     .tasks(tasks.clone())
//!     .build();
//! scheduler.start().await?; // joins the cluster
//! scheduler
//!     .add_job(tasks.task("sync", serde_json::Value::Null)?, Interval::seconds(10))
//!     .id("sync")
//!     .replace_existing(true) // every replica may add it at start: one job
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! How it works (the design is in the README's "Cluster mode"):
//!
//! - **One run row per fire time.** Any node takes the due jobs `FOR UPDATE SKIP LOCKED`,
//!   applies the misfire rules, inserts their run rows (`UNIQUE (job_id, fire_time)`, so a
//!   fire time can have one row only) and moves `next_run_time` on, in one transaction: no
//!   leader, and a node killed half-way rolls back.
//! - **At most one outcome per run.** A node claims pending runs `FOR UPDATE SKIP LOCKED`,
//!   counting the claim's `fence` up, and writes an outcome only `WHERE fence` is still its
//!   own and the run still `running`; an outcome that finds its run taken away is dropped and
//!   reported ([`Event::RunFenced`](crate::Event::RunFenced)).
//! - **Leases, on the database's clock.** Each node renews `lease_until = now() + lease`
//!   every third of the lease. A node that has not renewed for four fifths of its lease (by
//!   its own monotonic clock) stops claiming and cancels its runs' tokens. Every node reaps
//!   the runs of nodes whose lease has expired: abandoned, or pending again for a job with
//!   `retry_abandoned`.
//! - **`max_instances` across the cluster**, counted from the `running` rows under the job
//!   row's lock, never from a stored counter.
//! - **Wakeups**: a node sleeps until the next due time it reads from the database, at most
//!   the poll interval; `NOTIFY` (sent inside the transaction that made something due) wakes
//!   the others early, and a lost listener connection makes a node rescan at once.
//!
//! Scheduler-wide calls keep their meaning per node: `pause()` and `resume()` stop and start
//! this node's claiming only; job calls (`pause_job`, `remove_job`, ...) change the job for the
//! whole cluster. `job_count()` and `running_jobs()` count this node's memory jobs and runs.

mod jobs;
mod node;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::PostgresStore;
use crate::{Error, Result};

pub(crate) use node::Node;

/// A cluster node's settings over a [`PostgresStore`]: given to
/// [`SchedulerBuilder::cluster`](crate::SchedulerBuilder::cluster).
///
/// Every node of one cluster uses the same store (database, schema and table prefix); the
/// other settings are each node's own.
#[derive(Clone, Debug)]
#[must_use = "a cluster does nothing until given to SchedulerBuilder::cluster"]
pub struct Cluster {
    pub(crate) store: PostgresStore,
    pub(crate) node_id: Option<String>,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) notify: bool,
    pub(crate) max_running: usize,
    pub(crate) batch: usize,
}

/// The longest node id: it is a primary key, and appears in every run row it ran.
const MAX_NODE_ID_LEN: usize = 200;

impl Cluster {
    /// A node on `store`, with the defaults: a node id from the host name, the process id and
    /// a random suffix; a 15 s lease; a 1 s poll interval; notifications on; at most 256 runs
    /// going on this node at once.
    pub fn new(store: PostgresStore) -> Cluster {
        Cluster {
            store,
            node_id: None,
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            notify: true,
            max_running: 256,
            batch: 500,
        }
    }

    /// This node's id, unique in the cluster (a node restarted under the same id takes its
    /// old row over: its runs that were going are reaped first, as a dead node's). At most
    /// 200 bytes, not empty, no NUL. Default: `<host>-<pid>-<random>`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// How long the node's lease lasts (renewed every third of it): a node that dies is
    /// noticed, and its runs reaped, within about this long. At least 300 ms. Default 15 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The longest the node sleeps without looking at the database: what bounds how late a
    /// run starts when a notification is lost, or when notifications are off. At least 10 ms.
    /// Default 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether nodes wake each other with `LISTEN`/`NOTIFY` (default on). Turn it off behind
    /// a transaction-mode pooler (PgBouncer), where `LISTEN` does not work: nodes then find
    /// work by polling only.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// How many runs this node has going at once, at most: it claims no more (the others stay
    /// pending for other nodes). At least 1. Default 256.
    pub fn max_running(mut self, runs: usize) -> Self {
        self.max_running = runs;
        self
    }

    /// The node id this cluster joins as.
    pub(crate) fn resolved_node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(default_node_id)
    }

    pub(crate) fn validate(&self, node_id: &str) -> Result<()> {
        let refuse = |option: &'static str, value: String, reason: &str| {
            Err(Error::InvalidOption {
                option,
                value,
                reason: reason.to_string(),
            })
        };
        if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN || node_id.contains('\0') {
            return refuse(
                "node_id",
                format!("{node_id:?}"),
                "must be 1 to 200 bytes, without NUL",
            );
        }
        if self.lease < Duration::from_millis(300) {
            return refuse(
                "lease",
                format!("{:?}", self.lease),
                "must be at least 300 ms",
            );
        }
        if self.poll_interval < Duration::from_millis(10) {
            return refuse(
                "poll_interval",
                format!("{:?}", self.poll_interval),
                "must be at least 10 ms",
            );
        }
        if self.max_running == 0 {
            return refuse("max_running", "0".into(), "must be at least 1");
        }
        Ok(())
    }
}

/// `<host>-<pid>-<random>`: readable in `get_nodes()` and the run rows, unique in practice.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// A live node of a cluster, as [`Scheduler::get_nodes`](crate::Scheduler::get_nodes) lists
/// it: times are the database's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// When it joined.
    pub started_at: DateTime<Utc>,
    /// When it last renewed its lease.
    pub renewed_at: DateTime<Utc>,
    /// Until when its lease holds.
    pub lease_until: DateTime<Utc>,
    /// How many runs it has going, by the database's run rows.
    pub running: u64,
}
