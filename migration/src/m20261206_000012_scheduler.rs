//! The scheduler: schedule triggers keep their next firing in `triggers.next_fire_at`,
//! and one narrow SECURITY DEFINER function tells a scheduler which tenants have a
//! firing due (tenant ids only). Everything after that look-up runs in the tenant's
//! transaction, under RLS: the scheduler claims a firing by moving `next_fire_at` on
//! from the value it read (`UPDATE … WHERE next_fire_at = $due`) in the transaction
//! that starts the run, so of any number of schedulers exactly one fires it.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000012_scheduler"
    }
}

/// The column, its index, the look-up, and a touch trigger that leaves `updated_at`
/// alone when only `next_fire_at` moves (a firing is not a change to the trigger).
///
/// Schedule triggers that exist already are due from now: the first pass fires what
/// their catch-up policy allows from this moment on (usually nothing until the next
/// firing) and stores their next firing.
const UP: &str = "\
ALTER TABLE triggers ADD COLUMN next_fire_at timestamptz;
ALTER TABLE triggers ADD CONSTRAINT triggers_next_fire_shape
    CHECK (next_fire_at IS NULL OR (type = 'schedule' AND is_active));
UPDATE triggers SET next_fire_at = now() WHERE type = 'schedule' AND is_active;
-- Due firings are looked up across tenants (by the definer function below), so the
-- index leads with the time; tenant_id follows for the doctor and for RLS.
CREATE INDEX triggers_next_fire_idx ON triggers (next_fire_at, tenant_id)
    WHERE next_fire_at IS NOT NULL;

DROP TRIGGER triggers_updated_at ON triggers;
CREATE TRIGGER triggers_updated_at BEFORE UPDATE ON triggers
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'next_fire_at' - 'updated_at')
          IS DISTINCT FROM (to_jsonb(NEW) - 'next_fire_at' - 'updated_at'))
    EXECUTE FUNCTION app.touch_updated_at();

-- Tenants (live ones) with a schedule trigger due at `at`, the most overdue first.
CREATE FUNCTION app.tenants_with_due_schedules(at timestamptz, max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT due.tenant_id FROM (
        SELECT tr.tenant_id, min(tr.next_fire_at) AS oldest
        FROM public.triggers tr
        JOIN public.tenants t ON t.id = tr.tenant_id
        WHERE tr.next_fire_at <= at
          AND t.status = 'active' AND t.deleted_at IS NULL
        GROUP BY tr.tenant_id
    ) due
    ORDER BY due.oldest, due.tenant_id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_due_schedules(timestamptz, integer) FROM PUBLIC;
";

const DOWN: &str = "\
DROP FUNCTION app.tenants_with_due_schedules(timestamptz, integer);
DROP TRIGGER triggers_updated_at ON triggers;
CREATE TRIGGER triggers_updated_at BEFORE UPDATE ON triggers
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
DROP INDEX triggers_next_fire_idx;
ALTER TABLE triggers DROP COLUMN next_fire_at;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app("UPDATE (next_fire_at)", "triggers"));
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.tenants_with_due_schedules(timestamptz, integer)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
