//! Workflow types: Client, Workflow, WorkflowVersion, WorkflowStep, WorkflowTransition,
//! Trigger. Every relation goes through the request's dataloader.

use async_graphql::{Context, Enum, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_entity::{
    client, trigger, workflow, workflow_step, workflow_transition, workflow_version, IdKind, Role,
};
use uuid::Uuid;

use crate::agents::types::Agent;
use crate::context::{load, load_error, present};
use crate::identity::types::contains_pattern;
use crate::ids::gid;
use crate::integrations::types::{Action, Connection};
use crate::list::{Access, List, Relation};
use crate::loaders::{
    ActionById, AgentById, ClientById, ConnectionById, StepCountOfVersion, StepsOfVersion,
    TransitionsOfVersion, TriggersOfWorkflow, VersionsOfWorkflow, WorkflowById, WorkflowStepById,
    WorkflowVersionById, WorkflowsOfClient,
};
use crate::pagination::{CreatedOrderBy, Page, PageArgs};
use crate::payload::Json;
use crate::runs::reports::{ReportPeriod, WorkflowStatsBucket};
use crate::runs::types::{RunFilter, WorkflowRun};
use crate::runs::{latest_runs_page, runs_page};

/// A workflow's life cycle: DRAFT → ACTIVE ⇄ INACTIVE → ARCHIVED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::WorkflowStatus")]
pub enum WorkflowStatus {
    /// Not yet in service (webhook deliveries are refused); activating a version makes
    /// it ACTIVE.
    Draft,
    /// In service: its webhook triggers start runs.
    Active,
    /// Paused: webhook deliveries are refused; `startRun` still starts runs.
    Inactive,
    /// Retired: no run starts, and it moves no further.
    Archived,
}

/// A version's life cycle: drafts change, published versions never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::VersionStatus")]
pub enum WorkflowVersionStatus {
    /// Being edited (spec and graph); only simulations run it.
    Draft,
    /// Immutable; runs may use it, and `activateVersion` makes it the workflow's.
    Published,
    /// A retired published version, unchanged; nothing in the API archives versions
    /// today.
    Archived,
}

/// What a step does; its `config` is checked for its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::StepType")]
pub enum StepType {
    /// Runs a catalog action (`actionId`), optionally through a connection; config is
    /// checked against the action's input schema.
    Action,
    /// Routes on its outgoing transitions' conditions.
    Condition,
    /// Waits for approval: `{approvers?, message?, timeoutHours?}`.
    Approval,
    /// Sends a message: `{channel, message, to?}`.
    Notification,
    /// Waits: `{seconds}`.
    Delay,
    /// One HTTP request: `{url, method?, headers?, timeoutMs?}`.
    Http,
    /// Hands the work to an agent: `{agent, prompt?}`.
    Agent,
    /// Runs a script: `{language, source}`.
    Code,
    /// Reshapes data: `{mapping}`.
    Transform,
}

/// What starts a workflow's runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::TriggerType")]
pub enum TriggerType {
    /// Started by hand.
    Manual,
    /// `{cron, timezone}`: a cron expression in an IANA time zone.
    Schedule,
    /// A signed POST to the trigger's webhook path.
    Webhook,
    /// `{event}`: a named event.
    Event,
}

/// Narrows a tenant's clients; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct ClientFilter {
    /// Matches name, email or company (case-insensitive).
    pub search: Option<String>,
    /// Only active (true) or only deactivated (false) clients.
    pub active: Option<bool>,
}

/// Narrows a tenant's workflows; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct WorkflowFilter {
    /// Any of these statuses.
    pub status: Option<Vec<WorkflowStatus>>,
    /// Only workflows of this client (its ID).
    pub client: Option<ID>,
    /// Matches key, name or description (case-insensitive).
    pub search: Option<String>,
    /// Only deleted workflows (true), or only live ones (false, the default).
    #[graphql(default)]
    pub deleted: bool,
}

/// Narrows a tenant's triggers; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct TriggerFilter {
    /// Only triggers of this workflow (its ID).
    pub workflow: Option<ID>,
    /// Only triggers of this agent (its ID).
    pub agent: Option<ID>,
    /// Only triggers of this type.
    #[graphql(name = "type")]
    pub trigger_type: Option<TriggerType>,
    /// Only active (true) or only inactive (false) triggers.
    pub active: Option<bool>,
}

