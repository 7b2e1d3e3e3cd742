//! Alerts: `alerts` and `platformAlerts` (Relay lists through the list builder),
//! `Agent.alerts`, `acknowledgeAlert`, `resolveAlert` and the `alertRaised`
//! subscription. A tenant's alerts are its members'; platform alerts (no tenant) are
//! read and changed on the platform-administration path only.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, InputType, Object, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::stream::{Stream, StreamExt};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, Select};
use trellis_core::runs::live::LiveEvent;
use trellis_core::RequestScope;
use trellis_entity::{agent, alert, IdKind, Role};
use uuid::Uuid;

use crate::agents::types::Agent;
use crate::alert_rules::AlertRule;
use crate::context::{load, load_error, mutate, run, ContextExt};
use crate::identity::types::{input_id, User};
use crate::identity::IdInput;
use crate::ids::{self, gid};
use crate::list::{self, Access, List, Relation};
use crate::live::{session, InScope, LiveSession};
use crate::loaders::{prefetch, AgentById, AlertRuleById, LatestAlertsOfAgent, UserById};
use crate::pagination::{
    first_page, node_selection, CreatedOrderBy, Keyed, KeysetCursor, Page, PageArgs,
};
use crate::payload::Json;
use crate::runs::subscription::{ends_after_error, follow};

/// How much an alert matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::Severity")]
pub enum AlertSeverity {
    /// Worth knowing.
    Info,
    /// Needs a look soon.
    Warning,
    /// Something is refused or broken now (a budget reached: the agent's runs are
    /// refused).
    Critical,
}

/// Narrows alerts; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AlertFilter {
    /// Any of these severities.
    pub severity: Option<Vec<AlertSeverity>>,
    /// Only open alerts (true: not resolved) or only resolved ones (false).
    pub open: Option<bool>,
    /// Only this agent's (`agt_…`); another tenant's agent matches nothing.
    pub agent_id: Option<ID>,
}

impl AlertFilter {
    /// Whether only `open` is given: the shape a page of agents loads in one statement.
    fn only_open(&self) -> bool {
        self.severity.is_none() && self.agent_id.is_none()
    }
}

/// Something to look at: raised once per dedupe key while open (by budgets and alert
/// rules), then acknowledged and resolved by people.
pub struct Alert(pub alert::Model);

impl From<alert::Model> for Alert {
    fn from(m: alert::Model) -> Self {
        Self(m)
    }
}

impl Keyed for alert::Model {
    fn cursor(&self) -> KeysetCursor {
        KeysetCursor {
            created_at: self.raised_at,
            id: self.id,
        }
    }
}

async fn user(ctx: &Context<'_>, id: Option<Uuid>) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, UserById(id)).await?.map(User))
}

/// Something to look at: raised once per dedupe key while open (by budgets and alert
/// rules), then acknowledged and resolved by people.
#[Object]
impl Alert {
    /// Its global ID (`alr_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Alert, self.0.id)
    }
    /// How much it matters.
    async fn severity(&self) -> AlertSeverity {
        self.0.severity.into()
    }
    /// What raised it: `budget` (an agent reached its monthly budget) or `rule` (an
    /// alert rule's condition held; see `rule`).
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// What happened, for people.
    async fn message(&self) -> &str {
        &self.0.message
    }
    /// The figures behind it (for a budget alert: the month, spending and limits; for a
    /// rule's: the rule's settings and what was measured).
    async fn details(&self) -> Json<serde_json::Value> {
        Json(self.0.details.clone())
    }
    /// At most one open alert has this key in a tenant; raising it again while open
    /// changes nothing.
    async fn dedupe_key(&self) -> &str {
        &self.0.dedupe_key
    }
    /// Whether it is a platform alert (no tenant; platform admins only).
    async fn platform(&self) -> bool {
        self.0.tenant_id.is_none()
    }
    /// The agent it is about; null when none.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentById(id)).await?.map(Agent))
    }
    /// The alert rule that raised it (source `rule`); null for other sources, or once
    /// the rule was deleted.
    async fn rule(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AlertRule>> {
        let Some(id) = self.0.rule_id else {
            return Ok(None);
        };
        Ok(load(ctx, AlertRuleById(id)).await?.map(AlertRule))
    }
    /// Whether it is open (not resolved).
    async fn open(&self) -> bool {
        self.0.resolved_at.is_none()
    }
    /// When it was raised.
    async fn raised_at(&self) -> DateTime<Utc> {
        self.0.raised_at
    }
    /// When someone acknowledged it; null until then.
    async fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.0.acknowledged_at
    }
    /// Who acknowledged it; null for an API key, or until then.
    async fn acknowledged_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.acknowledged_by).await
    }
    /// When it was resolved; null while open.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Who resolved it; null for an API key, or while open.
    async fn resolved_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        user(ctx, self.0.resolved_by).await
    }
}

