//! Account self-service: sessions a user can see and end, password reset by mailed
//! token, and a change of address confirmed from the new address.
//!
//! - `refresh_tokens` gain the User-Agent and address that opened each token, so a
//!   user's list of sessions says which device is which.
//! - `password_resets` and `email_changes` are user-level, like
//!   `email_verifications`: no tenant owns an account, and a user reads only their
//!   own rows (RLS on `app.user_id`). A reset is asked for without signing in, so its
//!   token is made and redeemed only through two narrow SECURITY DEFINER functions;
//!   an address change is asked for by the signed-in user (an INSERT under RLS) and
//!   confirmed through one more. Each returns ids and addresses, nothing else.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies, USER_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000022_accounts"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        // DELETE: the maintenance loop clears a user's spent tokens as that user.
        Policies::custom("password_resets", USER_MATCH).only(&["SELECT", "DELETE"]),
        Policies::custom("email_changes", USER_MATCH).only(&["SELECT", "INSERT", "DELETE"]),
    ]
}

const UP: &str = "\
ALTER TABLE refresh_tokens
    ADD COLUMN user_agent text CHECK (length(user_agent) <= 512),
    ADD COLUMN ip text CHECK (length(ip) <= 64);

CREATE TABLE password_resets (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_resets_user_id ON password_resets (user_id);

CREATE TABLE email_changes (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email text NOT NULL CHECK (new_email = lower(new_email) AND new_email ~ '^[^@\\s]+@[^@\\s]+$'),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_changes_user_id ON email_changes (user_id);

-- A reset token for the password account with this address, if there is one: its
-- user's id, or NULL (the caller answers the same either way).
CREATE FUNCTION app.start_password_reset(reset_id uuid, login_email text, hash bytea,
                                         ttl_seconds integer)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    owner uuid;
BEGIN
    SELECT u.id INTO owner FROM public.users u
    WHERE u.email = login_email AND u.password_hash IS NOT NULL;
    IF owner IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.password_resets (id, user_id, token_hash, expires_at)
    VALUES (reset_id, owner, hash, now() + ttl_seconds * interval '1 second');
    RETURN owner;
END
$$;

-- Redeems a reset token once: sets the password, spends the user's other reset
-- tokens and ends every session (whoever knew the old password is signed out). A
-- mailed token proves the address too. Returns the user's id, or NULL.
CREATE FUNCTION app.finish_password_reset(hash bytea, new_password_hash text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    owner uuid;
BEGIN
    UPDATE public.password_resets r SET used_at = now()
    WHERE r.token_hash = hash AND r.used_at IS NULL AND r.expires_at > now()
    RETURNING r.user_id INTO owner;
    IF owner IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE public.users u
    SET password_hash = new_password_hash,
        email_verified_at = coalesce(u.email_verified_at, now())
    WHERE u.id = owner;
    UPDATE public.password_resets r SET used_at = now()
    WHERE r.user_id = owner AND r.used_at IS NULL;
    UPDATE public.refresh_tokens t SET revoked_at = now()
    WHERE t.user_id = owner AND t.revoked_at IS NULL;
    RETURN owner;
END
$$;

-- Redeems an address-change token once: the account takes the new address (a taken
-- one raises unique_violation) and the user's other change tokens are spent.
CREATE FUNCTION app.confirm_email_change(hash bytea)
RETURNS TABLE (user_id uuid, old_email text, new_email text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    owner uuid;
    address text;
    previous text;
BEGIN
    UPDATE public.email_changes c SET used_at = now()
    WHERE c.token_hash = hash AND c.used_at IS NULL AND c.expires_at > now()
    RETURNING c.user_id, c.new_email INTO owner, address;
    IF owner IS NULL THEN
        RETURN;
    END IF;
    SELECT u.email INTO previous FROM public.users u WHERE u.id = owner;
    UPDATE public.users u SET email = address, email_verified_at = now() WHERE u.id = owner;
    UPDATE public.email_changes c SET used_at = now()
    WHERE c.user_id = owner AND c.used_at IS NULL;
    RETURN QUERY SELECT owner, previous, address;
END
$$;
REVOKE ALL ON FUNCTION app.start_password_reset(uuid, text, bytea, integer),
    app.finish_password_reset(bytea, text), app.confirm_email_change(bytea) FROM PUBLIC;
";

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.start_password_reset(uuid, text, bytea, integer), \
             app.finish_password_reset(bytea, text), app.confirm_email_change(bytea)",
        ));
        sql.push_str(&grant_to_app("SELECT, DELETE", "password_resets"));
        sql.push_str(&grant_to_app(
            "SELECT, DELETE, INSERT (id, user_id, new_email, token_hash, expires_at)",
            "email_changes",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.confirm_email_change(bytea);\n\
             DROP FUNCTION app.finish_password_reset(bytea, text);\n\
             DROP FUNCTION app.start_password_reset(uuid, text, bytea, integer);\n\
             DROP TABLE email_changes;\n\
             DROP TABLE password_resets;\n\
             ALTER TABLE refresh_tokens DROP COLUMN ip, DROP COLUMN user_agent;\n",
        )
        .await
    }
}
