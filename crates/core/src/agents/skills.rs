//! The skills marketplace: skills (public, written only on the platform-admin path, or
//! a tenant's private ones) and their installations on agents. Installing checks the
//! skill is published, fits the agent's role, asks only for permissions the tenant's
//! `allowedSkillPermissions` setting allows, and that the config satisfies the skill's
//! config schema. The install count is kept by the database (a SECURITY DEFINER
//! trigger on installations), in the installing transaction, so it is exact however
//! many installs run at once.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{
    agent, skill, skill_installation, AgentRole, IdKind, Role, Severity, SkillCategory, SkillStatus,
};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::integrations::manifest::{check_schema, validate_instance};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The most permissions a skill may ask for (and a tenant may allow).
pub const MAX_PERMISSIONS: usize = 100;

/// A skill's fields; `None` leaves a field as it is (or at its default, on create).
#[derive(Clone, Debug, Default)]
pub struct SkillFields {
    pub key: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<SkillCategory>,
    pub version: Option<String>,
    pub compatible_roles: Option<Vec<AgentRole>>,
    pub permissions: Option<Vec<String>>,
    pub capabilities: Option<Json>,
    pub config_schema: Option<Json>,
    pub rating: Option<Option<f64>>,
    pub status: Option<SkillStatus>,
}

/// A permission name: 1 to 63 lowercase letters, digits, '_', '.', ':' or '-',
/// starting with a letter (the table's CHECK constraint).
pub fn is_permission(p: &str) -> bool {
    (1..=63).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
        })
}

