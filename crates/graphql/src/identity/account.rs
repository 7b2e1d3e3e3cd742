//! Account self-service: the caller's profile, password, address and sessions, and the
//! password reset for a user who cannot sign in (`trellis_core::accounts`).

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use trellis_core::accounts::{self, SessionInfo};
use trellis_entity::IdKind;

use super::types::{input_id, User};
use crate::context::{mutate, ContextExt};
use crate::ids::gid;

/// One of the caller's signed-in sessions: from a sign-in until it is signed out,
/// revoked, or its refresh token expires.
#[derive(SimpleObject)]
pub struct UserSession {
    /// The session's ID (`ses_…`), which `revokeSession` takes.
    pub id: ID,
    /// Whether this request's access token belongs to it.
    pub current: bool,
    /// When it was signed in.
    pub created_at: DateTime<Utc>,
    /// When its refresh token last rotated (or, never rotated, when it began).
    pub last_active_at: DateTime<Utc>,
    /// When it ends unless refreshed.
    pub expires_at: DateTime<Utc>,
    /// The User-Agent of its latest sign-in or refresh.
    pub user_agent: Option<String>,
    /// The client address of its latest sign-in or refresh.
    pub ip: Option<String>,
}

impl UserSession {
    pub(crate) fn new(info: SessionInfo, current: Option<uuid::Uuid>) -> Self {
        Self {
            id: gid(IdKind::Session, info.id),
            current: current == Some(info.id),
            created_at: info.created_at,
            last_active_at: info.last_active_at,
            expires_at: info.expires_at,
            user_agent: info.user_agent,
            ip: info.ip,
        }
    }
}

payload!(
    /// The caller's account as it is now, or the input's problems.
    UserPayload {
        /// The account; null when `userErrors` is not empty.
        user: User,
    }
);
payload!(
    /// Whether a request was taken.
    AcceptedPayload {
        /// True when it was taken (for `requestPasswordReset`, whether or not the
        /// address has an account: the answer does not say).
        accepted: bool,
    }
);

/// A new display name.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// 1 to 200 characters.
    pub name: String,
}

/// The current password and a new one.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The password the account has now; a wrong one is BAD_USER_INPUT on
    /// `currentPassword` (and counts against guessing, like a login).
    pub current_password: String,
    /// 10 to 512 characters, as at sign-up.
    pub new_password: String,
}

/// The password that confirms deleting the account.
#[derive(InputObject)]
pub struct DeleteAccountInput {
    /// The account's password; a wrong one is BAD_USER_INPUT on `password` (and
    /// counts against guessing, like a login).
    pub password: String,
}

payload!(
    /// What deleting the account did, or why it did not.
    DeleteAccountPayload {
        /// True when the account is deleted; null when `userErrors` is not empty.
        deleted: bool,
        /// Memberships removed (one per tenant the account belonged to).
        memberships_removed: i64,
        /// API keys the account had created, revoked.
        api_keys_revoked: i64,
    }
);

/// The address of an account that forgot its password.
#[derive(InputObject)]
pub struct RequestPasswordResetInput {
    /// The address the account signs in with.
    pub email: String,
}

/// A mailed reset token and the new password.
#[derive(InputObject)]
pub struct ResetPasswordInput {
    /// The token from the mail (`trp_…`): it works once, within an hour.
    pub token: String,
    /// 10 to 512 characters, as at sign-up.
    pub new_password: String,
}

/// A new address for the caller's account.
#[derive(InputObject)]
pub struct RequestEmailChangeInput {
    /// The new address; it gets a token to confirm with.
    pub new_email: String,
    /// The account's password.
    pub password: String,
}

/// The token mailed to the new address.
#[derive(InputObject)]
pub struct ConfirmEmailChangeInput {
    /// The token (`tre_…`): it works once, within a day.
    pub token: String,
}

