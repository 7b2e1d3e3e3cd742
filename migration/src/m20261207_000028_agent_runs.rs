//! Agent runs: a run of an agent is a run of its version's flow (a workflow version) on
//! the existing run tables, so the engine executes it like any other. The run records
//! the agent and the agent version it ran (composite foreign keys: never another
//! tenant's, and the version is the agent's own) and the agent's tool policy as it was
//! when the run started (`tool_policy`, NULL for runs that are not an agent's). Those
//! three never change once written: a trigger refuses it, except for the foreign keys'
//! own `SET NULL` when a purge deletes the agent.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000028_agent_runs"
    }
}

const UP: &str = "
ALTER TABLE workflow_runs ADD COLUMN agent_id uuid,
    ADD COLUMN agent_version_id uuid,
    ADD COLUMN tool_policy jsonb,
    ADD CONSTRAINT workflow_runs_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE SET NULL (agent_id),
    ADD CONSTRAINT workflow_runs_agent_version_fkey
        FOREIGN KEY (tenant_id, agent_id, agent_version_id)
        REFERENCES agent_versions (tenant_id, agent_id, id) ON DELETE SET NULL (agent_version_id),
    ADD CONSTRAINT workflow_runs_agent_policy
        CHECK (tool_policy IS NULL OR app.is_tool_policy(tool_policy)),
    ADD CONSTRAINT workflow_runs_agent_has_policy
        CHECK (agent_id IS NULL OR tool_policy IS NOT NULL);
CREATE INDEX workflow_runs_agent_idx ON workflow_runs (tenant_id, agent_id, created_at, id)
    WHERE agent_id IS NOT NULL;
CREATE INDEX workflow_runs_agent_version_idx
    ON workflow_runs (tenant_id, agent_id, agent_version_id)
    WHERE agent_version_id IS NOT NULL;

-- What an agent run ran, and under which tool policy, is history: it never changes.
-- The foreign keys' ON DELETE SET NULL (a purge deleting the agent) may clear the
-- agent and its version; nothing may set or change them, nor the frozen policy.
CREATE FUNCTION app.workflow_runs_agent_frozen() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.tool_policy IS DISTINCT FROM OLD.tool_policy
       OR (NEW.agent_id IS NOT NULL AND NEW.agent_id IS DISTINCT FROM OLD.agent_id)
       OR (NEW.agent_version_id IS NOT NULL
           AND NEW.agent_version_id IS DISTINCT FROM OLD.agent_version_id) THEN
        RAISE EXCEPTION 'a run''s agent, agent version and tool policy never change'
            USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'workflow_runs_agent_frozen';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER workflow_runs_agent_frozen
    BEFORE UPDATE OF agent_id, agent_version_id, tool_policy ON workflow_runs
    FOR EACH ROW EXECUTE FUNCTION app.workflow_runs_agent_frozen();
";

const DOWN: &str = "
DROP TRIGGER workflow_runs_agent_frozen ON workflow_runs;
DROP FUNCTION app.workflow_runs_agent_frozen();
ALTER TABLE workflow_runs DROP COLUMN tool_policy, DROP COLUMN agent_version_id,
    DROP COLUMN agent_id;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.workflow_runs_agent_frozen()",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