fn check_permissions(field: &str, permissions: Vec<String>) -> Result<Vec<String>> {
    if permissions.len() > MAX_PERMISSIONS {
        return Err(Error::bad_input(
            field,
            format!("at most {MAX_PERMISSIONS} permissions"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(permissions.len());
    for (i, p) in permissions.into_iter().enumerate() {
        let p = p.trim().to_owned();
        if !is_permission(&p) {
            return Err(Error::bad_input(
                format!("{field}.{i}"),
                "a permission is 1 to 63 lowercase letters, digits, '_', '.', ':' or '-', \
                 starting with a letter",
            ));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn check_version(version: &str) -> Result<String> {
    let version = version.trim();
    let ok = version.split('.').count() == 3
        && version.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 6
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'))
        });
    if ok {
        Ok(version.to_owned())
    } else {
        Err(Error::bad_input(
            "version",
            "version must be MAJOR.MINOR.PATCH",
        ))
    }
}

fn role_name(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Pm => "pm",
        AgentRole::Engineering => "engineering",
        AgentRole::Operations => "operations",
        AgentRole::Custom => "custom",
    }
}

fn apply(row: &mut skill::ActiveModel, fields: SkillFields) -> Result<()> {
    if let Some(key) = fields.key {
        row.key = Set(super::check_slug(&key).map_err(|_| {
            Error::bad_input(
                "key",
                "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter",
            )
        })?);
    }
    if let Some(name) = fields.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(description) = fields.description {
        let description = description.trim().to_owned();
        if description.chars().count() > 4000 {
            return Err(Error::bad_input(
                "description",
                "description is at most 4000 characters",
            ));
        }
        row.description = Set(description);
    }
    if let Some(category) = fields.category {
        row.category = Set(category);
    }
    if let Some(version) = fields.version {
        row.version = Set(check_version(&version)?);
    }
    if let Some(roles) = fields.compatible_roles {
        let mut names: Vec<String> = Vec::new();
        for role in roles {
            let name = role_name(role).to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        row.compatible_roles = Set(names);
    }
    if let Some(permissions) = fields.permissions {
        row.permissions = Set(check_permissions("permissions", permissions)?);
    }
    if let Some(capabilities) = fields.capabilities {
        if !capabilities.is_object() {
            return Err(Error::bad_input(
                "capabilities",
                "capabilities must be a JSON object",
            ));
        }
        row.capabilities = Set(capabilities);
    }
    if let Some(schema) = fields.config_schema {
        if !schema.is_object() {
            return Err(Error::bad_input(
                "configSchema",
                "configSchema must be a JSON Schema object",
            ));
        }
        check_schema("configSchema", &schema)?;
        row.config_schema = Set(schema);
    }
    if let Some(rating) = fields.rating {
        if rating.is_some_and(|r| !(0.0..=5.0).contains(&r)) {
            return Err(Error::bad_input("rating", "rating is from 0 to 5"));
        }
        row.rating = Set(rating);
    }
    if let Some(status) = fields.status {
        row.status = Set(status);
    }
    Ok(())
}

/// Creates a skill: in the public marketplace (platform admins, `public`) or in the
/// active tenant (builders). DRAFT unless a status is given.
pub async fn create_skill(
    scope: &RequestScope,
    fields: SkillFields,
    public: bool,
) -> Result<skill::Model> {
    let tenant_id = if public {
        scope.require_platform_admin().await?;
        None
    } else {
        Some(scope.require(Role::Builder).await?.tenant_id)
    };
    let mut row = skill::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        description: Set(String::new()),
        version: Set("1.0.0".to_owned()),
        compatible_roles: Set(vec![]),
        permissions: Set(vec![]),
        capabilities: Set(json!({})),
        config_schema: Set(json!({"type": "object"})),
        rating: Set(None),
        status: Set(SkillStatus::Draft),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    };
    let key = fields.key.clone().unwrap_or_default();
    let name = fields.name.clone().unwrap_or_default();
    let category = fields
        .category
        .ok_or_else(|| Error::bad_input("category", "category is required"))?;
    apply(
        &mut row,
        SkillFields {
            key: Some(key),
            name: Some(name),
            category: Some(category),
            ..fields
        },
    )?;
    let row = row.insert(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(tenant_id, "skill.create")
            .target(IdKind::Skill, row.id)
            .details(json!({ "key": row.key, "public": tenant_id.is_none() })),
    )
    .await?;
    Ok(row)
}

/// A skill the caller sees (public, or the active tenant's own); NOT_FOUND otherwise.
async fn find_skill(scope: &RequestScope, id: Uuid) -> Result<skill::Model> {
    skill::Entity::find_by_id(id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Changes a skill (its key stays): a public one on the platform-admin path, a private
/// one by a builder of its tenant.
pub async fn update_skill(
    scope: &RequestScope,
    id: Uuid,
    fields: SkillFields,
) -> Result<skill::Model> {
    let current = find_skill(scope, id).await?;
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
    let mut row: skill::ActiveModel = current.clone().into();
    apply(
        &mut row,
        SkillFields {
            key: None,
            ..fields
        },
    )?;
    if !row.is_changed() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(row.tenant_id, "skill.update")
            .target(IdKind::Skill, id)
            .details(json!({ "key": row.key, "status": row.status })),
    )
    .await?;
    Ok(row)
}

/// The permissions the active tenant allows skills to ask for: its
/// `allowedSkillPermissions` setting; `None` (no such setting) allows every one.
async fn allowed_permissions(scope: &RequestScope, tenant_id: Uuid) -> Result<Option<Vec<String>>> {
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT settings->'allowedSkillPermissions' AS allowed FROM tenants WHERE id = $1",
            [tenant_id.into()],
        ))
        .await?;
    let allowed: Option<Json> = match row {
        Some(row) => row.try_get("", "allowed")?,
        None => None,
    };
    Ok(allowed.and_then(|v| {
        v.as_array().map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
    }))
}

/// Checks a value of the tenant setting `allowedSkillPermissions`: a list of
/// permission names. Problems name the setting's path.
pub fn check_allowed_permissions_setting(value: &Json) -> Result<()> {
    let field = "settings.allowedSkillPermissions";
    let Some(items) = value.as_array() else {
        return Err(Error::bad_input(field, "a list of permission names"));
    };
    let names = items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::bad_input(format!("{field}.{i}"), "a permission name"))
        })
        .collect::<Result<Vec<_>>>()?;
    check_permissions(field, names).map(drop)
}

