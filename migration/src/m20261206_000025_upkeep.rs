//! Upkeep under RLS. The maintenance loop used to apply run retention on the owner
//! connection, across every tenant at once; now, like the process upkeep, it finds the
//! tenants (and users) with work through narrow SECURITY DEFINER functions that return
//! ids only, and does the work in each one's own transaction under RLS.
//!
//! - `app.setting_days` reads a retention setting defensively (a whole number of days
//!   from 1 to 3650, the default otherwise), so one tenant's bad row can neither stall
//!   the job nor, negative, wipe its runs.
//! - `app.tenants_with_upkeep`: finished runs past their payload or run retention,
//!   pending invitations past their expiry, expired invitations past the days given,
//!   idempotency keys past their expiry.
//! - `app.users_with_spent_credentials`: expired refresh tokens, and confirmation,
//!   reset and address-change tokens used or expired more than a day ago.
//! - `email_verifications` gains a DELETE policy (its user's own rows), for that last
//!   clean-up.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000025_upkeep"
    }
}

const UP: &str = "
CREATE FUNCTION app.setting_days(settings jsonb, setting text, fallback integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE
        WHEN jsonb_typeof(settings -> setting) = 'number'
             AND (settings ->> setting) ~ '^[0-9]{1,4}$'
        THEN CASE WHEN (settings ->> setting)::integer BETWEEN 1 AND 3650
                  THEN (settings ->> setting)::integer ELSE fallback END
        ELSE fallback
    END
$$;

CREATE FUNCTION app.tenants_with_upkeep(max_tenants integer, expired_invitation_days integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT t.id FROM public.tenants t
    WHERE EXISTS (SELECT 1 FROM public.workflow_runs r
                  WHERE r.tenant_id = t.id AND r.finished_at IS NOT NULL
                    AND r.payloads_purged_at IS NULL
                    AND r.finished_at < now() - make_interval(
                        days => app.setting_days(t.settings, 'payloadRetentionDays', 30)))
       OR EXISTS (SELECT 1 FROM public.workflow_runs r
                  WHERE r.tenant_id = t.id AND r.finished_at IS NOT NULL
                    AND r.finished_at < now() - make_interval(
                        days => app.setting_days(t.settings, 'runRetentionDays', 400)))
       OR EXISTS (SELECT 1 FROM public.invitations i
                  WHERE i.tenant_id = t.id
                    AND ((i.status = 'pending' AND i.expires_at < now())
                      OR (i.status = 'expired'
                          AND i.expires_at < now() - make_interval(days => expired_invitation_days))))
       OR EXISTS (SELECT 1 FROM public.run_idempotency_keys k
                  WHERE k.tenant_id = t.id AND k.expires_at < now())
    ORDER BY t.id
    LIMIT max_tenants
$$;

CREATE FUNCTION app.users_with_spent_credentials(max_users integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT u.id FROM public.users u
    WHERE EXISTS (SELECT 1 FROM public.refresh_tokens r
                  WHERE r.user_id = u.id AND r.expires_at < now())
       OR EXISTS (SELECT 1 FROM public.email_verifications v
                  WHERE v.user_id = u.id
                    AND coalesce(v.used_at, v.expires_at) < now() - interval '1 day')
       OR EXISTS (SELECT 1 FROM public.password_resets p
                  WHERE p.user_id = u.id
                    AND coalesce(p.used_at, p.expires_at) < now() - interval '1 day')
       OR EXISTS (SELECT 1 FROM public.email_changes c
                  WHERE c.user_id = u.id
                    AND coalesce(c.used_at, c.expires_at) < now() - interval '1 day')
    ORDER BY u.id
    LIMIT max_users
$$;
REVOKE ALL ON FUNCTION app.tenants_with_upkeep(integer, integer),
    app.users_with_spent_credentials(integer) FROM PUBLIC;

CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX workflow_runs_finished_idx ON workflow_runs (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;

CREATE POLICY email_verifications_delete ON email_verifications FOR DELETE
    USING (user_id = (SELECT app.current_user_id()));
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.setting_days(jsonb, text, integer), app.tenants_with_upkeep(integer, integer), \
             app.users_with_spent_credentials(integer)",
        ));
        sql.push_str(&grant_to_app("DELETE", "email_verifications"));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP POLICY email_verifications_delete ON email_verifications;\n\
             DROP INDEX workflow_runs_finished_idx;\n\
             DROP INDEX refresh_tokens_expires_idx;\n\
             DROP FUNCTION app.users_with_spent_credentials(integer);\n\
             DROP FUNCTION app.tenants_with_upkeep(integer, integer);\n\
             DROP FUNCTION app.setting_days(jsonb, text, integer);\n",
        )
        .await
    }
}
