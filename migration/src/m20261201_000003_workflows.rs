//! Workflows: clients, workflows with versioned graphs (steps and transitions), and
//! triggers.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000003_workflows"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        Policies::tenant("clients").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("workflows").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("workflow_versions"),
        Policies::tenant("workflow_steps"),
        Policies::tenant("workflow_transitions"),
        Policies::tenant("triggers"),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.check_step_action(), app.workflow_versions_immutable(), app.workflow_graph_immutable(), app.check_active_version(), app.webhook_target(text)",
        ),
        grant_to_app("SELECT, INSERT", "clients"),
        grant_to_app(
            "UPDATE (name, email, phone, company, address, notes, is_active)",
            "clients",
        ),
        grant_to_app("SELECT, INSERT", "workflows"),
        grant_to_app(
            "UPDATE (key, name, description, status, client_id, active_version_id, deleted_at)",
            "workflows",
        ),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (spec, status, published_at)",
            "workflow_versions",
        ),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "workflow_steps"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "workflow_transitions"),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (key, config, is_active, signing_secret_id, previous_signing_secret_id, previous_secret_expires_at)",
            "triggers",
        ),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/workflows_up.sql").to_owned();
        for table in policies() {
            sql.push_str(&table.sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/workflows_down.sql")).await
    }
}
