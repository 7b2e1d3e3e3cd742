//! Retries of a step: a failed attempt that is tried again is kept in `step_attempts`
//! (its number, error and times), and the step run records when the next attempt is
//! due (`next_attempt_at`). A step run may also wait on people (`waiting`, approvals).

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000011_step_attempts"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("step_attempts")]
}

const UP: &str = "\
ALTER TABLE step_runs DROP CONSTRAINT step_runs_status_check;
ALTER TABLE step_runs ADD CONSTRAINT step_runs_status_check CHECK (status IN
    ('pending', 'running', 'waiting', 'succeeded', 'failed', 'skipped', 'cancelled'));
ALTER TABLE step_runs ADD COLUMN next_attempt_at timestamptz;

CREATE TABLE step_attempts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    step_run_id uuid NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    error jsonb,
    started_at timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT step_attempts_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT step_attempts_step_attempt_key UNIQUE (tenant_id, step_run_id, attempt),
    CONSTRAINT step_attempts_step_run_fkey FOREIGN KEY (tenant_id, step_run_id)
        REFERENCES step_runs (tenant_id, id) ON DELETE CASCADE
);
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
        sql.push_str(&grant_to_app("SELECT, INSERT", "step_attempts"));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP TABLE step_attempts;\n\
             ALTER TABLE step_runs DROP COLUMN next_attempt_at;\n\
             UPDATE step_runs SET status = 'running' WHERE status = 'waiting';\n\
             ALTER TABLE step_runs DROP CONSTRAINT step_runs_status_check;\n\
             ALTER TABLE step_runs ADD CONSTRAINT step_runs_status_check CHECK (status IN \
               ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'));\n",
        )
        .await
    }
}
