//! Agents: agents with their tool policy and budget, numbered versions (a spec, and a
//! flow that is a workflow version of the same tenant), labels that point at versions
//! and the history of every label move. Active versions never change: a trigger holds
//! them, as it holds published workflow and process versions.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000023_agents"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        // Soft-deleted: never deleted by the application.
        Policies::tenant("agents").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("agent_versions").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("agent_labels").only(&["SELECT", "INSERT", "UPDATE"]),
        // History: append-only.
        Policies::tenant("agent_label_moves").only(&["SELECT", "INSERT"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.is_tool_policy(jsonb), app.agent_versions_immutable(), \
             app.check_agent_version_flow(), app.check_agent_active_version()",
        ),
        grant_to_app("SELECT, INSERT", "agents"),
        grant_to_app(
            "UPDATE (slug, name, description, role, status, model_tier, thinking_mode, \
             tool_policy, budget, assisted_user_id, active_version_id, last_active_at, \
             deleted_at)",
            "agents",
        ),
        grant_to_app("SELECT, INSERT", "agent_versions"),
        grant_to_app(
            "UPDATE (spec_markdown, spec, flow_version_id, status, activated_at, archived_at)",
            "agent_versions",
        ),
        grant_to_app("SELECT, INSERT, UPDATE (version_id)", "agent_labels"),
        grant_to_app("SELECT, INSERT", "agent_label_moves"),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/agents_up.sql").to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/agents_down.sql")).await
    }
}
