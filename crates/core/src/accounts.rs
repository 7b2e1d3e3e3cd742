//! Account self-service: a user's own name, password, address and sessions, and a
//! password reset by mailed token for a user who cannot sign in. Everything here acts
//! on the caller's own account (RLS on `app.user_id`); the reset and the address
//! confirmation, which arrive without a session, go through the narrow definer
//! functions of migration 000022.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};
use secrecy::SecretString;
use serde_json::json;
use trellis_entity::{user, IdKind, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::auth::token;
use crate::email::Email;
use crate::identity::{hash_password, required_text, verify_password, IdentityConfig};
use crate::mail::Mail;
use crate::scope::{stmt, RequestScope};
use crate::throttle::{self, Limit};
use crate::{Error, Result};

/// How long a password-reset token is good for.
pub const RESET_TTL: Duration = Duration::hours(1);
/// How long an address-change token is good for.
pub const EMAIL_CHANGE_TTL: Duration = Duration::hours(24);

/// Password checks of a signed-in user (changing the password or the address): 10
/// per 15 minutes, so a stolen access token cannot guess the password at speed.
const PASSWORD_CHECKS: Limit = throttle::LOGIN_PER_ACCOUNT;
/// Reset mails per address: 5 an hour, so nobody can flood an inbox.
const RESETS_PER_ACCOUNT: Limit = Limit {
    max_hits: 5,
    window_seconds: 3600,
};

/// One of a user's sessions: a refresh-token family, from sign-in until it is
/// revoked or its last token expires.
#[derive(Clone, Debug, FromQueryResult)]
pub struct SessionInfo {
    /// The family id (`ses_…`).
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When its refresh token last rotated (or, never rotated, when it began).
    pub last_active_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The caller's live sessions, most recently active first.
pub async fn sessions(scope: &RequestScope) -> Result<Vec<SessionInfo>> {
    let user_id = scope.user_id()?;
    Ok(SessionInfo::find_by_statement(stmt(
        "SELECT family_id AS id, min(created_at) AS created_at, \
           max(created_at) AS last_active_at, max(expires_at) AS expires_at, \
           (array_agg(user_agent ORDER BY created_at DESC))[1] AS user_agent, \
           (array_agg(ip ORDER BY created_at DESC))[1] AS ip \
         FROM refresh_tokens WHERE user_id = $1 \
         GROUP BY family_id \
         HAVING bool_or(revoked_at IS NULL AND expires_at > now()) \
         ORDER BY last_active_at DESC, family_id",
        [user_id.into()],
    ))
    .all(scope.tx().await?)
    .await?)
}

/// Ends one of the caller's sessions (it may be this one: then this access token stops
/// working with the next request). NOT_FOUND for a session that is not the caller's
/// or has already ended.
pub async fn revoke_session(scope: &RequestScope, session_id: Uuid) -> Result<()> {
    let user_id = scope.user_id()?;
    let ended = scope
        .tx()
        .await?
        .execute(stmt(
            "UPDATE refresh_tokens SET revoked_at = now() \
             WHERE user_id = $1 AND family_id = $2 AND revoked_at IS NULL AND expires_at > now()",
            [user_id.into(), session_id.into()],
        ))
        .await?
        .rows_affected();
    if ended == 0 {
        return Err(Error::NotFound);
    }
    audit::record(
        scope,
        Event::new(None, "session.revoked")
            .target(IdKind::User, user_id)
            .details(json!({ "session": session_id })),
    )
    .await
}

/// Renames the caller.
pub async fn update_profile(scope: &RequestScope, name: &str) -> Result<user::Model> {
    let user_id = scope.user_id()?;
    let name = required_text(name, "name", 200)?;
    let user = user::Model::find_by_statement(stmt(
        "UPDATE users SET name = $2 WHERE id = $1 RETURNING *",
        [user_id.into(), name.into()],
    ))
    .one(scope.tx().await?)
    .await?
    .ok_or(Error::NotFound)?;
    audit::record(
        scope,
        Event::new(None, "user.profile_updated").target(IdKind::User, user_id),
    )
    .await?;
    Ok(user)
}

/// The caller's own row, with its password hash (RLS shows a user their own).
async fn own_account(scope: &RequestScope, user_id: Uuid) -> Result<user::Model> {
    user::Model::find_by_statement(stmt("SELECT * FROM users WHERE id = $1", [user_id.into()]))
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Checks the caller's password (counted against guessing); a wrong one is a
/// BAD_USER_INPUT on `field`.
async fn check_password(
    scope: &RequestScope,
    account: &user::Model,
    password: SecretString,
    field: &str,
) -> Result<()> {
    let key = format!("password-check:user:{}", account.id);
    throttle::hit(scope.db(), &key, 1, PASSWORD_CHECKS).await?;
    if !verify_password(password, account.password_hash.clone()).await? {
        return Err(Error::bad_input(field, "the password is not right"));
    }
    throttle::clear(scope.db(), &key).await
}

/// Hashes a new password, its problems reported on `field`.
async fn new_password_hash(password: SecretString, field: &str) -> Result<String> {
    hash_password(password).await.map_err(|err| match err {
        Error::BadInput { message, .. } => Error::BadInput {
            field: field.to_owned(),
            message: message.replace("password", "the new password"),
        },
        other => other,
    })
}

impl IdentityConfig {
    /// Changes the caller's password, given the current one, and ends every other
    /// session (this one stays signed in). The account's address is told by mail.
    pub async fn change_password(
        &self,
        scope: &RequestScope,
        current: SecretString,
        new: SecretString,
    ) -> Result<user::Model> {
        let user_id = scope.user_id()?;
        let account = own_account(scope, user_id).await?;
        check_password(scope, &account, current, "currentPassword").await?;
        let hash = new_password_hash(new, "newPassword").await?;
        let tx = scope.tx().await?;
        let user = user::Model::find_by_statement(stmt(
            "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING *",
            [user_id.into(), hash.into()],
        ))
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
        let ended = tx
            .execute(stmt(
                "UPDATE refresh_tokens SET revoked_at = now() \
                 WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2",
                [user_id.into(), scope.session_id().into()],
            ))
            .await?
            .rows_affected();
        audit::record(
            scope,
            Event::new(None, "user.password_changed")
                .target(IdKind::User, user_id)
                .severity(Severity::Warning)
                .details(json!({ "sessionsEnded": ended })),
        )
        .await?;
        self.mailer.send_later(Mail {
            to: user.email.clone(),
            subject: "Your Trellis password was changed".into(),
            body: "The password of your Trellis account was just changed, and your other \
                   sessions were signed out. If this was not you, reset your password \
                   (mutation requestPasswordReset) at once."
                .into(),
        });
        Ok(user)
    }

    /// Mails a reset token to `email` if a password account has that address. The
    /// answer is the same either way, so it does not tell who has an account.
    pub async fn request_password_reset(&self, scope: &RequestScope, email: &str) -> Result<()> {
        let email = Email::parse(email, "email")?;
        let account = format!("password-reset:{}", throttle::account_key(email.as_str()));
        throttle::hit(scope.db(), &account, 1, RESETS_PER_ACCOUNT).await?;
        if let Some(ip) = &scope.meta().ip {
            let address = format!("password-reset:address:{ip}");
            throttle::hit(scope.db(), &address, 1, throttle::LOGIN_PER_ADDRESS).await?;
        }
        let token = token::generate("trp_");
        let row = scope
            .tx()
            .await?
            .query_one(stmt(
                "SELECT app.start_password_reset($1, $2, $3, $4) AS user_id",
                [
                    Uuid::now_v7().into(),
                    email.as_str().into(),
                    token::sha256(&token).into(),
                    (RESET_TTL.num_seconds() as i32).into(),
                ],
            ))
            .await?;
        let owner = row
            .map(|r| r.try_get::<Option<Uuid>>("", "user_id"))
            .transpose()?
            .flatten();
        if owner.is_some() {
            self.mailer.send_later(Mail {
                to: email.as_str().to_owned(),
                subject: "Reset your Trellis password".into(),
                body: format!(
                    "Someone asked to reset the password of the Trellis account with this \
                     address. Within the hour, set a new one with this token (mutation \
                     resetPassword):\n\n{token}\n\nIf it was not you, ignore this message: \
                     nothing changes until the token is used."
                ),
            });
        }
        Ok(())
    }

    /// Sets a new password with a mailed reset token (once, within its hour) and signs
    /// out every session of the account. A token that is unknown, used or expired is a
    /// BAD_USER_INPUT on `token`.
    pub async fn reset_password(
        &self,
        scope: &RequestScope,
        reset_token: &str,
        new: SecretString,
    ) -> Result<()> {
        let hash = new_password_hash(new, "newPassword").await?;
        let row = scope
            .tx()
            .await?
            .query_one(stmt(
                "SELECT app.finish_password_reset($1, $2) AS user_id",
                [token::sha256(reset_token).into(), hash.into()],
            ))
            .await?;
        let owner = row
            .map(|r| r.try_get::<Option<Uuid>>("", "user_id"))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                Error::bad_input("token", "this reset token is unknown, used or expired")
            })?;
        scope.act_as_user(owner).await?;
        audit::record(
            scope,
            Event::new(None, "user.password_reset")
                .target(IdKind::User, owner)
                .severity(Severity::Warning),
        )
        .await
    }

    /// Starts a change of the caller's address, given their password: a token goes to
    /// the new address (the change happens when it is confirmed there), a notice to
    /// the current one.
    pub async fn request_email_change(
        &self,
        scope: &RequestScope,
        new_email: &str,
        password: SecretString,
    ) -> Result<()> {
        let user_id = scope.user_id()?;
        let new_email = Email::parse(new_email, "newEmail")?;
        let account = own_account(scope, user_id).await?;
        if account.email == new_email.as_str() {
            return Err(Error::bad_input("newEmail", "this is already your address"));
        }
        check_password(scope, &account, password, "password").await?;
        let token = token::generate("tre_");
        scope
            .tx()
            .await?
            .execute(stmt(
                "INSERT INTO email_changes (id, user_id, new_email, token_hash, expires_at) \
                 VALUES ($1, $2, $3, $4, now() + $5 * interval '1 second')",
                [
                    Uuid::now_v7().into(),
                    user_id.into(),
                    new_email.as_str().into(),
                    token::sha256(&token).into(),
                    EMAIL_CHANGE_TTL.num_seconds().into(),
                ],
            ))
            .await?;
        audit::record(
            scope,
            Event::new(None, "user.email_change_requested")
                .target(IdKind::User, user_id)
                .details(json!({ "newEmail": new_email.as_str() })),
        )
        .await?;
        self.mailer.send_later(Mail {
            to: new_email.as_str().to_owned(),
            subject: "Confirm your new Trellis address".into(),
            body: format!(
                "Confirm that this is the new address of your Trellis account with this \
                 token (mutation confirmEmailChange), within 24 hours:\n\n{token}\n\nIf you \
                 did not ask for this, ignore this message."
            ),
        });
        self.mailer.send_later(Mail {
            to: account.email,
            subject: "Your Trellis address is about to change".into(),
            body: format!(
                "Someone signed in to your Trellis account asked to change its address to \
                 {}. It changes only once confirmed from that address. If this was not \
                 you, change your password now.",
                new_email.as_str()
            ),
        });
        Ok(())
    }

    /// Confirms a change of address with the token mailed to the new address (once,
    /// within a day). An address another account took meanwhile is a CONFLICT; an
    /// unknown, used or expired token a BAD_USER_INPUT on `token`.
    pub async fn confirm_email_change(
        &self,
        scope: &RequestScope,
        change_token: &str,
    ) -> Result<user::Model> {
        #[derive(FromQueryResult)]
        struct Changed {
            user_id: Uuid,
            old_email: String,
            new_email: String,
        }
        let changed = Changed::find_by_statement(stmt(
            "SELECT user_id, old_email, new_email FROM app.confirm_email_change($1)",
            [token::sha256(change_token).into()],
        ))
        .one(scope.tx().await?)
        .await
        .map_err(|err| match Error::from(err) {
            Error::Conflict { .. } => {
                Error::conflict(Some("token"), "another account has this address now")
            }
            other => other,
        })?
        .ok_or_else(|| Error::bad_input("token", "this token is unknown, used or expired"))?;
        scope.act_as_user(changed.user_id).await?;
        audit::record(
            scope,
            Event::new(None, "user.email_changed")
                .target(IdKind::User, changed.user_id)
                .severity(Severity::Warning)
                .details(json!({ "from": changed.old_email, "to": changed.new_email })),
        )
        .await?;
        self.mailer.send_later(Mail {
            to: changed.old_email,
            subject: "Your Trellis address was changed".into(),
            body: format!(
                "The address of your Trellis account is now {}. If this was not you, \
                 contact your administrator.",
                changed.new_email
            ),
        });
        own_account(scope, changed.user_id).await
    }
}

#[derive(FromQueryResult)]
struct OwnMembership {
    tenant_id: Uuid,
    role: String,
    slug: String,
    tenant_deleted: bool,
}

/// What [`delete_account`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletedAccount {
    pub memberships_removed: u64,
    pub api_keys_revoked: u64,
    pub sessions_ended: u64,
}