/// A tenant's customer, whom workflows may be run for.
pub struct Client(pub client::Model);

impl From<client::Model> for Client {
    fn from(m: client::Model) -> Self {
        Self(m)
    }
}

/// A tenant's customer, whom workflows may be run for.
#[Object]
impl Client {
    /// Its global ID (`cli_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Client, self.0.id)
    }
    /// Display name, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// A valid email address; null when none.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    /// At most 64 characters; null when none.
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    /// At most 200 characters; null when none.
    async fn company(&self) -> Option<&str> {
        self.0.company.as_deref()
    }
    /// At most 1000 characters; null when none.
    async fn address(&self) -> Option<&str> {
        self.0.address.as_deref()
    }
    /// Free text, at most 10,000 characters; empty when none.
    async fn notes(&self) -> &str {
        &self.0.notes
    }
    /// False once deactivated (there is no deleting a client).
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The client's workflows (not deleted), oldest first.
    async fn workflows(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Workflow>> {
        let rows = load(ctx, WorkflowsOfClient(self.0.id)).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Workflow).collect())
    }
}

/// An automation: a versioned graph of steps, started by its triggers.
pub struct Workflow(pub workflow::Model);

impl From<workflow::Model> for Workflow {
    fn from(m: workflow::Model) -> Self {
        Self(m)
    }
}

async fn version_by_id(
    ctx: &Context<'_>,
    id: Option<Uuid>,
) -> async_graphql::Result<Option<WorkflowVersion>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, WorkflowVersionById(id))
        .await?
        .map(WorkflowVersion))
}

/// An automation: a versioned graph of steps, started by its triggers.
#[Object]
impl Workflow {
    /// Its global ID (`wf_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Workflow, self.0.id)
    }
    /// Unique in the tenant among workflows that are not deleted.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// At most 4000 characters; empty when none.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Where it is in its life cycle.
    async fn status(&self) -> WorkflowStatus {
        self.0.status.into()
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Set while the workflow is deleted; `restoreWorkflow` clears it.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// The client it is run for; null when none.
    async fn client(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Client>> {
        let Some(id) = self.0.client_id else {
            return Ok(None);
        };
        Ok(load(ctx, ClientById(id)).await?.map(Client))
    }
    /// The published version runs use.
    async fn active_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<WorkflowVersion>> {
        version_by_id(ctx, self.0.active_version_id).await
    }
    /// Every version, by number.
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkflowVersion>> {
        let rows = load(ctx, VersionsOfWorkflow(self.0.id)).await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(WorkflowVersion)
            .collect())
    }
    /// Its runs, newest first by default. A page of workflows asking for their first
    /// runs (no `after`, `filter` or `orderBy`) costs one statement for all of them.
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
        let filter = filter.unwrap_or_default();
        if after.is_none() && filter.is_empty() && order_by.is_none() {
            let args = PageArgs::new(first, None, None).map_err(|e| load_error(ctx, &e))?;
            return latest_runs_page(ctx, self.0.id, args.first).await;
        }
        runs_page(ctx, Some(self.0.id), first, after, filter, order_by).await
    }
    /// Its runs' figures per period (simulations left out): every period from the one
    /// holding `from` up to `to` (at most 400), counted by `createdAt` in UTC. Closed
    /// periods come from the report rollups where the job wrote them.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The length of each bucket.")] period: ReportPeriod,
        #[graphql(desc = "The range's start: the first bucket is the period holding it.")]
        from: DateTime<Utc>,
        #[graphql(
            desc = "The range's end, after `from`: buckets begin before it. More than 400 buckets is BAD_USER_INPUT."
        )]
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<WorkflowStatsBucket>> {
        crate::runs::reports::workflow_stats(ctx, self.0.id, period, from, to).await
    }
    /// Its reports (seed 003's `workflow_reports`): one per period from the one holding
    /// `from` up to `to` (at most 400), DAILY, WEEKLY or MONTHLY by `period`, each with
    /// its figures as a metrics object. The same figures as `stats`, from the same
    /// rollups; a run's own report is `WorkflowRun.report`.
    async fn reports(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The length of each report's period.")] period: ReportPeriod,
        #[graphql(desc = "The range's start: the first report is the period holding it.")]
        from: DateTime<Utc>,
        #[graphql(
            desc = "The range's end, after `from`: periods begin before it. More than 400 is BAD_USER_INPUT."
        )]
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<crate::runs::reports::WorkflowReport>> {
        crate::runs::reports::workflow_reports(ctx, self.0.id, period, from, to).await
    }
    /// What starts its runs.
    async fn triggers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Trigger>> {
        let rows = load(ctx, TriggersOfWorkflow(self.0.id)).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Trigger).collect())
    }
}

