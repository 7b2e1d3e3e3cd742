//! A simulation may replay a real run: steps that reach outside answer with the output
//! the same step had in that run. The run it replays stays inside the tenant (a
//! composite foreign key) and only simulations replay.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000015_replays"
    }
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE workflow_runs ADD COLUMN replay_of_id uuid,\n\
               ADD CONSTRAINT workflow_runs_replay_of_fkey FOREIGN KEY (tenant_id, replay_of_id)\n\
                 REFERENCES workflow_runs (tenant_id, id) ON DELETE SET NULL (replay_of_id),\n\
               ADD CONSTRAINT workflow_runs_replay_is_simulation\n\
                 CHECK (replay_of_id IS NULL OR is_simulation);\n",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE workflow_runs DROP COLUMN replay_of_id;\n",
        )
        .await
    }
}
