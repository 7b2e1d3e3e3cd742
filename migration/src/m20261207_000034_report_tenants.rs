//! The report rollup job's one cross-tenant look-up: the tenants with runs (not
//! simulations) created since a given instant. It returns ids only; the rollups are
//! then written in each tenant's own transaction under RLS, like every other
//! maintenance job, so the job no longer needs the owner connection.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000034_report_tenants"
    }
}

const UP: &str = "
CREATE FUNCTION app.tenants_with_runs_since(since timestamptz, max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT t.id FROM public.tenants t
    WHERE EXISTS (SELECT 1 FROM public.workflow_runs r
                  WHERE r.tenant_id = t.id AND r.created_at >= since
                    AND NOT r.is_simulation)
    ORDER BY t.id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_runs_since(timestamptz, integer) FROM PUBLIC;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.tenants_with_runs_since(timestamptz, integer)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.tenants_with_runs_since(timestamptz, integer);",
        )
        .await
    }
}
