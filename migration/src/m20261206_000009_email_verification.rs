//! Email verification for sign-up: when it is on, a new account must confirm its
//! address before it can sign in, and sign-up answers the same whether or not the
//! address already has an account (the address's owner is told by mail instead).
//!
//! `email_verifications` is user-level, like `refresh_tokens`: no tenant owns an
//! account. Its rows are readable and insertable only by the user they belong to
//! (RLS on `app.user_id`); a token is redeemed through the narrow definer function
//! `app.verify_email(hash)`, which marks it used, verifies the user and returns the
//! user's id, nothing else.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies, USER_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000009_email_verification"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![Policies::custom("email_verifications", USER_MATCH).only(&["SELECT", "INSERT"])]
}

const UP: &str = "\
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
-- Accounts made before verification existed count as verified.
UPDATE users SET email_verified_at = created_at;

CREATE TABLE email_verifications (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_verifications_user_id ON email_verifications (user_id);

CREATE FUNCTION app.verify_email(hash bytea) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    verified uuid;
BEGIN
    UPDATE public.email_verifications v SET used_at = now()
    WHERE v.token_hash = hash AND v.used_at IS NULL AND v.expires_at > now()
    RETURNING v.user_id INTO verified;
    IF verified IS NOT NULL THEN
        UPDATE public.users u SET email_verified_at = coalesce(u.email_verified_at, now())
        WHERE u.id = verified;
        -- The user's other tokens (a resent mail) are spent with this one.
        UPDATE public.email_verifications v SET used_at = now()
        WHERE v.user_id = verified AND v.used_at IS NULL;
    END IF;
    RETURN verified;
END
$$;
REVOKE ALL ON FUNCTION app.verify_email(bytea) FROM PUBLIC;
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
        sql.push_str(&grant_to_app("EXECUTE", "FUNCTION app.verify_email(bytea)"));
        sql.push_str(&grant_to_app(
            "SELECT, INSERT (id, user_id, token_hash, expires_at)",
            "email_verifications",
        ));
        // Sign-up without verification stores the account as verified at once.
        sql.push_str(&grant_to_app("INSERT (email_verified_at)", "users"));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.verify_email(bytea);\n\
             DROP TABLE email_verifications;\n\
             ALTER TABLE users DROP COLUMN email_verified_at;\n",
        )
        .await
    }
}
