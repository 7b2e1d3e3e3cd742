//! Agent usage, metrics and alerts (issue 18 §1, §4, §5).
//!
//! - `agent_usage`: what runners report per run of an agent (tokens, cost, latency,
//!   whether it failed). Append-only facts: the application inserts and reads them,
//!   never changes them.
//! - `agent_metrics`: the rollup the dashboard reads, one row per agent, period (hour
//!   or day, UTC) and period start, written by the report's own transaction: counters
//!   added in the statement that inserts the usage, then p50/p95 recomputed for the two
//!   touched buckets from `agent_usage` (nearest rank). The second statement runs after
//!   the first holds the buckets' row locks, so it sees every report committed before,
//!   and the last writer of a bucket leaves it exact.
//! - `alerts`: raised by budgets now (rules later), deduplicated while open by a
//!   partial unique index on `(tenant_id, dedupe_key)`. A tenant's alert is its
//!   members'; an alert without a tenant is a platform alert, which only the
//!   platform-administration path reads or writes (as public catalog rows are
//!   written).

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies, PLATFORM_ADMIN, TENANT_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000029_agent_usage"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    // A tenant's alerts are its own; platform alerts (no tenant) are read and written
    // only on the platform-administration path.
    let alerts = format!("{TENANT_MATCH} OR (tenant_id IS NULL AND {PLATFORM_ADMIN})");
    vec![
        // Facts: append-only.
        Policies::tenant("agent_usage").only(&["SELECT", "INSERT"]),
        Policies::tenant("agent_metrics").only(&["SELECT", "INSERT", "UPDATE"]),
        // Acknowledged and resolved, never deleted.
        Policies::custom("alerts", &alerts).only(&["SELECT", "INSERT", "UPDATE"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app("SELECT, INSERT", "agent_usage"),
        grant_to_app("SELECT, INSERT, UPDATE", "agent_metrics"),
        grant_to_app("SELECT, INSERT", "alerts"),
        grant_to_app(
            "UPDATE (acknowledged_at, acknowledged_by, resolved_at, resolved_by)",
            "alerts",
        ),
    ]
    .concat()
}

const UP: &str = r#"
CREATE TABLE agent_usage (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    -- The run the usage belongs to, when the runner names one.
    run_id uuid,
    input_tokens bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens bigint NOT NULL CHECK (output_tokens >= 0),
    -- Millionths of a USD.
    cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
    latency_ms integer NOT NULL CHECK (latency_ms >= 0),
    error boolean NOT NULL DEFAULT false,
    reported_by uuid REFERENCES users (id) ON DELETE SET NULL,
    reported_by_key uuid,
    at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_usage_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_usage_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_usage_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE SET NULL (run_id),
    CONSTRAINT agent_usage_key_fkey FOREIGN KEY (tenant_id, reported_by_key)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (reported_by_key)
);
-- A bucket's percentiles read its latencies from this index alone.
CREATE INDEX agent_usage_agent_at_idx ON agent_usage (tenant_id, agent_id, at) INCLUDE (latency_ms);
CREATE INDEX agent_usage_run_idx ON agent_usage (tenant_id, run_id);
CREATE INDEX agent_usage_key_idx ON agent_usage (tenant_id, reported_by_key);
CREATE INDEX agent_usage_reported_by_idx ON agent_usage (reported_by);

CREATE TABLE agent_metrics (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    period text NOT NULL CHECK (period IN ('hour', 'day')),
    period_start timestamptz NOT NULL,
    runs bigint NOT NULL DEFAULT 0 CHECK (runs >= 0),
    errors bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_micros bigint NOT NULL DEFAULT 0,
    latency_ms_sum bigint NOT NULL DEFAULT 0,
    -- Nearest rank over the bucket's reports (percentile_disc); null without any.
    p50_latency_ms integer,
    p95_latency_ms integer,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, period, period_start),
    CONSTRAINT agent_metrics_period_start CHECK (date_trunc(period, period_start, 'UTC') = period_start),
    CONSTRAINT agent_metrics_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE alerts (
    id uuid PRIMARY KEY,
    -- NULL: a platform alert, for platform admins only.
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    -- What raised it: `budget`, later `rule`, `health`, …
    source text NOT NULL CONSTRAINT alerts_source_format CHECK (source ~ '^[a-z][a-z0-9_.:-]{0,62}$'),
    message text NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
    details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    -- At most one open alert per tenant and key (the partial index below).
    dedupe_key text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    raised_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    acknowledged_at timestamptz,
    acknowledged_by uuid REFERENCES users (id) ON DELETE SET NULL,
    resolved_at timestamptz,
    resolved_by uuid REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT alerts_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT alerts_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT alerts_platform_without_agent CHECK (tenant_id IS NOT NULL OR agent_id IS NULL)
);
CREATE UNIQUE INDEX alerts_open_dedupe_key ON alerts (tenant_id, dedupe_key) NULLS NOT DISTINCT
    WHERE resolved_at IS NULL;
CREATE INDEX alerts_tenant_raised_idx ON alerts (tenant_id, raised_at, id);
CREATE INDEX alerts_agent_raised_idx ON alerts (tenant_id, agent_id, raised_at, id);
CREATE INDEX alerts_acknowledged_by_idx ON alerts (acknowledged_by);
CREATE INDEX alerts_resolved_by_idx ON alerts (resolved_by);
"#;

const DOWN: &str = "
DROP TABLE alerts;
DROP TABLE agent_metrics;
DROP TABLE agent_usage;
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
