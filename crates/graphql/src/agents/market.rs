//! Templates and the skills marketplace: AgentTemplate, Skill, SkillInstallation, their
//! lists and mutations. Lists are declared with the generic list builder; every
//! relation goes through the request's dataloader.

use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_core::agents::skills::{self, SkillFields};
use trellis_core::agents::templates::{self, NewTemplate};
use trellis_entity::{agent_template, skill, skill_installation, IdKind};

use super::types::{Agent, AgentRole, AgentVersion, ModelTier, ThinkingMode};
use crate::context::{load, mutate, ContextExt};
use crate::identity::types::{contains_pattern, input_id, User};
use crate::identity::IdInput;
use crate::ids::gid;
use crate::list::{self, Access, List, Relation};
use crate::loaders::{
    AgentById, AgentTemplateById, InstallationsOfAgent, InstallationsOfSkill, SkillById, UserById,
};
use crate::pagination::{CreatedOrderBy, Page};
use crate::payload::Json;

/// What an agent template is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::TemplateCategory")]
pub enum TemplateCategory {
    /// Markets and trading.
    Trading,
    /// Sales.
    Sales,
    /// Marketing.
    Marketing,
    /// Customer support.
    Support,
    /// Operations.
    Operations,
    /// Anything else.
    Other,
}

/// What a skill is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::SkillCategory")]
pub enum SkillCategory {
    /// Documents, calendars, tasks.
    Productivity,
    /// Data and reports.
    Analytics,
    /// Code, reviews, incidents.
    Engineering,
    /// Email, chat, messages.
    Communication,
}

/// Where a skill is in its life; only PUBLISHED skills can be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::SkillStatus")]
pub enum SkillStatus {
    /// Being written; not installable.
    Draft,
    /// In the marketplace; installable.
    Published,
    /// Still working where installed, not installable again.
    Deprecated,
    /// Withdrawn.
    Removed,
}

fn role_of(name: &str) -> Option<AgentRole> {
    match name {
        "pm" => Some(AgentRole::Pm),
        "engineering" => Some(AgentRole::Engineering),
        "operations" => Some(AgentRole::Operations),
        "custom" => Some(AgentRole::Custom),
        _ => None,
    }
}

async fn user(ctx: &Context<'_>, id: Option<uuid::Uuid>) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, UserById(id)).await?.map(User))
}

/// A snapshot of an agent version that `instantiateTemplate` copies into a tenant as a
/// new agent: public (platform-curated) or the tenant's own.
pub struct AgentTemplate(pub agent_template::Model);

impl From<agent_template::Model> for AgentTemplate {
    fn from(m: agent_template::Model) -> Self {
        Self(m)
    }
}

/// One skill a template installs on the agents made from it.
#[derive(async_graphql::SimpleObject)]
pub struct TemplateSkill {
    /// The skill's key: in the public marketplace when `public`, else in the tenant.
    pub skill_key: String,
    /// Whether it is a public skill.
    pub public: bool,
    /// The skill version the source had installed.
    pub version: String,
    /// The installation's config.
    pub config: Json<serde_json::Value>,
}