/// Installs a published skill on an agent (builders), pinned to the skill's current
/// version. Another tenant's private skill is NOT_FOUND, like one that does not exist.
pub async fn install_skill(
    scope: &RequestScope,
    agent_id: Uuid,
    skill_id: Uuid,
    config: Option<Json>,
) -> Result<skill_installation::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let agent = find_agent(scope, agent_id, false).await?;
    let skill = find_skill(scope, skill_id).await?;
    let row = install_checked(scope, &agent, &skill, config.unwrap_or_else(|| json!({}))).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "skill.install")
            .target(IdKind::SkillInstallation, row.id)
            .details(json!({
                "agent": agent.slug,
                "skill": skill.key,
                "public": skill.tenant_id.is_none(),
                "version": row.skill_version,
            })),
    )
    .await?;
    Ok(row)
}

/// Why `skill` cannot be installed on `agent` by `tenant_id`, if it cannot.
pub(crate) async fn refusal(
    scope: &RequestScope,
    tenant_id: Uuid,
    agent: &agent::Model,
    skill: &skill::Model,
) -> Result<Option<Error>> {
    if skill.status != SkillStatus::Published {
        return Ok(Some(Error::conflict(
            Some("skillId"),
            "only a PUBLISHED skill can be installed",
        )));
    }
    if !skill
        .compatible_roles
        .iter()
        .any(|r| r == role_name(agent.role))
    {
        return Ok(Some(Error::bad_input(
            "skillId",
            format!(
                "this skill is not compatible with the agent's role ({})",
                role_name(agent.role).to_uppercase()
            ),
        )));
    }
    if let Some(allowed) = allowed_permissions(scope, tenant_id).await? {
        let refused: Vec<&str> = skill
            .permissions
            .iter()
            .filter(|p| !allowed.contains(p))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            return Ok(Some(Error::bad_input(
                "skillId",
                format!(
                    "the tenant's allowedSkillPermissions setting does not allow: {}",
                    refused.join(", ")
                ),
            )));
        }
    }
    Ok(None)
}

/// Installs after every check; the caller audits.
pub(crate) async fn install_checked(
    scope: &RequestScope,
    agent: &agent::Model,
    skill: &skill::Model,
    config: Json,
) -> Result<skill_installation::Model> {
    if let Some(refused) = refusal(scope, agent.tenant_id, agent, skill).await? {
        return Err(refused);
    }
    if !config.is_object() {
        return Err(Error::bad_input("config", "config must be a JSON object"));
    }
    validate_instance("config", &skill.config_schema, &config)?;
    let row = skill_installation::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(agent.tenant_id),
        agent_id: Set(agent.id),
        skill_id: Set(skill.id),
        skill_version: Set(skill.version.clone()),
        config: Set(config),
        installed_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    Ok(row)
}

/// Removes a skill from an agent (builders); the install count goes down with it.
pub async fn uninstall_skill(
    scope: &RequestScope,
    agent_id: Uuid,
    skill_id: Uuid,
) -> Result<skill_installation::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let agent = find_agent(scope, agent_id, false).await?;
    let tx = scope.tx().await?;
    let row = skill_installation::Entity::find()
        .filter(skill_installation::Column::AgentId.eq(agent_id))
        .filter(skill_installation::Column::SkillId.eq(skill_id))
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    skill_installation::Entity::delete_by_id(row.id)
        .exec(tx)
        .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "skill.uninstall")
            .target(IdKind::SkillInstallation, row.id)
            .severity(Severity::Warning)
            .details(json!({ "agent": agent.slug, "skill": skill_id })),
    )
    .await?;
    Ok(row)
}

/// A skill the caller sees, for a payload.
pub async fn find_skill_row(scope: &RequestScope, id: Uuid) -> Result<skill::Model> {
    find_skill(scope, id).await
}
