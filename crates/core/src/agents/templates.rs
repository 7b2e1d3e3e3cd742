//! Agent templates. A template is a snapshot of one agent version — spec, tool policy,
//! model settings and the agent's skill installations — kept in the template's own
//! row, so it stays usable whatever later happens to its source, and a public
//! template never points into the tenant that published it. A tenant's builders make
//! private templates from their own versions; a platform admin publishes a copy of one
//! into the public catalog. Instantiating copies a template into the caller's tenant
//! as a new agent with a draft version 1, in the request's one transaction.
//!
//! The flow is copied as a graph, not as a reference: the template keeps the source
//! flow's steps and transitions by key (without connections, which are the source
//! tenant's), and instantiating builds a new workflow in the caller's tenant, saves the
//! graph into its version 1 and publishes it with the workflow rules (so a graph the
//! caller's tenant cannot run — an action it cannot see, a step that needs a
//! connection — fails the whole instantiation, naming the step).

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{
    agent, agent_template, agent_version, skill, skill_installation, AgentStatus,
    AgentVersionStatus, IdKind, Role, StepType, TemplateCategory,
};
use uuid::Uuid;

use super::check_slug;
use super::skills::install_checked;
use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::scope::{stmt, RequestScope};
use crate::workflows::graph::{StepSpec, TransitionSpec};
use crate::workflows::workflow::{self as wf, NewWorkflow};
use crate::{Error, Result};

/// A new private template.
#[derive(Clone, Debug)]
pub struct NewTemplate {
    /// The agent version it snapshots (the active tenant's).
    pub version_id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub category: TemplateCategory,
    pub author: Option<String>,
}

fn check_text(field: &str, value: Option<String>, max: usize) -> Result<String> {
    let value = value.unwrap_or_default().trim().to_owned();
    if value.chars().count() > max {
        return Err(Error::bad_input(
            field,
            format!("{field} is at most {max} characters"),
        ));
    }
    Ok(value)
}

/// The installations of `agent_id` as a template keeps them: by skill key (a key means
/// the same skill in every tenant only for public skills), with version and config.
async fn snapshot_skills(scope: &RequestScope, agent_id: Uuid) -> Result<Json> {
    let tx = scope.tx().await?;
    let installs = skill_installation::Entity::find()
        .filter(skill_installation::Column::AgentId.eq(agent_id))
        .all(tx)
        .await?;
    let ids: Vec<Uuid> = installs.iter().map(|i| i.skill_id).collect();
    let skills = skill::Entity::find()
        .filter(skill::Column::Id.is_in(ids))
        .all(tx)
        .await?;
    let mut out = Vec::with_capacity(installs.len());
    for install in installs {
        if let Some(s) = skills.iter().find(|s| s.id == install.skill_id) {
            out.push(json!({
                "skillKey": s.key,
                "public": s.tenant_id.is_none(),
                "version": install.skill_version,
                "config": install.config,
            }));
        }
    }
    Ok(Json::Array(out))
}

/// The graph of workflow version `id` (the active tenant's), by step key, as a
/// template keeps it; connections are left out (they are the source tenant's).
async fn snapshot_flow(scope: &RequestScope, id: Uuid) -> Result<Json> {
    let (steps, transitions) = wf::load_graph(scope.tx().await?, id).await?;
    let steps: Vec<Json> = steps
        .into_iter()
        .map(|s| {
            json!({
                "key": s.key,
                "name": s.name,
                "type": s.step_type,
                "position": s.position,
                "config": s.config,
                "actionId": s.action_id,
                "isRequired": s.is_required,
                "description": s.description,
            })
        })
        .collect();
    let transitions: Vec<Json> = transitions
        .into_iter()
        .map(|t| {
            json!({
                "key": t.key(),
                "from": t.from,
                "to": t.to,
                "condition": t.condition,
                "isDefault": t.is_default,
            })
        })
        .collect();
    Ok(json!({ "steps": steps, "transitions": transitions }))
}

