//! Tenant purge and restore (issue 20 §1).
//!
//! - A soft-deleted tenant's slug is free: `tenants_slug_key` becomes unique among live
//!   tenants only (same name, so the error mapping stays), and `restoreTenant` meets a
//!   taken slug as a unique violation (CONFLICT on `slug`).
//! - `app.tenant_purges` is the platform-level purge log: one row per purged tenant,
//!   with its slug and name, when it was deleted, when the purge began and ended, and
//!   how many rows went. It has no foreign key to `tenants`, so it outlives the tenant,
//!   and lives in schema `app` granted to nobody: the application cannot read or write
//!   it except through the functions below; operators read it as the owner.
//!   A row without `finished_at` is a purge in progress, and is what makes the purge
//!   resumable and the tenant's rows deletable.
//! - `app.tenants_due_for_purge(days, max)` returns ids only: tenants soft-deleted more
//!   than `days` (at least 1) ago, and purges left unfinished.
//! - `app.begin_tenant_purge(tenant, days)` records the purge, only for a tenant still
//!   soft-deleted past the grace period (row-locked, so a concurrent restore either
//!   wins or sees the purge).
//! - The purge deletes a tenant's rows in the tenant's own transactions, under RLS
//!   where the application may delete; from the tables it may not delete from
//!   (append-only audit events, soft-delete-only workflows, agents…) through
//!   `app.purge_rows(table, batch)`, which deletes only rows of the transaction's own
//!   tenant, and only while that tenant's purge is in progress. No privilege changes:
//!   outside a purge those tables stay undeletable for the application.
//! - The immutability triggers that refuse deletes (published app, process and
//!   workflow versions, their actions and graphs) let the rows of a tenant being
//!   purged go: their DELETE half is split into its own trigger with a `WHEN` clause.
//! - `app.tenant_purge_progress(tenant, rows)` counts deleted rows in the log, in the
//!   purging transaction.
//! - `app.finish_tenant_purge(tenant)` deletes the tenant row itself and its audit
//!   chain head, only when its purge is in progress and no row with its id is left in
//!   any table; then marks the purge finished.
//! - `app.tenant_purge_started(tenant)` tells `restoreTenant` that it is too late.
//! - `app.enter_request` checks the session before the tenant: a deleted account's
//!   (or a removed member's) old access token is refused outright.
//! - `deleteAccount` keeps the user row, so that audit events and `created_by` go on
//!   naming the same id (and published versions, which never change, keep theirs);
//!   `users.deleted_at` marks it, and `app.erase_current_user()` replaces the name,
//!   address and password of the transaction's own user, and nobody else's.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000026_purge"
    }
}

