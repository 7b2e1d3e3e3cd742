//! Per-agent monthly budgets: `{monthlyCostLimit (USD), monthlyTokenLimit}` on the
//! agent, against what its usage reports add up to this calendar month (UTC), read
//! from the day rows of `agent_metrics` (at most 31 per agent).
//!
//! [`admit`] is the gate a run passes before it starts: once either limit is reached,
//! RATE_LIMITED until the next month, and a budget alert (one per agent and month while
//! open). A report that crosses a limit raises the same alert ([`super::usage`]).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, QueryResult};
use serde_json::{json, Value as Json};
use trellis_entity::{Role, Severity};
use uuid::Uuid;

use super::spec::Budget;
use crate::alerts::{self, NewAlert};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// An agent's spending this calendar month (UTC) against its limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetStatus {
    pub agent_id: Uuid,
    /// Cost reported this month, in millionths of a USD.
    pub monthly_cost_micros: i64,
    /// Input plus output tokens reported this month.
    pub monthly_tokens: i64,
    pub limits: Budget,
}

impl BudgetStatus {
    /// Whether a limit is reached (spending at or over it).
    pub fn exceeded(&self) -> bool {
        let cost = self
            .limits
            .monthly_cost_limit
            .is_some_and(|limit| self.monthly_cost_micros as f64 >= limit * 1_000_000.0);
        let tokens = self
            .limits
            .monthly_token_limit
            .is_some_and(|limit| self.monthly_tokens >= limit);
        cost || tokens
    }

    /// The month's cost in USD.
    pub fn monthly_cost(&self) -> f64 {
        self.monthly_cost_micros as f64 / 1_000_000.0
    }

    fn from_row(row: &QueryResult) -> Result<Self> {
        let budget: Json = row.try_get("", "budget")?;
        Ok(Self {
            agent_id: row.try_get("", "agent_id")?,
            monthly_cost_micros: row.try_get("", "cost_micros")?,
            monthly_tokens: row.try_get("", "tokens")?,
            limits: Budget::from_json(&budget),
        })
    }
}

/// The month's figures of the agents `ids` (deleted ones too), `agent_metrics` day rows
/// summed; `alert_key` also says whether the month's budget alert is open.
const STATUS_SQL: &str = "SELECT a.id AS agent_id, a.budget, a.slug, \
       coalesce(sum(m.cost_micros), 0)::int8 AS cost_micros, \
       coalesce(sum(m.input_tokens + m.output_tokens), 0)::int8 AS tokens \
     FROM agents a \
     LEFT JOIN agent_metrics m ON m.tenant_id = a.tenant_id AND m.agent_id = a.id \
       AND m.period = 'day' AND m.period_start >= date_trunc('month', now(), 'UTC') \
     WHERE a.tenant_id = $1 AND a.id = ANY($2) \
     GROUP BY a.id";

/// The budget status of each of `agent_ids` of the active tenant (viewers), in one
/// statement: another tenant's agent has none, like one that does not exist.
pub async fn statuses(
    scope: &RequestScope,
    agent_ids: &[Uuid],
) -> Result<HashMap<Uuid, BudgetStatus>> {
    let ctx = scope.require(Role::Viewer).await?;
    let rows = scope
        .tx()
        .await?
        .query_all(stmt(
            STATUS_SQL,
            [ctx.tenant_id.into(), agent_ids.to_vec().into()],
        ))
        .await?;
    rows.iter()
        .map(|row| BudgetStatus::from_row(row).map(|s| (s.agent_id, s)))
        .collect()
}

/// The start of the month after the one `now` is in (UTC).
fn next_month(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .unwrap_or(now.date_naive())
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
}

/// The whole seconds from `now` until the next month begins (UTC), at least 1: the
/// `Retry-After` of a refusal that lasts the month (an agent's budget, a plan's runs).
pub(crate) fn seconds_to_next_month(now: DateTime<Utc>) -> u32 {
    let wait = (next_month(now) - now).num_seconds().max(1);
    u32::try_from(wait).unwrap_or(u32::MAX)
}

