//! Alert rules as data: a tenant's conditions on its agents' metrics and health,
//! evaluated by the maintenance loop, each raising alerts (source `rule`) through
//! [`alerts::raise`].
//!
//! A rule watches one agent, or every live agent of its tenant when it names none, and
//! is one of three kinds ([`AlertRuleKind`]):
//!
//! - ERROR_RATE: failed runs / runs reported (`agent_usage`) in the last
//!   `window_minutes` (15 by default) is above `threshold` (a fraction, 0 ≤ x < 1);
//!   only once the window holds at least `min_runs` runs (5 by default), so that one
//!   failed run of one is not a 100 % error rate;
//! - COST_TODAY: the cost reported today, the UTC day (`agent_metrics` day row), is
//!   above `threshold` millionths of a USD;
//! - UNHEALTHY_FOR: the agent's health samples (`container_health`) have all been
//!   UNHEALTHY for at least `window_minutes` (5 by default): the latest sample is
//!   UNHEALTHY, and so is every sample since the first one at or before that long
//!   ago (the streak began after the last HEALTHY or DEGRADED sample).
//!
//! **Deduplicated while open.** An alert's dedupe key is `rule:<rule>:<agent>`: while
//! the rule's alert about an agent is open, evaluating it again raises nothing.
//! **No automatic resolve.** When the condition clears, the alert stays open until a
//! person resolves it (`resolveAlert`): somebody should see that it happened, and an
//! alert that closes itself between two looks is easily missed. Once resolved, the
//! key is free, and a condition that still holds raises a new alert on the next pass.
//!
//! Creating, changing and deleting a rule is for operators and above (as
//! acknowledging and resolving alerts is), audited (`alert_rule.create`, `.update`,
//! `.delete`). Evaluation ([`evaluate_pass`]) finds its tenants through the SECURITY
//! DEFINER function `app.tenants_with_alert_rules` (ids only) and evaluates each
//! tenant's rules in that tenant's own transaction under RLS, as
//! [`crate::Principal::Upkeep`]. One tenant's failure is logged and counted, and the
//! others go on.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{alert_rule, AlertRuleKind, IdKind, Role, Severity};
use uuid::Uuid;

use crate::agents::agent::find_agent;
use crate::alerts::{self, NewAlert};
use crate::audit::{self, Event};
use crate::error::FieldProblem;
use crate::scope::{stmt, RequestScope};
use crate::{AppDb, Error, Result};

/// The longest window a rule looks back over (a day; raw health samples are kept 24
/// hours).
pub const MAX_WINDOW_MINUTES: i32 = 1440;
/// ERROR_RATE's window when none is given.
pub const DEFAULT_ERROR_RATE_WINDOW: i32 = 15;
/// UNHEALTHY_FOR's duration when none is given.
pub const DEFAULT_UNHEALTHY_WINDOW: i32 = 5;
/// ERROR_RATE's fewest runs when none is given.
pub const DEFAULT_MIN_RUNS: i32 = 5;
/// The most runs `min_runs` may ask for.
pub const MAX_MIN_RUNS: i32 = 1_000_000;
/// The highest COST_TODAY threshold, in millionths of a USD (a billion USD; every whole
/// number up to it is exact in a double).
pub const MAX_COST_MICROS: f64 = 1e15;
/// The source of the alerts rules raise.
pub const SOURCE: &str = "rule";

/// A rule's settings, as they are after defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSettings {
    pub kind: AlertRuleKind,
    pub threshold: Option<f64>,
    pub window_minutes: Option<i32>,
    pub min_runs: Option<i32>,
}

