//! Agent versions. A version is a draft until it is activated; from then on it never
//! changes (the database refuses, trigger `agent_versions_immutable`). Activating a
//! version archives the one active before it and points the agent at it; an archived
//! version can be activated again (a rollback). A version's flow is a workflow version
//! of the same tenant, built and checked with the workflow editor; it must be
//! published before the agent version that names it is activated, so an active
//! version's flow cannot change either.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{agent, agent_version, AgentVersionStatus, IdKind, Role};
use uuid::Uuid;

use super::agent::find_agent;
use super::spec::check_spec;
use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// A version's editable fields. `None` leaves a field as it is (or empty, or as the
/// version it is copied from, on create); `flow_version_id: Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct VersionFields {
    pub spec_markdown: Option<String>,
    pub spec: Option<Json>,
    pub flow_version_id: Option<Option<Uuid>>,
}

/// Whether an agent version may move from `from` to `to`.
pub fn can_move(from: AgentVersionStatus, to: AgentVersionStatus) -> bool {
    use AgentVersionStatus::{Active, Archived, Draft};
    matches!(
        (from, to),
        (Draft, Active) | (Draft, Archived) | (Active, Archived) | (Archived, Active)
    )
}

/// The workflow version a flow names: the tenant's own, of a workflow that is not
/// deleted; another tenant's is refused exactly like one that does not exist. Returns
/// whether it is published (or archived after publishing), i.e. immutable.
async fn flow_is_published(scope: &RequestScope, flow: Uuid) -> Result<bool> {
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT v.status FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id \
             WHERE v.id = $1 AND w.deleted_at IS NULL",
            [flow.into()],
        ))
        .await?
        .ok_or_else(|| Error::bad_input("flowVersionId", "no such workflow version"))?;
    let status: String = row.try_get("", "status")?;
    Ok(status != "draft")
}

/// Applies `fields` to `row`, checking each given field.
async fn apply(
    scope: &RequestScope,
    row: &mut agent_version::ActiveModel,
    fields: VersionFields,
) -> Result<()> {
    if let Some(markdown) = fields.spec_markdown {
        if markdown.len() > 200_000 {
            return Err(Error::bad_input(
                "specMarkdown",
                "specMarkdown is at most 200000 bytes",
            ));
        }
        if markdown.contains('\0') {
            return Err(Error::bad_input(
                "specMarkdown",
                "must not contain NUL characters",
            ));
        }
        row.spec_markdown = Set(markdown);
    }
    if let Some(spec) = fields.spec {
        check_spec("spec", &spec)?;
        row.spec = Set(spec);
    }
    if let Some(flow) = fields.flow_version_id {
        if let Some(flow) = flow {
            flow_is_published(scope, flow).await?;
        }
        row.flow_version_id = Set(flow);
    }
    Ok(())
}

/// Adds a draft version numbered after the newest (builders): a copy of `from` (spec
/// and flow) with `fields` applied, or from `fields` alone.
pub async fn create_version(
    scope: &RequestScope,
    agent_id: Uuid,
    from: Option<Uuid>,
    fields: VersionFields,
) -> Result<agent_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    // The agent's lock orders concurrent drafts: each gets the next number.
    let agent = find_agent(scope, agent_id, true).await?;
    let tx = scope.tx().await?;
    let newest = agent_version::Entity::find()
        .filter(agent_version::Column::AgentId.eq(agent_id))
        .order_by_desc(agent_version::Column::Number)
        .one(tx)
        .await?
        .map_or(0, |v| v.number);
    let base = match from {
        Some(from) => Some(
            agent_version::Entity::find_by_id(from)
                .filter(agent_version::Column::AgentId.eq(agent_id))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    Error::bad_input("fromVersionId", "no such version of this agent")
                })?,
        ),
        None => None,
    };
    let mut row = agent_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(agent.id),
        number: Set(newest + 1),
        spec_markdown: Set(base
            .as_ref()
            .map(|b| b.spec_markdown.clone())
            .unwrap_or_default()),
        spec: Set(base.as_ref().map_or_else(|| json!({}), |b| b.spec.clone())),
        flow_version_id: Set(base.as_ref().and_then(|b| b.flow_version_id)),
        status: Set(AgentVersionStatus::Draft),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    };
    apply(scope, &mut row, fields).await?;
    let row = row.insert(tx).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.version.create")
            .target(IdKind::AgentVersion, row.id)
            .details(json!({
                "agent": agent.slug,
                "number": row.number,
                "from": base.map(|b| b.number),
            })),
    )
    .await?;
    Ok(row)
}

/// A version and its agent (not deleted), both locked for the rest of the request: the
/// agent first, as everywhere, so moves of one agent queue in one order.
async fn lock_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(agent::Model, agent_version::Model)> {
    let tx = scope.tx().await?;
    let agent_id = agent_version::Entity::find_by_id(id)
        .select_only()
        .column(agent_version::Column::AgentId)
        .into_tuple::<Uuid>()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let agent = find_agent(scope, agent_id, true).await?;
    let version = agent_version::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    Ok((agent, version))
}

