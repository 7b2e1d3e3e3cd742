//! Runs: workflow runs and their step runs, idempotency keys, report rollups, and the
//! `runner` API-key scope.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000004_runs"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        Policies::tenant("workflow_runs"),
        Policies::tenant("run_idempotency_keys"),
        Policies::tenant("step_runs"),
        Policies::tenant("workflow_reports"),
    ]
}

fn grants() -> String {
    [
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "workflow_runs"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "run_idempotency_keys"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "step_runs"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "workflow_reports"),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/runs_up.sql").to_owned();
        for table in policies() {
            sql.push_str(&table.sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/runs_down.sql")).await
    }
}
