//! The agent activity feed: what an agent did or said (MESSAGE, TASK, ALERT), with a
//! summary and details. Runs write it through [`record`]; runners and members through
//! [`record_activity`] (`recordAgentActivity`). Every entry is announced on
//! [`ACTIVITY_CHANNEL`] when its transaction commits, for the `agentActivity`
//! subscription of every server process; the announcement carries ids only.

use sea_orm::{ConnectionTrait, FromQueryResult};
use serde_json::{json, Value as Json};
use trellis_entity::{agent_activity, ActivityType, IdKind, Role};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::scope::{stmt, Principal, RequestScope};
use crate::{Error, Result};

/// The channel new activities are announced on.
pub const ACTIVITY_CHANNEL: &str = "trellis_agent_activity";

/// The most bytes an activity's details take, serialized.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;

/// An activity to record.
#[derive(Clone, Debug)]
pub struct NewActivity {
    pub agent_id: Uuid,
    pub activity_type: ActivityType,
    pub summary: String,
    pub details: Json,
    /// The run it happened in, when a run records it.
    pub run_id: Option<Uuid>,
}

/// Who recorded an activity: a person, an API key, or neither (a run of the engine).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordedBy {
    pub user_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
}

fn check(new: &NewActivity) -> Result<String> {
    let summary = new.summary.trim();
    if summary.is_empty() || summary.chars().count() > 1000 {
        return Err(Error::bad_input(
            "summary",
            "summary must be 1 to 1000 characters",
        ));
    }
    if !new.details.is_object() {
        return Err(Error::bad_input("details", "details must be a JSON object"));
    }
    if new.details.to_string().len() > MAX_DETAILS_BYTES {
        return Err(Error::bad_input("details", "details are at most 64 KiB"));
    }
    Ok(summary.to_owned())
}

async fn insert(
    tx: &impl ConnectionTrait,
    tenant_id: Uuid,
    new: NewActivity,
    by: RecordedBy,
) -> Result<agent_activity::Model> {
    let summary = check(&new)?;
    agent_activity::Model::find_by_statement(stmt(
        "INSERT INTO agent_activities \
           (id, tenant_id, agent_id, type, summary, details, run_id, recorded_by, recorded_by_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        [
            Uuid::now_v7().into(),
            tenant_id.into(),
            new.agent_id.into(),
            new.activity_type.into(),
            summary.into(),
            new.details.into(),
            new.run_id.into(),
            by.user_id.into(),
            by.key_id.into(),
        ],
    ))
    .one(tx)
    .await?
    .ok_or_else(|| Error::Internal(anyhow::anyhow!("an activity insert returned no row")))
}

/// The announcement of a new activity: ids only.
fn announcement(row: &agent_activity::Model) -> String {
    json!({ "tenantId": row.tenant_id, "agentId": row.agent_id, "activityId": row.id }).to_string()
}

/// Records an activity of an agent of `tenant_id` in the transaction `tx` (which must
/// be that tenant's, under RLS) and announces it for the commit. The caller has checked
/// who may write it; an agent or run of another tenant fails the composite foreign
/// keys.
pub async fn record(
    tx: &impl ConnectionTrait,
    tenant_id: Uuid,
    new: NewActivity,
    by: RecordedBy,
) -> Result<agent_activity::Model> {
    let row = insert(tx, tenant_id, new, by).await?;
    tx.execute(stmt(
        "SELECT pg_notify($1, $2)",
        [ACTIVITY_CHANNEL.into(), announcement(&row).into()],
    ))
    .await?;
    Ok(row)
}

/// `recordAgentActivity`: an API key with the runner scope, or a member who may run
/// things (operators and above), records an activity of a live agent of the tenant
/// (NOT_FOUND for another tenant's). Audited.
pub async fn record_activity(
    scope: &RequestScope,
    agent_id: Uuid,
    activity_type: ActivityType,
    summary: String,
    details: Json,
) -> Result<agent_activity::Model> {
    let ctx = match scope.principal() {
        Principal::ApiKey { .. } => scope.require_runner().await?,
        _ => scope.require(Role::Operator).await?,
    };
    find_agent(scope, agent_id, false).await?;
    let by = RecordedBy {
        user_id: scope.user_id().ok(),
        key_id: scope.api_key_id(),
    };
    let row = insert(
        scope.tx().await?,
        ctx.tenant_id,
        NewActivity {
            agent_id,
            activity_type,
            summary,
            details,
            run_id: None,
        },
        by,
    )
    .await?;
    // Sent with the audit row, when the request commits.
    scope.announce(ACTIVITY_CHANNEL, announcement(&row));
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.activity.record")
            .target(IdKind::AgentActivity, row.id)
            .details(json!({ "agentId": agent_id, "type": activity_type })),
    )
    .await?;
    Ok(row)
}
