//! Changing a cluster's jobs: each call is one transaction on the job's row, under its lock,
//! so every node sees the change at once and none fires the job half-changed.
//!
//! A cluster job lives in the database only. Its snapshot is built from its row as a durable
//! store's job is loaded (the trigger and options decoded, the task rebuilt from the registry).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Node;
use crate::core::{entry_from_row, stored, Entry, JobChange, Shared};
use crate::store::postgres::{json_has_nul, read_job, truncated, Tx};
use crate::store::StoredJob;
use crate::{Error, Event, Job, JobId, Result};

impl Node {
    fn snapshot(&self, shared: &Shared, row: StoredJob) -> Result<Job> {
        let id = row.id.clone();
        let entry = entry_from_row(shared, row).map_err(|reason| Error::Store {
            store: self.name.to_string(),
            operation: "read job",
            source: crate::Cause::new(format!("job {id:?}: {reason}")),
        })?;
        Ok(entry.snapshot(shared.timezone, &self.name))
    }

    /// Adds a job (replacing the one with its id, if `replace`), written before this returns.
    pub(crate) async fn add(&self, shared: &Shared, entry: Entry, replace: bool) -> Result<Job> {
        let row = stored(&entry).ok_or_else(|| Error::NotDurable {
            store: self.name.to_string(),
        })?;
        refuse_nul(&row)?;
        let job = entry.snapshot(shared.timezone, &self.name);
        let now = shared.now();
        let mut tx = Tx::begin(self.pool())
            .await
            .map_err(|e| self.error("add", e))?;
        let insert = match replace {
            true => &self.sql.job.replace,
            false => &self.sql.job.insert,
        };
        let written = sqlx::query(insert)
            .bind(&row.id)
            .bind(&row.name)
            .bind(&row.task)
            .bind(row.args.to_string())
            .bind(row.trigger.to_string())
            .bind(row.options.to_string())
            .bind(row.next_run_time.map(truncated))
            .execute(tx.conn())
            .await
            .map_err(|e| self.error("add", e))?;
        if written.rows_affected() == 0 {
            return Err(Error::ConflictingId(row.id));
        }
        if replace {
            self.drop_pending(tx.conn(), &row.id).await?;
        }
        self.commit(tx, row.next_run_time, now, "add").await?;
        shared.emit(|| Event::JobAdded {
            job_id: job.id.clone(),
        });
        Ok(job)
    }

