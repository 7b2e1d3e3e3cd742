//! Hosting: agent channels, the activity feed (with its `agentActivity`
//! subscription) and container health. Every relation of an agent loads through the
//! request's dataloader: a page of agents costs one statement for their channels, one
//! for their latest activities and one for their latest health, whatever its size.

use async_graphql::{
    Context, Enum, InputObject, Object, SelectionField, SimpleObject, Subscription, ID,
};
use chrono::{DateTime, Utc};
use futures::stream::{Stream, StreamExt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Select};
use trellis_core::agents::{activity, channels, health};
use trellis_core::runs::live::LiveEvent;
use trellis_core::RequestScope;
use trellis_entity::columns::ColumnSet;
use trellis_entity::{agent, agent_activity, agent_channel, container_health, IdKind, Role};
use uuid::Uuid;

use super::types::Agent;
use crate::context::{load, load_error, mutate, run, ContextExt};
use crate::identity::types::{input_id, maybe_id, optional_id, ApiKey, User};
use crate::identity::IdInput;
use crate::ids::{self, gid};
use crate::in_place::in_place_object;
use crate::integrations::types::Connection;
use crate::list::{self, Access, Arguments, List};
use crate::live::{session, InScope, LiveSession};
use crate::loaders::{
    activity_type_bits, columns_for, AgentById, ApiKeyById, ChannelsOfAgent, ConnectionById,
    LatestActivitiesOfAgent, LatestHealthOfAgent, UserById,
};
use crate::pagination::{first_page, CreatedOrderBy, Page, PageArgs};
use crate::payload::{json_or_empty, Json};
use crate::runs::subscription::{ends_after_error, follow};

/// How an agent speaks to people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ChannelType")]
pub enum ChannelType {
    /// A Slack channel (`config: {channel}`); the bot token lives in its connection.
    Slack,
    /// Email (`config: {to, subjectPrefix}`); SMTP credentials, if any, in its connection.
    Email,
    /// An HTTP POST (`config: {url}`); a signing key, if any, in its connection.
    Webhook,
}

/// What an entry of an agent's activity feed is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ActivityType")]
pub enum ActivityType {
    /// Something the agent said or was told.
    Message,
    /// Work the agent did or took on.
    Task,
    /// Something that needs a person's attention.
    Alert,
}

/// How a hosted container is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::HealthStatus")]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working, with trouble (slow, short of memory).
    Degraded,
    /// Not working.
    Unhealthy,
}

/// A channel an agent speaks through. Its credentials are in `connection`; `config`
/// never holds a secret.
pub struct AgentChannel(pub agent_channel::Model);

impl From<agent_channel::Model> for AgentChannel {
    fn from(m: agent_channel::Model) -> Self {
        Self(m)
    }
}

/// A channel an agent speaks through. Its credentials are in `connection`; `config`
/// never holds a secret.
#[Object]
impl AgentChannel {
    /// Its global ID (`chn_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AgentChannel, self.0.id)
    }
    /// Its type.
    #[graphql(name = "type")]
    async fn channel_type(&self) -> ChannelType {
        self.0.channel_type.into()
    }
    /// Its settings for its type (no secrets).
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }
    /// Whether it is in use; an agent has at most one active channel per type.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// The connection holding its credentials; null when it needs none.
    async fn connection(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Connection>> {
        let Some(id) = self.0.connection_id else {
            return Ok(None);
        };
        Ok(load(ctx, ConnectionById(id)).await?.map(Connection))
    }
    /// Its agent.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        Ok(load(ctx, AgentById(self.0.agent_id)).await?.map(Agent))
    }
    /// Who added it; null for an API key or a deleted user.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        Ok(load(ctx, UserById(id)).await?.map(User))
    }
    /// When it was added.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One entry of an agent's activity feed.
pub struct AgentActivity(pub agent_activity::Model);

impl From<agent_activity::Model> for AgentActivity {
    fn from(m: agent_activity::Model) -> Self {
        Self(m)
    }
}