/// A session of the caller's.
#[derive(InputObject)]
pub struct RevokeSessionInput {
    /// The session (`ses_…`) from `viewer.sessions`.
    pub id: ID,
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Changes the caller's display name (signed-in users).
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new name.")] input: UpdateProfileInput,
    ) -> async_graphql::Result<UserPayload> {
        let scope = ctx.scope()?;
        let (user, user_errors) = mutate(ctx, accounts::update_profile(scope, &input.name)).await?;
        Ok(UserPayload {
            user: user.map(User::from),
            user_errors,
        })
    }

    /// Changes the caller's password, given the current one. Every other session of
    /// the account is signed out; this one stays. The account's address is told.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The current and the new password.")] input: ChangePasswordInput,
    ) -> async_graphql::Result<UserPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (user, user_errors) = mutate(
            ctx,
            services.identity.change_password(
                scope,
                SecretString::from(input.current_password),
                SecretString::from(input.new_password),
            ),
        )
        .await?;
        Ok(UserPayload {
            user: user.map(User::from),
            user_errors,
        })
    }

    /// Deletes the caller's account, confirmed by its password: the API keys it created
    /// are revoked, its memberships removed, every session ended, and its name,
    /// address and password erased (the address is free again; audit events keep the
    /// account's id). CONFLICT while the caller is the last owner of a tenant that is
    /// not deleted.
    async fn delete_account(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's password.")] input: DeleteAccountInput,
    ) -> async_graphql::Result<DeleteAccountPayload> {
        let scope = ctx.scope()?;
        let (done, user_errors) = mutate(
            ctx,
            accounts::delete_account(scope, SecretString::from(input.password)),
        )
        .await?;
        Ok(DeleteAccountPayload {
            deleted: done.map(|_| true),
            memberships_removed: done.map(|d| d.memberships_removed as i64),
            api_keys_revoked: done.map(|d| d.api_keys_revoked as i64),
            user_errors,
        })
    }

    /// Mails a password-reset token to the address, if an account with a password has
    /// it. The answer is the same whether or not one does; RATE_LIMITED after five an
    /// hour for one address.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's address.")] input: RequestPasswordResetInput,
    ) -> async_graphql::Result<AcceptedPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (done, user_errors) = mutate(
            ctx,
            services
                .identity
                .request_password_reset(scope, &input.email),
        )
        .await?;
        Ok(AcceptedPayload {
            accepted: done.map(|()| true),
            user_errors,
        })
    }

    /// Sets a new password with a mailed reset token and signs out every session of
    /// the account; sign in with the new password afterwards.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The mailed token and the new password.")] input: ResetPasswordInput,
    ) -> async_graphql::Result<AcceptedPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (done, user_errors) = mutate(
            ctx,
            services.identity.reset_password(
                scope,
                &input.token,
                SecretString::from(input.new_password),
            ),
        )
        .await?;
        Ok(AcceptedPayload {
            accepted: done.map(|()| true),
            user_errors,
        })
    }

    /// Starts changing the caller's address, given their password: the new address
    /// gets a token to confirm with (`confirmEmailChange`), the current one a notice.
    /// Nothing changes until it is confirmed.
    async fn request_email_change(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new address and the password.")] input: RequestEmailChangeInput,
    ) -> async_graphql::Result<AcceptedPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (done, user_errors) = mutate(
            ctx,
            services.identity.request_email_change(
                scope,
                &input.new_email,
                SecretString::from(input.password),
            ),
        )
        .await?;
        Ok(AcceptedPayload {
            accepted: done.map(|()| true),
            user_errors,
        })
    }

    /// Confirms a new address with the token mailed to it (no sign-in needed: the
    /// token is the proof). CONFLICT when another account took the address meanwhile.
    async fn confirm_email_change(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token mailed to the new address.")] input: ConfirmEmailChangeInput,
    ) -> async_graphql::Result<UserPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (user, user_errors) = mutate(
            ctx,
            services.identity.confirm_email_change(scope, &input.token),
        )
        .await?;
        Ok(UserPayload {
            user: user.map(User::from),
            user_errors,
        })
    }

    /// Signs out one of the caller's sessions (this one too, if named): its refresh
    /// token stops working, and so do its access tokens from the next request.
    /// NOT_FOUND for a session that is not the caller's or has ended.
    async fn revoke_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session to end.")] input: RevokeSessionInput,
    ) -> async_graphql::Result<AcceptedPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Session)?;
        let (done, user_errors) = mutate(ctx, accounts::revoke_session(scope, id)).await?;
        Ok(AcceptedPayload {
            accepted: done.map(|()| true),
            user_errors,
        })
    }
}