    /// The job `id`, if this cluster has it.
    pub(crate) async fn get(&self, shared: &Shared, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(&self.sql.job.get)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.error("read job", e))?;
        let Some(row) = row else { return Ok(None) };
        let row = read_job(&row).map_err(|unreadable| self.unreadable(unreadable.reason))?;
        self.snapshot(shared, row).map(Some)
    }

    /// Every job of the cluster this node can read (a job whose task this node lacks is left
    /// out: it cannot be rebuilt here).
    pub(crate) async fn all(&self, shared: &Shared) -> Result<Vec<Job>> {
        let rows = self.rows().await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| self.snapshot(shared, row).ok())
            .collect())
    }

    /// The rows of every job that can be read (for `get_jobs` and `export_jobs`).
    pub(crate) async fn rows(&self) -> Result<Vec<StoredJob>> {
        let rows = sqlx::query(&self.sql.job.all)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.error("read jobs", e))?;
        Ok(rows.iter().filter_map(|row| read_job(row).ok()).collect())
    }

    /// Applies a caller's change to the job `id` under its row's lock. `Ok(None)`: no such
    /// job here; `Ok(Some(None))`: the job is gone after the change (resumed with no fire
    /// time left).
    pub(crate) async fn change(
        &self,
        shared: &Shared,
        id: &str,
        change: JobChange,
    ) -> Result<Option<Option<Job>>> {
        let operation = "change job";
        let mut tx = Tx::begin(self.pool())
            .await
            .map_err(|e| self.error(operation, e))?;
        let row = sqlx::query(&self.sql.job.lock)
            .bind(id)
            .fetch_optional(tx.conn())
            .await
            .map_err(|e| self.error(operation, e))?;
        let Some(row) = row else { return Ok(None) };
        let now: DateTime<Utc> = row.try_get(7).map_err(|e| self.error(operation, e))?;
        let stored_row = read_job(&row).map_err(|unreadable| self.unreadable(unreadable.reason))?;
        let id = stored_row.id.clone();
        let mut entry =
            entry_from_row(shared, stored_row).map_err(|reason| self.unreadable(reason))?;
        // `None`: remove the job (a trigger with no fire time left).
        let mut next: Option<Option<DateTime<Utc>>> = Some(entry.next.map(|n| n.regular));
        let mut drop_pending = false;
        match change {
            JobChange::Modify(modification) => {
                let options = modification.applied_to(entry.options());
                options.validate()?;
                entry.set_options(options);
                if let Some(name) = modification.name {
                    entry.set_name(name);
                }
            }
            JobChange::Reschedule(trigger) => {
                let first = trigger.next_fire_time(None, now)?;
                entry.trigger = trigger;
                next = first.map(Some);
                drop_pending = true;
            }
            JobChange::Pause => {
                next = Some(None);
                drop_pending = true;
            }
            JobChange::Resume => next = entry.trigger.next_fire_time(None, now)?.map(Some),
            // Its outcome is the cluster's: a waiter hears nothing (see `RunHandle::outcome`).
            JobChange::RunNow(_) => {
                sqlx::query(&self.sql.job.run_now)
                    .bind(&id)
                    .bind(truncated(shared.now()))
                    .execute(tx.conn())
                    .await
                    .map_err(|e| self.error(operation, e))?;
                self.commit(tx, Some(now), now, operation).await?;
                return Ok(Some(Some(entry.snapshot(shared.timezone, &self.name))));
            }
        }
        let Some(next) = next else {
            self.delete(tx.conn(), &id).await?;
            self.commit(tx, None, now, operation).await?;
            shared.emit(|| Event::JobRemoved {
                job_id: JobId::new(&id),
            });
            return Ok(Some(None));
        };
        entry.next = next.map(|at| crate::core::NextRun::new(at, at));
        let row =
            stored(&entry).ok_or_else(|| self.unreadable("its task is not registered".into()))?;
        sqlx::query(&self.sql.job.update)
            .bind(&id)
            .bind(&row.name)
            .bind(row.trigger.to_string())
            .bind(row.options.to_string())
            .bind(next.map(truncated))
            .execute(tx.conn())
            .await
            .map_err(|e| self.error(operation, e))?;
        if drop_pending {
            self.drop_pending(tx.conn(), &id).await?;
        }
        self.commit(tx, next, now, operation).await?;
        let job = entry.snapshot(shared.timezone, &self.name);
        shared.emit(|| Event::JobModified {
            job_id: job.id.clone(),
        });
        Ok(Some(Some(job)))
    }

    /// Removes the job `id`; whether the cluster had it.
    pub(crate) async fn remove(&self, shared: &Shared, id: &str) -> Result<bool> {
        let mut tx = Tx::begin(self.pool())
            .await
            .map_err(|e| self.error("remove", e))?;
        let removed = self.delete(tx.conn(), id).await?;
        tx.commit().await.map_err(|e| self.error("remove", e))?;
        if removed {
            shared.emit(|| Event::JobRemoved {
                job_id: JobId::new(id),
            });
        }
        Ok(removed)
    }

    /// Removes every job of the cluster.
    pub(crate) async fn remove_all(&self) -> Result<()> {
        let mut tx = Tx::begin(self.pool())
            .await
            .map_err(|e| self.error("remove all", e))?;
        // Jobs first: their delete waits for a node materializing them, whose pending runs the
        // second statement (a later snapshot) then sees.
        for statement in [&self.sql.job.delete_all, &self.sql.job.drop_all_pending] {
            sqlx::query(statement)
                .execute(tx.conn())
                .await
                .map_err(|e| self.error("remove all", e))?;
        }
        tx.commit().await.map_err(|e| self.error("remove all", e))
    }

    async fn delete(&self, tx: &mut sqlx::PgConnection, id: &str) -> Result<bool> {
        let deleted = sqlx::query(&self.sql.job.delete)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("remove", e))?;
        self.drop_pending(tx, id).await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Runs of the job not claimed yet are dropped when it is paused, rescheduled or removed.
    async fn drop_pending(&self, tx: &mut sqlx::PgConnection, id: &str) -> Result<()> {
        sqlx::query(&self.sql.job.drop_pending)
            .bind(id)
            .execute(tx)
            .await
            .map_err(|e| self.error("change job", e))?;
        Ok(())
    }

    /// Commits a change, waking this node and (when it is due soon) the others.
    async fn commit(
        &self,
        mut tx: Tx,
        due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        operation: &'static str,
    ) -> Result<()> {
        if due.is_some_and(|at| self.is_soon(at, now)) {
            self.notify_peers(&mut tx)
                .await
                .map_err(|e| self.error(operation, e))?;
        }
        tx.commit().await.map_err(|e| self.error(operation, e))?;
        self.wake.notify_one();
        Ok(())
    }

    fn unreadable(&self, reason: String) -> Error {
        Error::Store {
            store: self.name.to_string(),
            operation: "read job",
            source: crate::Cause::new(reason),
        }
    }
}