impl AgentActivity {
    /// Its global ID (what the `Node` interface reads).
    pub async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        AgentActivityFields(&self.0).id(ctx).await
    }
}

in_place_object!(AgentActivity => AgentActivityFields);

/// The fields of [`AgentActivity`], resolved in place (a dashboard lists ten per agent).
pub struct AgentActivityFields<'a>(&'a agent_activity::Model);

/// One entry of an agent's activity feed.
#[Object(name = "AgentActivity")]
impl AgentActivityFields<'_> {
    /// Its global ID (`acv_…`).
    async fn id(&self) -> ID {
        gid(IdKind::AgentActivity, self.0.id)
    }
    /// What it is.
    #[graphql(name = "type")]
    async fn activity_type(&self) -> ActivityType {
        self.0.activity_type.into()
    }
    /// One line for people.
    async fn summary(&self) -> &str {
        &self.0.summary
    }
    /// Anything more, as the writer gave it.
    async fn details(&self) -> Json<serde_json::Value> {
        Json(self.0.details.clone())
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The run it happened in (`run_…`); null when no run wrote it.
    async fn run_id(&self) -> Option<ID> {
        self.0.run_id.map(|id| gid(IdKind::WorkflowRun, id))
    }
    /// Its agent.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        Ok(load(ctx, AgentById(self.0.agent_id)).await?.map(Agent))
    }
    /// The member who recorded it; null for a key, a run or a deleted user.
    async fn recorded_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.recorded_by else {
            return Ok(None);
        };
        Ok(load(ctx, UserById(id)).await?.map(User))
    }
    /// The API key (a runner) that recorded it; null otherwise.
    async fn recorded_by_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ApiKey>> {
        let Some(id) = self.0.recorded_by_key else {
            return Ok(None);
        };
        Ok(load(ctx, ApiKeyById(id)).await?.map(ApiKey))
    }
}

/// Narrows an agent's activities.
#[derive(InputObject, Default)]
pub struct AgentActivityFilter {
    /// Any of these types.
    #[graphql(name = "type")]
    pub activity_type: Option<Vec<ActivityType>>,
}

impl AgentActivityFilter {
    fn types(&self) -> Vec<trellis_entity::ActivityType> {
        self.activity_type
            .iter()
            .flatten()
            .map(|t| (*t).into())
            .collect()
    }

    /// Its types, or every type when it names none.
    fn types_or_all(&self) -> Vec<trellis_entity::ActivityType> {
        let types = self.types();
        if !types.is_empty() {
            return types;
        }
        use trellis_entity::ActivityType;
        vec![
            ActivityType::Message,
            ActivityType::Task,
            ActivityType::Alert,
        ]
    }
}

impl List for AgentActivity {
    type Entity = agent_activity::Entity;
    type Node = Self;
    type Filter = AgentActivityFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<agent_activity::Column> = Some(agent_activity::Column::TenantId);
    const CREATED_AT: agent_activity::Column = agent_activity::Column::CreatedAt;
    const ID: agent_activity::Column = agent_activity::Column::Id;

    fn narrow(
        select: Select<agent_activity::Entity>,
        filter: AgentActivityFilter,
    ) -> trellis_core::Result<Select<agent_activity::Entity>> {
        let types = filter.types();
        Ok(if types.is_empty() {
            select
        } else {
            select.filter(agent_activity::Column::ActivityType.is_in(types))
        })
    }
}

/// The columns each field of [`AgentActivity`] reads, beyond the id (the cursor), the
/// agent (the rows are grouped by it), the type (an enum) and the time (the order).
const ACTIVITY_FIELD_COLUMNS: &[(&str, &[agent_activity::Column])] = {
    use agent_activity::Column as C;
    &[
        ("__typename", &[]),
        ("id", &[]),
        ("type", &[]),
        ("at", &[]),
        ("agent", &[]),
        ("summary", &[C::Summary]),
        ("details", &[C::Details]),
        ("runId", &[C::RunId]),
        ("recordedBy", &[C::RecordedBy]),
        ("recordedByKey", &[C::RecordedByKey]),
    ]
};