/// Deletes the caller's account, confirmed by its password. Refused (CONFLICT) while
/// the caller is the last owner of a tenant that is not deleted. In every tenant the
/// caller belongs to, the API keys they created are revoked and their membership
/// removed (audited there as `member.account_deleted`); their sessions and account
/// tokens are deleted; and the user row is erased: name, address and password are
/// replaced (`app.erase_current_user`), the id stays, so audit events and `created_by`
/// keep naming the same actor. The address is free for a new account.
pub async fn delete_account(
    scope: &RequestScope,
    password: SecretString,
) -> Result<DeletedAccount> {
    let user_id = scope.user_id()?;
    let account = own_account(scope, user_id).await?;
    check_password(scope, &account, password, "password").await?;
    let tx = scope.tx().await?;
    // RLS shows a user their own memberships in every tenant, and those tenants.
    let memberships = OwnMembership::find_by_statement(stmt(
        "SELECT m.tenant_id, m.role, t.slug, t.deleted_at IS NOT NULL AS tenant_deleted \
         FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 ORDER BY t.slug",
        [user_id.into()],
    ))
    .all(tx)
    .await?;
    let mut done = DeletedAccount::default();
    for m in &memberships {
        scope.enter_tenant(m.tenant_id).await?;
        let step = async {
            if m.role == "owner" && !m.tenant_deleted {
                let others = tx
                    .query_one(stmt(
                        "SELECT count(*) AS n FROM memberships \
                         WHERE tenant_id = $1 AND role = 'owner' AND user_id <> $2",
                        [m.tenant_id.into(), user_id.into()],
                    ))
                    .await?
                    .map(|row| row.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0);
                if others == 0 {
                    return Err(Error::conflict(
                        None,
                        format!(
                            "you are the last owner of tenant \"{}\": make another member an \
                             owner, or delete the tenant, before deleting your account",
                            m.slug
                        ),
                    ));
                }
            }
            let revoked = tx
                .execute(stmt(
                    "UPDATE api_keys SET revoked_at = now() \
                     WHERE tenant_id = $1 AND created_by = $2 AND revoked_at IS NULL",
                    [m.tenant_id.into(), user_id.into()],
                ))
                .await?
                .rows_affected();
            let removed = tx
                .execute(stmt(
                    "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                    [m.tenant_id.into(), user_id.into()],
                ))
                .await?
                .rows_affected();
            audit::record(
                scope,
                Event::new(Some(m.tenant_id), "member.account_deleted")
                    .target(IdKind::User, user_id)
                    .severity(Severity::Warning)
                    .details(json!({ "apiKeysRevoked": revoked })),
            )
            .await?;
            Ok((revoked, removed))
        }
        .await;
        match step {
            Ok((revoked, removed)) => {
                scope.leave_tenant().await?;
                done.api_keys_revoked += revoked;
                done.memberships_removed += removed;
            }
            Err(err) => {
                // After a database error the transaction only rolls back.
                let _ = scope.leave_tenant().await;
                return Err(err);
            }
        }
    }
    done.sessions_ended = tx
        .execute(stmt(
            "DELETE FROM refresh_tokens WHERE user_id = $1",
            [user_id.into()],
        ))
        .await?
        .rows_affected();
    for table in ["email_verifications", "password_resets", "email_changes"] {
        tx.execute(stmt(
            &format!("DELETE FROM {table} WHERE user_id = $1"),
            [user_id.into()],
        ))
        .await?;
    }
    tx.execute(stmt("SELECT app.erase_current_user()", []))
        .await?;
    audit::record(
        scope,
        Event::new(None, "user.deleted")
            .target(IdKind::User, user_id)
            .severity(Severity::Warning)
            .details(json!({
                "memberships": done.memberships_removed,
                "apiKeysRevoked": done.api_keys_revoked,
                "sessionsEnded": done.sessions_ended,
            })),
    )
    .await?;
    Ok(done)
}
