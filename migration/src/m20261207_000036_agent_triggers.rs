//! Triggers of agents (issue 18 §1: a run of an agent records its trigger type and
//! payload). A trigger now starts runs of a workflow or of an agent:
//!
//! - `triggers.agent_id`: the agent whose runs it starts, a composite foreign key (an
//!   agent of the same tenant only), deleted with the agent's row;
//! - `workflow_id` may be NULL, and `triggers_one_target` keeps exactly one of the two
//!   set, so every existing trigger (all of a workflow) stays as it is.
//!
//! The table's row-level security, its webhook path look-up and the scheduler's due
//! look-up are unchanged: they never read the target.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000036_agent_triggers"
    }
}

const UP: &str = "
ALTER TABLE triggers
    ADD COLUMN agent_id uuid,
    ALTER COLUMN workflow_id DROP NOT NULL,
    ADD CONSTRAINT triggers_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT triggers_one_target CHECK (num_nonnulls(workflow_id, agent_id) = 1);
CREATE INDEX triggers_agent_idx ON triggers (tenant_id, agent_id);
";

const DOWN: &str = "
DELETE FROM triggers WHERE agent_id IS NOT NULL;
DROP INDEX triggers_agent_idx;
ALTER TABLE triggers
    DROP CONSTRAINT triggers_one_target,
    DROP CONSTRAINT triggers_agent_fkey,
    DROP COLUMN agent_id,
    ALTER COLUMN workflow_id SET NOT NULL;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
