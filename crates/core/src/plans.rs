//! Plans as data: a platform-level `plans` table (key, name, limits), which
//! `tenants.plan` references by key. Every member reads the plans; only platform
//! admins write them, on the audited platform-administration path. The limits a plan
//! sets are read here and nowhere else:
//!
//! - `agents`: how many live agents a tenant may have (checked on create, restore and
//!   template instantiation; the tenant's `resourceLimits.maxAgents` setting may lower
//!   it, never raise it);
//! - `maxConcurrentRuns`: the executor's default cap (the tenant's setting overrides);
//! - `logRetentionDays`: the default log retention (the tenant's setting overrides);
//! - `auditRetentionDays`: the default audit retention, before events move to the
//!   archive (the tenant's setting overrides; [`crate::audit_archive`]);
//! - `monthlyRuns`: how many runs (not simulations) a tenant may start per calendar
//!   month (UTC); when a plan sets it, the statement that makes a run counts it in
//!   `run_counts` (a plan without it counts nothing, so its starts never queue), whose
//!   `run_counts_within_plan` check refuses the one past the limit with LIMIT_REACHED
//!   ([`crate::runs::start`]); [`runs_this_month`] reads the count.
//!
//! A limit absent from a plan means no limit.

use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, FromQueryResult, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{plan, tenant, IdKind, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The limits a plan may set, each a whole number from 0.
pub const LIMIT_KEYS: [&str; 5] = [
    "agents",
    "monthlyRuns",
    "maxConcurrentRuns",
    "logRetentionDays",
    "auditRetentionDays",
];

/// The field a start refused past the plan's `monthlyRuns` names (LIMIT_REACHED).
pub const MONTHLY_RUNS_FIELD: &str = "plan.limits.monthlyRuns";

/// The plan of a new tenant unless another is asked for.
pub const DEFAULT_PLAN: &str = "free";

/// A plan's limits, read from its `limits` JSON; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub agents: Option<u64>,
    pub monthly_runs: Option<u64>,
    pub max_concurrent_runs: Option<u64>,
    pub log_retention_days: Option<u64>,
    pub audit_retention_days: Option<u64>,
}

impl Limits {
    /// Reads the limits of a stored plan (the table's CHECK keeps them well formed).
    pub fn from_json(limits: &Json) -> Self {
        let get = |key: &str| limits.get(key).and_then(Json::as_u64);
        Self {
            agents: get("agents"),
            monthly_runs: get("monthlyRuns"),
            max_concurrent_runs: get("maxConcurrentRuns"),
            log_retention_days: get("logRetentionDays"),
            audit_retention_days: get("auditRetentionDays"),
        }
    }
}

/// Checks limits a platform admin gives: an object with only [`LIMIT_KEYS`], each a
/// whole number from 0 to 999,999,999.
pub fn check_limits(limits: Json) -> Result<Json> {
    let Some(map) = limits.as_object() else {
        return Err(Error::bad_input("limits", "limits must be a JSON object"));
    };
    for (key, value) in map {
        let field = format!("limits.{key}");
        if !LIMIT_KEYS.contains(&key.as_str()) {
            return Err(Error::bad_input(
                field,
                format!("unknown limit: a plan sets {}", LIMIT_KEYS.join(", ")),
            ));
        }
        if value.as_u64().is_none_or(|n| n > 999_999_999) {
            return Err(Error::bad_input(
                field,
                "a limit is a whole number from 0 to 999999999",
            ));
        }
    }
    Ok(limits)
}

fn check_key(key: &str) -> Result<String> {
    let key = key.trim().to_ascii_lowercase();
    let valid = (2..=32).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(key)
    } else {
        Err(Error::bad_input(
            "key",
            "a plan key is 2 to 32 lowercase letters, digits, '_' or '-', starting with a letter",
        ))
    }
}

/// The plan named `key` (case-insensitive), for a caller choosing one: BAD_USER_INPUT
/// on `field` when there is none.
pub async fn find_plan(db: &impl ConnectionTrait, key: &str, field: &str) -> Result<plan::Model> {
    plan::Entity::find_by_id(key.trim().to_ascii_lowercase())
        .one(db)
        .await?
        .ok_or_else(|| Error::bad_input(field, "no plan has this key"))
}

/// Every plan, cheapest first (anyone signed in).
pub async fn list_plans(scope: &RequestScope) -> Result<Vec<plan::Model>> {
    if scope.is_invoke_only() {
        return Err(Error::Forbidden("this API key may only invoke processes"));
    }
    let rows = plan::Entity::find()
        .from_raw_sql(stmt("SELECT * FROM plans ORDER BY position, key", []))
        .all(scope.tx().await?)
        .await?;
    Ok(rows)
}