/// A template's flow snapshot back as editor input.
fn flow_specs(flow: &Json) -> Result<(Vec<StepSpec>, Vec<TransitionSpec>)> {
    let broken = || crate::anyhow::anyhow!("a template's flow snapshot is malformed");
    let mut steps = vec![];
    for s in flow["steps"].as_array().ok_or_else(broken)? {
        let step_type: StepType =
            serde_json::from_value(s["type"].clone()).map_err(|_| broken())?;
        steps.push(StepSpec {
            key: s["key"].as_str().ok_or_else(broken)?.to_owned(),
            name: s["name"].as_str().ok_or_else(broken)?.to_owned(),
            step_type,
            position: s["position"].clone(),
            config: s["config"].clone(),
            action_id: s["actionId"]
                .as_str()
                .map(|id| Uuid::parse_str(id).map_err(|_| broken()))
                .transpose()?,
            connection_id: None,
            is_required: s["isRequired"].as_bool().unwrap_or(true),
            // Snapshots list steps in their order; older ones have no description.
            description: s["description"].as_str().unwrap_or_default().to_owned(),
            order: None,
        });
    }
    let mut transitions = vec![];
    for t in flow["transitions"].as_array().ok_or_else(broken)? {
        transitions.push(TransitionSpec {
            key: t["key"].as_str().map(str::to_owned),
            from: t["from"].as_str().ok_or_else(broken)?.to_owned(),
            to: t["to"].as_str().ok_or_else(broken)?.to_owned(),
            condition: t.get("condition").filter(|c| !c.is_null()).cloned(),
            is_default: t["isDefault"].as_bool().unwrap_or(false),
        });
    }
    Ok((steps, transitions))
}

/// A workflow key of the active tenant that no live workflow has: `<slug>-flow`, then
/// `<slug>-flow-2`, … .
async fn free_workflow_key(scope: &RequestScope, slug: &str) -> Result<String> {
    let base: String = format!("{}-flow", &slug[..slug.len().min(50)]);
    let row = scope
        .tx()
        .await?
        .query_all(stmt(
            "SELECT key FROM workflows WHERE key LIKE $1 AND deleted_at IS NULL",
            [format!("{base}%").into()],
        ))
        .await?;
    let taken: Vec<String> = row
        .iter()
        .map(|r| r.try_get::<String>("", "key"))
        .collect::<std::result::Result<_, _>>()?;
    let mut key = base.clone();
    let mut n = 2;
    while taken.contains(&key) {
        key = format!("{base}-{n}");
        n += 1;
    }
    Ok(key)
}

/// Builds the template's flow in the active tenant: a new workflow whose version 1
/// holds the graph, published. Its version's ID.
async fn copy_flow(scope: &RequestScope, slug: &str, name: &str, flow: &Json) -> Result<Uuid> {
    let (steps, transitions) = flow_specs(flow)?;
    let (_, version) = wf::create_workflow(
        scope,
        NewWorkflow {
            key: free_workflow_key(scope, slug).await?,
            name: format!("{} flow", name.chars().take(190).collect::<String>()),
            description: Some("The flow of an agent made from a template.".to_owned()),
            client_id: None,
        },
    )
    .await?;
    wf::save_graph(scope, version.id, steps, transitions).await?;
    wf::publish_version(scope, version.id).await?;
    Ok(version.id)
}

/// Makes a private template of the active tenant from one of its agent versions
/// (builders).
pub async fn create_template(
    scope: &RequestScope,
    new: NewTemplate,
) -> Result<agent_template::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let slug = check_slug(&new.slug)?;
    let name = required_text(&new.name, "name", 200)?;
    let description = check_text("description", new.description, 4000)?;
    let author = check_text("author", new.author, 200)?;
    let tx = scope.tx().await?;
    let version = agent_version::Entity::find_by_id(new.version_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let agent = super::agent::find_agent(scope, version.agent_id, false).await?;
    let skills = snapshot_skills(scope, agent.id).await?;
    let flow = match version.flow_version_id {
        Some(id) => Some(snapshot_flow(scope, id).await?),
        None => None,
    };
    let row = agent_template::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(Some(ctx.tenant_id)),
        slug: Set(slug),
        name: Set(name),
        description: Set(description),
        category: Set(new.category),
        author: Set(author),
        version: Set(1),
        source_agent_id: Set(Some(agent.id)),
        source_version_id: Set(Some(version.id)),
        source_version_number: Set(Some(version.number)),
        role: Set(agent.role),
        model_tier: Set(agent.model_tier),
        thinking_mode: Set(agent.thinking_mode),
        tool_policy: Set(agent.tool_policy.clone()),
        spec_markdown: Set(version.spec_markdown.clone()),
        spec: Set(version.spec.clone()),
        flow: Set(flow),
        skills: Set(skills),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "template.create")
            .target(IdKind::AgentTemplate, row.id)
            .details(json!({
                "slug": row.slug,
                "agent": agent.slug,
                "version": version.number,
            })),
    )
    .await?;
    Ok(row)
}