/// Checks the settings of a rule of `kind`: each problem with its input field. With
/// `defaults`, an omitted window or minimum takes its kind's default (a new rule).
pub fn check_settings(
    kind: AlertRuleKind,
    threshold: Option<f64>,
    window_minutes: Option<i32>,
    min_runs: Option<i32>,
    defaults: bool,
) -> Result<RuleSettings> {
    let mut problems = Vec::new();
    let window_ok = |w: Option<i32>| w.is_some_and(|w| (1..=MAX_WINDOW_MINUTES).contains(&w));
    let window_bounds = format!("windowMinutes is 1 to {MAX_WINDOW_MINUTES} minutes");
    let settings = match kind {
        AlertRuleKind::ErrorRate => {
            if threshold.is_none_or(|t| !(t.is_finite() && (0.0..1.0).contains(&t))) {
                problems.push(FieldProblem::new(
                    "threshold",
                    "an ERROR_RATE threshold is a fraction from 0 up to (not including) 1: 0.2 is 20 %",
                ));
            }
            let window = window_minutes.or(defaults.then_some(DEFAULT_ERROR_RATE_WINDOW));
            if !window_ok(window) {
                problems.push(FieldProblem::new("windowMinutes", window_bounds));
            }
            let min_runs = min_runs.or(defaults.then_some(DEFAULT_MIN_RUNS));
            if min_runs.is_none_or(|m| !(1..=MAX_MIN_RUNS).contains(&m)) {
                problems.push(FieldProblem::new(
                    "minRuns",
                    format!("minRuns is 1 to {MAX_MIN_RUNS} runs"),
                ));
            }
            RuleSettings {
                kind,
                threshold,
                window_minutes: window,
                min_runs,
            }
        }
        AlertRuleKind::CostToday => {
            let whole = |t: f64| t.is_finite() && t.fract() == 0.0;
            if threshold.is_none_or(|t| !(whole(t) && (0.0..=MAX_COST_MICROS).contains(&t))) {
                problems.push(FieldProblem::new(
                    "threshold",
                    "a COST_TODAY threshold is a whole number of millionths of a USD, 0 to 10^15",
                ));
            }
            if window_minutes.is_some() {
                problems.push(FieldProblem::new(
                    "windowMinutes",
                    "COST_TODAY has no window: it is the cost of the UTC day",
                ));
            }
            if min_runs.is_some() {
                problems.push(FieldProblem::new(
                    "minRuns",
                    "only ERROR_RATE takes minRuns",
                ));
            }
            RuleSettings {
                kind,
                threshold,
                window_minutes: None,
                min_runs: None,
            }
        }
        AlertRuleKind::UnhealthyFor => {
            if threshold.is_some() {
                problems.push(FieldProblem::new(
                    "threshold",
                    "UNHEALTHY_FOR takes no threshold: windowMinutes is how long",
                ));
            }
            let window = window_minutes.or(defaults.then_some(DEFAULT_UNHEALTHY_WINDOW));
            if !window_ok(window) {
                problems.push(FieldProblem::new("windowMinutes", window_bounds));
            }
            if min_runs.is_some() {
                problems.push(FieldProblem::new(
                    "minRuns",
                    "only ERROR_RATE takes minRuns",
                ));
            }
            RuleSettings {
                kind,
                threshold: None,
                window_minutes: window,
                min_runs: None,
            }
        }
    };
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// A rule's name, trimmed: 1 to 200 characters.
fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if (1..=200).contains(&name.chars().count()) {
        Ok(name.to_owned())
    } else {
        Err(Error::bad_input("name", "name must be 1 to 200 characters"))
    }
}

fn kind_name(kind: AlertRuleKind) -> &'static str {
    match kind {
        AlertRuleKind::ErrorRate => "ERROR_RATE",
        AlertRuleKind::CostToday => "COST_TODAY",
        AlertRuleKind::UnhealthyFor => "UNHEALTHY_FOR",
    }
}

/// A new rule.
#[derive(Clone, Debug)]
pub struct NewRule {
    /// `None`: every live agent of the tenant.
    pub agent_id: Option<Uuid>,
    pub name: String,
    pub kind: AlertRuleKind,
    pub threshold: Option<f64>,
    pub window_minutes: Option<i32>,
    pub min_runs: Option<i32>,
    pub severity: Severity,
    pub is_active: bool,
}

