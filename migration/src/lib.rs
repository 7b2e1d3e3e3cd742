#![doc = include_str!("../README.md")]

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261123_000002_integrations;
mod m20261201_000003_workflows;
mod m20261201_000004_runs;
mod m20261201_000005_execution_logs;
mod m20261206_000006_request_throttles;
mod m20261206_000007_tenant_guards;
mod m20261206_000008_master_key_ids;
mod m20261206_000009_email_verification;
mod m20261206_000010_executor;
mod m20261206_000011_step_attempts;
mod m20261206_000012_scheduler;
mod m20261206_000013_approvals;
mod m20261206_000014_notifications;
mod m20261206_000015_replays;
mod m20261206_000016_external_steps;
mod m20261206_000017_http_action_steps;
mod m20261206_000018_processes;
mod m20261206_000019_rate_limits;
mod m20261206_000020_process_upkeep;
mod m20261206_000021_request_context;
mod m20261206_000022_accounts;
mod m20261206_000023_agents;
mod m20261206_000024_templates_skills;
mod m20261206_000025_upkeep;
mod m20261206_000026_purge;
mod m20261206_000027_restore;
mod m20261207_000028_agent_runs;
mod m20261207_000029_agent_usage;
mod m20261207_000030_hosting;
mod m20261207_000031_inline_tenant_context;
mod m20261207_000032_audit_archive;
mod m20261207_000033_seed_fields;
mod m20261207_000034_report_tenants;
mod m20261207_000035_alert_rules;
mod m20261207_000036_agent_triggers;
mod m20261207_000037_run_counts;
pub mod rls;

/// Every migration, oldest first. Never edit one that has shipped: add a new one.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration),
            Box::new(m20261123_000002_integrations::Migration),
            Box::new(m20261201_000003_workflows::Migration),
            Box::new(m20261201_000004_runs::Migration),
            Box::new(m20261201_000005_execution_logs::Migration),
            Box::new(m20261206_000006_request_throttles::Migration),
            Box::new(m20261206_000007_tenant_guards::Migration),
            Box::new(m20261206_000008_master_key_ids::Migration),
            Box::new(m20261206_000009_email_verification::Migration),
            Box::new(m20261206_000010_executor::Migration),
            Box::new(m20261206_000011_step_attempts::Migration),
            Box::new(m20261206_000012_scheduler::Migration),
            Box::new(m20261206_000013_approvals::Migration),
            Box::new(m20261206_000014_notifications::Migration),
            Box::new(m20261206_000015_replays::Migration),
            Box::new(m20261206_000016_external_steps::Migration),
            Box::new(m20261206_000017_http_action_steps::Migration),
            Box::new(m20261206_000018_processes::Migration),
            Box::new(m20261206_000019_rate_limits::Migration),
            Box::new(m20261206_000020_process_upkeep::Migration),
            Box::new(m20261206_000021_request_context::Migration),
            Box::new(m20261206_000022_accounts::Migration),
            Box::new(m20261206_000023_agents::Migration),
            Box::new(m20261206_000024_templates_skills::Migration),
            Box::new(m20261206_000025_upkeep::Migration),
            Box::new(m20261206_000026_purge::Migration),
            Box::new(m20261206_000027_restore::Migration),
            Box::new(m20261207_000028_agent_runs::Migration),
            Box::new(m20261207_000029_agent_usage::Migration),
            Box::new(m20261207_000030_hosting::Migration),
            Box::new(m20261207_000031_inline_tenant_context::Migration),
            Box::new(m20261207_000032_audit_archive::Migration),
            Box::new(m20261207_000033_seed_fields::Migration),
            Box::new(m20261207_000034_report_tenants::Migration),
            Box::new(m20261207_000035_alert_rules::Migration),
            Box::new(m20261207_000036_agent_triggers::Migration),
            Box::new(m20261207_000037_run_counts::Migration),
        ]
    }
}

/// Runs a script of several statements (no bind parameters) on the migration connection.
pub(crate) async fn run_script(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}
