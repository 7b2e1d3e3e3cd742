//! Plans as data: `plans` (anyone signed in), `Tenant.plan`, and the platform
//! administrators' `savePlan` and `setTenantPlan`.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use serde_json::{Map, Value as JsonValue};
use trellis_core::plans::{self, Limits};
use trellis_entity::{plan, IdKind};

use super::types::{input_id, Tenant};
use crate::context::{mutate, run, ContextExt};

/// A plan: its key, name and the limits it sets.
pub struct Plan(pub plan::Model);

/// What a plan allows; null is no limit.
#[derive(SimpleObject, InputObject, Clone, Copy, Debug, Default)]
#[graphql(input_name = "PlanLimitsInput")]
pub struct PlanLimits {
    /// Live agents per tenant (`createAgent`, `restoreAgent` and `instantiateTemplate`
    /// are LIMIT_REACHED beyond it).
    pub agents: Option<i64>,
    /// Runs per calendar month (shown; not enforced yet).
    pub monthly_runs: Option<i64>,
    /// Runs at once, unless the tenant's `maxConcurrentRuns` setting says otherwise.
    pub max_concurrent_runs: Option<i64>,
    /// Days execution logs are kept, unless the tenant's `logRetentionDays` says
    /// otherwise.
    pub log_retention_days: Option<i64>,
    /// Days audit events are kept (shown; not enforced yet).
    pub audit_retention_days: Option<i64>,
}

fn as_i64(n: Option<u64>) -> Option<i64> {
    n.and_then(|n| i64::try_from(n).ok())
}

impl From<Limits> for PlanLimits {
    fn from(l: Limits) -> Self {
        Self {
            agents: as_i64(l.agents),
            monthly_runs: as_i64(l.monthly_runs),
            max_concurrent_runs: as_i64(l.max_concurrent_runs),
            log_retention_days: as_i64(l.log_retention_days),
            audit_retention_days: as_i64(l.audit_retention_days),
        }
    }
}

impl PlanLimits {
    /// The stored JSON (absent keys: no limit); the core checks each value.
    fn to_json(self) -> JsonValue {
        let mut map = Map::new();
        for (key, value) in [
            ("agents", self.agents),
            ("monthlyRuns", self.monthly_runs),
            ("maxConcurrentRuns", self.max_concurrent_runs),
            ("logRetentionDays", self.log_retention_days),
            ("auditRetentionDays", self.audit_retention_days),
        ] {
            if let Some(value) = value {
                map.insert(key.to_owned(), value.into());
            }
        }
        JsonValue::Object(map)
    }
}

/// A plan: its key, name and the limits it sets.
#[Object]
impl Plan {
    /// Its key (`free`, `starter`, `pro`, `growth`, `enterprise`, …), which
    /// `createTenant` and `setTenantPlan` take.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it allows.
    async fn limits(&self) -> PlanLimits {
        Limits::from_json(&self.0.limits).into()
    }
    /// Where it is listed (cheapest first).
    async fn position(&self) -> i32 {
        self.0.position
    }
}

#[derive(Default)]
pub struct PlansQuery;

#[Object]
impl PlansQuery {
    /// Every plan, cheapest first (anyone signed in).
    async fn plans(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Plan>> {
        let rows = run(ctx, plans::list_plans(ctx.scope()?)).await?;
        Ok(rows.into_iter().map(Plan).collect())
    }
}

/// A plan to create or change.
#[derive(InputObject)]
pub struct SavePlanInput {
    /// 2 to 32 lowercase letters, digits, '_' or '-'; an existing key changes that plan.
    pub key: String,
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Its limits (replace the old ones whole); each from 0, null for no limit.
    pub limits: PlanLimits,
    /// Where it is listed; unchanged (0 for a new plan) when omitted.
    pub position: Option<i32>,
}

/// A tenant's new plan.
#[derive(InputObject)]
pub struct SetTenantPlanInput {
    /// The tenant (`ten_…`).
    pub tenant_id: ID,
    /// The plan's key.
    pub plan: String,
}

payload!(
    /// The plan a mutation saved, or the input's problems.
    PlanPayload {
        /// The plan as it is now; null when `userErrors` is not empty.
        plan: Plan,
    }
);
payload!(
    /// The tenant whose plan changed, or the input's problems.
    SetTenantPlanPayload {
        /// The tenant as it is now; null when `userErrors` is not empty.
        tenant: Tenant,
    }
);

#[derive(Default)]
pub struct PlansMutation;

#[Object]
impl PlansMutation {
    /// Creates or changes a plan (platform admins, audited).
    async fn save_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] input: SavePlanInput,
    ) -> async_graphql::Result<PlanPayload> {
        let (row, user_errors) = mutate(
            ctx,
            plans::save_plan(
                ctx.scope()?,
                &input.key,
                &input.name,
                input.limits.to_json(),
                input.position,
            ),
        )
        .await?;
        Ok(PlanPayload {
            plan: row.map(Plan),
            user_errors,
        })
    }

    /// Moves a tenant to another plan (platform admins, audited in the tenant).
    async fn set_tenant_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant and its plan.")] input: SetTenantPlanInput,
    ) -> async_graphql::Result<SetTenantPlanPayload> {
        let id = input_id(ctx, &input.tenant_id, IdKind::Tenant)?;
        let (row, user_errors) =
            mutate(ctx, plans::set_tenant_plan(ctx.scope()?, id, &input.plan)).await?;
        Ok(SetTenantPlanPayload {
            tenant: row.map(Tenant),
            user_errors,
        })
    }
}
