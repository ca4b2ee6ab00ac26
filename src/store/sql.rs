//! What the SQL backends share: the names they may put in SQL, the schema version check, how a
//! batch of [`Write`]s becomes a few multi-row statements, and how a row becomes a
//! [`StoredJob`] or a [`RunRecord`].
//!
//! Nothing here talks to a database; `sqlite.rs` and `postgres.rs` own their SQL and their
//! connections.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{RunRecord, RunState, StoredJob, UnreadableRow, Write, SCHEMA_VERSION};
use crate::{Cause, Error};

/// The longest table prefix: PostgreSQL cuts names at 63 bytes, and the longest name built on
/// the prefix (`<prefix>runs_job_id_fire_time_key`, the unique constraint) adds 26.
pub(crate) const MAX_PREFIX_LEN: usize = 32;

/// The longest PostgreSQL schema name (NAMEDATALEN - 1).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const MAX_SCHEMA_LEN: usize = 63;

/// Checks a name that goes into SQL as an identifier: ASCII letters, digits and underscores,
/// not starting with a digit, at most `max_len` bytes (and not empty unless `may_be_empty`).
/// These names are the only text ever put into SQL rather than bound as a parameter.
pub(crate) fn check_identifier(
    option: &'static str,
    value: &str,
    max_len: usize,
    may_be_empty: bool,
) -> crate::Result<()> {
    let refuse = |reason: String| {
        Err(Error::InvalidOption {
            option,
            value: format!("{value:?}"),
            reason,
        })
    };
    if value.is_empty() && !may_be_empty {
        return refuse("must not be empty".into());
    }
    if value.len() > max_len {
        return refuse(format!(
            "is {} bytes long, more than the {max_len} allowed",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return refuse(format!(
            "holds {bad:?}: only ASCII letters, digits and '_' are allowed"
        ));
    }
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return refuse("must not start with a digit".into());
    }
    Ok(())
}

/// What to do with a schema whose version table says `found` (`None`: no table yet).
pub(crate) enum SchemaPlan {
    /// Already at [`SCHEMA_VERSION`].
    Current,
    /// Apply the steps after `from` (0: a fresh database).
    Migrate { from: i64 },
}

/// Decides what a schema at `found` needs, refusing one newer than this apsched knows.
pub(crate) fn plan(store: &str, found: Option<i64>) -> crate::Result<SchemaPlan> {
    match found.unwrap_or(0) {
        SCHEMA_VERSION => Ok(SchemaPlan::Current),
        found if found > SCHEMA_VERSION => Err(Error::StoreSchema {
            store: store.to_string(),
            found,
            supported: SCHEMA_VERSION,
        }),
        from => Ok(SchemaPlan::Migrate { from: from.max(0) }),
    }
}

/// `Error::Store` for an `open` that failed.
pub(crate) fn open_error(store: &str, error: impl Into<super::BackendError>) -> Error {
    Error::Store {
        store: store.to_string(),
        operation: "open",
        source: Cause::new(error),
    }
}

/// One statement's worth of a batch: consecutive writes of one kind, each touching a different
/// row, at most `max_rows` of them.
///
/// Statements never touch a row twice: PostgreSQL refuses an `ON CONFLICT DO UPDATE` that does,
/// and an `UPDATE .. FROM` with two rows for one job would pick either. So a write for a row
/// already in the current step starts a new one, and the batch's order is kept exactly.
#[derive(Debug, PartialEq)]
pub(crate) enum Step<'a> {
    Put(Vec<&'a StoredJob>),
    Next(Vec<(&'a str, Option<DateTime<Utc>>)>),
    Delete(Vec<&'a str>),
    DeleteAll,
    Run(Vec<&'a RunRecord>),
}

/// Splits a batch into [`Step`]s, in order.
pub(crate) fn steps(writes: &[Write], max_rows: usize) -> Vec<Step<'_>> {
    let mut steps: Vec<Step<'_>> = Vec::new();
    // The rows the last step touches, by (job id, fire time for a run).
    let mut rows: HashSet<(&str, Option<DateTime<Utc>>), foldhash::fast::RandomState> =
        HashSet::default();
    for write in writes {
        let row = match write {
            Write::Put(job) => Some((job.id.as_str(), None)),
            Write::Next { id, .. } | Write::Delete { id } => Some((id.as_str(), None)),
            Write::Run(run) => Some((run.job_id.as_str(), Some(run.fire_time))),
            Write::DeleteAll => None,
        };
        let fits = row.is_some_and(|row| !rows.contains(&row));
        let joined = fits
            && match (steps.last_mut(), write) {
                (Some(Step::Put(jobs)), Write::Put(job)) if jobs.len() < max_rows => {
                    jobs.push(job);
                    true
                }
                (Some(Step::Next(nexts)), Write::Next { id, next_run_time })
                    if nexts.len() < max_rows =>
                {
                    nexts.push((id, *next_run_time));
                    true
                }
                (Some(Step::Delete(ids)), Write::Delete { id }) if ids.len() < max_rows => {
                    ids.push(id);
                    true
                }
                (Some(Step::Run(runs)), Write::Run(run)) if runs.len() < max_rows => {
                    runs.push(run);
                    true
                }
                _ => false,
            };
        if !joined {
            rows.clear();
            steps.push(match write {
                Write::Put(job) => Step::Put(vec![job]),
                Write::Next { id, next_run_time } => Step::Next(vec![(id, *next_run_time)]),
                Write::Delete { id } => Step::Delete(vec![id]),
                Write::DeleteAll => Step::DeleteAll,
                Write::Run(run) => Step::Run(vec![run]),
            });
        }
        if let Some(row) = row {
            rows.insert(row);
        }
    }
    steps
}

/// The columns a job is read from, in this order.
pub(crate) const JOB_COLUMNS: &str = "id, name, task, args, trigger, options, next_run_time";

/// The columns a run is read from, in this order.
pub(crate) const RUN_COLUMNS: &str =
    "job_id, fire_time, state, started_at, finished_at, result, error, owner, attempts, due_at";

/// One row as a backend decodes its columns; `Ok(None)` is SQL NULL, `Err` says why a value
/// cannot be read.
pub(crate) trait Columns {
    fn text(&self, index: usize) -> Result<Option<String>, String>;
    fn json(&self, index: usize) -> Result<Option<serde_json::Value>, String>;
    fn time(&self, index: usize) -> Result<Option<DateTime<Utc>>, String>;
    fn int(&self, index: usize) -> Result<Option<i64>, String>;
}

/// Why sqlx could not decode a column, without its "error occurred while decoding column n".
pub(crate) fn decode_reason(error: sqlx::Error) -> String {
    match error {
        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
        error => error.to_string(),
    }
}

/// A value a NOT NULL column must have.
fn required<T>(value: Result<Option<T>, String>) -> Result<T, String> {
    value?.ok_or_else(|| "is NULL".to_string())
}

/// A row of [`JOB_COLUMNS`] as a job, or why it cannot be one.
pub(crate) fn read_job(row: &impl Columns) -> Result<StoredJob, UnreadableRow> {
    let id = required(row.text(0)).map_err(|reason| UnreadableRow {
        id: None,
        reason: format!("column 'id' {reason}"),
    })?;
    let at = |column: &str, reason: String| UnreadableRow {
        id: Some(id.clone()),
        reason: format!("column '{column}': {reason}"),
    };
    Ok(StoredJob {
        name: row.text(1).map_err(|e| at("name", e))?,
        task: required(row.text(2)).map_err(|e| at("task", e))?,
        args: required(row.json(3)).map_err(|e| at("args", e))?,
        trigger: required(row.json(4)).map_err(|e| at("trigger", e))?,
        options: required(row.json(5)).map_err(|e| at("options", e))?,
        next_run_time: row.time(6).map_err(|e| at("next_run_time", e))?,
        id,
    })
}

/// A row of [`RUN_COLUMNS`] as a run, or why it cannot be one.
pub(crate) fn read_run(row: &impl Columns) -> Result<RunRecord, String> {
    let job_id = required(row.text(0)).map_err(|e| format!("a run row's job_id {e}"))?;
    let fire_time = required(row.time(1))
        .map_err(|e| format!("a run of job {job_id:?}: column 'fire_time': {e}"))?;
    let at = |column: &str, reason: String| {
        format!("the run of job {job_id:?} at {fire_time:?}: column '{column}': {reason}")
    };
    let state = required(row.text(2)).map_err(|e| at("state", e))?;
    let state = RunState::parse(&state).ok_or_else(|| {
        at(
            "state",
            format!("{state:?} is not a run state apsched knows"),
        )
    })?;
    let mut run = RunRecord::new(&job_id, fire_time, state);
    run.started_at = row.time(3).map_err(|e| at("started_at", e))?;
    run.finished_at = row.time(4).map_err(|e| at("finished_at", e))?;
    run.result = row.json(5).map_err(|e| at("result", e))?;
    run.error = row.text(6).map_err(|e| at("error", e))?;
    run.node = row.text(7).map_err(|e| at("owner", e))?;
    let attempts = required(row.int(8)).map_err(|e| at("attempts", e))?;
    run.attempts = u32::try_from(attempts)
        .map_err(|_| at("attempts", format!("{attempts} is not a count of attempts")))?;
    run.due_at = row.time(9).map_err(|e| at("due_at", e))?;
    Ok(run)
}

/// The statements of a migration step, one at a time: `sqlx::raw_sql` would run them in one
/// go, but its future is not provably `Send` to rustc (a higher-ranked executor lifetime), and
/// opening a store must be spawnable. apsched's own DDL has no `;` inside a statement.
pub(super) fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job(id: &str) -> StoredJob {
        StoredJob {
            id: id.into(),
            name: None,
            task: "t".into(),
            args: serde_json::Value::Null,
            trigger: serde_json::Value::Null,
            options: serde_json::Value::Null,
            next_run_time: None,
        }
    }

    fn next(id: &str) -> Write {
        Write::Next {
            id: id.into(),
            next_run_time: None,
        }
    }

    #[test]
    fn identifiers_are_letters_digits_and_underscores_only() {
        for good in ["public", "apsched", "_x", "A_1", "x_"] {
            check_identifier("schema", good, MAX_SCHEMA_LEN, false).unwrap();
        }
        check_identifier("table_prefix", "", MAX_PREFIX_LEN, true).unwrap();
        for bad in [
            "",
            "x; DROP TABLE jobs; --",
            "1abc",
            "a-b",
            "a b",
            "\"a\"",
            "é",
            "a\0",
        ] {
            let error = check_identifier("schema", bad, MAX_SCHEMA_LEN, false).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::InvalidOption {
                        option: "schema",
                        ..
                    }
                ),
                "{bad:?}: {error}"
            );
        }
        let long = "a".repeat(MAX_PREFIX_LEN + 1);
        let error = check_identifier("table_prefix", &long, MAX_PREFIX_LEN, true).unwrap_err();
        assert!(
            error.to_string().contains("more than the 32 allowed"),
            "{error}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_an_older_one_migrated() {
        assert!(matches!(
            plan("s", None),
            Ok(SchemaPlan::Migrate { from: 0 })
        ));
        assert!(matches!(
            plan("s", Some(1)),
            Ok(SchemaPlan::Migrate { from: 1 })
        ));
        assert!(matches!(
            plan("s", Some(SCHEMA_VERSION)),
            Ok(SchemaPlan::Current)
        ));
        assert!(matches!(
            plan("s", Some(99)),
            Err(Error::StoreSchema {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            })
        ));
    }

    #[test]
    fn steps_join_runs_of_one_kind_and_split_where_a_row_repeats() {
        let a = job("a");
        let b = job("b");
        let writes = vec![
            Write::Put(a.clone()),
            Write::Put(b.clone()),
            Write::Put(a.clone()), // a again: a new statement
            next("a"),
            next("b"),
            Write::DeleteAll,
            Write::DeleteAll,
            Write::Delete { id: "a".into() },
        ];
        assert_eq!(
            steps(&writes, 100),
            vec![
                Step::Put(vec![&a, &b]),
                Step::Put(vec![&a]),
                Step::Next(vec![("a", None), ("b", None)]),
                Step::DeleteAll,
                Step::DeleteAll,
                Step::Delete(vec!["a"]),
            ]
        );
    }

    #[test]
    fn steps_hold_at_most_max_rows_and_runs_are_keyed_by_fire_time() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let runs: Vec<Write> = (0..5)
            .map(|i| Write::Run(RunRecord::new("j", t(i % 3), RunState::Running)))
            .collect();
        let sizes = |max_rows| -> Vec<usize> {
            steps(&runs, max_rows)
                .iter()
                .map(|step| match step {
                    Step::Run(runs) => runs.len(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(sizes(10), vec![3, 2]); // (j, t(0)) comes again after t(2)
        assert_eq!(sizes(2), vec![2, 2, 1]);
        let ids: Vec<Write> = (0..7)
            .map(|i| Write::Delete { id: i.to_string() })
            .collect();
        assert_eq!(steps(&ids, 3).len(), 3);
        assert!(steps(&[], 3).is_empty());
    }
}
