//! Agent types: Agent, AgentVersion, AgentLabel and AgentLabelMove. Every relation goes
//! through the request's dataloader; `agents` prefetches what its page selects.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, QueryFilter, Select};
use trellis_core::agents::spec::Budget;
use trellis_entity::{
    agent, agent_label, agent_label_move, agent_version, workflow_run, IdKind, Role,
};
use uuid::Uuid;

use crate::context::{load, load_error};
use crate::identity::types::{contains_pattern, ApiKey, User};
use crate::ids::gid;
use crate::in_place::in_place_object;
use crate::list::{self, Access, List, Relation};
use crate::loaders::{
    AgentById, AgentTemplateById, AgentVersionById, AlertRulesOfAgent, ApiKeyById, BudgetOfAgent,
    ChannelsOfAgent, InstallationsOfAgent, LabelMovesOfAgent, LabelsOfAgent, LatestHealthOfAgent,
    MetricsOfAgent, TriggersOfAgent, UserById, VersionsOfAgent, WorkflowVersionById,
};
use crate::pagination::{CreatedOrderBy, Page, PageArgs};
use crate::payload::Json;
use crate::runs::types::{RunFilter, WorkflowRun};
use crate::workflows::types::WorkflowVersion;

/// What an agent is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::AgentRole")]
pub enum AgentRole {
    /// Product management: plans, specs, triage.
    Pm,
    /// Engineering: code, reviews, incidents.
    Engineering,
    /// Operations: routine work across tools.
    Operations,
    /// Anything else.
    Custom,
}

/// How an agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::AgentStatus")]
pub enum AgentStatus {
    /// Working.
    Active,
    /// Ready, with nothing to do (a new agent's status).
    Idle,
    /// Stopped by a failure.
    Error,
    /// Stopped by a person.
    Paused,
    /// Being set up.
    Provisioning,
}

/// The size of model an agent runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ModelTier")]
pub enum ModelTier {
    /// Small and fast.
    Haiku,
    /// Balanced (a new agent's tier).
    Sonnet,
    /// Largest.
    Opus,
}

/// How much an agent's model thinks before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ThinkingMode")]
pub enum ThinkingMode {
    /// No extended thinking (a new agent's mode).
    Off,
    /// A little.
    Low,
    /// A lot.
    High,
}

/// Where an agent version is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::AgentVersionStatus")]
pub enum AgentVersionStatus {
    /// Being written: `updateAgentVersion` changes it.
    Draft,
    /// The version its agent runs; it never changes again.
    Active,
    /// Set aside; it never changes again, and `activateAgentVersion` can bring it
    /// back (a rollback).
    Archived,
}

/// Narrows a tenant's agents; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AgentFilter {
    /// Any of these statuses.
    pub status: Option<Vec<AgentStatus>>,
    /// Any of these roles.
    pub role: Option<Vec<AgentRole>>,
    /// Matches slug, name or description (case-insensitive).
    pub search: Option<String>,
    /// Also list deleted agents (their `deletedAt` is set); false when omitted.
    #[graphql(default)]
    pub include_deleted: bool,
    /// Only deleted agents (true), like the other lists' filter; false when omitted.
    #[graphql(default)]
    pub deleted: bool,
}

/// An agent's monthly limits (calendar months, UTC): once one is reached, the agent's
/// runs are refused until the next month and a budget alert is raised.
#[derive(SimpleObject, InputObject, Clone, Copy, Debug, Default)]
#[graphql(input_name = "AgentBudgetInput")]
pub struct AgentBudget {
    /// USD per month; null: no limit.
    pub monthly_cost_limit: Option<f64>,
    /// Input plus output tokens per month; null: no limit.
    pub monthly_token_limit: Option<i64>,
}

impl From<AgentBudget> for Budget {
    fn from(b: AgentBudget) -> Self {
        Budget {
            monthly_cost_limit: b.monthly_cost_limit,
            monthly_token_limit: b.monthly_token_limit,
        }
    }
}

impl From<Budget> for AgentBudget {
    fn from(b: Budget) -> Self {
        AgentBudget {
            monthly_cost_limit: b.monthly_cost_limit,
            monthly_token_limit: b.monthly_token_limit,
        }
    }
}

async fn user(ctx: &Context<'_>, id: Option<Uuid>) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, UserById(id)).await?.map(User))
}

/// The version `id` of agent `agent_id`, from the agent's versions (one statement for
/// every label and move of a page).
async fn version_of(
    ctx: &Context<'_>,
    agent_id: Uuid,
    id: Option<Uuid>,
) -> async_graphql::Result<Option<AgentVersion>> {
    let Some(id) = id else { return Ok(None) };
    let versions = load(ctx, VersionsOfAgent(agent_id))
        .await?
        .unwrap_or_default();
    Ok(versions.into_iter().find(|v| v.id == id).map(AgentVersion))
}