fn narrow_alerts(
    mut select: Select<alert::Entity>,
    filter: AlertFilter,
) -> trellis_core::Result<Select<alert::Entity>> {
    if let Some(severities) = filter.severity {
        select = select.filter(
            alert::Column::Severity
                .is_in(severities.into_iter().map(trellis_entity::Severity::from)),
        );
    }
    match filter.open {
        Some(true) => select = select.filter(alert::Column::ResolvedAt.is_null()),
        Some(false) => select = select.filter(alert::Column::ResolvedAt.is_not_null()),
        None => {}
    }
    if let Some(agent) = filter.agent_id {
        select = select.filter(alert::Column::AgentId.eq(ids::parse(&agent, IdKind::Agent)?));
    }
    Ok(select)
}

fn alert_relations() -> Vec<Relation<alert::Model>> {
    vec![
        Relation::together(&["agent"], |a| a.agent_id.map(AgentById)),
        Relation::by(&["acknowledgedBy"], |a| a.acknowledged_by.map(UserById)),
        Relation::by(&["resolvedBy"], |a| a.resolved_by.map(UserById)),
        Relation::together(&["rule"], |a| a.rule_id.map(AlertRuleById)),
    ]
}

/// The active tenant's alerts, newest first by default.
impl List for Alert {
    type Entity = alert::Entity;
    type Node = Self;
    type Filter = AlertFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<alert::Column> = Some(alert::Column::TenantId);
    const CREATED_AT: alert::Column = alert::Column::RaisedAt;
    const ID: alert::Column = alert::Column::Id;

    fn narrow(
        select: Select<alert::Entity>,
        filter: AlertFilter,
    ) -> trellis_core::Result<Select<alert::Entity>> {
        narrow_alerts(select, filter)
    }

    fn relations() -> Vec<Relation<alert::Model>> {
        alert_relations()
    }
}

/// Platform alerts (no tenant), for platform admins.
struct PlatformAlerts;

impl List for PlatformAlerts {
    type Entity = alert::Entity;
    type Node = Alert;
    type Filter = AlertFilter;
    const ACCESS: Access = Access::PlatformAdmin;
    const TENANT: Option<alert::Column> = None;
    const CREATED_AT: alert::Column = alert::Column::RaisedAt;
    const ID: alert::Column = alert::Column::Id;

    fn narrow(
        select: Select<alert::Entity>,
        filter: AlertFilter,
    ) -> trellis_core::Result<Select<alert::Entity>> {
        narrow_alerts(select.filter(alert::Column::TenantId.is_null()), filter)
    }

    fn relations() -> Vec<Relation<alert::Model>> {
        alert_relations()
    }
}