/// Checks that `agent_id` names a live agent of the caller's tenant: another tenant's
/// is NOT_FOUND exactly like one never created.
async fn check_agent(scope: &RequestScope, agent_id: Option<Uuid>) -> Result<()> {
    if let Some(agent_id) = agent_id {
        find_agent(scope, agent_id, false).await?;
    }
    Ok(())
}

/// Creates a rule (operators and above, audited). Its settings are checked for its
/// kind, every problem named by its field; a name taken in the tenant is CONFLICT.
pub async fn create_rule(scope: &RequestScope, rule: NewRule) -> Result<alert_rule::Model> {
    let ctx = scope.require(Role::Operator).await?;
    let NewRule {
        agent_id,
        name,
        kind,
        threshold,
        window_minutes,
        min_runs,
        severity,
        is_active,
    } = rule;
    let mut problems = Vec::new();
    let name = match check_name(&name) {
        Ok(name) => Some(name),
        Err(err) => {
            problems.extend(problems_of(err));
            None
        }
    };
    let settings = match check_settings(kind, threshold, window_minutes, min_runs, true) {
        Ok(settings) => Some(settings),
        Err(err) => {
            problems.extend(problems_of(err));
            None
        }
    };
    let (Some(name), Some(settings)) = (name, settings) else {
        return Err(Error::Invalid(problems));
    };
    check_agent(scope, agent_id).await?;
    let row = alert_rule::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(agent_id),
        name: Set(name),
        kind: Set(settings.kind),
        threshold: Set(settings.threshold),
        window_minutes: Set(settings.window_minutes),
        min_runs: Set(settings.min_runs),
        severity: Set(severity),
        is_active: Set(is_active),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "alert_rule.create")
            .target(IdKind::AlertRule, row.id)
            .details(settings_json(&row)),
    )
    .await?;
    Ok(row)
}

fn problems_of(err: Error) -> Vec<FieldProblem> {
    match err {
        Error::BadInput { field, message } => vec![FieldProblem { field, message }],
        Error::Invalid(problems) => problems,
        other => vec![FieldProblem::new("input", other.to_string())],
    }
}

/// What the audit log keeps of a rule.
fn settings_json(row: &alert_rule::Model) -> Json {
    json!({
        "name": row.name,
        "agentId": row.agent_id,
        "kind": kind_name(row.kind),
        "threshold": row.threshold,
        "windowMinutes": row.window_minutes,
        "minRuns": row.min_runs,
        "severity": row.severity,
        "active": row.is_active,
    })
}

/// A rule of the caller's tenant, locked for a change (operators and above); another
/// tenant's is NOT_FOUND like one never created.
async fn find_for_change(scope: &RequestScope, id: Uuid) -> Result<(Uuid, alert_rule::Model)> {
    let ctx = scope.require(Role::Operator).await?;
    let row = alert_rule::Entity::find_by_id(id)
        .filter(alert_rule::Column::TenantId.eq(ctx.tenant_id))
        .lock_exclusive()
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    Ok((ctx.tenant_id, row))
}

/// A rule's changes; `None` leaves a field as it is. `agent_id: Some(None)` makes the
/// rule watch every agent of the tenant. A rule's kind never changes (create another).
#[derive(Clone, Debug, Default)]
pub struct RuleChanges {
    pub agent_id: Option<Option<Uuid>>,
    pub name: Option<String>,
    pub threshold: Option<f64>,
    pub window_minutes: Option<i32>,
    pub min_runs: Option<i32>,
    pub severity: Option<Severity>,
    pub is_active: Option<bool>,
}

