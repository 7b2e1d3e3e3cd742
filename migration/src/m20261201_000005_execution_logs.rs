//! Execution logs: the PostgreSQL log store, the MongoDB outbox, and the two narrow
//! maintenance functions (outbox tenants, expired-log purge) that cross tenants.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_execution_logs"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    // Log lines never change once written: no UPDATE policy, no UPDATE grant.
    vec![
        Policies::tenant("execution_logs").only(&["SELECT", "INSERT", "DELETE"]),
        Policies::tenant("log_outbox").only(&["SELECT", "INSERT", "DELETE"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.log_outbox_tenants(integer), app.purge_expired_execution_logs(integer)",
        ),
        grant_to_app("SELECT, INSERT, DELETE", "execution_logs"),
        grant_to_app(
            "SELECT, DELETE, INSERT (tenant_id, id, run_id, step_run_id, level, message, context, logged_at, expire_at)",
            "log_outbox",
        ),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/execution_logs_up.sql").to_owned();
        for table in policies() {
            sql.push_str(&table.sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/execution_logs_down.sql")).await
    }
}