/// The columns a page of activities reads for `selection` (the activities' own fields).
fn activity_columns(selection: &async_graphql::Lookahead<'_>) -> ColumnSet {
    use agent_activity::Column as C;
    columns_for(
        selection,
        [C::Id, C::AgentId, C::ActivityType, C::CreatedAt],
        ACTIVITY_FIELD_COLUMNS,
    )
}

/// The activities of an agent, newest first unless ordered otherwise. A first page
/// (no `after` or `orderBy`) loads with every other agent's of the request in one
/// statement (with the page's other relations when a page of agents asks).
pub(crate) async fn activities_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<AgentActivityFilter>,
    order_by: Option<CreatedOrderBy>,
) -> async_graphql::Result<Page<AgentActivity>> {
    if after.is_none() && order_by.is_none_or(|o| o == CreatedOrderBy::CreatedAtDesc) {
        let scope = ctx.scope()?;
        let tenant = run(ctx, scope.require(Role::Viewer)).await?;
        let args = PageArgs::new(first, None, None).map_err(|e| load_error(ctx, &e))?;
        let filter = filter.unwrap_or_default();
        let key = FirstActivities::new(args.first, &filter, &ctx.look_ahead()).of(agent_id);
        let rows = ctx
            .loader()?
            .load_one(key)
            .await
            .map_err(|e| load_error(ctx, &e))?
            .unwrap_or_default();
        let count = agent_activity::Entity::find()
            .filter(agent_activity::Column::TenantId.eq(tenant.tenant_id))
            .filter(agent_activity::Column::AgentId.eq(agent_id))
            .filter(agent_activity::Column::ActivityType.is_in(filter.types_or_all()));
        return Ok(first_page(scope, count, rows, args.first));
    }
    let within = sea_orm::Condition::all().add(agent_activity::Column::AgentId.eq(agent_id));
    list::page::<AgentActivity>(ctx, Some(within), first, after, filter, order_by).await
}

/// A first page of activities, newest first, as a field asks for it whatever the agent:
/// how many rows (one more than the page, to tell whether there is a next one), of
/// which types, with which columns.
#[derive(Clone, Copy)]
pub(crate) struct FirstActivities {
    limit: u64,
    types: u8,
    columns: ColumnSet,
}

impl FirstActivities {
    /// The first `first` activities passing `filter`, with the columns `selection` (the
    /// `activities` field's) reads.
    fn new(
        first: u64,
        filter: &AgentActivityFilter,
        selection: &async_graphql::Lookahead<'_>,
    ) -> Self {
        Self {
            limit: first + 1,
            types: activity_type_bits(&filter.types_or_all()),
            columns: activity_columns(&selection.field("edges").field("node"))
                .union(activity_columns(&selection.field("nodes"))),
        }
    }

    /// What `field` (an agent's `activities`) asks for, when it asks for a first page,
    /// for a page of agents to read together; `None` otherwise (another page, another
    /// order, an argument that does not parse), left to the field itself.
    pub(crate) fn selected(field: &SelectionField<'_>) -> Option<Self> {
        let arguments = Arguments::of(field)?;
        let after: Option<String> = arguments.get("after")?;
        let order_by: Option<CreatedOrderBy> = arguments.get("orderBy")?;
        if after.is_some() || order_by.is_some_and(|o| o != CreatedOrderBy::CreatedAtDesc) {
            return None;
        }
        let first: Option<i32> = arguments.get("first")?;
        let filter = arguments
            .get::<Option<AgentActivityFilter>>("filter")?
            .unwrap_or_default();
        let args = PageArgs::new(first, None, None).ok()?;
        Some(Self::new(
            args.first,
            &filter,
            &async_graphql::Lookahead::from(*field),
        ))
    }