/// Changes a rule (operators and above, audited with the fields that changed). The
/// settings it ends up with are checked for its kind as on creation. Its open alerts
/// stay as they are.
pub async fn update_rule(
    scope: &RequestScope,
    id: Uuid,
    changes: RuleChanges,
) -> Result<alert_rule::Model> {
    let (tenant_id, current) = find_for_change(scope, id).await?;
    let mut problems = Vec::new();
    let name = match changes.name.map(|name| check_name(&name)).transpose() {
        Ok(name) => name,
        Err(err) => {
            problems.extend(problems_of(err));
            None
        }
    };
    let settings = check_settings(
        current.kind,
        changes.threshold.or(current.threshold),
        changes.window_minutes.or(current.window_minutes),
        changes.min_runs.or(current.min_runs),
        false,
    );
    let settings = match settings {
        Ok(settings) => Some(settings),
        Err(err) => {
            problems.extend(problems_of(err));
            None
        }
    };
    let Some(settings) = settings.filter(|_| problems.is_empty()) else {
        return Err(Error::Invalid(problems));
    };
    if let Some(agent_id) = changes.agent_id {
        check_agent(scope, agent_id).await?;
    }
    let mut row: alert_rule::ActiveModel = current.clone().into();
    let mut changed = Vec::new();
    if let Some(agent_id) = changes.agent_id.filter(|a| *a != current.agent_id) {
        row.agent_id = Set(agent_id);
        changed.push("agentId");
    }
    if let Some(name) = name.filter(|n| *n != current.name) {
        row.name = Set(name);
        changed.push("name");
    }
    if settings.threshold != current.threshold {
        row.threshold = Set(settings.threshold);
        changed.push("threshold");
    }
    if settings.window_minutes != current.window_minutes {
        row.window_minutes = Set(settings.window_minutes);
        changed.push("windowMinutes");
    }
    if settings.min_runs != current.min_runs {
        row.min_runs = Set(settings.min_runs);
        changed.push("minRuns");
    }
    if let Some(severity) = changes.severity.filter(|s| *s != current.severity) {
        row.severity = Set(severity);
        changed.push("severity");
    }
    if let Some(active) = changes.is_active.filter(|a| *a != current.is_active) {
        row.is_active = Set(active);
        changed.push("isActive");
    }
    if changed.is_empty() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    let mut details = settings_json(&row);
    details["changed"] = json!(changed);
    audit::record(
        scope,
        Event::new(Some(tenant_id), "alert_rule.update")
            .target(IdKind::AlertRule, id)
            .details(details),
    )
    .await?;
    Ok(row)
}

/// Deletes a rule (operators and above, audited). The alerts it raised stay, without
/// their rule; an open one is resolved by people as any other.
pub async fn delete_rule(scope: &RequestScope, id: Uuid) -> Result<alert_rule::Model> {
    let (tenant_id, row) = find_for_change(scope, id).await?;
    alert_rule::Entity::delete_by_id(id)
        .exec(scope.tx().await?)
        .await?;
    audit::record(
        scope,
        Event::new(Some(tenant_id), "alert_rule.delete")
            .target(IdKind::AlertRule, id)
            .severity(Severity::Warning)
            .details(settings_json(&row)),
    )
    .await?;
    Ok(row)
}

/// One active rule measured for one agent it watches.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct Measurement {
    pub rule_id: Uuid,
    pub name: String,
    pub kind: AlertRuleKind,
    pub threshold: Option<f64>,
    pub window_minutes: Option<i32>,
    pub min_runs: Option<i32>,
    pub severity: Severity,
    pub agent_id: Uuid,
    pub slug: String,
    /// ERROR_RATE: runs and failed runs reported in the window.
    pub runs: i64,
    pub errors: i64,
    /// COST_TODAY: cost reported today (UTC), micro-USD.
    pub cost_micros: i64,
    /// UNHEALTHY_FOR: the first sample of the current UNHEALTHY streak; null when the
    /// latest sample is not UNHEALTHY or there is none.
    pub unhealthy_since: Option<DateTime<Utc>>,
    /// When it was measured (the transaction's time).
    pub at: DateTime<Utc>,
}

