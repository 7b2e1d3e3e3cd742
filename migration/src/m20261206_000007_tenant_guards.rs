//! A RESTRICTIVE guard on every table with policies (see [`Policies::guard_sql`]), so
//! that one careless permissive policy cannot widen a tenant's access.

use sea_orm_migration::prelude::*;

use crate::rls::Policies;
use crate::run_script;
use crate::{
    m20261122_000001_foundation, m20261123_000002_integrations, m20261201_000003_workflows,
    m20261201_000004_runs, m20261201_000005_execution_logs,
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000007_tenant_guards"
    }
}

/// Every table's policies as the earlier migrations wrote them.
fn guarded() -> Vec<Policies<'static>> {
    [
        m20261122_000001_foundation::policies(),
        m20261123_000002_integrations::policies(),
        m20261201_000003_workflows::policies(),
        m20261201_000004_runs::policies(),
        m20261201_000005_execution_logs::policies(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql: String = guarded().iter().map(Policies::guard_sql).collect();
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql: String = guarded()
            .iter()
            .map(|p| format!("DROP POLICY {0}_guard ON {0};\n", p.table()))
            .collect();
        run_script(manager, &sql).await
    }
}