    /// Its dataloader key for the agent `agent_id`.
    pub(crate) fn of(self, agent_id: Uuid) -> LatestActivitiesOfAgent {
        LatestActivitiesOfAgent {
            agent_id,
            limit: self.limit,
            types: self.types,
            columns: self.columns,
        }
    }
}

/// The channels of an agent, oldest first.
pub(crate) async fn channels_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
) -> async_graphql::Result<Vec<AgentChannel>> {
    Ok(load(ctx, ChannelsOfAgent(agent_id))
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(AgentChannel)
        .collect())
}

/// The latest health sample of an agent.
pub(crate) async fn health_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
) -> async_graphql::Result<Option<ContainerHealth>> {
    Ok(load(ctx, LatestHealthOfAgent(agent_id))
        .await?
        .map(ContainerHealth))
}

/// One health sample of a container, as its runner reported it.
pub struct ContainerHealth(pub container_health::Model);

impl From<container_health::Model> for ContainerHealth {
    fn from(m: container_health::Model) -> Self {
        Self(m)
    }
}

/// One health sample of a container, as its runner reported it.
#[Object]
impl ContainerHealth {
    /// Its global ID (`hlt_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::ContainerHealth, self.0.id)
    }
    /// How the container was doing.
    async fn status(&self) -> HealthStatus {
        self.0.status.into()
    }
    /// CPU in percent of one core.
    async fn cpu(&self) -> f64 {
        self.0.cpu
    }
    /// Memory in use, in bytes.
    async fn memory_bytes(&self) -> i64 {
        self.0.memory_bytes
    }
    /// When it was reported.
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    /// The agent the container hosts; null when the report named none.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentById(id)).await?.map(Agent))
    }
}

/// One hour of a tenant's container health.
#[derive(SimpleObject)]
pub struct HealthHour {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// Samples reported in the hour.
    pub samples: i64,
    /// Of which HEALTHY.
    pub healthy: i64,
    /// Of which DEGRADED.
    pub degraded: i64,
    /// Of which UNHEALTHY.
    pub unhealthy: i64,
    /// Average CPU, percent of one core.
    pub cpu_avg: f64,
    /// Highest CPU.
    pub cpu_max: f64,
    /// Average memory, bytes.
    pub memory_avg: f64,
    /// Highest memory, bytes.
    pub memory_max: i64,
}

impl From<health::HealthHour> for HealthHour {
    fn from(h: health::HealthHour) -> Self {
        Self {
            hour: h.hour,
            samples: h.samples,
            healthy: h.healthy,
            degraded: h.degraded,
            unhealthy: h.unhealthy,
            cpu_avg: h.cpu_avg,
            cpu_max: h.cpu_max,
            memory_avg: h.memory_avg,
            memory_max: h.memory_max,
        }
    }
}

/// The active tenant's hourly health series (`tenant.health`).
pub(crate) async fn tenant_health(
    ctx: &Context<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent_id: Option<ID>,
) -> async_graphql::Result<Vec<HealthHour>> {
    let agent_id = optional_id(ctx, agent_id.as_ref(), IdKind::Agent)?;
    let rows = run(ctx, health::series(ctx.scope()?, from, to, agent_id)).await?;
    Ok(rows.into_iter().map(HealthHour::from).collect())
}

payload!(
    /// The channel a mutation created, changed or deleted, or the input's problems.
    AgentChannelPayload {
        /// The channel (as it was, for a delete); null when `userErrors` is not empty.
        channel: AgentChannel,
    }
);
payload!(
    /// The activity recorded, or the input's problems.
    AgentActivityPayload {
        /// The new activity; null when `userErrors` is not empty.
        activity: AgentActivity,
    }
);
payload!(
    /// The health sample recorded, or the input's problems.
    ReportHealthPayload {
        /// The new sample; null when `userErrors` is not empty.
        health: ContainerHealth,
    }
);

