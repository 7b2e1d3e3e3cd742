//! Agents themselves: create, change, delete (soft) and restore. The slug is free while
//! an agent is deleted; restoring takes it back (CONFLICT when another took it).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{
    agent, AgentRole, AgentStatus, IdKind, ModelTier, Role, Severity, ThinkingMode,
};
use uuid::Uuid;

use super::check_slug;
use super::spec::{check_tool_policy, default_tool_policy, Budget};
use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::scope::{stmt, RequestScope};
use crate::soft_delete;
use crate::{Error, Result};

/// An agent's editable fields; `None` leaves a field as it is (or at its default, on
/// create). `assisted_user_id: Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct AgentFields {
    pub slug: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub role: Option<AgentRole>,
    pub status: Option<AgentStatus>,
    pub model_tier: Option<ModelTier>,
    pub thinking_mode: Option<ThinkingMode>,
    pub tool_policy: Option<Json>,
    pub budget: Option<Budget>,
    pub assisted_user_id: Option<Option<Uuid>>,
}

fn check_description(description: &str) -> Result<String> {
    let description = description.trim();
    if description.chars().count() > 4000 {
        return Err(Error::bad_input(
            "description",
            "description is at most 4000 characters",
        ));
    }
    Ok(description.to_owned())
}

/// The assisted user must be a member of the active tenant; another tenant's user is
/// refused exactly like one that does not exist.
async fn check_assisted_user(scope: &RequestScope, user: Option<Uuid>) -> Result<Option<Uuid>> {
    let Some(user) = user else { return Ok(None) };
    let found = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT 1 AS one FROM memberships WHERE user_id = $1",
            [user.into()],
        ))
        .await?;
    match found {
        Some(_) => Ok(Some(user)),
        None => Err(Error::bad_input(
            "assistedUserId",
            "no member of this tenant has this ID",
        )),
    }
}

/// Applies the given fields to `row`, checking each.
async fn apply(
    scope: &RequestScope,
    row: &mut agent::ActiveModel,
    fields: AgentFields,
) -> Result<()> {
    if let Some(slug) = fields.slug {
        row.slug = Set(check_slug(&slug)?);
    }
    if let Some(name) = fields.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(description) = fields.description {
        row.description = Set(check_description(&description)?);
    }
    if let Some(role) = fields.role {
        row.role = Set(role);
    }
    if let Some(status) = fields.status {
        row.status = Set(status);
    }
    if let Some(tier) = fields.model_tier {
        row.model_tier = Set(tier);
    }
    if let Some(mode) = fields.thinking_mode {
        row.thinking_mode = Set(mode);
    }
    if let Some(policy) = fields.tool_policy {
        row.tool_policy = Set(check_tool_policy(policy)?);
    }
    if let Some(budget) = fields.budget {
        row.budget = Set(budget.to_json()?);
    }
    if let Some(user) = fields.assisted_user_id {
        row.assisted_user_id = Set(check_assisted_user(scope, user).await?);
    }
    Ok(())
}

/// The field a refused agent names: the plan's limit that refused it.
pub(crate) const AGENT_LIMIT_FIELD: &str = "plan.limits.agents";

/// Creates an agent (builders): IDLE, with no version yet. Slug and name are required.
/// The tenant's plan limits how many live agents it has (LIMIT_REACHED); its
/// `modelDefaults` setting gives the tier and thinking mode when they are not given.
pub async fn create_agent(scope: &RequestScope, fields: AgentFields) -> Result<agent::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let settings = crate::plans::check_agent_limit(scope, ctx.tenant_id, AGENT_LIMIT_FIELD).await?;
    let (tier, thinking) = super::settings::model_defaults(&settings);
    let mut row = agent::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        slug: Set(check_slug(fields.slug.as_deref().unwrap_or_default())?),
        name: Set(required_text(
            fields.name.as_deref().unwrap_or_default(),
            "name",
            200,
        )?),
        description: Set(String::new()),
        role: Set(AgentRole::Custom),
        status: Set(AgentStatus::Idle),
        model_tier: Set(tier.unwrap_or(ModelTier::Sonnet)),
        thinking_mode: Set(thinking.unwrap_or(ThinkingMode::Off)),
        tool_policy: Set(default_tool_policy()),
        budget: Set(json!({})),
        assisted_user_id: Set(None),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    };
    apply(
        scope,
        &mut row,
        AgentFields {
            slug: None,
            name: None,
            ..fields
        },
    )
    .await?;
    let row = row.insert(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.create")
            .target(IdKind::Agent, row.id)
            .details(json!({ "slug": row.slug })),
    )
    .await?;
    Ok(row)
}

/// An agent that is not deleted, locked for the rest of the request when `lock`.
pub(crate) async fn find_agent(scope: &RequestScope, id: Uuid, lock: bool) -> Result<agent::Model> {
    let mut select = agent::Entity::find_by_id(id).filter(agent::Column::DeletedAt.is_null());
    if lock {
        select = select.lock_exclusive();
    }
    select.one(scope.tx().await?).await?.ok_or(Error::NotFound)
}

/// Changes an agent (builders); unchanged fields cost nothing and are not audited.
pub async fn update_agent(
    scope: &RequestScope,
    id: Uuid,
    fields: AgentFields,
) -> Result<agent::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_agent(scope, id, true).await?;
    let mut row: agent::ActiveModel = current.clone().into();
    apply(scope, &mut row, fields).await?;
    if !row.is_changed() {
        return Ok(current);
    }
    let changed: Vec<&str> = [
        ("slug", row.slug.is_set()),
        ("name", row.name.is_set()),
        ("description", row.description.is_set()),
        ("role", row.role.is_set()),
        ("status", row.status.is_set()),
        ("modelTier", row.model_tier.is_set()),
        ("thinkingMode", row.thinking_mode.is_set()),
        ("toolPolicy", row.tool_policy.is_set()),
        ("budget", row.budget.is_set()),
        ("assistedUserId", row.assisted_user_id.is_set()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.update")
            .target(IdKind::Agent, id)
            .details(json!({ "slug": row.slug, "changed": changed })),
    )
    .await?;
    Ok(row)
}

/// Deletes an agent (builders, soft): it leaves every list and its slug is free;
/// [`restore_agent`] brings it back with its versions and labels.
pub async fn delete_agent(scope: &RequestScope, id: Uuid) -> Result<agent::Model> {
    let ctx = scope.require(Role::Builder).await?;
    find_agent(scope, id, true).await?;
    let row = agent::ActiveModel {
        id: Set(id),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.delete")
            .target(IdKind::Agent, id)
            .severity(Severity::Warning)
            .details(json!({ "slug": row.slug })),
    )
    .await?;
    Ok(row)
}

/// Restores a deleted agent (builders); CONFLICT when another took its slug meanwhile.
pub async fn restore_agent(scope: &RequestScope, id: Uuid) -> Result<agent::Model> {
    let ctx = scope.require(Role::Builder).await?;
    crate::plans::check_agent_limit(scope, ctx.tenant_id, AGENT_LIMIT_FIELD).await?;
    let deleted = agent::Column::DeletedAt;
    let current = soft_delete::find_deleted(scope, id, deleted).await?;
    let row = soft_delete::undelete(scope, current, deleted).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.restore")
            .target(IdKind::Agent, id)
            .details(json!({ "slug": row.slug })),
    )
    .await?;
    Ok(row)
}

/// A live agent of the caller's tenant by id (for a payload that shows it).
pub async fn find_agent_row(scope: &RequestScope, id: Uuid) -> Result<agent::Model> {
    scope.require(Role::Viewer).await?;
    find_agent(scope, id, false).await
}
