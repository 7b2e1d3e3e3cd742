//! In-app notifications: the inbox a NOTIFICATION step (channel `in_app`) fills, one
//! row per recipient, which the dashboard lists and marks read. Tenant-owned under
//! RLS; a step delivers to a person at most once (`notifications_once`).

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000014_notifications"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("notifications")]
}

const UP: &str = "\
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    run_id uuid,
    step_run_id uuid,
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    body text NOT NULL CHECK (length(body) <= 10000),
    data jsonb,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT notifications_once UNIQUE (tenant_id, step_run_id, user_id),
    CONSTRAINT notifications_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT notifications_step_run_fkey FOREIGN KEY (tenant_id, step_run_id)
        REFERENCES step_runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notifications_inbox ON notifications (tenant_id, user_id, created_at DESC, id DESC);
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
        sql.push_str(&grant_to_app(
            "SELECT, INSERT, UPDATE (read_at)",
            "notifications",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "DROP TABLE notifications;\n").await
    }
}