/// `Agent.alerts`. The first page of newest alerts, all or only open or only resolved
/// ones, is read for every agent of a page in one statement (see
/// [`prefetch_agent_alerts`]); any other shape pages through the list builder.
pub(crate) async fn alerts_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<AlertFilter>,
    order_by: Option<CreatedOrderBy>,
) -> async_graphql::Result<Page<Alert>> {
    let simple =
        after.is_none() && order_by.is_none() && filter.as_ref().is_none_or(AlertFilter::only_open);
    if !simple {
        let within = Condition::all().add(Expr::col(alert::Column::AgentId).eq(agent_id));
        return list::page::<Alert>(ctx, Some(within), first, after, filter, order_by).await;
    }
    let open = filter.and_then(|f| f.open);
    let args = PageArgs::new(first, None, None).map_err(|e| load_error(ctx, &e))?;
    let scope = ctx.scope()?;
    let tenant = run(ctx, scope.require(Role::Viewer)).await?;
    let rows = ctx
        .loader()?
        .load_one(LatestAlertsOfAgent {
            agent_id,
            limit: args.first + 1,
            open,
        })
        .await
        .map_err(|e| load_error(ctx, &e))?
        .unwrap_or_default();
    let mut count = alert::Entity::find()
        .filter(alert::Column::TenantId.eq(tenant.tenant_id))
        .filter(alert::Column::AgentId.eq(agent_id));
    match open {
        Some(true) => count = count.filter(alert::Column::ResolvedAt.is_null()),
        Some(false) => count = count.filter(alert::Column::ResolvedAt.is_not_null()),
        None => {}
    }
    Ok(first_page(scope, count, rows, args.first))
}

/// When a page of agents selects `alerts` in the simple shape (`first` and
/// `filter: {open}` at most), loads them for every agent in one statement, and their
/// agents and users in one more each. Best effort: anything else is left to each
/// agent's own field.
pub(crate) async fn prefetch_agent_alerts(
    ctx: &Context<'_>,
    agents: &[&agent::Model],
) -> async_graphql::Result<()> {
    for field in node_selection(ctx).field("alerts").selection_fields() {
        let mut first = None;
        let mut open = None;
        for (name, value) in field.arguments()? {
            match (name.as_str(), value) {
                ("first", async_graphql::Value::Number(n)) => first = n.as_i64(),
                ("first" | "filter", async_graphql::Value::Null) => {}
                ("filter", value) => match AlertFilter::parse(Some(value)) {
                    Ok(filter) if filter.only_open() => open = filter.open,
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
        }
        let first = match first {
            None => crate::pagination::DEFAULT_PAGE_SIZE as u64,
            Some(n) if (0..=i64::from(crate::pagination::MAX_PAGE_SIZE)).contains(&n) => n as u64,
            Some(_) => return Ok(()),
        };
        let loader = ctx.loader()?;
        let fail = |e: Arc<trellis_core::Error>| load_error(ctx, &e);
        let keys: Vec<LatestAlertsOfAgent> = agents
            .iter()
            .map(|a| LatestAlertsOfAgent {
                agent_id: a.id,
                limit: first + 1,
                open,
            })
            .collect();
        prefetch(loader, keys.iter().copied()).await.map_err(fail)?;
        let node = node_selection(ctx)
            .field("alerts")
            .field("edges")
            .field("node");
        let (ack, res) = (
            node.field("acknowledgedBy").exists(),
            node.field("resolvedBy").exists(),
        );
        if ack || res {
            let mut users = vec![];
            for key in &keys {
                for a in loader
                    .load_one(*key)
                    .await
                    .map_err(fail)?
                    .unwrap_or_default()
                {
                    users.extend(a.acknowledged_by.filter(|_| ack).map(UserById));
                    users.extend(a.resolved_by.filter(|_| res).map(UserById));
                }
            }
            prefetch(loader, users).await.map_err(fail)?;
        }
    }
    Ok(())
}

payload!(
    /// The alert a mutation changed.
    AlertPayload {
        /// The alert as it is now; null when `userErrors` is not empty.
        alert: Alert,
    }
);

#[derive(Default)]
pub struct AlertsQuery;

#[Object]
impl AlertsQuery {
    /// The active tenant's alerts (any member), newest first by default.
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
            AlertFilter,
        >,
        #[graphql(
            desc = "Order by when they were raised; CREATED_AT_DESC (newest first) when omitted."
        )]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Alert>> {
        list::page::<Alert>(ctx, None, first, after, filter, order_by).await
    }

    /// Platform alerts, which belong to no tenant (platform admins only, on the audited
    /// platform-administration path; FORBIDDEN otherwise).
    async fn platform_alerts(
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
            AlertFilter,
        >,
        #[graphql(
            desc = "Order by when they were raised; CREATED_AT_DESC (newest first) when omitted."
        )]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Alert>> {
        list::page::<PlatformAlerts>(ctx, None, first, after, filter, order_by).await
    }
}