/// Every active rule of the tenant with every live agent it watches, measured in one
/// statement. Each kind's figures are read only for that kind's rules.
const MEASURE_SQL: &str = "SELECT r.id AS rule_id, r.name, r.kind, r.threshold, r.window_minutes, \
       r.min_runs, r.severity, a.id AS agent_id, a.slug, \
       u.runs, u.errors, c.cost_micros, h.unhealthy_since, now() AS at \
     FROM alert_rules r \
     JOIN agents a ON a.tenant_id = r.tenant_id AND a.deleted_at IS NULL \
       AND (r.agent_id IS NULL OR a.id = r.agent_id) \
     CROSS JOIN LATERAL ( \
       SELECT count(*)::int8 AS runs, (count(*) FILTER (WHERE x.error))::int8 AS errors \
       FROM agent_usage x \
       WHERE r.kind = 'error_rate' AND x.tenant_id = r.tenant_id AND x.agent_id = a.id \
         AND x.at > now() - make_interval(mins => r.window_minutes)) u \
     CROSS JOIN LATERAL ( \
       SELECT coalesce(sum(m.cost_micros), 0)::int8 AS cost_micros \
       FROM agent_metrics m \
       WHERE r.kind = 'cost_today' AND m.tenant_id = r.tenant_id AND m.agent_id = a.id \
         AND m.period = 'day' AND m.period_start = date_trunc('day', now(), 'UTC')) c \
     CROSS JOIN LATERAL ( \
       SELECT min(s.recorded_at) AS unhealthy_since \
       FROM container_health s \
       WHERE r.kind = 'unhealthy_for' AND s.tenant_id = r.tenant_id AND s.agent_id = a.id \
         AND s.status = 'unhealthy' \
         AND s.recorded_at > coalesce(( \
           SELECT max(o.recorded_at) FROM container_health o \
           WHERE o.tenant_id = r.tenant_id AND o.agent_id = a.id \
             AND o.status <> 'unhealthy'), '-infinity')) h \
     WHERE r.tenant_id = $1 AND r.is_active \
     ORDER BY r.id, a.id";

impl Measurement {
    /// The error rate in the window; `None` without runs.
    pub fn error_rate(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.errors as f64 / self.runs as f64)
    }

    /// Whether the rule's condition holds for the agent.
    pub fn holds(&self) -> bool {
        let threshold = self.threshold.unwrap_or(f64::INFINITY);
        match self.kind {
            AlertRuleKind::ErrorRate => {
                let enough = self.runs >= i64::from(self.min_runs.unwrap_or(1).max(1));
                enough && self.error_rate().is_some_and(|rate| rate > threshold)
            }
            AlertRuleKind::CostToday => self.cost_micros as f64 > threshold,
            AlertRuleKind::UnhealthyFor => {
                let window = Duration::minutes(self.window_minutes.unwrap_or(1).into());
                self.unhealthy_since
                    .is_some_and(|since| since <= self.at - window)
            }
        }
    }

    /// The alert the rule raises about the agent: its message and figures.
    pub fn alert(&self, tenant_id: Uuid) -> NewAlert {
        let threshold = self.threshold.unwrap_or_default();
        let window = self.window_minutes.unwrap_or_default();
        let (message, figures) = match self.kind {
            AlertRuleKind::ErrorRate => {
                let rate = self.error_rate().unwrap_or_default();
                (
                    format!(
                        "agent {} failed {} of {} runs ({:.1} %) in the last {window} minutes, above {:.1} %",
                        self.slug,
                        self.errors,
                        self.runs,
                        rate * 100.0,
                        threshold * 100.0
                    ),
                    json!({ "errorRate": rate, "runs": self.runs, "errors": self.errors }),
                )
            }
            AlertRuleKind::CostToday => (
                format!(
                    "agent {} cost {:.2} USD today (UTC), above {:.2} USD",
                    self.slug,
                    self.cost_micros as f64 / 1e6,
                    threshold / 1e6
                ),
                json!({
                    "costMicros": self.cost_micros,
                    "day": self.at.format("%Y-%m-%d").to_string(),
                }),
            ),
            AlertRuleKind::UnhealthyFor => {
                let since = self.unhealthy_since.unwrap_or(self.at);
                (
                    format!(
                        "agent {} has been UNHEALTHY since {} ({} minutes, at least {window})",
                        self.slug,
                        since.to_rfc3339_opts(SecondsFormat::Secs, true),
                        (self.at - since).num_minutes()
                    ),
                    json!({
                        "unhealthySince": since.to_rfc3339_opts(SecondsFormat::Millis, true),
                        "unhealthyMinutes": (self.at - since).num_minutes(),
                    }),
                )
            }
        };
        let mut details = json!({
            "rule": self.name,
            "kind": kind_name(self.kind),
            "threshold": self.threshold,
            "windowMinutes": self.window_minutes,
            "minRuns": self.min_runs,
            "measuredAt": self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        if let (Some(details), Some(figures)) = (details.as_object_mut(), figures.as_object()) {
            details.extend(figures.clone());
        }
        NewAlert {
            tenant_id: Some(tenant_id),
            agent_id: Some(self.agent_id),
            rule_id: Some(self.rule_id),
            severity: self.severity,
            source: SOURCE,
            message: format!("Rule \"{}\": {message}", self.name),
            details,
            dedupe_key: format!("rule:{}:{}", self.rule_id, self.agent_id),
        }
    }
}

/// What evaluating rules did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RulePass {
    /// Tenants evaluated.
    pub tenants: u64,
    /// Tenants whose evaluation failed (rolled back).
    pub failed: u64,
    /// Rule and agent pairs measured.
    pub measured: u64,
    /// Of those, the pairs whose condition held.
    pub held: u64,
    /// New alerts raised (a held condition whose alert was already open raises none).
    pub raised: u64,
}

