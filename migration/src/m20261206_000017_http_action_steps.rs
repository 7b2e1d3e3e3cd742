//! ACTION steps bound to the built-in `http` app's `request` action run in the engine,
//! as HTTP calls: the due look-up no longer counts them as keeping a run from it. The
//! test is `trellis_entity::workflow_step::foreign_step_sql`, which the executor's
//! claim uses too.

use sea_orm_migration::prelude::*;
use trellis_entity::workflow_step::foreign_step_sql;

use crate::m20261206_000016_external_steps::{due_runs_function, EXTERNAL};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000017_http_action_steps"
    }
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            &due_runs_function(&foreign_step_sql("engine_types")),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &due_runs_function(EXTERNAL)).await
    }
}
