//! Upkeep of processes: the one cross-tenant look-up the maintenance loop needs, the
//! tenants with expired response-cache entries or call-log payloads past their
//! retention. It returns ids only; the purge itself runs in each tenant's transaction
//! under RLS.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000020_process_upkeep"
    }
}

const UP: &str = "
CREATE FUNCTION app.tenants_with_process_upkeep(max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT t.id FROM public.tenants t
    WHERE EXISTS (SELECT 1 FROM public.response_cache c
                  WHERE c.tenant_id = t.id AND c.expires_at < now())
       OR EXISTS (SELECT 1 FROM public.call_logs l
                  WHERE l.tenant_id = t.id AND l.payload_expires_at < now()
                    AND (l.input IS NOT NULL OR l.output IS NOT NULL))
    ORDER BY t.id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_process_upkeep(integer) FROM PUBLIC;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.tenants_with_process_upkeep(integer)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.tenants_with_process_upkeep(integer);",
        )
        .await
    }
}
