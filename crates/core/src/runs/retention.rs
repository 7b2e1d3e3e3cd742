//! Retention of run data. Payloads (run input, output and trigger payload, step inputs
//! and outputs) live for the tenant's payload retention (`settings.payloadRetentionDays`,
//! 30 days by default); run metadata (status, timings, errors) for its metadata
//! retention (`settings.runRetentionDays`, 400 days). Jobs work in batches with
//! `SKIP LOCKED`, never touch unfinished runs, and run on the owner connection because
//! they cross tenants.

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::scope::stmt;
use crate::Result;

/// Default days a finished run keeps its payloads.
pub const DEFAULT_PAYLOAD_DAYS: i32 = 30;
/// Default days a finished run is kept at all.
pub const DEFAULT_RUN_DAYS: i32 = 400;

/// What one pass of the retention job did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPass {
    pub payloads_cleared: u64,
    pub runs_deleted: u64,
}

/// The days a tenant's `settings.<key>` asks for, read defensively in SQL: only a whole
/// number from 1 to 3650 counts, anything else is `default` (an SQL expression). Settings are
/// checked when saved too, but one tenant's bad row (written before that check, or by
/// hand) must neither stall the job for every tenant nor, negative, wipe its runs.
pub(crate) fn days_setting(key: &str, default: &str) -> String {
    format!(
        "coalesce(CASE WHEN jsonb_typeof(t.settings->'{key}') = 'number' \
           AND t.settings->>'{key}' ~ '^[0-9]{{1,4}}$' \
           AND (t.settings->>'{key}')::int BETWEEN 1 AND 3650 \
           THEN (t.settings->>'{key}')::int END, {default})"
    )
}

/// Clears the payloads of up to `batch` finished runs past their tenant's payload
/// retention, then deletes up to `batch` finished runs past the metadata retention.
/// Call until it returns zeros.
pub async fn retention_pass(owner: &DatabaseConnection, batch: i64) -> Result<RetentionPass> {
    let cleared = owner
        .execute(stmt(
            &format!(
                "WITH doomed AS ( \
               SELECT r.id FROM workflow_runs r JOIN tenants t ON t.id = r.tenant_id \
               WHERE r.finished_at IS NOT NULL AND r.payloads_purged_at IS NULL \
                 AND r.finished_at < now() - make_interval(days => \
                       {}) \
               ORDER BY r.finished_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED), \
             steps AS ( \
               UPDATE step_runs s SET input = NULL, output = NULL \
               FROM doomed WHERE s.run_id = doomed.id RETURNING s.id) \
             UPDATE workflow_runs r SET input = NULL, output = NULL, trigger_payload = NULL, \
               payloads_purged_at = now() \
             FROM doomed WHERE r.id = doomed.id",
                days_setting("payloadRetentionDays", "$2")
            ),
            [batch.into(), DEFAULT_PAYLOAD_DAYS.into()],
        ))
        .await?
        .rows_affected();
    let deleted = owner
        .execute(stmt(
            &format!(
                "WITH doomed AS ( \
               SELECT r.id FROM workflow_runs r JOIN tenants t ON t.id = r.tenant_id \
               WHERE r.finished_at IS NOT NULL \
                 AND r.finished_at < now() - make_interval(days => \
                       {}) \
               ORDER BY r.finished_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED) \
             DELETE FROM workflow_runs r USING doomed WHERE r.id = doomed.id",
                days_setting("runRetentionDays", "$2")
            ),
            [batch.into(), DEFAULT_RUN_DAYS.into()],
        ))
        .await?
        .rows_affected();
    Ok(RetentionPass {
        payloads_cleared: cleared,
        runs_deleted: deleted,
    })
}
