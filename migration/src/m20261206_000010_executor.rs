//! The executor's one cross-tenant look-up: which tenants have runs due that the
//! engine can run. It returns tenant ids only; everything after it runs in that
//! tenant's transaction, under RLS (`Principal::Engine`).

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000010_executor"
    }
}

/// Due: pending, or running with no lease or an expired one (a crashed worker's run,
/// or a timer that came due), of a live tenant, and of a version whose every step is
/// of a type in `engine_types`. Tenants come oldest due run first, at most `max_tenants`.
const UP: &str = "\
CREATE FUNCTION app.tenants_with_due_runs(engine_types text[], max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT due.tenant_id FROM (
        SELECT r.tenant_id, min(r.created_at) AS oldest
        FROM public.workflow_runs r
        JOIN public.tenants t ON t.id = r.tenant_id
        WHERE r.status IN ('pending', 'running')
          AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
          AND t.status = 'active' AND t.deleted_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM public.workflow_steps s
              WHERE s.tenant_id = r.tenant_id AND s.version_id = r.version_id
                AND s.type <> ALL (engine_types))
        GROUP BY r.tenant_id
    ) due
    ORDER BY due.oldest, due.tenant_id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_due_runs(text[], integer) FROM PUBLIC;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.tenants_with_due_runs(text[], integer)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.tenants_with_due_runs(text[], integer);",
        )
        .await
    }
}