/// One numbered version of a workflow: a markdown spec and a graph.
pub struct WorkflowVersion(pub workflow_version::Model);

impl From<workflow_version::Model> for WorkflowVersion {
    fn from(m: workflow_version::Model) -> Self {
        Self(m)
    }
}

async fn steps_of(
    ctx: &Context<'_>,
    version_id: Uuid,
) -> async_graphql::Result<Vec<workflow_step::Model>> {
    Ok(load(ctx, StepsOfVersion(version_id))
        .await?
        .unwrap_or_default())
}

async fn transitions_of(
    ctx: &Context<'_>,
    version_id: Uuid,
) -> async_graphql::Result<Vec<workflow_transition::Model>> {
    Ok(load(ctx, TransitionsOfVersion(version_id))
        .await?
        .unwrap_or_default())
}

/// One numbered version of a workflow: a markdown spec and a graph.
#[Object]
impl WorkflowVersion {
    /// Its global ID (`wfv_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::WorkflowVersion, self.0.id)
    }
    /// 1, 2, 3… within the workflow.
    async fn number(&self) -> i32 {
        self.0.number
    }
    /// What the version does, in markdown.
    async fn spec(&self) -> &str {
        &self.0.spec
    }
    /// Whether it can still change (DRAFT) or never will (PUBLISHED, ARCHIVED).
    async fn status(&self) -> WorkflowVersionStatus {
        self.0.status.into()
    }
    /// When it was published; null while it is a draft.
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.0.published_at
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The workflow it belongs to.
    async fn workflow(&self, ctx: &Context<'_>) -> async_graphql::Result<Workflow> {
        let workflow = load(ctx, WorkflowById(self.0.workflow_id)).await?;
        present(workflow, "a workflow of this tenant").map(Workflow)
    }
    /// The graph's nodes, by their `order`.
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkflowStep>> {
        Ok(steps_of(ctx, self.0.id)
            .await?
            .into_iter()
            .map(WorkflowStep)
            .collect())
    }
    /// The graph's edges, in the order they were saved.
    async fn transitions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WorkflowTransition>> {
        Ok(transitions_of(ctx, self.0.id)
            .await?
            .into_iter()
            .map(WorkflowTransition)
            .collect())
    }
    /// How many steps the graph has (counted without loading them).
    async fn step_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(load(ctx, StepCountOfVersion(self.0.id)).await?.unwrap_or(0))
    }
}

/// A node of a version's graph.
pub struct WorkflowStep(pub workflow_step::Model);

impl From<workflow_step::Model> for WorkflowStep {
    fn from(m: workflow_step::Model) -> Self {
        Self(m)
    }
}

