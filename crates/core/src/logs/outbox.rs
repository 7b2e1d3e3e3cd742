//! The outbox: entries kept in PostgreSQL (`log_outbox`) while MongoDB cannot be
//! reached, and their replay.
//!
//! Bounded per tenant: when a tenant already has `cap` entries waiting, a write is
//! refused with RATE_LIMITED (the caller retries later) rather than dropping older
//! entries: nothing accepted is ever lost. The count is checked before the insert, so
//! concurrent writers may overshoot the bound by at most one batch each.
//!
//! Replay runs on the application pool, one transaction per tenant with
//! `app.tenant_id` set: RLS admits only that tenant's rows. Which tenants have
//! entries comes from `app.log_outbox_tenants()`, a SECURITY DEFINER function that
//! returns tenant ids and nothing else. A transaction-level advisory lock per tenant
//! keeps replay of one tenant to one caller at a time, so batches reach MongoDB in
//! `seq` order.

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, TransactionTrait};
use uuid::Uuid;

use super::mongo::MongoLogs;
use super::postgres::{as_recordset, Row, COLUMNS, RECORD};
use super::LogEntry;
use crate::scope::stmt;
use crate::tx::RequestTx;
use crate::{Error, Result};

/// The advisory-lock class of outbox replay (the object is the tenant's hash).
const LOCK_CLASS: i32 = 0x6c6f_6773; // "logs"
/// Tenants handled in one replay pass.
const TENANTS_PER_PASS: i32 = 1000;

/// What one replay pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries written to MongoDB and removed from the outbox.
    pub replayed: u64,
    /// Tenants whose outbox was emptied or advanced.
    pub tenants: u64,
    /// True when MongoDB failed during the pass (the rest stays for the next one).
    pub interrupted: bool,
}

pub(super) async fn push(
    tx: &RequestTx,
    tenant: Uuid,
    entries: &[LogEntry],
    cap: u64,
) -> Result<()> {
    let cap_value = i64::try_from(cap).unwrap_or(i64::MAX);
    let waiting: i64 = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM (SELECT 1 FROM log_outbox WHERE tenant_id = $1 LIMIT $2) AS waiting",
            [tenant.into(), cap_value.into()],
        ))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    if waiting >= cap_value {
        tracing::warn!(%tenant, cap, "log outbox full; refusing entries until MongoDB is back");
        return Err(Error::RateLimited {
            retry_after_seconds: 60,
        });
    }
    tx.execute(stmt(
        &format!(
            "INSERT INTO log_outbox (tenant_id, {COLUMNS}) \
             SELECT $1, {COLUMNS} FROM ROWS FROM (jsonb_to_recordset($2::jsonb) AS {RECORD}) \
             WITH ORDINALITY AS u({COLUMNS}, n) ORDER BY n"
        ),
        [tenant.into(), as_recordset(entries)],
    ))
    .await?;
    Ok(())
}

pub(super) async fn delete_run(tx: &RequestTx, tenant: Uuid, run: Uuid) -> Result<u64> {
    let done = tx
        .execute(stmt(
            "DELETE FROM log_outbox WHERE tenant_id = $1 AND run_id = $2",
            [tenant.into(), run.into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

#[derive(FromQueryResult)]
struct OutboxRow {
    seq: i64,
    #[sea_orm(nested)]
    row: Row,
}

pub(super) async fn replay(
    logs: &MongoLogs,
    pool: &DatabaseConnection,
    batch: u64,
) -> Result<ReplayReport> {
    let batch = i64::try_from(batch.clamp(1, 10_000)).unwrap_or(1000);
    let mut report = ReplayReport::default();
    let tenants: Vec<Uuid> = pool
        .query_all(stmt(
            "SELECT t AS tenant_id FROM app.log_outbox_tenants($1) AS t",
            [TENANTS_PER_PASS.into()],
        ))
        .await?
        .iter()
        .map(|row| row.try_get("", "tenant_id"))
        .collect::<Result<_, _>>()?;
    for tenant in tenants {
        match replay_tenant(logs, pool, tenant, batch).await {
            Ok(0) => {}
            Ok(n) => {
                report.replayed += n;
                report.tenants += 1;
            }
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "log outbox replay interrupted");
                report.interrupted = true;
                return Ok(report);
            }
        }
    }
    if report.replayed > 0 && !report.interrupted {
        logs.mark_up();
    }
    Ok(report)
}

/// Moves one tenant's entries, a batch per transaction, until none are left.
async fn replay_tenant(
    logs: &MongoLogs,
    pool: &DatabaseConnection,
    tenant: Uuid,
    batch: i64,
) -> Result<u64> {
    let mut moved = 0u64;
    loop {
        let tx = pool.begin().await?;
        let locked: bool = tx
            .query_one(stmt(
                "SELECT set_config('app.tenant_id', $1, true) IS NOT NULL \
                   AND pg_try_advisory_xact_lock($2, hashtext($1)) AS locked",
                [tenant.to_string().into(), LOCK_CLASS.into()],
            ))
            .await?
            .map(|row| row.try_get("", "locked"))
            .transpose()?
            .unwrap_or(false);
        if !locked {
            // Another replayer has this tenant.
            tx.rollback().await?;
            return Ok(moved);
        }
        let rows = OutboxRow::find_by_statement(stmt(
            &format!(
                "SELECT seq, {COLUMNS} FROM log_outbox WHERE tenant_id = $1 ORDER BY seq LIMIT $2"
            ),
            [tenant.into(), batch.into()],
        ))
        .all(&tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(moved);
        }
        let count = rows.len();
        // Exactly the rows read: an entry committed meanwhile with a lower seq stays.
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let entries: Vec<LogEntry> = rows.into_iter().map(|r| r.row.into_entry()).collect();
        // Written before the delete commits: a crash in between replays the batch
        // again, and MongoDB keeps the first copy (same ids).
        logs.write(tenant, &entries).await?;
        tx.execute(stmt(
            "DELETE FROM log_outbox WHERE tenant_id = $1 AND seq = ANY($2)",
            [tenant.into(), seqs.into()],
        ))
        .await?;
        tx.commit().await?;
        moved += count as u64;
        if (count as i64) < batch {
            return Ok(moved);
        }
    }
}
