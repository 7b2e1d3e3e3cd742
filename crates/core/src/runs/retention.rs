//! Retention of run data. Payloads (run input, output and trigger payload, step inputs
//! and outputs) live for the tenant's payload retention (`settings.payloadRetentionDays`,
//! 30 days by default); run metadata (status, timings, errors) for its metadata
//! retention (`settings.runRetentionDays`, 400 days). The maintenance loop applies both
//! in batches, in each tenant's own transaction under RLS ([`crate::upkeep`]), with
//! `SKIP LOCKED`, and never touches unfinished runs.

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::scope::stmt;
use crate::tx::RequestTx;
use crate::Result;

/// Default days a finished run keeps its payloads.
pub const DEFAULT_PAYLOAD_DAYS: i32 = 30;
/// Default days a finished run is kept at all.
pub const DEFAULT_RUN_DAYS: i32 = 400;

/// The days a tenant's `settings.<key>` asks for (`settings` being an SQL expression
/// of the tenant's settings: `t.settings` for the tenant row `t`), read defensively
/// by `app.setting_days` (migration 000025): only a whole number from 1 to 3650
/// counts, anything else is `default` (an SQL expression). Settings are checked
/// when saved too, but one tenant's bad row (written before that check, or by hand)
/// must neither stall the job for every tenant nor, negative, wipe its runs.
pub(crate) fn days_setting(settings: &str, key: &str, default: &str) -> String {
    format!("app.setting_days({settings}, '{key}', {default})")
}

/// Clears the payloads of up to `batch` of the tenant's finished runs past its payload
/// retention; returns how many runs.
pub(crate) async fn clear_payloads(tx: &RequestTx, tenant_id: Uuid, batch: i64) -> Result<u64> {
    Ok(tx
        .execute(stmt(
            &format!(
                "WITH doomed AS ( \
                   SELECT r.id FROM workflow_runs r JOIN tenants t ON t.id = r.tenant_id \
                   WHERE r.tenant_id = $1 AND r.finished_at IS NOT NULL \
                     AND r.payloads_purged_at IS NULL \
                     AND r.finished_at < now() - make_interval(days => {}) \
                   ORDER BY r.finished_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED), \
                 steps AS ( \
                   UPDATE step_runs s SET input = NULL, output = NULL \
                   FROM doomed WHERE s.tenant_id = $1 AND s.run_id = doomed.id RETURNING s.id) \
                 UPDATE workflow_runs r SET input = NULL, output = NULL, trigger_payload = NULL, \
                   payloads_purged_at = now() \
                 FROM doomed WHERE r.tenant_id = $1 AND r.id = doomed.id",
                days_setting("t.settings", "payloadRetentionDays", "$3")
            ),
            [tenant_id.into(), batch.into(), DEFAULT_PAYLOAD_DAYS.into()],
        ))
        .await?
        .rows_affected())
}

/// Deletes up to `batch` of the tenant's finished runs past its run retention (their
/// step runs go with them); returns how many.
pub(crate) async fn delete_runs(tx: &RequestTx, tenant_id: Uuid, batch: i64) -> Result<u64> {
    Ok(tx
        .execute(stmt(
            &format!(
                "WITH doomed AS ( \
                   SELECT r.id FROM workflow_runs r JOIN tenants t ON t.id = r.tenant_id \
                   WHERE r.tenant_id = $1 AND r.finished_at IS NOT NULL \
                     AND r.finished_at < now() - make_interval(days => {}) \
                   ORDER BY r.finished_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED) \
                 DELETE FROM workflow_runs r USING doomed \
                 WHERE r.tenant_id = $1 AND r.id = doomed.id",
                days_setting("t.settings", "runRetentionDays", "$3")
            ),
            [tenant_id.into(), batch.into(), DEFAULT_RUN_DAYS.into()],
        ))
        .await?
        .rows_affected())
}
