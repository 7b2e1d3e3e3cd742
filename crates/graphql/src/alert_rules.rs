//! Alert rules: `alertRules` (a Relay list through the list builder), `Agent.alertRules`,
//! `Alert.rule`, and `createAlertRule`, `updateAlertRule`, `deleteAlertRule`. A tenant's
//! rules are its members' (RLS); the maintenance loop evaluates them and raises alerts
//! with source `rule` (see `trellis_core::alert_rules`).

use async_graphql::{Context, Enum, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_core::alert_rules::{self, NewRule, RuleChanges};
use trellis_entity::{alert_rule, IdKind, Role};
use uuid::Uuid;

use crate::agents::types::Agent;
use crate::alerts::AlertSeverity;
use crate::context::{load, mutate, ContextExt};
use crate::identity::types::{input_id, maybe_id, optional_id, User};
use crate::identity::IdInput;
use crate::ids::{self, gid};
use crate::list::{self, Access, List, Relation};
use crate::loaders::{AgentById, AlertRulesOfAgent, UserById};
use crate::pagination::{CreatedOrderBy, Keyed, KeysetCursor, Page};

/// What an alert rule measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::AlertRuleKind")]
pub enum AlertRuleKind {
    /// Failed runs / runs reported in the last `windowMinutes` (15 by default) is above
    /// `threshold`, a fraction from 0 up to 1 (0.2 is 20 %); counted only once the
    /// window holds at least `minRuns` runs (5 by default).
    ErrorRate,
    /// The cost reported today (the UTC day) is above `threshold`, in millionths of a
    /// USD (a whole number).
    CostToday,
    /// Every health sample of the agent has been UNHEALTHY for at least
    /// `windowMinutes` (5 by default); no threshold.
    UnhealthyFor,
}

/// A condition on a tenant's agents' metrics or health, evaluated every maintenance
/// pass; while it holds for an agent, one alert (source `rule`) is open for the rule
/// and that agent.
pub struct AlertRule(pub alert_rule::Model);

impl From<alert_rule::Model> for AlertRule {
    fn from(m: alert_rule::Model) -> Self {
        Self(m)
    }
}

impl Keyed for alert_rule::Model {
    fn cursor(&self) -> KeysetCursor {
        KeysetCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// A condition on a tenant's agents' metrics or health, evaluated every maintenance
/// pass; while it holds for an agent, one alert (source `rule`) is open for the rule
/// and that agent.
#[Object]
impl AlertRule {
    /// Its global ID (`alrr_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AlertRule, self.0.id)
    }
    /// Its name, unique in the tenant.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it measures.
    async fn kind(&self) -> AlertRuleKind {
        self.0.kind.into()
    }
    /// ERROR_RATE: a fraction (0.2 is 20 %); COST_TODAY: millionths of a USD; null for
    /// UNHEALTHY_FOR. The condition holds above it (not at it).
    async fn threshold(&self) -> Option<f64> {
        self.0.threshold
    }
    /// ERROR_RATE: the window looked back over; UNHEALTHY_FOR: how long the agent must
    /// have been UNHEALTHY. Minutes; null for COST_TODAY.
    async fn window_minutes(&self) -> Option<i32> {
        self.0.window_minutes
    }
    /// ERROR_RATE: the fewest runs in the window for the rate to count; null otherwise.
    async fn min_runs(&self) -> Option<i32> {
        self.0.min_runs
    }
    /// The severity of the alerts it raises.
    async fn severity(&self) -> AlertSeverity {
        self.0.severity.into()
    }
    /// Whether it is evaluated.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// The agent it watches; null when it watches every agent of the tenant.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentById(id)).await?.map(Agent))
    }
    /// Who created it; null for an API key or a deleted user.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        Ok(load(ctx, UserById(id)).await?.map(User))
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When a person last changed it (evaluations do not count).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When the maintenance loop last evaluated it; null before its first evaluation.
    async fn last_evaluated_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_evaluated_at
    }
}

