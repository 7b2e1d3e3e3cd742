//! Alert rules as data (issue 18 §5): `alert_rules`, a tenant's conditions on its
//! agents' metrics and health that the maintenance loop evaluates and that raise
//! alerts (source `rule`).
//!
//! - A rule watches one agent (`agent_id`, a composite foreign key: only an agent of
//!   the same tenant) or, with `agent_id` NULL, every live agent of the tenant.
//! - `kind` says what it measures, and which of `threshold`, `window_minutes` and
//!   `min_runs` it has (the `alert_rules_shape` CHECK):
//!   - `error_rate`: failed runs / runs reported over the last `window_minutes`
//!     (1 to 1440) is above `threshold` (a fraction, 0 ≤ x < 1), counted only once at
//!     least `min_runs` runs were reported (so 1 failure of 1 run is not 100%);
//!   - `cost_today`: the cost reported today (the UTC day) is above `threshold`, in
//!     millionths of a USD (a whole number);
//!   - `unhealthy_for`: every health sample of the agent has been UNHEALTHY for at
//!     least `window_minutes` (1 to 1440); no threshold.
//! - `threshold` is `double precision`: a fraction or a whole number of micros up to
//!   10^15 (exact in a double).
//! - `updated_at` moves when a person changes the rule (the touch trigger fires on the
//!   rule's own columns only); `last_evaluated_at`, which each evaluation sets, does
//!   not move it.
//! - `alerts.rule_id`: the rule an alert was raised by (composite foreign key inside
//!   the tenant; SET NULL when the rule is deleted, so the alert stays).
//! - `app.tenants_with_alert_rules(max)`: the maintenance loop's one cross-tenant
//!   look-up, ids only, of live active tenants with an active rule, those evaluated
//!   longest ago first (so a pass capped at `max` rotates through all of them); the
//!   rules are then evaluated in each tenant's own transaction under RLS.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000035_alert_rules"
    }
}

fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("alert_rules")]
}

fn grants() -> String {
    [
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (agent_id, name, threshold, window_minutes, \
             min_runs, severity, is_active, last_evaluated_at)",
            "alert_rules",
        ),
        grant_to_app("EXECUTE", "FUNCTION app.tenants_with_alert_rules(integer)"),
    ]
    .concat()
}

const UP: &str = r#"
CREATE TABLE alert_rules (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- NULL: every live agent of the tenant.
    agent_id uuid,
    name text NOT NULL CONSTRAINT alert_rules_name_length CHECK (length(name) BETWEEN 1 AND 200),
    kind text NOT NULL CHECK (kind IN ('error_rate', 'cost_today', 'unhealthy_for')),
    threshold double precision,
    window_minutes integer,
    min_runs integer,
    severity text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    is_active boolean NOT NULL DEFAULT true,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_evaluated_at timestamptz,
    CONSTRAINT alert_rules_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT alert_rules_tenant_name_key UNIQUE (tenant_id, name),
    CONSTRAINT alert_rules_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    -- Each kind has exactly its own settings (a NULL comparison fails, not passes).
    CONSTRAINT alert_rules_shape CHECK (coalesce(CASE kind
        WHEN 'error_rate' THEN threshold >= 0 AND threshold < 1
            AND window_minutes BETWEEN 1 AND 1440 AND min_runs BETWEEN 1 AND 1000000
        WHEN 'cost_today' THEN threshold >= 0 AND threshold <= 1e15 AND threshold = trunc(threshold)
            AND window_minutes IS NULL AND min_runs IS NULL
        WHEN 'unhealthy_for' THEN threshold IS NULL
            AND window_minutes BETWEEN 1 AND 1440 AND min_runs IS NULL
    END, false))
);
CREATE INDEX alert_rules_tenant_created_idx ON alert_rules (tenant_id, created_at, id);
CREATE INDEX alert_rules_agent_idx ON alert_rules (tenant_id, agent_id);
CREATE INDEX alert_rules_active_idx ON alert_rules (tenant_id, last_evaluated_at) WHERE is_active;
CREATE INDEX alert_rules_created_by_idx ON alert_rules (created_by);
CREATE TRIGGER alert_rules_updated_at
    BEFORE UPDATE OF agent_id, name, kind, threshold, window_minutes, min_runs, severity, is_active
    ON alert_rules FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

ALTER TABLE alerts
    ADD COLUMN rule_id uuid,
    ADD CONSTRAINT alerts_rule_fkey FOREIGN KEY (tenant_id, rule_id)
        REFERENCES alert_rules (tenant_id, id) ON DELETE SET NULL (rule_id),
    ADD CONSTRAINT alerts_platform_without_rule CHECK (tenant_id IS NOT NULL OR rule_id IS NULL);
CREATE INDEX alerts_rule_idx ON alerts (tenant_id, rule_id);

CREATE FUNCTION app.tenants_with_alert_rules(max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT r.tenant_id FROM public.alert_rules r
    JOIN public.tenants t ON t.id = r.tenant_id
    WHERE r.is_active AND t.status = 'active' AND t.deleted_at IS NULL
    GROUP BY r.tenant_id
    ORDER BY min(r.last_evaluated_at) NULLS FIRST, r.tenant_id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_alert_rules(integer) FROM PUBLIC;
"#;

const DOWN: &str = "
DROP FUNCTION app.tenants_with_alert_rules(integer);
DROP INDEX alerts_rule_idx;
ALTER TABLE alerts DROP CONSTRAINT alerts_platform_without_rule,
    DROP CONSTRAINT alerts_rule_fkey, DROP COLUMN rule_id;
DROP TABLE alert_rules;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = String::new();
        for policies in policies() {
            sql.push_str(&policies.drop_sql());
        }
        sql.push_str(DOWN);
        run_script(manager, &sql).await
    }
}