/// The budget alert of one agent and month: one open at a time.
fn budget_alert(
    tenant_id: Uuid,
    slug: &str,
    status: &BudgetStatus,
    now: DateTime<Utc>,
) -> NewAlert {
    let month = now.format("%Y-%m").to_string();
    let mut reached = vec![];
    if let Some(limit) = status.limits.monthly_cost_limit {
        if status.monthly_cost() >= limit {
            reached.push(format!(
                "cost {:.2} of {limit:.2} USD",
                status.monthly_cost()
            ));
        }
    }
    if let Some(limit) = status.limits.monthly_token_limit {
        if status.monthly_tokens >= limit {
            reached.push(format!("{} of {limit} tokens", status.monthly_tokens));
        }
    }
    NewAlert {
        tenant_id: Some(tenant_id),
        agent_id: Some(status.agent_id),
        rule_id: None,
        severity: Severity::Critical,
        source: "budget",
        message: format!(
            "Agent {slug} reached its monthly budget ({}); its runs are refused until {}",
            reached.join(", "),
            next_month(now).format("%Y-%m-%d")
        ),
        details: json!({
            "month": month,
            "monthlyCostMicros": status.monthly_cost_micros,
            "monthlyTokens": status.monthly_tokens,
            "monthlyCostLimit": status.limits.monthly_cost_limit,
            "monthlyTokenLimit": status.limits.monthly_token_limit,
        }),
        dedupe_key: format!("budget:{}:{month}", status.agent_id),
    }
}

/// The status of one live agent of the active tenant, with its slug and whether this
/// month's budget alert is open; NOT_FOUND when there is no such agent.
async fn status_of(
    scope: &RequestScope,
    tenant_id: Uuid,
    agent_id: Uuid,
) -> Result<(BudgetStatus, String, bool)> {
    let sql = format!(
        "WITH s AS ({STATUS_SQL}) \
         SELECT s.*, EXISTS (SELECT 1 FROM alerts x WHERE x.tenant_id = $1 \
             AND x.resolved_at IS NULL \
             AND x.dedupe_key = 'budget:' || s.agent_id::text || ':' \
                 || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')) AS alerted \
         FROM s JOIN agents a ON a.id = s.agent_id AND a.deleted_at IS NULL"
    );
    let row = scope
        .tx()
        .await?
        .query_one(stmt(&sql, [tenant_id.into(), vec![agent_id].into()]))
        .await?
        .ok_or(Error::NotFound)?;
    Ok((
        BudgetStatus::from_row(&row)?,
        row.try_get("", "slug")?,
        row.try_get("", "alerted")?,
    ))
}

/// Lets a run of `agent_id` start, or refuses it: when the agent's spending this
/// calendar month (UTC) has reached its cost or token limit, RATE_LIMITED with
/// `retryAfterSeconds` until the next month begins, and a CRITICAL `budget` alert is
/// raised for the agent (one per agent and month while open). NOT_FOUND for an agent
/// that is not a live one of the scope's tenant.
///
/// Call it in the run's request scope, for the scope's tenant, before starting the run
/// (the caller has established the right to start it: a role, or a verified webhook
/// signature). The refusal rolls that
/// request back, so the alert is raised in a transaction of its own
/// ([`alerts::raise_now`], committed before this returns), and only when the scope
/// sees no open budget alert: under a stream of refusals only the first costs a second
/// connection. Concurrent refusals leave exactly one open alert (its dedupe key).
pub async fn admit(scope: &RequestScope, tenant_id: Uuid, agent_id: Uuid) -> Result<()> {
    let (status, slug, alerted) = status_of(scope, tenant_id, agent_id).await?;
    if !status.exceeded() {
        return Ok(());
    }
    let now = Utc::now();
    if !alerted {
        let alert = budget_alert(tenant_id, &slug, &status, now);
        if let Err(err) = alerts::raise_now(scope.db(), tenant_id, alert).await {
            tracing::error!(agent = %agent_id, error = ?err, "raising a budget alert failed");
        }
    }
    Err(Error::RateLimited {
        retry_after_seconds: seconds_to_next_month(now),
    })
}

/// After a usage report of `agent_id` (in the same transaction, which holds the day's
/// metrics row): raises the budget alert when the agent's spending has reached a limit.
pub(crate) async fn alert_if_exceeded(
    scope: &RequestScope,
    tenant_id: Uuid,
    agent_id: Uuid,
) -> Result<()> {
    let (status, slug, alerted) = status_of(scope, tenant_id, agent_id).await?;
    if status.exceeded() && !alerted {
        alerts::raise(scope, budget_alert(tenant_id, &slug, &status, Utc::now())).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_month_starts_on_the_first_at_midnight_utc() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            next_month(at("2026-12-31T23:59:59Z")),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next_month(at("2026-02-01T00:00:00Z")),
            at("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn a_limit_is_reached_at_equality() {
        let status = BudgetStatus {
            agent_id: Uuid::nil(),
            monthly_cost_micros: 2_000_000,
            monthly_tokens: 99,
            limits: Budget {
                monthly_cost_limit: Some(2.0),
                monthly_token_limit: None,
            },
        };
        assert!(status.exceeded());
        let under = BudgetStatus {
            monthly_cost_micros: 1_999_999,
            ..status
        };
        assert!(!under.exceeded());
        let tokens = BudgetStatus {
            limits: Budget {
                monthly_cost_limit: None,
                monthly_token_limit: Some(99),
            },
            ..under
        };
        assert!(tokens.exceeded());
    }
}