/// Narrows alert rules; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AlertRuleFilter {
    /// Only the rules naming this agent (`agt_…`; not those of the whole tenant);
    /// another tenant's agent matches nothing.
    pub agent_id: Option<ID>,
    /// Only rules of this kind.
    pub kind: Option<AlertRuleKind>,
    /// Only active rules (true) or only inactive ones (false).
    pub is_active: Option<bool>,
}

/// The active tenant's alert rules, newest first by default.
impl List for AlertRule {
    type Entity = alert_rule::Entity;
    type Node = Self;
    type Filter = AlertRuleFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<alert_rule::Column> = Some(alert_rule::Column::TenantId);
    const CREATED_AT: alert_rule::Column = alert_rule::Column::CreatedAt;
    const ID: alert_rule::Column = alert_rule::Column::Id;

    fn narrow(
        mut select: Select<alert_rule::Entity>,
        filter: AlertRuleFilter,
    ) -> trellis_core::Result<Select<alert_rule::Entity>> {
        if let Some(agent) = filter.agent_id {
            select =
                select.filter(alert_rule::Column::AgentId.eq(ids::parse(&agent, IdKind::Agent)?));
        }
        if let Some(kind) = filter.kind {
            select = select
                .filter(alert_rule::Column::Kind.eq(trellis_entity::AlertRuleKind::from(kind)));
        }
        if let Some(active) = filter.is_active {
            select = select.filter(alert_rule::Column::IsActive.eq(active));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<alert_rule::Model>> {
        vec![
            Relation::together(&["agent"], |r| r.agent_id.map(AgentById)),
            Relation::by(&["createdBy"], |r| r.created_by.map(UserById)),
        ]
    }
}

/// `Agent.alertRules`: the rules that watch an agent (its own and its tenant's),
/// oldest first; a page of agents reads them in one statement.
pub(crate) async fn rules_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
) -> async_graphql::Result<Vec<AlertRule>> {
    Ok(load(ctx, AlertRulesOfAgent(agent_id))
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(AlertRule)
        .collect())
}

payload!(
    /// The alert rule a mutation created, changed or deleted, or the input's problems.
    AlertRulePayload {
        /// The rule (as it was, for a delete); null when `userErrors` is not empty.
        alert_rule: AlertRule,
    }
);

/// A new alert rule.
#[derive(InputObject)]
pub struct CreateAlertRuleInput {
    /// The agent it watches (`agt_…`, a live agent of the tenant; another tenant's is
    /// NOT_FOUND); every agent of the tenant when omitted or null.
    pub agent_id: Option<ID>,
    /// Its name: 1 to 200 characters, unique in the tenant.
    pub name: String,
    /// What it measures; it never changes.
    pub kind: AlertRuleKind,
    /// ERROR_RATE: a fraction, 0 up to (not including) 1; COST_TODAY: a whole number of
    /// millionths of a USD, 0 to 10^15; none for UNHEALTHY_FOR. The condition holds
    /// above it.
    pub threshold: Option<f64>,
    /// ERROR_RATE and UNHEALTHY_FOR: 1 to 1440 minutes (15 and 5 when omitted); none
    /// for COST_TODAY.
    pub window_minutes: Option<i32>,
    /// ERROR_RATE: the fewest runs in the window for the rate to count, 1 to 1000000
    /// (5 when omitted); none for the other kinds.
    pub min_runs: Option<i32>,
    /// The severity of the alerts it raises; WARNING when omitted or null.
    pub severity: Option<AlertSeverity>,
    /// Whether it is evaluated; true when omitted.
    #[graphql(default = true)]
    pub is_active: bool,
}

/// Changes to an alert rule; omitted fields stay as they are. Its kind never changes.
#[derive(InputObject)]
pub struct UpdateAlertRuleInput {
    /// The rule (`alrr_…`).
    pub id: ID,
    /// Another agent to watch (`agt_…`); null: every agent of the tenant.
    pub agent_id: async_graphql::MaybeUndefined<ID>,
    /// A new name.
    pub name: Option<String>,
    /// A new threshold (its kind's unit, as on creation).
    pub threshold: Option<f64>,
    /// A new window, 1 to 1440 minutes (ERROR_RATE, UNHEALTHY_FOR).
    pub window_minutes: Option<i32>,
    /// A new minimum of runs (ERROR_RATE).
    pub min_runs: Option<i32>,
    /// A new severity for the alerts it raises from now on.
    pub severity: Option<AlertSeverity>,
    /// Whether it is evaluated.
    pub is_active: Option<bool>,
}

fn rule_payload(
    (row, user_errors): (Option<alert_rule::Model>, Vec<crate::error::UserError>),
) -> AlertRulePayload {
    AlertRulePayload {
        alert_rule: row.map(AlertRule),
        user_errors,
    }
}

#[derive(Default)]
pub struct AlertRulesQuery;

#[Object]
impl AlertRulesQuery {
    /// The active tenant's alert rules (any member), newest first by default.
    async fn alert_rules(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many rules to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the rules after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            AlertRuleFilter,
        >,
        #[graphql(
            desc = "Order by when they were created; CREATED_AT_DESC (newest first) when omitted."
        )]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<AlertRule>> {
        list::page::<AlertRule>(ctx, None, first, after, filter, order_by).await
    }
}