/// A live template the caller sees (public, or its tenant's own); NOT_FOUND otherwise.
async fn find_template(scope: &RequestScope, id: Uuid) -> Result<agent_template::Model> {
    agent_template::Entity::find_by_id(id)
        .filter(agent_template::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Publishes a copy of one of the active tenant's private templates into the public
/// catalog (platform admins, audited). `slug` defaults to the template's.
pub async fn publish_template(
    scope: &RequestScope,
    id: Uuid,
    slug: Option<String>,
) -> Result<agent_template::Model> {
    let source = find_template(scope, id).await?;
    let admin = scope.require_platform_admin().await?;
    if source.tenant_id.is_none() {
        return Err(Error::conflict(
            Some("id"),
            "this template is already public",
        ));
    }
    let slug = match slug {
        Some(slug) => check_slug(&slug)?,
        None => source.slug.clone(),
    };
    // Every tenant must be able to rebuild the flow: no step may use a private action.
    let actions: Vec<String> = source
        .flow
        .as_ref()
        .and_then(|f| f["steps"].as_array())
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["actionId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !actions.is_empty() {
        let private = scope
            .tx()
            .await?
            .query_one(stmt(
                "SELECT count(*) AS n FROM actions WHERE id::text = ANY($1) AND tenant_id IS NOT NULL",
                [actions.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if private > 0 {
            return Err(Error::bad_input(
                "templateId",
                "its flow uses an action of a private app, which other tenants cannot run",
            ));
        }
    }
    // Private skills do not exist outside their tenant: the public copy keeps only the
    // public ones.
    let skills = Json::Array(
        source
            .skills
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i.get("public").and_then(Json::as_bool) == Some(true))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    );
    let row = agent_template::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(None),
        slug: Set(slug),
        name: Set(source.name.clone()),
        description: Set(source.description.clone()),
        category: Set(source.category),
        author: Set(source.author.clone()),
        version: Set(1),
        source_agent_id: Set(source.source_agent_id),
        source_version_id: Set(source.source_version_id),
        source_version_number: Set(source.source_version_number),
        role: Set(source.role),
        model_tier: Set(source.model_tier),
        thinking_mode: Set(source.thinking_mode),
        tool_policy: Set(source.tool_policy.clone()),
        spec_markdown: Set(source.spec_markdown.clone()),
        spec: Set(source.spec.clone()),
        flow: Set(source.flow.clone()),
        skills: Set(skills),
        created_by: Set(Some(admin)),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(None, "template.publish")
            .target(IdKind::AgentTemplate, row.id)
            .details(
                json!({ "slug": row.slug, "from": source.id, "fromTenant": source.tenant_id }),
            ),
    )
    .await?;
    Ok(row)
}

/// Deletes a template (soft): a private one by its tenant's builders, a public one on
/// the platform-admin path. Agents made from it keep working.
pub async fn delete_template(scope: &RequestScope, id: Uuid) -> Result<agent_template::Model> {
    let current = find_template(scope, id).await?;
    match current.tenant_id {
        None => {
            scope.require_platform_admin().await?;
        }
        Some(tenant) => {
            if scope.require(Role::Builder).await?.tenant_id != tenant {
                return Err(Error::NotFound);
            }
        }
    }
    let row = agent_template::ActiveModel {
        id: Set(id),
        deleted_at: Set(Some(chrono::Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(row.tenant_id, "template.delete")
            .target(IdKind::AgentTemplate, id)
            .details(json!({ "slug": row.slug })),
    )
    .await?;
    Ok(row)
}

/// What instantiating made: the agent, its draft version, and the template's skills
/// that could not be installed (by key, with why).
pub struct Instantiated {
    pub agent: agent::Model,
    pub version: agent_version::Model,
    pub skipped_skills: Vec<String>,
}

/// Copies a template into the active tenant (builders): a new agent with the
/// template's settings, a draft version 1 with its spec and a copy of its flow (a new
/// published workflow version of the tenant), and its skills installed
/// where they still can be (a skill now unpublished, incompatible or not allowed is
/// skipped and named). One transaction: all of it or nothing.
pub async fn instantiate_template(
    scope: &RequestScope,
    template_id: Uuid,
    slug: &str,
    name: &str,
) -> Result<Instantiated> {
    let ctx = scope.require(Role::Builder).await?;
    let template = find_template(scope, template_id).await?;
    let slug = check_slug(slug)?;
    let name = required_text(name, "name", 200)?;
    crate::plans::check_agent_limit(scope, ctx.tenant_id, super::agent::AGENT_LIMIT_FIELD).await?;
    let tx = scope.tx().await?;
    let agent = agent::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        slug: Set(slug),
        name: Set(name),
        description: Set(template.description.clone()),
        role: Set(template.role),
        status: Set(AgentStatus::Idle),
        model_tier: Set(template.model_tier),
        thinking_mode: Set(template.thinking_mode),
        tool_policy: Set(template.tool_policy.clone()),
        budget: Set(json!({})),
        assisted_user_id: Set(None),
        created_by: Set(scope.user_id().ok()),
        template_id: Set(Some(template.id)),
        template_version: Set(Some(template.version)),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let flow = match &template.flow {
        Some(flow) if flow["steps"].as_array().is_some_and(|s| !s.is_empty()) => {
            Some(copy_flow(scope, &agent.slug, &agent.name, flow).await?)
        }
        _ => None,
    };
    let version = agent_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(agent.id),
        number: Set(1),
        spec_markdown: Set(template.spec_markdown.clone()),
        spec: Set(template.spec.clone()),
        flow_version_id: Set(flow),
        status: Set(AgentVersionStatus::Draft),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;

    // The template's skills: public ones by key in the public catalog, private ones by
    // key in the caller's tenant (only a tenant's own template names them).
    let wanted: Vec<(String, bool, Json)> = template
        .skills
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    Some((
                        i.get("skillKey")?.as_str()?.to_owned(),
                        i.get("public").and_then(Json::as_bool).unwrap_or(false),
                        i.get("config").cloned().unwrap_or_else(|| json!({})),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut skipped = Vec::new();
    if !wanted.is_empty() {
        let keys: Vec<String> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
        let found = skill::Entity::find()
            .filter(skill::Column::Key.is_in(keys))
            .all(tx)
            .await?;
        for (key, public, config) in wanted {
            let skill = found.iter().find(|s| {
                s.key == key
                    && if public {
                        s.tenant_id.is_none()
                    } else {
                        template.tenant_id.is_some() && s.tenant_id == Some(ctx.tenant_id)
                    }
            });
            let Some(skill) = skill else {
                skipped.push(key);
                continue;
            };
            if super::skills::refusal(scope, ctx.tenant_id, &agent, skill)
                .await?
                .is_some()
                || crate::integrations::manifest::validate_instance(
                    "config",
                    &skill.config_schema,
                    &config,
                )
                .is_err()
            {
                skipped.push(key);
                continue;
            }
            install_checked(scope, &agent, skill, config).await?;
        }
    }
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "template.instantiate")
            .target(IdKind::Agent, agent.id)
            .details(json!({
                "template": template.id,
                "templateVersion": template.version,
                "public": template.tenant_id.is_none(),
                "slug": agent.slug,
                "skippedSkills": skipped,
            })),
    )
    .await?;
    Ok(Instantiated {
        agent,
        version,
        skipped_skills: skipped,
    })
}

/// A template the caller sees, for a payload.
pub async fn find_template_row(scope: &RequestScope, id: Uuid) -> Result<agent_template::Model> {
    find_template(scope, id).await
}