/// A snapshot of an agent version that `instantiateTemplate` copies into a tenant as a
/// new agent: public (platform-curated) or the tenant's own.
#[Object]
impl AgentTemplate {
    /// Its global ID (`tpl_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AgentTemplate, self.0.id)
    }
    /// Unique among the public templates, or among the tenant's.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text; empty when none.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// What it is for.
    async fn category(&self) -> TemplateCategory {
        self.0.category.into()
    }
    /// Who wrote it (free text); empty when not given.
    async fn author(&self) -> &str {
        &self.0.author
    }
    /// Its version (1: a template is one immutable snapshot); agents made from it
    /// record it.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// Platform-curated and visible to every tenant (true), or the tenant's own.
    async fn public(&self) -> bool {
        self.0.tenant_id.is_none()
    }
    /// The number of the agent version it was made from.
    async fn source_version_number(&self) -> Option<i32> {
        self.0.source_version_number
    }
    /// The role the new agent gets.
    async fn role(&self) -> AgentRole {
        self.0.role.into()
    }
    /// The model tier the new agent gets.
    async fn model_tier(&self) -> ModelTier {
        self.0.model_tier.into()
    }
    /// The thinking mode the new agent gets.
    async fn thinking_mode(&self) -> ThinkingMode {
        self.0.thinking_mode.into()
    }
    /// The tool policy the new agent gets.
    async fn tool_policy(&self) -> Json<serde_json::Value> {
        Json(self.0.tool_policy.clone())
    }
    /// The spec for people its version 1 gets.
    async fn spec_markdown(&self) -> &str {
        &self.0.spec_markdown
    }
    /// The spec for machines its version 1 gets.
    async fn spec(&self) -> Json<serde_json::Value> {
        Json(self.0.spec.clone())
    }
    /// The flow the new agent's version 1 gets, copied into the caller's tenant as a
    /// new published workflow version: `{"steps": [...], "transitions": [...]}` by step
    /// key (connections left out); null when the source had none.
    async fn flow(&self) -> Option<Json<serde_json::Value>> {
        self.0.flow.clone().map(Json)
    }
    /// The skills installed on the new agent (where still installable).
    async fn skills(&self) -> Vec<TemplateSkill> {
        self.0
            .skills
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| TemplateSkill {
                        skill_key: i["skillKey"].as_str().unwrap_or_default().to_owned(),
                        public: i["public"].as_bool().unwrap_or(false),
                        version: i["version"].as_str().unwrap_or_default().to_owned(),
                        config: Json(i["config"].clone()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Who created it; null for an API key or a deleted user.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.created_by).await
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it was deleted; null while it is live.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
}

/// A skill of the marketplace: public (platform-curated) or the tenant's own.
pub struct Skill(pub skill::Model);

impl From<skill::Model> for Skill {
    fn from(m: skill::Model) -> Self {
        Self(m)
    }
}

/// A skill of the marketplace: public (platform-curated) or the tenant's own.
#[Object]
impl Skill {
    /// Its global ID (`skl_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Skill, self.0.id)
    }
    /// Unique among the public skills, or among the tenant's.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text; empty when none.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// What it is for.
    async fn category(&self) -> SkillCategory {
        self.0.category.into()
    }
    /// Its current version (MAJOR.MINOR.PATCH); installations pin the one of their time.
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// The agent roles that may install it.
    async fn compatible_roles(&self) -> Vec<AgentRole> {
        self.0
            .compatible_roles
            .iter()
            .filter_map(|r| role_of(r))
            .collect()
    }
    /// What it needs (`email.send`, …); the tenant's `allowedSkillPermissions` setting
    /// must allow each.
    async fn permissions(&self) -> &[String] {
        &self.0.permissions
    }
    /// What it can do, as its author describes it.
    async fn capabilities(&self) -> Json<serde_json::Value> {
        Json(self.0.capabilities.clone())
    }
    /// The JSON Schema every installation's config satisfies.
    async fn config_schema(&self) -> Json<serde_json::Value> {
        Json(self.0.config_schema.clone())
    }
    /// 0 to 5; null when unrated.
    async fn rating(&self) -> Option<f64> {
        self.0.rating
    }
    /// How many agents, in every tenant, have it installed (exact).
    async fn install_count(&self) -> i64 {
        self.0.install_count
    }
    /// Where it is in its life.
    async fn status(&self) -> SkillStatus {
        self.0.status.into()
    }
    /// Platform-curated and visible to every tenant (true), or the tenant's own.
    async fn public(&self) -> bool {
        self.0.tenant_id.is_none()
    }
    /// Its installations in the active tenant (never another tenant's), oldest first.
    async fn installations(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<SkillInstallation>> {
        Ok(load(ctx, InstallationsOfSkill(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(SkillInstallation)
            .collect())
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A skill installed on an agent, pinned to the skill version of its time.
pub struct SkillInstallation(pub skill_installation::Model);

/// A skill installed on an agent, pinned to the skill version of its time.
#[Object]
impl SkillInstallation {
    /// Its global ID (`ski_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::SkillInstallation, self.0.id)
    }
    /// The skill.
    async fn skill(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Skill>> {
        Ok(load(ctx, SkillById(self.0.skill_id)).await?.map(Skill))
    }
    /// The agent it is installed on.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        Ok(load(ctx, AgentById(self.0.agent_id)).await?.map(Agent))
    }
    /// The skill version it was installed at.
    async fn skill_version(&self) -> &str {
        &self.0.skill_version
    }
    /// Its config, valid against the skill's `configSchema`.
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }
    /// Who installed it; null for an API key or a deleted user.
    async fn installed_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.installed_by).await
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Relations of an agent that this module adds: its skills and its template.
pub(crate) async fn skills_of_agent(
    ctx: &Context<'_>,
    agent_id: uuid::Uuid,
) -> async_graphql::Result<Vec<SkillInstallation>> {
    let rows = load(ctx, InstallationsOfAgent(agent_id))
        .await?
        .unwrap_or_default();
    // The skills came with their installations: their resolvers find them in the
    // request's cache.
    let skills = rows
        .iter()
        .filter_map(|(_, skill)| skill.clone())
        .map(|skill| (SkillById(skill.id), skill));
    ctx.loader()?.feed_many(skills).await;
    Ok(rows
        .into_iter()
        .map(|(installation, _)| SkillInstallation(installation))
        .collect())
}

/// The template an agent was made from.
pub(crate) async fn template_of_agent(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<AgentTemplate>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, AgentTemplateById(id)).await?.map(AgentTemplate))
}

/// Narrows the templates; every condition given must hold.
#[derive(InputObject, Default)]
pub struct TemplateFilter {
    /// Any of these categories.
    pub category: Option<Vec<TemplateCategory>>,
    /// Matches slug, name, description or author (case-insensitive).
    pub search: Option<String>,
    /// Only public (true) or only the tenant's own (false); both when omitted.
    pub public: Option<bool>,
}

impl List for AgentTemplate {
    type Entity = agent_template::Entity;
    type Node = Self;
    type Filter = TemplateFilter;
    // RLS shows the public templates and the active tenant's own.
    const ACCESS: Access = Access::Anyone;
    const TENANT: Option<agent_template::Column> = None;
    const CREATED_AT: agent_template::Column = agent_template::Column::CreatedAt;
    const ID: agent_template::Column = agent_template::Column::Id;

    fn narrow(
        select: Select<agent_template::Entity>,
        filter: TemplateFilter,
    ) -> trellis_core::Result<Select<agent_template::Entity>> {
        let mut select = select.filter(agent_template::Column::DeletedAt.is_null());
        if let Some(categories) = filter.category {
            select = select.filter(
                agent_template::Column::Category.is_in(
                    categories
                        .into_iter()
                        .map(trellis_entity::TemplateCategory::from),
                ),
            );
        }
        if let Some(public) = filter.public {
            select = select.filter(if public {
                agent_template::Column::TenantId.is_null()
            } else {
                agent_template::Column::TenantId.is_not_null()
            });
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(slug ILIKE $1 OR name ILIKE $1 OR description ILIKE $1 OR author ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<agent_template::Model>> {
        vec![Relation::by(&["createdBy"], |t| t.created_by.map(UserById))]
    }
}

/// Narrows the skills; every condition given must hold.
#[derive(InputObject, Default)]
pub struct SkillFilter {
    /// Any of these categories.
    pub category: Option<Vec<SkillCategory>>,
    /// Any of these statuses.
    pub status: Option<Vec<SkillStatus>>,
    /// Installable by an agent of this role.
    pub compatible_with: Option<AgentRole>,
    /// Matches key, name or description (case-insensitive).
    pub search: Option<String>,
    /// Only public (true) or only the tenant's own (false); both when omitted.
    pub public: Option<bool>,
}

impl List for Skill {
    type Entity = skill::Entity;
    type Node = Self;
    type Filter = SkillFilter;
    // RLS shows the public skills and the active tenant's own.
    const ACCESS: Access = Access::Anyone;
    const TENANT: Option<skill::Column> = None;
    const CREATED_AT: skill::Column = skill::Column::CreatedAt;
    const ID: skill::Column = skill::Column::Id;

    fn narrow(
        select: Select<skill::Entity>,
        filter: SkillFilter,
    ) -> trellis_core::Result<Select<skill::Entity>> {
        let mut select = select;
        if let Some(categories) = filter.category {
            select = select.filter(
                skill::Column::Category.is_in(
                    categories
                        .into_iter()
                        .map(trellis_entity::SkillCategory::from),
                ),
            );
        }
        if let Some(statuses) = filter.status {
            select = select.filter(
                skill::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::SkillStatus::from)),
            );
        }
        if let Some(role) = filter.compatible_with {
            let name = match role {
                AgentRole::Pm => "pm",
                AgentRole::Engineering => "engineering",
                AgentRole::Operations => "operations",
                AgentRole::Custom => "custom",
            };
            select = select.filter(Expr::cust_with_values(
                "$1 = ANY (compatible_roles)",
                [name],
            ));
        }
        if let Some(public) = filter.public {
            select = select.filter(if public {
                skill::Column::TenantId.is_null()
            } else {
                skill::Column::TenantId.is_not_null()
            });
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<skill::Model>> {
        vec![Relation::by(&["installations"], |s| {
            Some(InstallationsOfSkill(s.id))
        })]
    }
}

#[derive(Default)]
pub struct MarketQuery;

#[Object]
impl MarketQuery {
    /// Agent templates: the public ones and the active tenant's own (anyone signed in
    /// sees the public ones).
    async fn templates(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many templates to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the templates after this cursor (an edge's `cursor`); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            TemplateFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<AgentTemplate>> {
        list::page::<AgentTemplate>(ctx, None, first, after, filter, order_by).await
    }

    /// Skills of the marketplace: the public ones and the active tenant's own. A
    /// skill's installations cost one statement per page.
    async fn skills(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many skills to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the skills after this cursor (an edge's `cursor`); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            SkillFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Skill>> {
        list::page::<Skill>(ctx, None, first, after, filter, order_by).await
    }
}

payload!(
    /// The template a mutation created or changed, or the input's problems.
    AgentTemplatePayload {
        /// The template as it is now; null when `userErrors` is not empty.
        template: AgentTemplate,
    }
);
payload!(
    /// The agent a template was copied into, or the input's problems.
    InstantiateTemplatePayload {
        /// The new agent; null when `userErrors` is not empty.
        agent: Agent,
        /// Its draft version 1.
        version: AgentVersion,
        /// Keys of the template's skills that could not be installed (no longer
        /// published, incompatible or not allowed by the tenant's settings).
        skipped_skills: Vec<String>,
    }
);
payload!(
    /// The skill a mutation created or changed, or the input's problems.
    SkillPayload {
        /// The skill as it is now; null when `userErrors` is not empty.
        skill: Skill,
    }
);
payload!(
    /// The installation a mutation made or removed, or the input's problems.
    SkillInstallationPayload {
        /// The installation (as it was, after `uninstallSkill`); null when
        /// `userErrors` is not empty.
        installation: SkillInstallation,
        /// The skill as it is now (its `installCount`).
        skill: Skill,
    }
);

/// A new private template of the active tenant, from one of its agent versions.
#[derive(InputObject)]
pub struct CreateTemplateInput {
    /// The agent version it snapshots (`agv_…`).
    pub version_id: ID,
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique among the tenant's.
    pub slug: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters.
    pub description: Option<String>,
    /// What it is for.
    pub category: TemplateCategory,
    /// Who wrote it, at most 200 characters.
    pub author: Option<String>,
}

/// A private template to publish into the public catalog.
#[derive(InputObject)]
pub struct PublishTemplateInput {
    /// One of the active tenant's private templates (`tpl_…`).
    pub template_id: ID,
    /// The public copy's slug; the template's when omitted.
    pub slug: Option<String>,
}

/// A template to copy into the active tenant as a new agent.
#[derive(InputObject)]
pub struct InstantiateTemplateInput {
    /// A public template or one of the tenant's own (`tpl_…`).
    pub template_id: ID,
    /// The new agent's slug.
    pub slug: String,
    /// The new agent's name.
    pub name: String,
}

/// A new skill.
#[derive(InputObject)]
pub struct CreateSkillInput {
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique among the public skills
    /// or the tenant's.
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters.
    pub description: Option<String>,
    /// What it is for.
    pub category: SkillCategory,
    /// MAJOR.MINOR.PATCH; 1.0.0 when omitted.
    pub version: Option<String>,
    /// The agent roles that may install it; none when omitted.
    pub compatible_roles: Option<Vec<AgentRole>>,
    /// What it needs (`email.send`, …).
    pub permissions: Option<Vec<String>>,
    /// What it can do (a JSON object).
    pub capabilities: Option<Json<serde_json::Value>>,
    /// A JSON Schema for installations' config; `{"type": "object"}` when omitted.
    pub config_schema: Option<Json<serde_json::Value>>,
    /// DRAFT when omitted.
    pub status: Option<SkillStatus>,
    /// In the public marketplace (platform admins only); the active tenant's when
    /// false or omitted.
    #[graphql(default)]
    pub public: bool,
}

/// Changes to a skill; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateSkillInput {
    /// The skill (`skl_…`).
    pub id: ID,
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new category.
    pub category: Option<SkillCategory>,
    /// A new version (MAJOR.MINOR.PATCH); installations keep theirs.
    pub version: Option<String>,
    /// New compatible roles (replace the old ones).
    pub compatible_roles: Option<Vec<AgentRole>>,
    /// New permissions (replace the old ones).
    pub permissions: Option<Vec<String>>,
    /// New capabilities.
    pub capabilities: Option<Json<serde_json::Value>>,
    /// A new config schema.
    pub config_schema: Option<Json<serde_json::Value>>,
    /// A new rating, 0 to 5; null clears it.
    pub rating: MaybeUndefined<f64>,
    /// A new status.
    pub status: Option<SkillStatus>,
}

/// A skill to install on an agent.
#[derive(InputObject)]
pub struct InstallSkillInput {
    /// The agent (`agt_…`).
    pub agent_id: ID,
    /// A published skill, public or the tenant's own (`skl_…`).
    pub skill_id: ID,
    /// Its config, valid against the skill's `configSchema`; `{}` when omitted.
    pub config: Option<Json<serde_json::Value>>,
}

/// A skill to remove from an agent.
#[derive(InputObject)]
pub struct UninstallSkillInput {
    /// The agent (`agt_…`).
    pub agent_id: ID,
    /// The installed skill (`skl_…`).
    pub skill_id: ID,
}

fn template_payload(
    (row, user_errors): (Option<agent_template::Model>, Vec<crate::error::UserError>),
) -> AgentTemplatePayload {
    AgentTemplatePayload {
        template: row.map(AgentTemplate),
        user_errors,
    }
}

fn skill_payload(
    (row, user_errors): (Option<skill::Model>, Vec<crate::error::UserError>),
) -> SkillPayload {
    SkillPayload {
        skill: row.map(Skill),
        user_errors,
    }
}

type Installed = (skill_installation::Model, skill::Model);

fn installation_payload(
    (row, user_errors): (Option<Installed>, Vec<crate::error::UserError>),
) -> SkillInstallationPayload {
    let (installation, skill) = row.map_or((None, None), |(i, s)| {
        (Some(SkillInstallation(i)), Some(Skill(s)))
    });
    SkillInstallationPayload {
        installation,
        skill,
        user_errors,
    }
}

#[derive(Default)]
pub struct MarketMutation;

#[Object]
impl MarketMutation {
    /// Makes a private template from one of the active tenant's agent versions
    /// (builders): a snapshot of its spec, the agent's settings and its skills.
    async fn create_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version and the template's fields.")] input: CreateTemplateInput,
    ) -> async_graphql::Result<AgentTemplatePayload> {
        let version_id = input_id(ctx, &input.version_id, IdKind::AgentVersion)?;
        let new = NewTemplate {
            version_id,
            slug: input.slug,
            name: input.name,
            description: input.description,
            category: input.category.into(),
            author: input.author,
        };
        Ok(template_payload(
            mutate(ctx, templates::create_template(ctx.scope()?, new)).await?,
        ))
    }

    /// Publishes a copy of one of the active tenant's private templates into the
    /// public catalog (platform admins; FORBIDDEN otherwise). Private skills are left
    /// out of the copy.
    async fn publish_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template.")] input: PublishTemplateInput,
    ) -> async_graphql::Result<AgentTemplatePayload> {
        let id = input_id(ctx, &input.template_id, IdKind::AgentTemplate)?;
        Ok(template_payload(
            mutate(
                ctx,
                templates::publish_template(ctx.scope()?, id, input.slug),
            )
            .await?,
        ))
    }

    /// Deletes a template (soft): a private one by the tenant's builders, a public one
    /// by platform admins. Agents made from it keep working.
    async fn delete_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template (`tpl_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentTemplatePayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentTemplate)?;
        Ok(template_payload(
            mutate(ctx, templates::delete_template(ctx.scope()?, id)).await?,
        ))
    }

    /// Copies a template into the active tenant as a new agent (builders), in one
    /// transaction: the agent with the template's settings, a draft version 1 with its
    /// spec and a copy of its flow (a new published workflow of the tenant), and its
    /// skills installed where they still can be. The agent records the template and
    /// its version.
    async fn instantiate_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template and the new agent's slug and name.")]
        input: InstantiateTemplateInput,
    ) -> async_graphql::Result<InstantiateTemplatePayload> {
        let id = input_id(ctx, &input.template_id, IdKind::AgentTemplate)?;
        let (made, user_errors) = mutate(
            ctx,
            templates::instantiate_template(ctx.scope()?, id, &input.slug, &input.name),
        )
        .await?;
        Ok(match made {
            Some(made) => InstantiateTemplatePayload {
                agent: Some(Agent(made.agent)),
                version: Some(AgentVersion(made.version)),
                skipped_skills: Some(made.skipped_skills),
                user_errors,
            },
            None => InstantiateTemplatePayload {
                user_errors,
                ..Default::default()
            },
        })
    }

    /// Creates a skill: public (platform admins) or the active tenant's (builders).
    async fn create_skill(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new skill.")] input: CreateSkillInput,
    ) -> async_graphql::Result<SkillPayload> {
        let fields = SkillFields {
            key: Some(input.key),
            name: Some(input.name),
            description: input.description,
            category: Some(input.category.into()),
            version: input.version,
            compatible_roles: input
                .compatible_roles
                .map(|roles| roles.into_iter().map(Into::into).collect()),
            permissions: input.permissions,
            capabilities: input.capabilities.map(|j| j.0),
            config_schema: input.config_schema.map(|j| j.0),
            rating: None,
            status: input.status.map(Into::into),
        };
        Ok(skill_payload(
            mutate(
                ctx,
                skills::create_skill(ctx.scope()?, fields, input.public),
            )
            .await?,
        ))
    }

    /// Changes a skill: a public one on the platform-admin path, a private one by the
    /// tenant's builders.
    async fn update_skill(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The skill and its changes.")] input: UpdateSkillInput,
    ) -> async_graphql::Result<SkillPayload> {
        let id = input_id(ctx, &input.id, IdKind::Skill)?;
        let fields = SkillFields {
            key: None,
            name: input.name,
            description: input.description,
            category: input.category.map(Into::into),
            version: input.version,
            compatible_roles: input
                .compatible_roles
                .map(|roles| roles.into_iter().map(Into::into).collect()),
            permissions: input.permissions,
            capabilities: input.capabilities.map(|j| j.0),
            config_schema: input.config_schema.map(|j| j.0),
            rating: match input.rating {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(r) => Some(Some(r)),
            },
            status: input.status.map(Into::into),
        };
        Ok(skill_payload(
            mutate(ctx, skills::update_skill(ctx.scope()?, id, fields)).await?,
        ))
    }

    /// Installs a published skill on an agent (builders). The agent's role must be one
    /// of the skill's `compatibleRoles`, the tenant's `allowedSkillPermissions` setting
    /// (when set) must allow each of its permissions, and `config` must satisfy its
    /// `configSchema`. Another tenant's private skill is NOT_FOUND.
    async fn install_skill(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent, the skill and its config.")] input: InstallSkillInput,
    ) -> async_graphql::Result<SkillInstallationPayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let skill_id = input_id(ctx, &input.skill_id, IdKind::Skill)?;
        let scope = ctx.scope()?;
        Ok(installation_payload(
            mutate(ctx, async {
                let row =
                    skills::install_skill(scope, agent_id, skill_id, input.config.map(|j| j.0))
                        .await?;
                let skill = skills::find_skill_row(scope, skill_id).await?;
                Ok((row, skill))
            })
            .await?,
        ))
    }

    /// Removes a skill from an agent (builders).
    async fn uninstall_skill(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent and the skill.")] input: UninstallSkillInput,
    ) -> async_graphql::Result<SkillInstallationPayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let skill_id = input_id(ctx, &input.skill_id, IdKind::Skill)?;
        let scope = ctx.scope()?;
        Ok(installation_payload(
            mutate(ctx, async {
                let row = skills::uninstall_skill(scope, agent_id, skill_id).await?;
                let skill = skills::find_skill_row(scope, skill_id).await?;
                Ok((row, skill))
            })
            .await?,
        ))
    }
}