/// Changes a draft (builders); any other version is CONFLICT.
pub async fn update_version(
    scope: &RequestScope,
    id: Uuid,
    fields: VersionFields,
) -> Result<agent_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (agent, version) = lock_version(scope, id).await?;
    if version.status != AgentVersionStatus::Draft {
        return Err(Error::conflict(
            Some("id"),
            format!(
                "version {} is {} and cannot change; create a draft from it",
                version.number,
                status_name(version.status)
            ),
        ));
    }
    let mut row: agent_version::ActiveModel = version.clone().into();
    apply(scope, &mut row, fields).await?;
    if !row.is_changed() {
        return Ok(version);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.version.update")
            .target(IdKind::AgentVersion, id)
            .details(json!({ "agent": agent.slug, "number": row.number })),
    )
    .await?;
    Ok(row)
}

fn status_name(status: AgentVersionStatus) -> &'static str {
    match status {
        AgentVersionStatus::Draft => "a draft",
        AgentVersionStatus::Active => "active",
        AgentVersionStatus::Archived => "archived",
    }
}

fn refuse_move(version: &agent_version::Model, to: AgentVersionStatus) -> Result<()> {
    if can_move(version.status, to) {
        return Ok(());
    }
    Err(Error::conflict(
        Some("id"),
        format!(
            "version {} is {} and cannot become {}",
            version.number,
            status_name(version.status),
            status_name(to)
        ),
    ))
}

/// Makes a version the one its agent runs (builders): a draft or archived version
/// becomes ACTIVE, the version active before it ARCHIVED. Its spec is checked again and
/// its flow must be a published workflow version (CONFLICT otherwise). Activating the
/// active version changes nothing.
pub async fn activate_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(agent::Model, agent_version::Model)> {
    let ctx = scope.require(Role::Builder).await?;
    let (agent, version) = lock_version(scope, id).await?;
    if version.status == AgentVersionStatus::Active {
        return Ok((agent, version));
    }
    refuse_move(&version, AgentVersionStatus::Active)?;
    check_spec("spec", &version.spec)?;
    if let Some(flow) = version.flow_version_id {
        if !flow_is_published(scope, flow).await? {
            return Err(Error::conflict(
                Some("flowVersionId"),
                "the flow is a draft workflow version: publish it before activating",
            ));
        }
    }
    let tx = scope.tx().await?;
    let now = Utc::now();
    let previous = agent_version::Entity::find()
        .filter(agent_version::Column::AgentId.eq(agent.id))
        .filter(agent_version::Column::Status.eq(AgentVersionStatus::Active))
        .one(tx)
        .await?;
    if let Some(previous) = &previous {
        agent_version::ActiveModel {
            id: Set(previous.id),
            status: Set(AgentVersionStatus::Archived),
            archived_at: Set(Some(now)),
            ..Default::default()
        }
        .update(tx)
        .await?;
    }
    let version = agent_version::ActiveModel {
        id: Set(id),
        status: Set(AgentVersionStatus::Active),
        activated_at: Set(Some(now)),
        archived_at: Set(None),
        ..Default::default()
    }
    .update(tx)
    .await?;
    let agent = agent::ActiveModel {
        id: Set(agent.id),
        active_version_id: Set(Some(id)),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.version.activate")
            .target(IdKind::AgentVersion, id)
            .details(json!({
                "agent": agent.slug,
                "number": version.number,
                "previous": previous.map(|p| p.number),
            })),
    )
    .await?;
    Ok((agent, version))
}

/// Archives a version (builders): a draft is set aside for good, the active version
/// stops being the agent's (which then runs none). Archiving an archived version
/// changes nothing.
pub async fn archive_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(agent::Model, agent_version::Model)> {
    let ctx = scope.require(Role::Builder).await?;
    let (mut agent, version) = lock_version(scope, id).await?;
    if version.status == AgentVersionStatus::Archived {
        return Ok((agent, version));
    }
    refuse_move(&version, AgentVersionStatus::Archived)?;
    let tx = scope.tx().await?;
    let was_active = version.status == AgentVersionStatus::Active;
    let version = agent_version::ActiveModel {
        id: Set(id),
        status: Set(AgentVersionStatus::Archived),
        archived_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(tx)
    .await?;
    if agent.active_version_id == Some(id) {
        agent = agent::ActiveModel {
            id: Set(agent.id),
            active_version_id: Set(None),
            ..Default::default()
        }
        .update(tx)
        .await?;
    }
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.version.archive")
            .target(IdKind::AgentVersion, id)
            .details(json!({
                "agent": agent.slug,
                "number": version.number,
                "wasActive": was_active,
            })),
    )
    .await?;
    Ok((agent, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn life_cycle_moves() {
        use AgentVersionStatus::{Active, Archived, Draft};
        assert!(can_move(Draft, Active));
        assert!(can_move(Draft, Archived));
        assert!(can_move(Active, Archived));
        assert!(can_move(Archived, Active));
        assert!(!can_move(Active, Draft));
        assert!(!can_move(Archived, Draft));
    }
}