#[derive(Default)]
pub struct AlertsMutation;

#[Object]
impl AlertsMutation {
    /// Acknowledges an alert: someone is on it (operators; platform admins for platform
    /// alerts). Another tenant's alert is NOT_FOUND. Again: no change.
    async fn acknowledge_alert(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The alert (`alr_…`).")] input: IdInput,
    ) -> async_graphql::Result<AlertPayload> {
        let id = input_id(ctx, &input.id, IdKind::Alert)?;
        let (row, user_errors) =
            mutate(ctx, trellis_core::alerts::acknowledge(ctx.scope()?, id)).await?;
        Ok(AlertPayload {
            alert: row.map(Alert),
            user_errors,
        })
    }

    /// Resolves an alert (operators; platform admins for platform alerts): it closes,
    /// and the same condition may raise a new one. Another tenant's alert is NOT_FOUND.
    /// Again: no change.
    async fn resolve_alert(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The alert (`alr_…`).")] input: IdInput,
    ) -> async_graphql::Result<AlertPayload> {
        let id = input_id(ctx, &input.id, IdKind::Alert)?;
        let (row, user_errors) =
            mutate(ctx, trellis_core::alerts::resolve(ctx.scope()?, id)).await?;
        Ok(AlertPayload {
            alert: row.map(Alert),
            user_errors,
        })
    }
}

#[derive(Default)]
pub struct AlertsSubscription;

#[Subscription]
impl AlertsSubscription {
    /// Each alert raised in the subscriber's tenant from now on (or only those of one
    /// agent), as it is when read. Platform alerts are not sent here.
    async fn alert_raised(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only this agent's alerts (`agt_…`; another tenant's is NOT_FOUND); every alert of the tenant when omitted."
        )]
        agent_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InScope<Alert>>>> {
        let session = session(ctx)?;
        // Subscribe before checking, so that no alert after the check is missed.
        let events = session.events.subscribe();
        let scope = session.scope();
        let checked = check_agent(&scope, agent_id.as_ref()).await;
        RequestScope::end_read(scope, checked.is_ok()).await;
        let (tenant_id, agent) = checked.map_err(|e| session.error(&e))?;
        let raised = follow(session, events, move |event| match event {
            LiveEvent::AlertRaised {
                tenant_id: t,
                agent_id: a,
                ..
            } => *t == Some(tenant_id) && agent.is_none_or(|wanted| *a == Some(wanted)),
            _ => false,
        })
        .then(|(session, event)| async move {
            let LiveEvent::AlertRaised { alert_id, .. } = event else {
                return Ok(None);
            };
            read_alert(&session, alert_id).await
        })
        .filter_map(|read| async move { read.transpose() });
        Ok(ends_after_error(raised))
    }
}

/// The subscriber's tenant, and the agent it names (which must be visible).
async fn check_agent(
    scope: &RequestScope,
    agent_id: Option<&ID>,
) -> trellis_core::Result<(Uuid, Option<Uuid>)> {
    let tenant = scope.require(Role::Viewer).await?;
    let Some(agent_id) = agent_id else {
        return Ok((tenant.tenant_id, None));
    };
    let id = ids::parse(agent_id, IdKind::Agent)?;
    agent::Entity::find_by_id(id)
        .filter(agent::Column::TenantId.eq(tenant.tenant_id))
        .one(scope.tx().await?)
        .await?
        .ok_or(trellis_core::Error::NotFound)?;
    Ok((tenant.tenant_id, Some(id)))
}

/// Reads an alert in a fresh scope of the subscriber (access checked like a request):
/// the scope still open, for its fields, or `None` when it is not visible.
async fn read_alert(
    session: &LiveSession,
    alert_id: Uuid,
) -> async_graphql::Result<Option<InScope<Alert>>> {
    let scope = session.scope();
    match trellis_core::alerts::tenant_alert(&scope, alert_id).await {
        Ok(Some(row)) => Ok(Some(InScope::new(scope, Alert(row)))),
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
