//! Upkeep of processes, run by the maintenance loop: expired response-cache entries
//! are deleted and call-log payloads past the tenant's retention are cleared, in
//! batches. The tenants with work are found by `app.tenants_with_process_upkeep` (ids
//! only); each tenant's batches then run in its own transaction under RLS, as
//! [`crate::Principal::Upkeep`]: payload retention goes on while a tenant is suspended
//! or deleted, and one tenant's failure is logged and counted while the others go on.

use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::scope::{stmt, RequestScope};
use crate::{AppDb, Result};

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpkeepPass {
    pub tenants: u64,
    /// Tenants whose upkeep failed (logged; retried on the next pass).
    pub failed: u64,
    pub cache_entries_deleted: u64,
    pub payloads_cleared: u64,
}

#[derive(FromQueryResult)]
struct TenantId {
    id: Uuid,
}

/// Purges up to `batch` expired cache entries and `batch` expired call payloads of one
/// tenant, in one transaction of that tenant; returns how many of each.
pub async fn purge_tenant(db: &AppDb, tenant_id: Uuid, batch: i64) -> Result<(u64, u64)> {
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    scope.require(trellis_entity::Role::Viewer).await?;
    let tx = scope.tx().await?;
    let deleted = tx
        .execute(stmt(
            "DELETE FROM response_cache c USING ( \
               SELECT version_id, input_hash, settings_hash FROM response_cache \
               WHERE tenant_id = $1 AND expires_at < now() \
               ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
             WHERE c.tenant_id = $1 AND c.version_id = doomed.version_id \
               AND c.input_hash = doomed.input_hash AND c.settings_hash = doomed.settings_hash",
            [tenant_id.into(), batch.into()],
        ))
        .await?
        .rows_affected();
    let cleared = tx
        .execute(stmt(
            "UPDATE call_logs l SET input = NULL, output = NULL FROM ( \
               SELECT id FROM call_logs \
               WHERE tenant_id = $1 AND payload_expires_at < now() \
                 AND (input IS NOT NULL OR output IS NOT NULL) \
               ORDER BY payload_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
             WHERE l.tenant_id = $1 AND l.id = doomed.id",
            [tenant_id.into(), batch.into()],
        ))
        .await?
        .rows_affected();
    RequestScope::finish_shared(scope, true).await?;
    Ok((deleted, cleared))
}

/// One pass over every tenant with upkeep due (at most `max_tenants`), each until its
/// work is done.
pub async fn upkeep_pass(db: &AppDb, batch: i64, max_tenants: i32) -> Result<UpkeepPass> {
    let tenants = TenantId::find_by_statement(stmt(
        "SELECT t AS id FROM app.tenants_with_process_upkeep($1) AS t",
        [max_tenants.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = UpkeepPass::default();
    for TenantId { id } in tenants {
        pass.tenants += 1;
        loop {
            let (deleted, cleared) = match purge_tenant(db, id, batch).await {
                Ok(purged) => purged,
                Err(err) => {
                    pass.failed += 1;
                    tracing::warn!(tenant = %id, error = ?err, "process upkeep failed");
                    break;
                }
            };
            pass.cache_entries_deleted += deleted;
            pass.payloads_cleared += cleared;
            if deleted < batch as u64 && cleared < batch as u64 {
                break;
            }
        }
    }
    Ok(pass)
}
