//! The PostgreSQL store: the `execution_logs` table, read and written through the
//! request's transaction, so row-level security applies to every statement.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Value};
use serde_json::{json, Value as Json};
use uuid::Uuid;

use super::{LogEntry, LogFilter, LogLevel, LogPage};
use crate::scope::stmt;
use crate::tx::RequestTx;
use crate::Result;

/// The columns of a stored line, in the order [`Row`] reads them.
pub(super) const COLUMNS: &str =
    "id, run_id, step_run_id, level, message, context, logged_at, expire_at";

#[derive(FromQueryResult)]
pub(super) struct Row {
    id: Uuid,
    run_id: Uuid,
    step_run_id: Option<Uuid>,
    level: String,
    message: String,
    context: Json,
    logged_at: DateTime<Utc>,
    expire_at: DateTime<Utc>,
}

impl Row {
    pub(super) fn into_entry(self) -> LogEntry {
        LogEntry {
            id: self.id,
            run_id: self.run_id,
            step_run_id: self.step_run_id,
            // The column's CHECK admits only the four names.
            level: LogLevel::parse(&self.level).unwrap_or(LogLevel::Info),
            message: self.message,
            context: self.context,
            logged_at: self.logged_at,
            expire_at: self.expire_at,
        }
    }
}

/// The entries as one JSON array for `jsonb_to_recordset`: one bind parameter for a
/// whole batch, nullable columns included.
pub(super) fn as_recordset(entries: &[LogEntry]) -> Value {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    Json::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "run_id": e.run_id,
                    "step_run_id": e.step_run_id,
                    "level": e.level.as_str(),
                    "message": e.message,
                    "context": e.context,
                    "logged_at": time(e.logged_at),
                    "expire_at": time(e.expire_at),
                })
            })
            .collect(),
    )
    .into()
}

/// The column definitions matching [`as_recordset`].
pub(super) const RECORD: &str = "(id uuid, run_id uuid, step_run_id uuid, level text, message text, context jsonb, logged_at timestamptz, expire_at timestamptz)";

pub(super) async fn insert(tx: &RequestTx, tenant: Uuid, entries: &[LogEntry]) -> Result<()> {
    tx.execute(stmt(
        &format!(
            "INSERT INTO execution_logs (tenant_id, {COLUMNS}) \
             SELECT $1, {COLUMNS} FROM jsonb_to_recordset($2::jsonb) AS u{RECORD}"
        ),
        [tenant.into(), as_recordset(entries)],
    ))
    .await?;
    Ok(())
}

pub(super) async fn query(
    tx: &RequestTx,
    tenant: Uuid,
    filter: &LogFilter,
    page: &LogPage,
    limit: u32,
) -> Result<Vec<LogEntry>> {
    // The tenant filter helps the planner; RLS is the guarantee.
    let mut sql =
        format!("SELECT {COLUMNS} FROM execution_logs WHERE tenant_id = $1 AND expire_at > now()");
    let mut values: Vec<Value> = vec![tenant.into()];
    let mut bind = |sql: &mut String, clause: &str, value: Value| {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(id) = filter.id {
        bind(&mut sql, " AND id = ?", id.into());
    }
    if let Some(run) = filter.run_id {
        bind(&mut sql, " AND run_id = ?", run.into());
    }
    if let Some(step) = filter.step_run_id {
        bind(&mut sql, " AND step_run_id = ?", step.into());
    }
    if let Some(levels) = filter.levels.as_ref().filter(|l| !l.is_empty()) {
        let names: Vec<String> = levels.iter().map(|l| l.as_str().to_owned()).collect();
        bind(&mut sql, " AND level = ANY(?)", names.into());
    }
    if let Some(text) = filter.text.as_ref().filter(|t| !t.is_empty()) {
        // strpos, not LIKE: the text is matched literally, with no wildcard at all.
        bind(
            &mut sql,
            " AND strpos(lower(message), lower(?)) > 0",
            text.clone().into(),
        );
    }
    let (cmp, dir) = if page.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(after) = page.after {
        values.push(after.logged_at.into());
        values.push(after.id.into());
        let (t, id) = (values.len() - 1, values.len());
        sql.push_str(&format!(" AND (logged_at, id) {cmp} (${t}, ${id})"));
    }
    sql.push_str(&format!(
        " ORDER BY logged_at {dir}, id {dir} LIMIT {}",
        limit + 1
    ));
    let rows = Row::find_by_statement(stmt(&sql, values)).all(tx).await?;
    Ok(rows.into_iter().map(Row::into_entry).collect())
}

pub(super) async fn delete_run(tx: &RequestTx, tenant: Uuid, run: Uuid) -> Result<u64> {
    let done = tx
        .execute(stmt(
            "DELETE FROM execution_logs WHERE tenant_id = $1 AND run_id = $2",
            [tenant.into(), run.into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn purge_batch(pool: &DatabaseConnection, batch: u32) -> Result<u32> {
    let row = pool
        .query_one(stmt(
            "SELECT app.purge_expired_execution_logs($1) AS n",
            [i32::try_from(batch).unwrap_or(i32::MAX).into()],
        ))
        .await?;
    let deleted: i32 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
    Ok(u32::try_from(deleted).unwrap_or(0))
}