#[derive(FromQueryResult)]
struct TenantLimits {
    limits: Json,
    settings: Json,
    agents: i64,
}

/// Refuses a new live agent when the tenant already has as many as its plan allows
/// (or its `resourceLimits.maxAgents` setting, when lower): LIMIT_REACHED on `field`.
/// Concurrent creations queue on a transaction-level lock of the tenant, so two cannot
/// both take the last place. Returns the tenant's settings, which the caller may need.
pub async fn check_agent_limit(scope: &RequestScope, tenant_id: Uuid, field: &str) -> Result<Json> {
    let tx = scope.tx().await?;
    tx.execute(stmt(
        "SELECT pg_advisory_xact_lock(hashtextextended('trellis.agent_limit:' || $1::text, 0))",
        [tenant_id.into()],
    ))
    .await?;
    let row = TenantLimits::find_by_statement(stmt(
        "SELECT p.limits, t.settings, \
           (SELECT count(*) FROM agents a WHERE a.tenant_id = t.id AND a.deleted_at IS NULL) AS agents \
         FROM tenants t JOIN plans p ON p.key = t.plan WHERE t.id = $1",
        [tenant_id.into()],
    ))
    .one(tx)
    .await?
    .ok_or(Error::NotFound)?;
    let plan = Limits::from_json(&row.limits).agents;
    let own = row
        .settings
        .pointer("/resourceLimits/maxAgents")
        .and_then(Json::as_u64);
    let limit = match (plan, own) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(limit) = limit {
        if u64::try_from(row.agents).unwrap_or(0) >= limit {
            return Err(Error::LimitReached {
                field: field.to_owned(),
                message: format!(
                    "this tenant has {limit} agents, as many as its plan allows; delete one or change plan"
                ),
            });
        }
    }
    Ok(row.settings)
}

/// How many runs (not simulations) `tenant_id` has started this calendar month (UTC),
/// as counted against its plan's `monthlyRuns`; `None` when its plan sets no such
/// limit (nothing is counted then).
pub async fn runs_this_month(scope: &RequestScope, tenant_id: Uuid) -> Result<Option<i64>> {
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT CASE WHEN p.limits ? 'monthlyRuns' THEN coalesce((SELECT c.runs \
               FROM run_counts c WHERE c.tenant_id = t.id \
               AND c.month = date_trunc('month', now(), 'UTC')), 0) END AS runs \
             FROM tenants t JOIN plans p ON p.key = t.plan WHERE t.id = $1",
            [tenant_id.into()],
        ))
        .await?
        .ok_or(Error::NotFound)?;
    Ok(row.try_get("", "runs")?)
}

/// Creates or changes a plan (platform admins only, audited).
pub async fn save_plan(
    scope: &RequestScope,
    key: &str,
    name: &str,
    limits: Json,
    position: Option<i32>,
) -> Result<plan::Model> {
    scope.require_platform_admin().await?;
    let key = check_key(key)?;
    let name = required_text(name, "name", 100)?;
    let limits = check_limits(limits)?;
    let tx = scope.tx().await?;
    let existing = plan::Entity::find_by_id(key.clone()).one(tx).await?;
    let row = match existing {
        Some(current) => {
            let mut row: plan::ActiveModel = current.into();
            row.name = Set(name);
            row.limits = Set(limits);
            if let Some(position) = position {
                row.position = Set(position);
            }
            row.update(tx).await?
        }
        None => {
            plan::ActiveModel {
                key: Set(key.clone()),
                name: Set(name),
                limits: Set(limits),
                position: Set(position.unwrap_or(0)),
                ..Default::default()
            }
            .insert(tx)
            .await?
        }
    };
    audit::record(
        scope,
        Event::new(None, "plan.save")
            .severity(Severity::Warning)
            .details(json!({ "key": row.key, "limits": row.limits })),
    )
    .await?;
    Ok(row)
}

/// Moves a tenant to another plan (platform admins only, audited in the tenant).
pub async fn set_tenant_plan(
    scope: &RequestScope,
    tenant_id: Uuid,
    key: &str,
) -> Result<tenant::Model> {
    scope.require_platform_admin().await?;
    let tx = scope.tx().await?;
    let plan = find_plan(tx, key, "plan").await?;
    let current = tenant::Entity::find_by_id(tenant_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    crate::identity::inside_tenant(scope, tenant_id, async {
        let row = tenant::ActiveModel {
            id: Set(tenant_id),
            plan: Set(plan.key.clone()),
            ..Default::default()
        }
        .update(tx)
        .await?;
        audit::record(
            scope,
            Event::new(Some(tenant_id), "tenant.plan")
                .target(IdKind::Tenant, tenant_id)
                .severity(Severity::Warning)
                .details(json!({ "from": current.plan, "to": plan.key })),
        )
        .await?;
        Ok(row)
    })
    .await
}
