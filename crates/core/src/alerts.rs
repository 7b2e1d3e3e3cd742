//! Alerts: something a tenant's people (or, for a platform alert, the platform's
//! admins) should look at. An alert is raised once per dedupe key while it is open —
//! [`raise`] inserts `ON CONFLICT DO NOTHING` on the partial unique index of open keys,
//! so any number of concurrent raisers leave exactly one — then acknowledged and
//! resolved by people; a resolved alert frees its key for a new one.
//!
//! A tenant's alerts are its members' alone (RLS). An alert without a tenant is a
//! platform alert: RLS admits it only on the audited platform-administration path.
//! Every new alert is announced on [`ALERTS_CHANNEL`] when its transaction commits,
//! for the `alertRaised` subscription of every server.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{alert, IdKind, Role, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The channel new alerts are announced on: `{"tenantId", "alertId", "agentId"}`.
pub const ALERTS_CHANNEL: &str = "trellis_alerts";

/// An alert to raise.
#[derive(Clone, Debug)]
pub struct NewAlert {
    /// `None`: a platform alert (needs the platform-administration path).
    pub tenant_id: Option<Uuid>,
    /// The agent it is about, of the same tenant.
    pub agent_id: Option<Uuid>,
    /// The alert rule that raised it, of the same tenant (source `rule`).
    pub rule_id: Option<Uuid>,
    /// How much it matters.
    pub severity: Severity,
    /// What raised it (`budget`, `rule`, …): 1 to 63 lowercase letters, digits, `_ . : -`.
    pub source: &'static str,
    /// What happened, for people (1 to 2000 characters).
    pub message: String,
    /// The figures behind it: a JSON object.
    pub details: Json,
    /// While an alert with this key is open (not resolved) in the same tenant, raising
    /// it again does nothing.
    pub dedupe_key: String,
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Raises `alert` in the scope's transaction unless one with its dedupe key is open:
/// the new alert's id, or `None` when it was a duplicate. A new alert is audited and
/// announced (on commit). Exact under concurrency: concurrent raisers of one key queue
/// on the unique index, and all but the first find it taken.
pub async fn raise(scope: &RequestScope, alert: NewAlert) -> Result<Option<Uuid>> {
    let id = Uuid::now_v7();
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "INSERT INTO alerts (id, tenant_id, agent_id, severity, source, message, details, \
               dedupe_key, rule_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, dedupe_key) WHERE resolved_at IS NULL DO NOTHING \
             RETURNING id",
            [
                id.into(),
                alert.tenant_id.into(),
                alert.agent_id.into(),
                severity_name(alert.severity).into(),
                alert.source.into(),
                alert.message.clone().into(),
                alert.details.clone().into(),
                alert.dedupe_key.clone().into(),
                alert.rule_id.into(),
            ],
        ))
        .await?;
    if row.is_none() {
        return Ok(None);
    }
    audit::record(
        scope,
        Event::new(alert.tenant_id, "alert.raise")
            .target(IdKind::Alert, id)
            .severity(alert.severity)
            .details(json!({
                "source": alert.source,
                "agentId": alert.agent_id,
                "ruleId": alert.rule_id,
                "dedupeKey": alert.dedupe_key,
            })),
    )
    .await?;
    scope.announce(
        ALERTS_CHANNEL,
        json!({ "tenantId": alert.tenant_id, "alertId": id, "agentId": alert.agent_id })
            .to_string(),
    );
    Ok(Some(id))
}

/// [`raise`] in a transaction of its own, committed before this returns: for a caller
/// whose own transaction is about to roll back (a refused run must still leave its
/// alert). It acts as the system in `tenant_id` (like the engine) on a second pooled
/// connection.
pub async fn raise_now(
    db: &crate::AppDb,
    tenant_id: Uuid,
    alert: NewAlert,
) -> Result<Option<Uuid>> {
    let scope = RequestScope::for_engine(db.clone(), tenant_id, "alerts");
    let raised = raise(&scope, alert).await;
    RequestScope::finish_shared(scope, raised.is_ok()).await?;
    raised
}

/// The alert `id` for a change by the caller, locked: one of the active tenant's
/// (operators and above), or a platform alert for a platform admin. Anything else is
/// NOT_FOUND (a lower role: FORBIDDEN), another tenant's alert exactly like one never
/// raised.
async fn find_for_change(scope: &RequestScope, id: Uuid) -> Result<alert::Model> {
    let tx = scope.tx().await?;
    let refused = match scope.require(Role::Operator).await {
        Ok(ctx) => {
            let found = alert::Entity::find_by_id(id)
                .filter(alert::Column::TenantId.eq(ctx.tenant_id))
                .lock_exclusive()
                .one(tx)
                .await?;
            if let Some(found) = found {
                return Ok(found);
            }
            Error::NotFound
        }
        Err(err) => err,
    };
    // A platform alert, for a platform admin only; nobody else learns it exists.
    if scope.user_id().is_err() || scope.require_platform_admin().await.is_err() {
        return Err(refused);
    }
    alert::Entity::find_by_id(id)
        .filter(alert::Column::TenantId.is_null())
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)
}

/// Acknowledges an alert: someone is on it (operators; platform admins for platform
/// alerts). Acknowledging it again changes nothing.
pub async fn acknowledge(scope: &RequestScope, id: Uuid) -> Result<alert::Model> {
    let current = find_for_change(scope, id).await?;
    if current.acknowledged_at.is_some() {
        return Ok(current);
    }
    let row = alert::ActiveModel {
        id: Set(id),
        acknowledged_at: Set(Some(Utc::now())),
        acknowledged_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(row.tenant_id, "alert.acknowledge")
            .target(IdKind::Alert, id)
            .details(json!({ "source": row.source, "dedupeKey": row.dedupe_key })),
    )
    .await?;
    Ok(row)
}

/// Resolves an alert (operators; platform admins for platform alerts): it is closed,
/// and acknowledged if it was not, and its dedupe key is free for a new alert.
/// Resolving it again changes nothing.
pub async fn resolve(scope: &RequestScope, id: Uuid) -> Result<alert::Model> {
    let current = find_for_change(scope, id).await?;
    if current.resolved_at.is_some() {
        return Ok(current);
    }
    let now = Utc::now();
    let user = scope.user_id().ok();
    let mut row = alert::ActiveModel {
        id: Set(id),
        resolved_at: Set(Some(now)),
        resolved_by: Set(user),
        ..Default::default()
    };
    if current.acknowledged_at.is_none() {
        row.acknowledged_at = Set(Some(now));
        row.acknowledged_by = Set(user);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(row.tenant_id, "alert.resolve")
            .target(IdKind::Alert, id)
            .details(json!({ "source": row.source, "dedupeKey": row.dedupe_key })),
    )
    .await?;
    Ok(row)
}

/// One alert of the active tenant by id, for a subscriber (viewers); `None` when it is
/// not the tenant's.
pub async fn tenant_alert(scope: &RequestScope, id: Uuid) -> Result<Option<alert::Model>> {
    let ctx = scope.require(Role::Viewer).await?;
    Ok(alert::Entity::find_by_id(id)
        .filter(alert::Column::TenantId.eq(ctx.tenant_id))
        .one(scope.tx().await?)
        .await?)
}
