//! A request's tenant context in one statement. Every request transaction used to send
//! two statements before its first read: `set_config` for `app.tenant_id`/`app.user_id`,
//! then the access check (membership, key or tenant liveness, session). This function
//! does both, and resets the tenant when access is refused, so the refusal fails closed
//! inside PostgreSQL. It is SECURITY INVOKER: the look-ups run as the application role,
//! under the RLS the settings it just made select, exactly as the two statements did.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000021_request_context"
    }
}

/// `access` is one of `none` (no tenant named), `granted`, `not_member`, `key_dead`,
/// `session_ended`, `deleted`, `suspended`; `role` is the member's role when there is
/// one (`operator` for the engine and upkeep). `engine` is the executor and scheduler,
/// refused like a member while the tenant is suspended or deleted; `upkeep` is the
/// maintenance loop, which keeps a suspended or deleted tenant's retention going.
const UP: &str = "
CREATE FUNCTION app.enter_request(tenant uuid, acting_user uuid, session uuid,
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
        WHEN tenant_status IS NULL AND api_key IS NOT NULL THEN 'key_dead'
        WHEN tenant_status IS NULL THEN 'not_member'
        WHEN NOT session_live THEN 'session_ended'
        -- Upkeep (retention, clean-up) goes on while a tenant is suspended or deleted.
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
REVOKE ALL ON FUNCTION app.enter_request(uuid, uuid, uuid, uuid, boolean, boolean) FROM PUBLIC;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.enter_request(uuid, uuid, uuid, uuid, boolean, boolean)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.enter_request(uuid, uuid, uuid, uuid, boolean, boolean);",
        )
        .await
    }
}
