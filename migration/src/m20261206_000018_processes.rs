//! Processes: prompt logic served as versioned APIs. Processes and versions, the
//! version each environment serves and the promotions that put it there, call logs,
//! the response cache and hourly usage rollups; API keys gain the `invoke` scope and
//! process restrictions.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000018_processes"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        Policies::tenant("processes").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("process_versions"),
        Policies::tenant("process_deployments").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("process_promotions").only(&["SELECT", "INSERT"]),
        Policies::tenant("call_logs").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("response_cache"),
        Policies::tenant("process_usage_hourly").only(&["SELECT", "INSERT", "UPDATE"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.process_versions_immutable(), app.check_process_deployment()",
        ),
        grant_to_app("SELECT, INSERT", "processes"),
        grant_to_app(
            "UPDATE (key, name, description, input_schema, output_schema, config, deleted_at)",
            "processes",
        ),
        grant_to_app("SELECT, INSERT, DELETE", "process_versions"),
        grant_to_app(
            "UPDATE (environment, system_prompt, user_prompt, provider, connection_id, model, \
             temperature, max_tokens, response_format, timeout_ms, max_attempts, \
             retry_backoff_ms, cache_ttl_seconds, input_price_per_mtok, \
             output_price_per_mtok, notes, published_at)",
            "process_versions",
        ),
        grant_to_app(
            "SELECT, INSERT, UPDATE (version_id, updated_at)",
            "process_deployments",
        ),
        grant_to_app("SELECT, INSERT", "process_promotions"),
        // Append-only but for retention, which clears payloads.
        grant_to_app("SELECT, INSERT, UPDATE (input, output)", "call_logs"),
        grant_to_app("SELECT, INSERT, UPDATE, DELETE", "response_cache"),
        grant_to_app("SELECT, INSERT, UPDATE", "process_usage_hourly"),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/processes_up.sql").to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/processes_down.sql")).await
    }
}