/// PostgreSQL text cannot hold NUL: refused before anything is sent.
fn refuse_nul(row: &StoredJob) -> Result<()> {
    let has = |text: &str| text.contains('\0');
    let bad = has(&row.id)
        || row.name.as_deref().is_some_and(has)
        || has(&row.task)
        || json_has_nul(&row.args);
    if bad {
        return Err(Error::InvalidOption {
            option: "id",
            value: format!("{:?}", row.id),
            reason: "the job holds a NUL byte, which PostgreSQL text cannot store".into(),
        });
    }
    Ok(())
}

/// The statements of callers' changes to a cluster's jobs, with the store's table names in them.
pub(crate) struct JobStatements {
    insert: String,
    replace: String,
    get: String,
    all: String,
    lock: String,
    update: String,
    run_now: String,
    delete: String,
    drop_pending: String,
    delete_all: String,
    drop_all_pending: String,
}

impl JobStatements {
    pub(crate) fn new(jobs: &str, runs: &str) -> JobStatements {
        let columns = crate::store::sql::JOB_COLUMNS;
        let insert = format!(
            "INSERT INTO {jobs} AS j (id, name, task, args, trigger, options, next_run_time) \
             VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)"
        );
        JobStatements {
            replace: format!(
                "{insert} ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, task = EXCLUDED.task, \
                 args = EXCLUDED.args, trigger = EXCLUDED.trigger, options = EXCLUDED.options, \
                 next_run_time = EXCLUDED.next_run_time, finished = false, \
                 revision = j.revision + 1, updated_at = now()"
            ),
            insert: format!("{insert} ON CONFLICT (id) DO NOTHING"),
            get: format!("SELECT {columns} FROM {jobs} WHERE id = $1 AND NOT finished"),
            all: format!("SELECT {columns} FROM {jobs} WHERE NOT finished"),
            lock: format!(
                "SELECT {columns}, now() FROM {jobs} WHERE id = $1 AND NOT finished FOR UPDATE"
            ),
            update: format!(
                "UPDATE {jobs} SET name = $2, trigger = $3::jsonb, options = $4::jsonb, \
                 next_run_time = $5, revision = revision + 1, updated_at = now() WHERE id = $1"
            ),
            run_now: format!(
                "INSERT INTO {runs} (job_id, fire_time, due_at, state) \
                 VALUES ($1, $2, $2, 'pending') ON CONFLICT (job_id, fire_time) DO NOTHING"
            ),
            delete: format!("DELETE FROM {jobs} WHERE id = $1 AND NOT finished"),
            drop_pending: format!("DELETE FROM {runs} WHERE job_id = $1 AND state = 'pending'"),
            delete_all: format!("DELETE FROM {jobs}"),
            drop_all_pending: format!("DELETE FROM {runs} WHERE state = 'pending'"),
        }
    }
}