#[derive(Default)]
pub struct AlertRulesMutation;

#[Object]
impl AlertRulesMutation {
    /// Creates an alert rule (operators and above). Its settings are checked for its
    /// kind, each problem a userError naming its field; a name the tenant already uses
    /// is CONFLICT; another tenant's agent is NOT_FOUND, like an ID never issued.
    async fn create_alert_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The rule: what it watches and when it raises an alert.")]
        input: CreateAlertRuleInput,
    ) -> async_graphql::Result<AlertRulePayload> {
        let agent_id = optional_id(ctx, input.agent_id.as_ref(), IdKind::Agent)?;
        let rule = NewRule {
            agent_id,
            name: input.name,
            kind: input.kind.into(),
            threshold: input.threshold,
            window_minutes: input.window_minutes,
            min_runs: input.min_runs,
            severity: input
                .severity
                .map_or(trellis_entity::Severity::Warning, Into::into),
            is_active: input.is_active,
        };
        Ok(rule_payload(
            mutate(ctx, alert_rules::create_rule(ctx.scope()?, rule)).await?,
        ))
    }

    /// Changes an alert rule (operators and above); the settings it ends up with are
    /// checked for its kind. Alerts it already raised stay as they are. Another
    /// tenant's rule or agent is NOT_FOUND.
    async fn update_alert_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The rule and its changes.")] input: UpdateAlertRuleInput,
    ) -> async_graphql::Result<AlertRulePayload> {
        let id = input_id(ctx, &input.id, IdKind::AlertRule)?;
        let agent_id = maybe_id(ctx, input.agent_id, IdKind::Agent)?;
        let changes = RuleChanges {
            agent_id,
            name: input.name,
            threshold: input.threshold,
            window_minutes: input.window_minutes,
            min_runs: input.min_runs,
            severity: input.severity.map(Into::into),
            is_active: input.is_active,
        };
        Ok(rule_payload(
            mutate(ctx, alert_rules::update_rule(ctx.scope()?, id, changes)).await?,
        ))
    }

    /// Deletes an alert rule (operators and above). The alerts it raised stay (their
    /// `rule` becomes null); an open one is resolved as any other.
    async fn delete_alert_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The rule (`alrr_…`).")] input: IdInput,
    ) -> async_graphql::Result<AlertRulePayload> {
        let id = input_id(ctx, &input.id, IdKind::AlertRule)?;
        Ok(rule_payload(
            mutate(ctx, alert_rules::delete_rule(ctx.scope()?, id)).await?,
        ))
    }
}
