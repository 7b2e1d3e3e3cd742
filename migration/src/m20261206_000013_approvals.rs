//! Approvals: people decide on an approval step that waits (`step_runs.status =
//! 'waiting'`). Each decision is one row, one per person and step, kept as history:
//! the app role inserts and reads decisions, never changes them.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000013_approvals"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("approval_decisions")]
}

const UP: &str = "\
CREATE TABLE approval_decisions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    step_run_id uuid NOT NULL,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    decision text NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment text CHECK (length(comment) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT approval_decisions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT approval_decisions_one_per_person UNIQUE (tenant_id, step_run_id, user_id),
    CONSTRAINT approval_decisions_step_run_fkey FOREIGN KEY (tenant_id, step_run_id)
        REFERENCES step_runs (tenant_id, id) ON DELETE CASCADE
);
-- The approvals waiting on people, for `approvalsPending`: few rows of a large table.
CREATE INDEX step_runs_waiting ON step_runs (tenant_id, started_at) WHERE status = 'waiting';
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
        sql.push_str(&grant_to_app("SELECT, INSERT", "approval_decisions"));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP INDEX step_runs_waiting;\nDROP TABLE approval_decisions;\n",
        )
        .await
    }
}
