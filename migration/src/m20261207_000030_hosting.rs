//! Hosting (issue 18 §4/§5): agent channels (credentials through a connection of the
//! same tenant, never in the config), the agent activity feed (append-only), container
//! health samples with their hourly aggregates, and plans as data: a platform-level
//! `plans` table that `tenants.plan` references, seeded with today's plans and seed
//! 002's. Health upkeep finds its tenants through a SECURITY DEFINER function that
//! returns ids only, then works in each tenant's transaction under RLS.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000030_hosting"
    }
}

/// Who reads plans: anyone acting as a user or in a tenant (not anonymous callers).
const SIGNED_IN: &str =
    "(SELECT app.current_tenant_id()) IS NOT NULL OR (SELECT app.current_user_id()) IS NOT NULL";
/// Who writes plans: a user on the audited platform-administration path.
const PLATFORM_ADMIN_USER: &str =
    "(SELECT app.current_user_id()) IS NOT NULL AND (SELECT app.is_platform_admin())";

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        // Platform rows: read by everyone signed in, written by platform admins; never
        // deleted (tenants reference them).
        Policies::custom("plans", PLATFORM_ADMIN_USER)
            .also_readable_when(SIGNED_IN)
            .only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("agent_channels"),
        // The feed: append-only.
        Policies::tenant("agent_activities").only(&["SELECT", "INSERT"]),
        Policies::tenant("container_health"),
        Policies::tenant("container_health_hourly"),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.is_plan_limits(jsonb), app.is_channel_config(text, jsonb), \
             app.tenants_with_health_upkeep(integer)",
        ),
        grant_to_app("SELECT, INSERT, UPDATE (name, limits, position)", "plans"),
        // A tenant created to host agents starts PROVISIONING.
        grant_to_app("INSERT (status)", "tenants"),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (config, connection_id, is_active)",
            "agent_channels",
        ),
        grant_to_app("SELECT, INSERT", "agent_activities"),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (aggregated_at)",
            "container_health",
        ),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (samples, healthy, degraded, unhealthy, cpu_sum, \
             cpu_max, memory_sum, memory_max)",
            "container_health_hourly",
        ),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/hosting_up.sql").to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/hosting_down.sql")).await
    }
}