/// A new channel of an agent.
#[derive(InputObject)]
pub struct CreateAgentChannelInput {
    /// The agent (`agt_…`).
    pub agent_id: ID,
    /// The channel's type.
    #[graphql(name = "type")]
    pub channel_type: ChannelType,
    /// Its settings: SLACK `{channel}`, EMAIL `{to, subjectPrefix?}`, WEBHOOK `{url}`.
    /// Never a secret: a key or value that looks like one is BAD_USER_INPUT.
    pub config: Json<serde_json::Value>,
    /// The connection holding its credentials (`con_…`, of this tenant); required for
    /// SLACK.
    pub connection_id: Option<ID>,
    /// True when omitted; an agent has at most one active channel per type.
    #[graphql(default = true)]
    pub is_active: bool,
}

/// Changes to a channel; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAgentChannelInput {
    /// The channel (`chn_…`).
    pub id: ID,
    /// New settings for its type (replace the old ones whole).
    pub config: Option<Json<serde_json::Value>>,
    /// Another connection (`con_…`); null removes it (not for SLACK).
    pub connection_id: async_graphql::MaybeUndefined<ID>,
    /// Whether it is in use.
    pub is_active: Option<bool>,
}

/// An activity to record.
#[derive(InputObject)]
pub struct RecordAgentActivityInput {
    /// The agent (`agt_…`).
    pub agent_id: ID,
    /// What it is.
    #[graphql(name = "type")]
    pub activity_type: ActivityType,
    /// One line, 1 to 1000 characters.
    pub summary: String,
    /// Anything more, a JSON object of at most 64 KiB; `{}` when omitted.
    pub details: Option<Json<serde_json::Value>>,
}

/// A health sample of a container.
#[derive(InputObject)]
pub struct ReportHealthInput {
    /// The agent the container hosts (`agt_…`), when known.
    pub agent_id: Option<ID>,
    /// How the container is doing.
    pub status: HealthStatus,
    /// CPU in percent of one core, 0 to 100000.
    pub cpu: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: i64,
}

fn channel_payload(
    (row, user_errors): (Option<agent_channel::Model>, Vec<crate::error::UserError>),
) -> AgentChannelPayload {
    AgentChannelPayload {
        channel: row.map(AgentChannel),
        user_errors,
    }
}

#[derive(Default)]
pub struct HostingMutation;

