//! Indexes the seeds name that were missing, each for a list filter the API serves
//! (the tests run EXPLAIN on those queries as the application role):
//!
//! - `connections (tenant_id, app_id, is_active)`: `connections(filter: {app, active})`.
//! - `triggers (tenant_id, type, is_active)`: `triggers(filter: {type, active})`.
//! - `workflow_runs (tenant_id, status, created_at, id)`: `runs(filter: {status})`, in
//!   the list's order, so a page of one status reads only that page (seed 003's
//!   `status` index on executions, and the issue's `(tenant_id, status)`).
//! - `workflow_runs (tenant_id, started_at)`: `runs(filter: {startedAfter,
//!   startedBefore})`, the filter added with it (seed 003's `startedAt` index).
//! - `workflows (tenant_id, status)`: `workflows(filter: {status})` (seed 003).
//!
//! The unique indexes on app keys and connection names are already partial (`WHERE
//! deleted_at IS NULL`), so `restoreApp` and `restoreConnection` need no schema change.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000027_restore"
    }
}

const UP: &str = "
CREATE INDEX connections_tenant_app_idx ON connections (tenant_id, app_id, is_active);
CREATE INDEX triggers_tenant_type_idx ON triggers (tenant_id, type, is_active);
CREATE INDEX workflow_runs_tenant_status_idx ON workflow_runs (tenant_id, status, created_at, id);
CREATE INDEX workflow_runs_tenant_started_idx ON workflow_runs (tenant_id, started_at);
CREATE INDEX workflows_tenant_status_idx ON workflows (tenant_id, status);
";

const DOWN: &str = "
DROP INDEX workflows_tenant_status_idx;
DROP INDEX workflow_runs_tenant_started_idx;
DROP INDEX workflow_runs_tenant_status_idx;
DROP INDEX triggers_tenant_type_idx;
DROP INDEX connections_tenant_app_idx;
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