const UP: &str = r#"
DROP INDEX tenants_slug_key;
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug) WHERE deleted_at IS NULL;
CREATE INDEX tenants_deleted_at_idx ON tenants (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE app.tenant_purges (
    tenant_id uuid PRIMARY KEY,
    slug text NOT NULL,
    name text NOT NULL,
    plan text NOT NULL,
    deleted_at timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows_deleted bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION app.tenant_is_purging(tenant uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT EXISTS (SELECT 1 FROM app.tenant_purges p
                   WHERE p.tenant_id = tenant AND p.finished_at IS NULL)
$$;

CREATE FUNCTION app.tenant_purge_started(tenant uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT EXISTS (SELECT 1 FROM app.tenant_purges p WHERE p.tenant_id = tenant)
$$;

CREATE FUNCTION app.tenants_due_for_purge(purge_days integer, max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT id FROM (
        SELECT t.id, t.deleted_at FROM public.tenants t
        WHERE t.deleted_at < now() - make_interval(days => greatest(purge_days, 1))
        UNION
        SELECT p.tenant_id, p.deleted_at FROM app.tenant_purges p WHERE p.finished_at IS NULL
    ) due
    ORDER BY deleted_at, id
    LIMIT max_tenants
$$;

CREATE FUNCTION app.begin_tenant_purge(tenant uuid, purge_days integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    -- The row lock orders this against a restore of the same tenant.
    PERFORM 1 FROM public.tenants WHERE id = tenant FOR UPDATE;
    INSERT INTO app.tenant_purges (tenant_id, slug, name, plan, deleted_at)
    SELECT t.id, t.slug, t.name, t.plan, t.deleted_at FROM public.tenants t
    WHERE t.id = tenant
      AND t.deleted_at < now() - make_interval(days => greatest(purge_days, 1))
    ON CONFLICT (tenant_id) DO NOTHING;
    RETURN app.tenant_is_purging(tenant);
END
$$;

CREATE FUNCTION app.tenant_purge_progress(tenant uuid, deleted bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    UPDATE app.tenant_purges SET rows_deleted = rows_deleted + deleted
    WHERE tenant_id = tenant AND finished_at IS NULL
$$;

CREATE FUNCTION app.finish_tenant_purge(tenant uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    t regclass;
    left_over boolean;
BEGIN
    IF NOT app.tenant_is_purging(tenant) THEN
        RETURN false;
    END IF;
    FOR t IN
        SELECT c.oid::regclass FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
                           AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE tenant_id = $1)', t)
            INTO left_over USING tenant;
        IF left_over THEN
            RETURN false;
        END IF;
    END LOOP;
    DELETE FROM app.audit_chain_heads WHERE chain_key = tenant;
    DELETE FROM public.tenants WHERE id = tenant AND deleted_at IS NOT NULL;
    UPDATE app.tenant_purges SET finished_at = now() WHERE tenant_id = tenant;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION app.tenant_is_purging(uuid),
    app.tenant_purge_started(uuid), app.tenants_due_for_purge(integer, integer),
    app.begin_tenant_purge(uuid, integer), app.tenant_purge_progress(uuid, bigint),
    app.finish_tenant_purge(uuid) FROM PUBLIC;

-- The rows of tables the application may not delete from (append-only, soft-delete
-- only): deleted for the transaction's own tenant, only while its purge is in
-- progress, at most `batch` at a time. Tables it may delete from are purged under RLS.
CREATE FUNCTION app.purge_rows(tbl text, batch integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    tenant uuid := app.current_tenant_id();
    deleted bigint;
BEGIN
    IF tenant IS NULL OR NOT app.tenant_is_purging(tenant) THEN
        RAISE EXCEPTION 'no purge of the current tenant is in progress'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
                                      AND NOT a.attisdropped
                   WHERE n.nspname = 'public' AND c.relname = tbl AND c.relkind IN ('r', 'p')
                     AND c.relname <> 'tenants') THEN
        RAISE EXCEPTION 'not a tenant table: %', tbl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format(
        'DELETE FROM public.%I WHERE tenant_id = $1 AND ctid = ANY(ARRAY('
        'SELECT ctid FROM public.%I WHERE tenant_id = $1 LIMIT $2))', tbl, tbl)
        USING tenant, greatest(batch, 1);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION app.purge_rows(text, integer) FROM PUBLIC;

-- deleteAccount: the user row stays (audit events and created_by keep its id), erased.
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
CREATE FUNCTION app.erase_current_user() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    UPDATE public.users
    SET email = 'deleted-' || id::text || '@deleted.invalid', name = 'Deleted user',
        password_hash = NULL, platform_role = 'none', deleted_at = now()
    WHERE id = app.current_user_id() AND deleted_at IS NULL
$$;
REVOKE ALL ON FUNCTION app.erase_current_user() FROM PUBLIC;

-- The immutability triggers: the DELETE half lets a purged tenant's rows go.
DROP TRIGGER app_versions_immutable ON app_versions;
CREATE TRIGGER app_versions_immutable BEFORE UPDATE ON app_versions
    FOR EACH ROW EXECUTE FUNCTION app.app_versions_immutable();
CREATE TRIGGER app_versions_immutable_delete BEFORE DELETE ON app_versions
    FOR EACH ROW WHEN (NOT app.tenant_is_purging(OLD.tenant_id))
    EXECUTE FUNCTION app.app_versions_immutable();
DROP TRIGGER actions_immutable ON actions;
CREATE TRIGGER actions_immutable BEFORE INSERT OR UPDATE ON actions
    FOR EACH ROW EXECUTE FUNCTION app.actions_immutable();
CREATE TRIGGER actions_immutable_delete BEFORE DELETE ON actions
    FOR EACH ROW WHEN (NOT app.tenant_is_purging(OLD.tenant_id))
    EXECUTE FUNCTION app.actions_immutable();
DROP TRIGGER process_versions_immutable ON process_versions;
CREATE TRIGGER process_versions_immutable BEFORE UPDATE ON process_versions
    FOR EACH ROW EXECUTE FUNCTION app.process_versions_immutable();
CREATE TRIGGER process_versions_immutable_delete BEFORE DELETE ON process_versions
    FOR EACH ROW WHEN (NOT app.tenant_is_purging(OLD.tenant_id))
    EXECUTE FUNCTION app.process_versions_immutable();
DROP TRIGGER workflow_steps_immutable ON workflow_steps;
CREATE TRIGGER workflow_steps_immutable BEFORE INSERT OR UPDATE ON workflow_steps
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();
CREATE TRIGGER workflow_steps_immutable_delete BEFORE DELETE ON workflow_steps
    FOR EACH ROW WHEN (NOT app.tenant_is_purging(OLD.tenant_id))
    EXECUTE FUNCTION app.workflow_graph_immutable();
DROP TRIGGER workflow_transitions_immutable ON workflow_transitions;
CREATE TRIGGER workflow_transitions_immutable BEFORE INSERT OR UPDATE ON workflow_transitions
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();
CREATE TRIGGER workflow_transitions_immutable_delete BEFORE DELETE ON workflow_transitions
    FOR EACH ROW WHEN (NOT app.tenant_is_purging(OLD.tenant_id))
    EXECUTE FUNCTION app.workflow_graph_immutable();
"#;

const DOWN: &str = r#"
DROP TRIGGER workflow_transitions_immutable_delete ON workflow_transitions;
DROP TRIGGER workflow_transitions_immutable ON workflow_transitions;
CREATE TRIGGER workflow_transitions_immutable BEFORE INSERT OR UPDATE OR DELETE ON workflow_transitions
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();
DROP TRIGGER workflow_steps_immutable_delete ON workflow_steps;
DROP TRIGGER workflow_steps_immutable ON workflow_steps;
CREATE TRIGGER workflow_steps_immutable BEFORE INSERT OR UPDATE OR DELETE ON workflow_steps
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();
DROP TRIGGER process_versions_immutable_delete ON process_versions;
DROP TRIGGER process_versions_immutable ON process_versions;
CREATE TRIGGER process_versions_immutable BEFORE UPDATE OR DELETE ON process_versions
    FOR EACH ROW EXECUTE FUNCTION app.process_versions_immutable();
DROP TRIGGER actions_immutable_delete ON actions;
DROP TRIGGER actions_immutable ON actions;
CREATE TRIGGER actions_immutable BEFORE INSERT OR UPDATE OR DELETE ON actions
    FOR EACH ROW EXECUTE FUNCTION app.actions_immutable();
DROP TRIGGER app_versions_immutable_delete ON app_versions;
DROP TRIGGER app_versions_immutable ON app_versions;
CREATE TRIGGER app_versions_immutable BEFORE UPDATE OR DELETE ON app_versions
    FOR EACH ROW EXECUTE FUNCTION app.app_versions_immutable();

DROP FUNCTION app.erase_current_user();
ALTER TABLE users DROP COLUMN deleted_at;

DROP FUNCTION app.purge_rows(text, integer);
DROP FUNCTION app.finish_tenant_purge(uuid);
DROP FUNCTION app.tenant_purge_progress(uuid, bigint);
DROP FUNCTION app.begin_tenant_purge(uuid, integer);
DROP FUNCTION app.tenants_due_for_purge(integer, integer);
DROP FUNCTION app.tenant_purge_started(uuid);
DROP FUNCTION app.tenant_is_purging(uuid);
DROP TABLE app.tenant_purges;

DROP INDEX tenants_deleted_at_idx;
DROP INDEX tenants_slug_key;
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);
"#;

/// `app.enter_request` (migration 000021) with the session checked first: a session
/// that ended (signed out, or its account deleted) refused the request only when the
/// tenant its token names still admitted the user, so a member removed from that tenant
/// kept using the token for user-level queries. `{VERDICT}` is the CASE's first arms.
const ENTER_REQUEST: &str = r#"
CREATE OR REPLACE FUNCTION app.enter_request(tenant uuid, acting_user uuid, session uuid,
                                  api_key uuid, engine boolean, upkeep boolean)
RETURNS TABLE (access text, role text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    member_role text;
    tenant_status text;
    tenant_deleted boolean;
    session_live boolean := true;
    verdict text;
BEGIN
    -- Transaction-local: a pooled connection never carries a tenant into the next request.
    PERFORM set_config('app.tenant_id', coalesce(tenant::text, ''), true),
            set_config('app.user_id', coalesce(acting_user::text, ''), true);
    -- RLS shows a user only their own refresh tokens: another user's family id is dead.
    IF session IS NOT NULL THEN
        session_live := EXISTS (SELECT 1 FROM public.refresh_tokens r
                                WHERE r.family_id = session AND r.revoked_at IS NULL);
    END IF;
    IF tenant IS NULL THEN
        RETURN QUERY SELECT CASE WHEN session_live THEN 'none' ELSE 'session_ended' END,
                            NULL::text;
        RETURN;
    END IF;
    IF api_key IS NOT NULL THEN
        -- A key must still be live on every request (a subscription keeps its principal
        -- for hours); when it was last used is remembered at most once a minute.
        UPDATE public.api_keys SET last_used_at = now()
        WHERE id = api_key
          AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
        SELECT NULL, t.status, t.deleted_at IS NOT NULL
          INTO member_role, tenant_status, tenant_deleted
        FROM public.tenants t JOIN public.api_keys k ON k.tenant_id = t.id AND k.id = api_key
        WHERE t.id = tenant AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now());
    ELSIF engine OR upkeep THEN
        SELECT 'operator', t.status, t.deleted_at IS NOT NULL
          INTO member_role, tenant_status, tenant_deleted
        FROM public.tenants t WHERE t.id = tenant;
    ELSE
        SELECT m.role, t.status, t.deleted_at IS NOT NULL
          INTO member_role, tenant_status, tenant_deleted
        FROM public.memberships m JOIN public.tenants t ON t.id = m.tenant_id
        WHERE m.tenant_id = tenant AND m.user_id = acting_user;
    END IF;
    verdict := CASE
{VERDICT}        -- Upkeep (retention, clean-up) goes on while a tenant is suspended or deleted.
        WHEN upkeep THEN 'granted'
        WHEN tenant_deleted THEN 'deleted'
        WHEN tenant_status = 'suspended' THEN 'suspended'
        ELSE 'granted'
    END;
    IF verdict <> 'granted' THEN
        -- Fail closed: a refused tenant is not left in the transaction.
        PERFORM set_config('app.tenant_id', '', true);
    END IF;
    RETURN QUERY SELECT verdict, member_role;
END
$$;
"#;

/// The order of migration 000021.
const VERDICT_BEFORE: &str =
    "        WHEN tenant_status IS NULL AND api_key IS NOT NULL THEN 'key_dead'
        WHEN tenant_status IS NULL THEN 'not_member'
        WHEN NOT session_live THEN 'session_ended'
";

/// An ended session first, whatever the tenant says.
const VERDICT_AFTER: &str = "        WHEN NOT session_live THEN 'session_ended'
        WHEN tenant_status IS NULL AND api_key IS NOT NULL THEN 'key_dead'
        WHEN tenant_status IS NULL THEN 'not_member'
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.tenant_is_purging(uuid), \
             app.tenant_purge_started(uuid), app.tenants_due_for_purge(integer, integer), \
             app.begin_tenant_purge(uuid, integer), app.tenant_purge_progress(uuid, bigint), \
             app.finish_tenant_purge(uuid), app.erase_current_user(), \
             app.purge_rows(text, integer)",
        ));
        sql.push_str(&ENTER_REQUEST.replace("{VERDICT}", VERDICT_AFTER));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = ENTER_REQUEST.replace("{VERDICT}", VERDICT_BEFORE);
        sql.push_str(DOWN);
        run_script(manager, &sql).await
    }
}