#[Object]
impl HostingMutation {
    /// Adds a channel to an agent (builders).
    async fn create_agent_channel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent and its new channel.")] input: CreateAgentChannelInput,
    ) -> async_graphql::Result<AgentChannelPayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let connection_id = optional_id(ctx, input.connection_id.as_ref(), IdKind::Connection)?;
        Ok(channel_payload(
            mutate(
                ctx,
                channels::create_channel(
                    ctx.scope()?,
                    agent_id,
                    input.channel_type.into(),
                    input.config.0,
                    connection_id,
                    input.is_active,
                ),
            )
            .await?,
        ))
    }

    /// Changes a channel (builders).
    async fn update_agent_channel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The channel and its changes.")] input: UpdateAgentChannelInput,
    ) -> async_graphql::Result<AgentChannelPayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentChannel)?;
        let connection_id = maybe_id(ctx, input.connection_id, IdKind::Connection)?;
        let changes = channels::ChannelChanges {
            config: input.config.map(|c| c.0),
            connection_id,
            is_active: input.is_active,
        };
        Ok(channel_payload(
            mutate(ctx, channels::update_channel(ctx.scope()?, id, changes)).await?,
        ))
    }

    /// Deletes a channel (builders).
    async fn delete_agent_channel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The channel (`chn_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentChannelPayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentChannel)?;
        Ok(channel_payload(
            mutate(ctx, channels::delete_channel(ctx.scope()?, id)).await?,
        ))
    }

    /// Records an activity of an agent: an API key with the RUNNER scope, or a member
    /// who may run things (operators and above). Subscribers of `agentActivity` see
    /// it once this request commits.
    async fn record_agent_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent and what it did.")] input: RecordAgentActivityInput,
    ) -> async_graphql::Result<AgentActivityPayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let (row, user_errors) = mutate(
            ctx,
            activity::record_activity(
                ctx.scope()?,
                agent_id,
                input.activity_type.into(),
                input.summary,
                json_or_empty(input.details),
            ),
        )
        .await?;
        Ok(AgentActivityPayload {
            activity: row.map(AgentActivity),
            user_errors,
        })
    }

    /// Reports the health of a container of the tenant (API keys with the RUNNER scope
    /// only). A tenant created to be hosted leaves PROVISIONING with its first report:
    /// HEALTHY makes it ACTIVE, UNHEALTHY FAILED.
    async fn report_health(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The sample.")] input: ReportHealthInput,
    ) -> async_graphql::Result<ReportHealthPayload> {
        let agent_id = optional_id(ctx, input.agent_id.as_ref(), IdKind::Agent)?;
        let report = health::Report {
            agent_id,
            status: input.status.into(),
            cpu: input.cpu,
            memory_bytes: input.memory_bytes,
        };
        let (row, user_errors) = mutate(ctx, health::report(ctx.scope()?, report)).await?;
        Ok(ReportHealthPayload {
            health: row.map(ContainerHealth),
            user_errors,
        })
    }
}

#[derive(Default)]
pub struct HostingSubscription;

#[Subscription]
impl HostingSubscription {
    /// Each activity of the agent as it is recorded. Another tenant's agent is
    /// NOT_FOUND.
    async fn agent_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent to follow (`agt_…`).")] agent_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InScope<AgentActivity>>>>
    {
        let session = session(ctx)?;
        // Subscribe before checking, so that nothing recorded after the check is missed.
        let events = session.events.subscribe();
        let id = ids::parse(&agent_id, IdKind::Agent).map_err(|e| session.error(&e))?;
        let scope = session.scope();
        let checked = check_agent(&scope, id).await;
        RequestScope::end_read(scope, checked.is_ok()).await;
        let tenant_id = checked.map_err(|e| session.error(&e))?;
        let activities = follow(session, events, move |event| {
            matches!(event, LiveEvent::AgentActivity { tenant_id: t, agent_id: a, .. }
                if *t == tenant_id && *a == id)
        })
        .then(move |(session, event)| async move {
            let LiveEvent::AgentActivity { activity_id, .. } = event else {
                return Ok(None);
            };
            read_activity(&session, id, activity_id).await
        })
        .filter_map(|read| async move { read.transpose() });
        Ok(ends_after_error(activities))
    }
}

/// The subscriber's tenant, when the agent is one of its live agents.
async fn check_agent(scope: &RequestScope, id: Uuid) -> trellis_core::Result<Uuid> {
    let tenant = scope.require(Role::Viewer).await?;
    agent::Entity::find_by_id(id)
        .filter(agent::Column::TenantId.eq(tenant.tenant_id))
        .filter(agent::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?
        .ok_or(trellis_core::Error::NotFound)?;
    Ok(tenant.tenant_id)
}

/// Reads an announced activity in a fresh scope of the subscriber (what the database
/// says decides, not the announcement); `None`, with the scope ended, when it is not
/// visible or not the agent's.
async fn read_activity(
    session: &LiveSession,
    agent_id: Uuid,
    activity_id: Uuid,
) -> async_graphql::Result<Option<InScope<AgentActivity>>> {
    let scope = session.scope();
    let read = async {
        let tenant = scope.require(Role::Viewer).await?;
        let row = agent_activity::Entity::find_by_id(activity_id)
            .filter(agent_activity::Column::TenantId.eq(tenant.tenant_id))
            .filter(agent_activity::Column::AgentId.eq(agent_id))
            .one(scope.tx().await?)
            .await?;
        trellis_core::Result::Ok(row)
    }
    .await;
    match read {
        Ok(Some(row)) => Ok(Some(InScope::new(scope, AgentActivity(row)))),
        Ok(None) => {
            RequestScope::end_read(scope, true).await;
            Ok(None)
        }
        Err(err) => {
            RequestScope::end_read(scope, false).await;
            Err(session.error(&err))
        }
    }
}