/// A node of a version's graph.
#[Object]
impl WorkflowStep {
    /// Its global ID (`stp_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::WorkflowStep, self.0.id)
    }
    /// Unique within the version; transitions and step runs name steps by it.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What the step is for, in words; `''` when not given.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Its place among the version's steps: 0 for the first, dense and in order
    /// (`WorkflowVersion.steps` lists them by it). The graph's edges are its
    /// transitions; this is the order an editor lists the steps in.
    async fn order(&self) -> i32 {
        self.0.sort_order
    }
    /// What it does.
    #[graphql(name = "type")]
    async fn step_type(&self) -> StepType {
        self.0.step_type.into()
    }
    /// Where an editor draws it (`{x, y}`).
    async fn position(&self) -> Json<&serde_json::Value> {
        Json(&self.0.position)
    }
    /// Its settings, a JSON object checked for its type (an ACTION step's against its
    /// action's input schema).
    async fn config(&self) -> Json<&serde_json::Value> {
        Json(&self.0.config)
    }
    /// Whether a run fails when this step fails (false: the run goes on); runners
    /// apply it.
    async fn is_required(&self) -> bool {
        self.0.is_required
    }
    /// True for the one step without incoming transitions, where runs begin.
    async fn is_entry(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(!transitions_of(ctx, self.0.version_id)
            .await?
            .iter()
            .any(|t| t.to_step_id == self.0.id))
    }
    /// The catalog action an ACTION step runs.
    async fn action(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Action>> {
        let Some(id) = self.0.action_id else {
            return Ok(None);
        };
        Ok(load(ctx, ActionById(id)).await?.map(Action))
    }
    /// The connection the step calls through (ACTION, HTTP, and email, Slack or
    /// webhook NOTIFICATION steps).
    async fn connection(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Connection>> {
        let Some(id) = self.0.connection_id else {
            return Ok(None);
        };
        Ok(load(ctx, ConnectionById(id)).await?.map(Connection))
    }
    /// Transitions leaving this step.
    async fn outgoing(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkflowTransition>> {
        Ok(transitions_of(ctx, self.0.version_id)
            .await?
            .into_iter()
            .filter(|t| t.from_step_id == self.0.id)
            .map(WorkflowTransition)
            .collect())
    }
    /// Transitions arriving at this step.
    async fn incoming(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkflowTransition>> {
        Ok(transitions_of(ctx, self.0.version_id)
            .await?
            .into_iter()
            .filter(|t| t.to_step_id == self.0.id)
            .map(WorkflowTransition)
            .collect())
    }
    /// The version whose graph it belongs to.
    async fn version(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowVersion> {
        present(
            version_by_id(ctx, Some(self.0.version_id)).await?,
            "a step's version",
        )
    }
}

/// An edge of a version's graph.
pub struct WorkflowTransition(pub workflow_transition::Model);

impl From<workflow_transition::Model> for WorkflowTransition {
    fn from(m: workflow_transition::Model) -> Self {
        Self(m)
    }
}

async fn step_by_id(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<WorkflowStep>> {
    Ok(load(ctx, WorkflowStepById(id)).await?.map(WorkflowStep))
}

/// An edge of a version's graph: from one step to another.
#[Object]
impl WorkflowTransition {
    /// Its global ID (`trn_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::WorkflowTransition, self.0.id)
    }
    /// Unique within the version (`from->to` unless given).
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// The step it leaves.
    async fn from(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowStep> {
        present(
            step_by_id(ctx, self.0.from_step_id).await?,
            "a transition's step",
        )
    }
    /// The step it leads to.
    async fn to(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowStep> {
        present(
            step_by_id(ctx, self.0.to_step_id).await?,
            "a transition's step",
        )
    }
    /// `{field, operator, value}`, or `{all: […]}`, `{any: […]}`, `{not: {…}}`; null
    /// for an unconditional edge.
    async fn condition(&self) -> Option<Json<&serde_json::Value>> {
        self.0.condition.as_ref().map(Json)
    }
    /// Taken when no other transition of its step matches.
    async fn is_default(&self) -> bool {
        self.0.is_default
    }
}

/// What starts the runs of a workflow or of an agent.
pub struct Trigger(pub trigger::Model);

impl From<trigger::Model> for Trigger {
    fn from(m: trigger::Model) -> Self {
        Self(m)
    }
}

/// What starts the runs of a workflow or of an agent (exactly one of `workflow` and
/// `agent` is set).
#[Object]
impl Trigger {
    /// Its global ID (`trg_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Trigger, self.0.id)
    }
    /// Unique in the tenant: 2 to 63 lowercase letters, digits, '_' or '-', starting with
    /// a letter.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// What kind of trigger it is; it never changes.
    #[graphql(name = "type")]
    async fn trigger_type(&self) -> TriggerType {
        self.0.trigger_type.into()
    }
    /// Its settings, a JSON object: SCHEDULE `{cron, timezone, catchUp, catchUpWindowSeconds,
    /// overlap}` (timezone UTC, catchUp LATEST, window 3600, overlap SKIP unless given),
    /// EVENT `{event, workflowId, filter}` (docs/engine.md, "Triggers").
    async fn config(&self) -> Json<&serde_json::Value> {
        Json(&self.0.config)
    }
    /// Whether it is switched on; an inactive webhook trigger refuses deliveries.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The workflow whose runs it starts (of its active version); null for a trigger
    /// of an agent.
    async fn workflow(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Workflow>> {
        let Some(id) = self.0.workflow_id else {
            return Ok(None);
        };
        let workflow = load(ctx, WorkflowById(id)).await?;
        present(workflow, "a workflow of this tenant").map(|w| Some(Workflow(w)))
    }
    /// The agent whose runs it starts (of its active version, recorded with the
    /// trigger's type and payload); null for a trigger of a workflow. A deleted agent's
    /// trigger starts nothing until the agent is restored.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentById(id)).await?.map(Agent))
    }
    /// WEBHOOK: the path senders POST to (`/hooks/<id>`); the id is unguessable.
    async fn webhook_path(&self) -> Option<String> {
        self.0.webhook_path.as_ref().map(|p| format!("/hooks/{p}"))
    }
    /// WEBHOOK: until when the previous signing secret is still accepted.
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.previous_secret_expires_at
    }
    /// SCHEDULE: when it fires next (computed in its time zone); null when inactive.
    /// A time in the past is a firing the scheduler has not made yet.
    async fn next_fire_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_fire_at
    }
}

impl List for Client {
    type Entity = client::Entity;
    type Node = Self;
    type Filter = ClientFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<client::Column> = Some(client::Column::TenantId);
    const CREATED_AT: client::Column = client::Column::CreatedAt;
    const ID: client::Column = client::Column::Id;

    fn narrow(
        mut select: Select<client::Entity>,
        filter: ClientFilter,
    ) -> trellis_core::Result<Select<client::Entity>> {
        if let Some(active) = filter.active {
            select = select.filter(client::Column::IsActive.eq(active));
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(name ILIKE $1 OR email ILIKE $1 OR company ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }
}

/// The relations a page of workflows selects are nested (versions, their steps and
/// transitions, latest runs, stats): the workflows list prefetches them itself.
impl List for Workflow {
    type Entity = workflow::Entity;
    type Node = Self;
    type Filter = WorkflowFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<workflow::Column> = Some(workflow::Column::TenantId);
    const CREATED_AT: workflow::Column = workflow::Column::CreatedAt;
    const ID: workflow::Column = workflow::Column::Id;

    fn narrow(
        select: Select<workflow::Entity>,
        filter: WorkflowFilter,
    ) -> trellis_core::Result<Select<workflow::Entity>> {
        let mut select = if filter.deleted {
            select.filter(workflow::Column::DeletedAt.is_not_null())
        } else {
            select.filter(workflow::Column::DeletedAt.is_null())
        };
        if let Some(statuses) = filter.status {
            select = select.filter(
                workflow::Column::Status.is_in(
                    statuses
                        .into_iter()
                        .map(trellis_entity::WorkflowStatus::from),
                ),
            );
        }
        if let Some(client) = filter.client {
            select = select
                .filter(workflow::Column::ClientId.eq(crate::ids::parse(&client, IdKind::Client)?));
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }
}

impl List for Trigger {
    type Entity = trigger::Entity;
    type Node = Self;
    type Filter = TriggerFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<trigger::Column> = Some(trigger::Column::TenantId);
    const CREATED_AT: trigger::Column = trigger::Column::CreatedAt;
    const ID: trigger::Column = trigger::Column::Id;

    fn narrow(
        mut select: Select<trigger::Entity>,
        filter: TriggerFilter,
    ) -> trellis_core::Result<Select<trigger::Entity>> {
        if let Some(workflow) = filter.workflow {
            select = select.filter(
                trigger::Column::WorkflowId.eq(crate::ids::parse(&workflow, IdKind::Workflow)?),
            );
        }
        if let Some(agent) = filter.agent {
            select = select
                .filter(trigger::Column::AgentId.eq(crate::ids::parse(&agent, IdKind::Agent)?));
        }
        if let Some(trigger_type) = filter.trigger_type {
            select = select.filter(
                trigger::Column::TriggerType.eq(trellis_entity::TriggerType::from(trigger_type)),
            );
        }
        if let Some(active) = filter.active {
            select = select.filter(trigger::Column::IsActive.eq(active));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<trigger::Model>> {
        vec![
            Relation::together(&["workflow"], |t| t.workflow_id.map(WorkflowById)),
            Relation::together(&["agent"], |t| t.agent_id.map(AgentById)),
        ]
    }
}