impl RulePass {
    fn add(&mut self, other: &RulePass) {
        self.measured += other.measured;
        self.held += other.held;
        self.raised += other.raised;
    }
}

/// Evaluates every active rule of one tenant in one transaction of that tenant, as the
/// maintenance loop (RLS in force): raises an alert for each rule and agent whose
/// condition holds, unless its alert is open, and stamps the rules'
/// `last_evaluated_at`.
pub async fn evaluate_tenant(db: &AppDb, tenant_id: Uuid) -> Result<RulePass> {
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    let done = evaluate_in(&scope, tenant_id).await;
    RequestScope::finish_shared(scope, done.is_ok()).await?;
    done
}

async fn evaluate_in(scope: &RequestScope, tenant_id: Uuid) -> Result<RulePass> {
    scope.require(Role::Viewer).await?;
    let tx = scope.tx().await?;
    let measured = Measurement::find_by_statement(stmt(MEASURE_SQL, [tenant_id.into()]))
        .all(tx)
        .await?;
    let mut pass = RulePass {
        tenants: 1,
        measured: measured.len() as u64,
        ..RulePass::default()
    };
    for measurement in measured.iter().filter(|m| m.holds()) {
        pass.held += 1;
        if alerts::raise(scope, measurement.alert(tenant_id))
            .await?
            .is_some()
        {
            pass.raised += 1;
        }
    }
    scope
        .tx()
        .await?
        .execute(stmt(
            "UPDATE alert_rules SET last_evaluated_at = now() WHERE tenant_id = $1 AND is_active",
            [tenant_id.into()],
        ))
        .await?;
    Ok(pass)
}

#[derive(FromQueryResult)]
struct Id {
    id: Uuid,
}

