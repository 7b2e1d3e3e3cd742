//! Templates and the skills marketplace: agent templates (a snapshot of an agent
//! version that instantiating copies into a tenant), skills and their installations
//! on agents. Public templates and skills (no tenant) follow the connector catalog's
//! rule: every tenant reads them, only the platform-admin path writes them. The
//! install count is written only by a SECURITY DEFINER trigger on installations.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies, PLATFORM_ADMIN, TENANT_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000024_templates_skills"
    }
}

/// The public catalog's rule (as for apps): every tenant reads the public rows, only
/// platform admins write them; a tenant reads and writes its own.
fn catalog(table: &'static str) -> Policies<'static> {
    Policies::custom(table, TENANT_MATCH)
        .also_readable_when("tenant_id IS NULL")
        .writable_when(&format!(
            "{TENANT_MATCH} OR (tenant_id IS NULL AND {PLATFORM_ADMIN})"
        ))
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        // Soft-deleted (templates) or retired by status (skills): never deleted.
        catalog("agent_templates").only(&["SELECT", "INSERT", "UPDATE"]),
        catalog("skills").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("skill_installations").only(&["SELECT", "INSERT", "DELETE"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app("EXECUTE", "FUNCTION app.check_skill_installation()"),
        grant_to_app("SELECT, INSERT", "agent_templates"),
        grant_to_app(
            "UPDATE (name, description, category, author, deleted_at)",
            "agent_templates",
        ),
        grant_to_app("SELECT, INSERT", "skills"),
        // Not install_count: only the installation trigger counts.
        grant_to_app(
            "UPDATE (name, description, category, version, compatible_roles, permissions, \
             capabilities, config_schema, rating, status)",
            "skills",
        ),
        grant_to_app("SELECT, INSERT, DELETE", "skill_installations"),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/templates_skills_up.sql").to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = String::new();
        for policies in policies() {
            sql.push_str(&policies.drop_sql());
        }
        sql.push_str(include_str!("sql/templates_skills_down.sql"));
        run_script(manager, &sql).await
    }
}
