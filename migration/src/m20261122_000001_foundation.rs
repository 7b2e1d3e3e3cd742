//! Identity and tenancy: tenants, users, memberships, invitations, API keys, refresh
//! tokens and the hash-chained audit log.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies, PLATFORM_ADMIN, TENANT_MATCH, USER_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_foundation"
    }
}

const IS_MEMBER_OF_ROW_TENANT: &str = "EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = tenants.id AND m.user_id = (SELECT app.current_user_id()))";
const SHARES_CURRENT_TENANT: &str = "EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id AND m.tenant_id = (SELECT app.current_tenant_id()))";

pub(crate) fn policies() -> Vec<Policies<'static>> {
    let current_tenant_or_admin =
        format!("id = (SELECT app.current_tenant_id()) OR {PLATFORM_ADMIN}");
    let own_user_chain = format!(
        "tenant_id IS NULL AND (actor_id = (SELECT app.current_user_id()) OR {PLATFORM_ADMIN})"
    );
    // User-level events (sign-up, login, logout) go to the tenant-less chain, written
    // only by the user they are about, whatever tenant the session acts in.
    let insert_in_own_chain = format!(
        "{TENANT_MATCH} OR (tenant_id IS NULL AND actor_id = (SELECT app.current_user_id()))"
    );
    vec![
        Policies::custom("tenants", "id = (SELECT app.current_tenant_id())")
            .also_readable_when(PLATFORM_ADMIN)
            .also_readable_when(IS_MEMBER_OF_ROW_TENANT)
            .writable_when(&current_tenant_or_admin)
            .only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::custom("users", "id = (SELECT app.current_user_id())")
            .also_readable_when(PLATFORM_ADMIN)
            .also_readable_when(SHARES_CURRENT_TENANT)
            .only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("memberships").also_readable_when(USER_MATCH),
        Policies::tenant("invitations"),
        Policies::tenant("api_keys"),
        Policies::custom("refresh_tokens", USER_MATCH),
        Policies::tenant("audit_events")
            .also_readable_when(&own_user_chain)
            .writable_when(&insert_in_own_chain)
            .only(&["SELECT", "INSERT"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app("USAGE", "SCHEMA app"),
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.user_for_login(text), app.platform_role_of(uuid), app.api_key_for_auth(text), app.invitation_for_token(bytea), app.refresh_token_for_hash(bytea)",
        ),
        grant_to_app("SELECT, INSERT (id, slug, name, plan, settings)", "tenants"),
        grant_to_app("UPDATE (slug, name, plan, status, settings, deleted_at)", "tenants"),
        grant_to_app("SELECT, INSERT (id, email, name, auth_provider, password_hash)", "users"),
        grant_to_app("UPDATE (name, password_hash)", "users"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "memberships"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "invitations"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "api_keys"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "refresh_tokens"),
        // Append-only: no UPDATE, DELETE or TRUNCATE for the application.
        grant_to_app(
            "SELECT, INSERT (id, tenant_id, actor_type, actor_id, action, target_type, target_id, severity, ip, user_agent, details)",
            "audit_events",
        ),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/foundation_up.sql").to_owned();
        for table in policies() {
            sql.push_str(&table.sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/foundation_down.sql")).await
    }
}