/// One pass over the tenants with active rules (at most `max_tenants`, those evaluated
/// longest ago first). One tenant's failure is logged and counted, and the others go
/// on.
pub async fn evaluate_pass(db: &AppDb, max_tenants: i32) -> Result<RulePass> {
    let tenants = Id::find_by_statement(stmt(
        "SELECT t AS id FROM app.tenants_with_alert_rules($1) AS t",
        [max_tenants.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = RulePass::default();
    for Id { id } in tenants {
        match evaluate_tenant(db, id).await {
            Ok(done) => {
                pass.tenants += 1;
                pass.add(&done);
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %id, error = ?err, "alert rule evaluation failed");
            }
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: Result<RuleSettings>) -> Vec<String> {
        match result {
            Err(Error::Invalid(problems)) => problems.into_iter().map(|p| p.field).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_takes_its_own_settings_with_defaults() {
        let rate = check_settings(AlertRuleKind::ErrorRate, Some(0.2), None, None, true).unwrap();
        assert_eq!(
            (rate.window_minutes, rate.min_runs),
            (Some(DEFAULT_ERROR_RATE_WINDOW), Some(DEFAULT_MIN_RUNS))
        );
        let down = check_settings(AlertRuleKind::UnhealthyFor, None, None, None, true).unwrap();
        assert_eq!(down.window_minutes, Some(DEFAULT_UNHEALTHY_WINDOW));
        assert!(check_settings(AlertRuleKind::CostToday, Some(5e6), None, None, true).is_ok());
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::ErrorRate,
                Some(1.0),
                Some(0),
                Some(0),
                true
            )),
            ["threshold", "windowMinutes", "minRuns"]
        );
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::ErrorRate,
                None,
                Some(1441),
                None,
                true
            )),
            ["threshold", "windowMinutes"]
        );
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::CostToday,
                Some(1.5),
                Some(5),
                Some(1),
                true
            )),
            ["threshold", "windowMinutes", "minRuns"]
        );
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::CostToday,
                Some(f64::NAN),
                None,
                None,
                true
            )),
            ["threshold"]
        );
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::UnhealthyFor,
                Some(1.0),
                None,
                Some(3),
                true
            )),
            ["threshold", "minRuns"]
        );
        // Without defaults (a change), a window must be there.
        assert_eq!(
            fields(check_settings(
                AlertRuleKind::UnhealthyFor,
                None,
                None,
                None,
                false
            )),
            ["windowMinutes"]
        );
    }

    fn measurement(kind: AlertRuleKind) -> Measurement {
        Measurement {
            rule_id: Uuid::now_v7(),
            name: "r".into(),
            kind,
            threshold: None,
            window_minutes: None,
            min_runs: None,
            severity: Severity::Warning,
            agent_id: Uuid::now_v7(),
            slug: "a".into(),
            runs: 0,
            errors: 0,
            cost_micros: 0,
            unhealthy_since: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn conditions_hold_strictly_above_their_thresholds() {
        let rate = |runs, errors, min| Measurement {
            threshold: Some(0.5),
            window_minutes: Some(15),
            min_runs: Some(min),
            runs,
            errors,
            ..measurement(AlertRuleKind::ErrorRate)
        };
        assert!(rate(10, 6, 5).holds());
        assert!(!rate(10, 5, 5).holds(), "50 % is not above 50 %");
        assert!(!rate(4, 4, 5).holds(), "too few runs");
        assert!(!rate(0, 0, 1).holds());
        let cost = |micros| Measurement {
            threshold: Some(1_000_000.0),
            cost_micros: micros,
            ..measurement(AlertRuleKind::CostToday)
        };
        assert!(cost(1_000_001).holds());
        assert!(!cost(1_000_000).holds());
        let at = Utc::now();
        let down = |minutes: i64| Measurement {
            window_minutes: Some(5),
            unhealthy_since: Some(at - Duration::minutes(minutes)),
            at,
            ..measurement(AlertRuleKind::UnhealthyFor)
        };
        assert!(down(5).holds());
        assert!(!down(4).holds());
        assert!(!measurement(AlertRuleKind::UnhealthyFor).holds());
        let alert = down(6).alert(Uuid::now_v7());
        assert_eq!(alert.source, "rule");
        assert!(alert.dedupe_key.starts_with("rule:"));
        assert_eq!(alert.details["kind"], "UNHEALTHY_FOR");
        assert_eq!(alert.details["unhealthyMinutes"], 6);
    }
}