/// An AI agent: what it is for, its model settings, tool policy and budget, and the
/// version it runs.
pub struct Agent(pub agent::Model);

impl From<agent::Model> for Agent {
    fn from(m: agent::Model) -> Self {
        Self(m)
    }
}

impl Agent {
    /// Its global ID (what the `Node` interface reads).
    pub async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        AgentFields(&self.0).id(ctx).await
    }
}

in_place_object!(Agent => AgentFields);

/// The fields of [`Agent`], resolved in place (a dashboard lists a page of agents with
/// their relations).
pub struct AgentFields<'a>(&'a agent::Model);

/// An AI agent: what it is for, its model settings, tool policy and budget, and the
/// version it runs.
#[Object(name = "Agent")]
impl AgentFields<'_> {
    /// Its global ID (`agt_…`).
    async fn id(&self) -> ID {
        gid(IdKind::Agent, self.0.id)
    }
    /// Unique among the tenant's live agents; `agent(slug:)` finds it.
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
    async fn role(&self) -> AgentRole {
        self.0.role.into()
    }
    /// How it is doing.
    async fn status(&self) -> AgentStatus {
        self.0.status.into()
    }
    /// The size of model it runs on.
    async fn model_tier(&self) -> ModelTier {
        self.0.model_tier.into()
    }
    /// How much its model thinks.
    async fn thinking_mode(&self) -> ThinkingMode {
        self.0.thinking_mode.into()
    }
    /// Which tools it may call: `{"tools": {"<skill or action key>": "ALLOW" | "ASK" |
    /// "DENY"}, "default": "ASK"}`. A run freezes it when it starts, and its tool steps
    /// obey that copy (DENY fails the step, ASK waits for an approval).
    async fn tool_policy(&self) -> Json<serde_json::Value> {
        Json(self.0.tool_policy.clone())
    }
    /// Its monthly limits.
    async fn budget(&self) -> AgentBudget {
        Budget::from_json(&self.0.budget).into()
    }
    /// The member it works for; null when none.
    async fn assisted_user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.assisted_user_id).await
    }
    /// Who created it; null for an API key or a deleted user.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.created_by).await
    }
    /// The version it runs; null until one is activated.
    async fn active_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<AgentVersion>> {
        let Some(id) = self.0.active_version_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentVersionById(id)).await?.map(AgentVersion))
    }
    /// Every version, newest first.
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AgentVersion>> {
        let mut rows = load(ctx, VersionsOfAgent(self.0.id))
            .await?
            .unwrap_or_default();
        rows.reverse();
        Ok(rows.into_iter().map(AgentVersion).collect())
    }
    /// Its labels (production, staging, …), by name.
    async fn labels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AgentLabel>> {
        Ok(load(ctx, LabelsOfAgent(self.0.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(AgentLabel)
            .collect())
    }
    /// Every move of its labels, newest first (at most `first`).
    async fn label_moves(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many, 1 to 100; 20 when omitted.", default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<AgentLabelMove>> {
        let rows = load(ctx, LabelMovesOfAgent(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .rev()
            .take(first.clamp(1, 100) as usize)
            .map(AgentLabelMove)
            .collect())
    }
    /// The skills installed on it, oldest first.
    async fn skills(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::market::SkillInstallation>> {
        super::market::skills_of_agent(ctx, self.0.id).await
    }
    /// Where it speaks to people (Slack, email, webhooks), oldest first.
    async fn channels(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::hosting::AgentChannel>> {
        super::hosting::channels_of_agent(ctx, self.0.id).await
    }
    /// What it did and said, newest first by default. A first page (no `after`,
    /// newest first) costs one statement for every agent of the request.
    async fn activities(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many activities to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the activities after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            super::hosting::AgentActivityFilter,
        >,
        #[graphql(desc = "Order by time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<super::hosting::AgentActivity>> {
        super::hosting::activities_of_agent(ctx, self.0.id, first, after, filter, order_by).await
    }
    /// The latest health its runner reported; null before the first report.
    async fn health(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::hosting::ContainerHealth>> {
        super::hosting::health_of_agent(ctx, self.0.id).await
    }
    /// The template it was made from; null when none (or the template is another
    /// tenant's private one, which cannot happen, or deleted and gone).
    async fn template(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::market::AgentTemplate>> {
        super::market::template_of_agent(ctx, self.0.template_id).await
    }
    /// The version of its template it was made from; null when none.
    async fn template_version(&self) -> Option<i32> {
        self.0.template_version
    }
    /// Its usage per hour or day (UTC), rolled up from its runners' reports: every
    /// bucket from the one holding `from` up to `to` (at most 744).
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The length of each bucket.")] period: super::usage::MetricsPeriod,
        #[graphql(desc = "The range's start: the first bucket is the one holding it.")]
        from: DateTime<Utc>,
        #[graphql(
            desc = "The range's end, after `from`: buckets begin before it. More than 744 buckets is BAD_USER_INPUT."
        )]
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<super::usage::AgentMetricsBucket>> {
        super::usage::metrics_of_agent(ctx, self.0.id, period, from, to).await
    }
    /// Its spending this calendar month (UTC) against its budget.
    async fn budget_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::usage::AgentBudgetStatus>> {
        Ok(load(ctx, BudgetOfAgent(self.0.id)).await?.map(Into::into))
    }
    /// Its alerts, newest first by default. A page of agents asking for their first
    /// alerts (with `first` and `filter: {open}` at most) costs one statement for all.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many alerts to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the alerts after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            crate::alerts::AlertFilter,
        >,
        #[graphql(
            desc = "Order by when they were raised; CREATED_AT_DESC (newest first) when omitted."
        )]
        order_by: Option<crate::pagination::CreatedOrderBy>,
    ) -> async_graphql::Result<crate::pagination::Page<crate::alerts::Alert>> {
        crate::alerts::alerts_of_agent(ctx, self.0.id, first, after, filter, order_by).await
    }
    /// The alert rules that watch it: those naming it and those of its whole tenant,
    /// oldest first. A page of agents reads them in one statement.
    async fn alert_rules(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::alert_rules::AlertRule>> {
        crate::alert_rules::rules_of_agent(ctx, self.0.id).await
    }
    /// When it last worked (`runAgent` or one of its triggers started a run of it);
    /// null before its first run.
    async fn last_active_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_active_at
    }
    /// Its runs (`runAgent`), newest first by default: runs of its versions' flows,
    /// each with its frozen `toolPolicy`; their step runs are the run's nodes. A page of
    /// agents asking for their first runs (no `after`, `filter` or `orderBy`) costs one
    /// statement for all of them.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many runs to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the runs after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            RunFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<WorkflowRun>> {
        let unfiltered = filter.as_ref().is_none_or(RunFilter::is_empty);
        if after.is_none() && unfiltered && order_by.is_none() {
            let args = PageArgs::new(first, None, None).map_err(|e| load_error(ctx, &e))?;
            return crate::runs::latest_agent_runs_page(ctx, self.0.id, args.first).await;
        }
        let within = Condition::all().add(workflow_run::Column::AgentId.eq(self.0.id));
        list::page::<WorkflowRun>(ctx, Some(within), first, after, filter, order_by).await
    }
    /// The triggers that start its runs (SCHEDULE, WEBHOOK, EVENT; `createTrigger` with
    /// `agentId`), oldest first.
    async fn triggers(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::workflows::types::Trigger>> {
        let rows = load(ctx, TriggersOfAgent(self.0.id)).await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(crate::workflows::types::Trigger)
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
    /// When it was deleted; null while it is live.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
}

/// One numbered version of an agent: a markdown spec, a spec JSON and a flow. Drafts
/// change; active and archived versions never do.
pub struct AgentVersion(pub agent_version::Model);

impl From<agent_version::Model> for AgentVersion {
    fn from(m: agent_version::Model) -> Self {
        Self(m)
    }
}

/// One numbered version of an agent: a markdown spec, a spec JSON and a flow. Drafts
/// change; active and archived versions never do.
#[Object]
impl AgentVersion {
    /// Its global ID (`agv_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AgentVersion, self.0.id)
    }
    /// 1, 2, 3 … in its agent.
    async fn number(&self) -> i32 {
        self.0.number
    }
    /// Where it is in its life.
    async fn status(&self) -> AgentVersionStatus {
        self.0.status.into()
    }
    /// The spec for people (markdown).
    async fn spec_markdown(&self) -> &str {
        &self.0.spec_markdown
    }
    /// The spec for machines, valid against `agentSpecSchema`.
    async fn spec(&self) -> Json<serde_json::Value> {
        Json(self.0.spec.clone())
    }
    /// Its flow: a workflow version of the same tenant (published, once this version is
    /// active); null when it has none.
    async fn flow(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WorkflowVersion>> {
        let Some(id) = self.0.flow_version_id else {
            return Ok(None);
        };
        Ok(load(ctx, WorkflowVersionById(id))
            .await?
            .map(WorkflowVersion))
    }
    /// When it last became active; null if it never was.
    async fn activated_at(&self) -> Option<DateTime<Utc>> {
        self.0.activated_at
    }
    /// When it was archived; null unless it is.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
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
    /// Its agent.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        Ok(load(ctx, AgentById(self.0.agent_id)).await?.map(Agent))
    }
}

/// A named pointer (production, staging, …) at one of an agent's versions.
pub struct AgentLabel(pub agent_label::Model);

impl From<agent_label::Model> for AgentLabel {
    fn from(m: agent_label::Model) -> Self {
        Self(m)
    }
}

/// A named pointer (production, staging, …) at one of an agent's versions.
#[Object]
impl AgentLabel {
    /// Its global ID (`agl_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AgentLabel, self.0.id)
    }
    /// Its name, unique in its agent.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The version it points at (never a draft).
    async fn version(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AgentVersion>> {
        version_of(ctx, self.0.agent_id, Some(self.0.version_id)).await
    }
    /// Its agent.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        Ok(load(ctx, AgentById(self.0.agent_id)).await?.map(Agent))
    }
    /// When it was first set.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last moved.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One move of a label from a version to another.
pub struct AgentLabelMove(pub agent_label_move::Model);

impl From<agent_label_move::Model> for AgentLabelMove {
    fn from(m: agent_label_move::Model) -> Self {
        Self(m)
    }
}

/// One move of a label from a version to another.
#[Object]
impl AgentLabelMove {
    /// Its global ID (`alm_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AgentLabelMove, self.0.id)
    }
    /// The label that moved.
    async fn label(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AgentLabel>> {
        let labels = load(ctx, LabelsOfAgent(self.0.agent_id))
            .await?
            .unwrap_or_default();
        Ok(labels
            .into_iter()
            .find(|l| l.id == self.0.label_id)
            .map(AgentLabel))
    }
    /// The version it pointed at before; null for the label's first move.
    #[graphql(name = "fromVersion")]
    async fn version_before(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<AgentVersion>> {
        version_of(ctx, self.0.agent_id, self.0.from_version_id).await
    }
    /// The version it points at since.
    #[graphql(name = "toVersion")]
    async fn version_after(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<AgentVersion>> {
        version_of(ctx, self.0.agent_id, Some(self.0.to_version_id)).await
    }
    /// Who moved it (a person); null for an API key or a deleted user.
    async fn moved_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.moved_by).await
    }
    /// The API key that moved it; null when a person did.
    async fn moved_by_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ApiKey>> {
        let Some(id) = self.0.moved_by_key else {
            return Ok(None);
        };
        Ok(load(ctx, ApiKeyById(id)).await?.map(ApiKey))
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

impl List for Agent {
    type Entity = agent::Entity;
    type Node = Self;
    type Filter = AgentFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<agent::Column> = Some(agent::Column::TenantId);
    const CREATED_AT: agent::Column = agent::Column::CreatedAt;
    const ID: agent::Column = agent::Column::Id;

    fn narrow(
        select: Select<agent::Entity>,
        filter: AgentFilter,
    ) -> trellis_core::Result<Select<agent::Entity>> {
        let mut select = if filter.deleted {
            select.filter(agent::Column::DeletedAt.is_not_null())
        } else if filter.include_deleted {
            select
        } else {
            select.filter(agent::Column::DeletedAt.is_null())
        };
        if let Some(statuses) = filter.status {
            select = select.filter(
                agent::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::AgentStatus::from)),
            );
        }
        if let Some(roles) = filter.role {
            select = select.filter(
                agent::Column::Role.is_in(roles.into_iter().map(trellis_entity::AgentRole::from)),
            );
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(slug ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<agent::Model>> {
        vec![
            Relation::by(&["versions", "labels", "labelMoves"], |a| {
                Some(VersionsOfAgent(a.id))
            }),
            Relation::together(&["activeVersion"], |a| {
                a.active_version_id.map(AgentVersionById)
            }),
            Relation::by(&["labels", "labelMoves"], |a| Some(LabelsOfAgent(a.id))),
            Relation::by(&["labelMoves"], |a| Some(LabelMovesOfAgent(a.id))),
            Relation::by(&["createdBy"], |a| a.created_by.map(UserById)),
            Relation::by(&["assistedUser"], |a| a.assisted_user_id.map(UserById)),
            Relation::together(&["skills"], |a| Some(InstallationsOfAgent(a.id))),
            Relation::together(&["template"], |a| a.template_id.map(AgentTemplateById)),
            Relation::selected(
                &["activities"],
                super::hosting::FirstActivities::selected,
                |a, first| first.of(a.id),
            ),
            Relation::selected(
                &["metrics"],
                super::usage::metrics_range,
                |a, &(period, from, to)| MetricsOfAgent {
                    agent_id: a.id,
                    period,
                    from,
                    to,
                },
            ),
            Relation::by(&["budgetStatus"], |a| Some(BudgetOfAgent(a.id))),
            Relation::by(&["channels"], |a| Some(ChannelsOfAgent(a.id))),
            Relation::by(&["health"], |a| Some(LatestHealthOfAgent(a.id))),
            Relation::by(&["alertRules"], |a| Some(AlertRulesOfAgent(a.id))),
        ]
    }
}
