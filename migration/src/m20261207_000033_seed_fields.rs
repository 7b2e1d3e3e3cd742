//! The seeds' fields that were missing (issue 20, §4).
//!
//! **`updated_at` on every table whose rows change.** Seed 004 asks for audit
//! timestamps on every table. The tables below lacked `updated_at` although their rows
//! are updated (by the application role, a SECURITY DEFINER function or the owner's
//! jobs); each gets `updated_at timestamptz NOT NULL DEFAULT now()` kept by the
//! `app.touch_updated_at()` trigger, as every other table has it:
//!
//! - `alerts` (acknowledged, resolved), `container_health` (a sample is marked once
//!   folded into its hour), `call_logs` (payload retention clears `input`/`output`), `notifications`
//!   (`read_at`), `process_usage_hourly` (counters added up), `response_cache` (a
//!   pending entry is filled, an expired one reclaimed), `run_idempotency_keys` (an
//!   expired key is taken over), `tenant_data_keys` (re-wrapped under a new master
//!   key), `workflow_reports` (a recompute rewrites a rollup; `computed_at` stays the
//!   time its figures were computed), `email_verifications`, `password_resets` and
//!   `email_changes` (`used_at` set when consumed), `request_throttles` (counters).
//! - `process_deployments` already had the column, set by hand in its one upsert, and
//!   `agent_metrics` had it with no trigger; both get the trigger, so no writer can
//!   forget it.
//!
//! Adding a column with a constant default is a catalog change, not a rewrite, so rows
//! that existed before this migration read the migration's time as their `updated_at`.
//!
//! Tables left without `updated_at`, because their rows never change once written:
//! `audit_events` (append-only, hash-chained; the application role may only insert),
//! `execution_logs` (log lines), `log_outbox` (a queue: rows are inserted, shipped and
//! deleted), `step_attempts` (one row per finished attempt), `approval_decisions` (a
//! decision is final), `agent_label_moves` and `process_promotions` (history of label
//! moves and promotions), `connection_secrets` (a connection's secret references are
//! replaced by delete and insert, never updated) and `skill_installations` (installed
//! and uninstalled, never edited), `agent_usage` (usage reports) and `agent_activities`
//! (an agent's feed). The application role has no UPDATE privilege on any
//! of them, which the catalog test in `tests/it/seed_fields.rs` checks.
//!
//! **Workflow steps (seed 003).** `description` (text, `''` by default, at most 4000
//! characters) and `sort_order`, the step's explicit place in the version (`order` in
//! GraphQL; `position` was already the editor's `{x, y}`): 0 for the first step, dense
//! and in order, which `saveWorkflowGraph` renumbers on every save. Existing graphs are
//! numbered in the order their steps were saved (their ids are time-ordered). The
//! triggers that guard published graphs are switched off for that one backfill: the
//! order of a published version's steps is a new fact about it, not a change.
//! `workflow_steps_version_order_idx (tenant_id, version_id, sort_order)` serves the
//! graph read in that order (seed 003's `(workflowId, order)` index).
//!
//! **Run metadata (seed 003).** `workflow_runs.metadata`, a JSON object (`{}` by
//! default) that `startRun` takes; the server limits it to 16 KiB of JSON text.
//!
//! **Invitation tokens unique globally.** An invitation is looked up by its token's
//! SHA-256 hash before any tenant is known (`app.invitation_for_token`), so the hash
//! must name one invitation in the whole database, not one per tenant:
//! `invitations_token_hash_key UNIQUE (token_hash)` replaces the per-tenant constraint
//! and the plain index on the hash. It is the one unique index without `tenant_id`
//! that the RLS doctor admits, by table and name (`doctor::GLOBAL_UNIQUES`): the
//! server draws the token (32 random bytes) and stores only its hash, so a tenant can
//! neither choose a value nor learn one it does not already hold, and a unique
//! violation tells it nothing it could not compute itself.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000033_seed_fields"
    }
}

/// The tables that get `updated_at` and its trigger here.
const TOUCHED: [&str; 13] = [
    "alerts",
    "call_logs",
    "container_health",
    "notifications",
    "process_usage_hourly",
    "response_cache",
    "run_idempotency_keys",
    "tenant_data_keys",
    "workflow_reports",
    "email_verifications",
    "password_resets",
    "email_changes",
    "request_throttles",
];

const UP: &str = "
CREATE TRIGGER process_deployments_updated_at BEFORE UPDATE ON process_deployments
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER agent_metrics_updated_at BEFORE UPDATE ON agent_metrics
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

ALTER TABLE workflow_steps
    ADD COLUMN description text NOT NULL DEFAULT ''
        CONSTRAINT workflow_steps_description_length CHECK (length(description) <= 4000),
    ADD COLUMN sort_order integer NOT NULL DEFAULT 0
        CONSTRAINT workflow_steps_sort_order_check CHECK (sort_order >= 0);
ALTER TABLE workflow_steps DISABLE TRIGGER workflow_steps_immutable;
ALTER TABLE workflow_steps DISABLE TRIGGER workflow_steps_updated_at;
UPDATE workflow_steps s SET sort_order = o.n
FROM (SELECT id, (row_number() OVER (PARTITION BY tenant_id, version_id ORDER BY id) - 1)::integer AS n
      FROM workflow_steps) o
WHERE o.id = s.id AND o.n <> 0;
ALTER TABLE workflow_steps ENABLE TRIGGER workflow_steps_updated_at;
ALTER TABLE workflow_steps ENABLE TRIGGER workflow_steps_immutable;
CREATE INDEX workflow_steps_version_order_idx ON workflow_steps (tenant_id, version_id, sort_order);

ALTER TABLE workflow_runs
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT workflow_runs_metadata_object CHECK (jsonb_typeof(metadata) = 'object');

ALTER TABLE invitations DROP CONSTRAINT invitations_tenant_token_key;
DROP INDEX invitations_token_hash_idx;
CREATE UNIQUE INDEX invitations_token_hash_key ON invitations (token_hash);
";

const DOWN: &str = "
DROP INDEX invitations_token_hash_key;
CREATE INDEX invitations_token_hash_idx ON invitations (token_hash);
ALTER TABLE invitations ADD CONSTRAINT invitations_tenant_token_key UNIQUE (tenant_id, token_hash);

ALTER TABLE workflow_runs DROP COLUMN metadata;

DROP INDEX workflow_steps_version_order_idx;
ALTER TABLE workflow_steps DROP COLUMN sort_order, DROP COLUMN description;

DROP TRIGGER agent_metrics_updated_at ON agent_metrics;
DROP TRIGGER process_deployments_updated_at ON process_deployments;
";

fn up_script() -> String {
    let mut sql = String::new();
    for table in TOUCHED {
        sql.push_str(&format!(
            "ALTER TABLE {table} ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();\n\
             CREATE TRIGGER {table}_updated_at BEFORE UPDATE ON {table}\n    \
             FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();\n"
        ));
    }
    sql.push_str(UP);
    sql
}

fn down_script() -> String {
    let mut sql = DOWN.to_owned();
    for table in TOUCHED {
        sql.push_str(&format!(
            "DROP TRIGGER {table}_updated_at ON {table};\n\
             ALTER TABLE {table} DROP COLUMN updated_at;\n"
        ));
    }
    sql
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &up_script()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &down_script()).await
    }
}
