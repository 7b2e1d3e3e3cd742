//! A step marked `"external": true` in its config is left to runner API workers even
//! when the engine runs its type: the due look-up no longer counts such runs as the
//! engine's.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000016_external_steps"
    }
}

/// `app.tenants_with_due_runs` as `m20261206_000010_executor` made it, with `foreign`
/// the test of a step that keeps a run from the engine. Later migrations re-create the
/// function with this template.
pub(crate) fn due_runs_function(foreign: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION app.tenants_with_due_runs(engine_types text[], max_tenants integer)
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
                AND ({foreign}))
        GROUP BY r.tenant_id
    ) due
    ORDER BY due.oldest, due.tenant_id
    LIMIT max_tenants
$$;
"
    )
}

/// The test of a foreign step as this migration made it.
pub(crate) const EXTERNAL: &str =
    r#"s.type <> ALL (engine_types) OR s.config @> '{"external": true}'"#;

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &due_runs_function(EXTERNAL)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &due_runs_function("s.type <> ALL (engine_types)")).await
    }
}
