use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use secrecy::SecretString;
use trellis_core::identity::{self, SignUp, TenantChanges};
use trellis_entity::IdKind;

use super::types::{input_id, ApiKey, ApiKeyScope, Invitation, Membership, Role, Tenant, User};
use crate::context::{mutate, run, ContextExt};
use crate::payload::Json;

/// A signed-in session.
#[derive(SimpleObject)]
pub struct Session {
    /// Send as `Authorization: Bearer <accessToken>`. Short-lived.
    pub access_token: String,
    /// When the access token stops working; refresh the session before then.
    pub access_token_expires_at: DateTime<Utc>,
    /// Exchange for a new session with `refreshSession`; each refresh token works once.
    pub refresh_token: String,
    /// The signed-in user.
    pub user: User,
    /// The tenant the access token acts in, if any.
    pub active_tenant_id: Option<ID>,
}

impl From<identity::Session> for Session {
    fn from(s: identity::Session) -> Self {
        Self {
            access_token: s.access_token,
            access_token_expires_at: s.access_expires_at,
            refresh_token: s.refresh_token,
            user: s.user.into(),
            active_tenant_id: s.tenant_id.map(|t| crate::ids::gid(IdKind::Tenant, t)),
        }
    }
}

payload!(
    /// A new session, or the input's problems.
    SessionPayload {
        /// The session; null when `userErrors` is not empty.
        session: Session,
    }
);
payload!(
    /// What sign-up did: a session (email confirmation off), or a message sent to the
    /// address (confirmation on). With confirmation on the answer is the same whether
    /// or not the address already has an account.
    SignUpPayload {
        /// The new account's session when confirmation is off; null when it is on
        /// (confirm with `verifyEmail`) or when `userErrors` is not empty.
        session: Session,
        /// True when confirmation is on: a message went to the address. Tell the user
        /// to look for it.
        confirmation_sent: bool,
    }
);
payload!(
    /// The tenant a mutation created or changed, or the input's problems.
    TenantPayload {
        /// The tenant as it is now; null when `userErrors` is not empty.
        tenant: Tenant,
    }
);
payload!(
    /// Whether the session ended.
    LogoutPayload {
        /// True: the session's refresh tokens (every one since its login) no longer
        /// work; access tokens already issued last until they expire.
        ok: bool,
    }
);
payload!(
    /// An access token for another tenant.
    SwitchTenantPayload {
        /// Acts in `tenant`; send it in place of the previous access token. The
        /// session's refresh token still refreshes into its own tenant unless
        /// `refreshSession` is given `tenantId`.
        access_token: String,
        /// When that access token stops working.
        access_token_expires_at: DateTime<Utc>,
        /// The tenant it acts in.
        tenant: Tenant,
    }
);
payload!(
    /// The new invitation and its token: send the token to the invitee; it is not shown again.
    InviteMemberPayload {
        /// The new invitation, PENDING.
        invitation: Invitation,
        /// The invitee passes it to `acceptInvitation`; shown only here.
        token: String,
    }
);
payload!(
    /// The revoked invitation, or the input's problems.
    InvitationPayload {
        /// The invitation, now REVOKED; null when `userErrors` is not empty.
        invitation: Invitation,
    }
);
payload!(
    /// The membership a mutation made, changed or removed, or the input's problems.
    MembershipPayload {
        /// The membership as it is now (as it was, for `removeMember`); null when
        /// `userErrors` is not empty.
        membership: Membership,
    }
);
payload!(
    /// The new key and its plaintext secret: store it now; it is not shown again.
    CreateApiKeyPayload {
        /// The new key.
        api_key: ApiKey,
        /// The key itself (`trl_…`), sent as `Authorization: Bearer <secret>`; shown
        /// only here.
        secret: String,
    }
);
payload!(
    /// The revoked key, or the input's problems.
    ApiKeyPayload {
        /// The key, now revoked; null when `userErrors` is not empty.
        api_key: ApiKey,
    }
);

/// A new user's account.
#[derive(InputObject)]
pub struct SignUpInput {
    /// A valid email address, not yet used by another user.
    pub email: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// 10 to 512 characters.
    #[graphql(secret)]
    pub password: String,
}

/// A confirmation token from the sign-up mail.
#[derive(InputObject)]
pub struct VerifyEmailInput {
    /// The token (`trv_…`); it works once, within its lifetime (24 hours by default).
    #[graphql(secret)]
    pub token: String,
}

/// A user's credentials.
#[derive(InputObject)]
pub struct LoginInput {
    /// The address the user signed up with.
    pub email: String,
    /// The user's password.
    #[graphql(secret)]
    pub password: String,
}

/// A session to renew.
#[derive(InputObject)]
pub struct RefreshSessionInput {
    /// The session's current refresh token (`trr_…`); it works once.
    #[graphql(secret)]
    pub refresh_token: String,
    /// Act in this tenant (one the user belongs to, else NOT_FOUND) instead of the
    /// session's current one.
    pub tenant_id: Option<ID>,
}

/// A session to end.
#[derive(InputObject)]
pub struct LogoutInput {
    /// The session's refresh token.
    #[graphql(secret)]
    pub refresh_token: String,
}

/// A new tenant.
#[derive(InputObject)]
pub struct CreateTenantInput {
    /// 3 to 64 lowercase letters, digits or dashes; unique.
    pub slug: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// The key of its plan (see `plans`: `free`, `starter`, `pro`, `growth`,
    /// `enterprise`, …); `free` when omitted. An unknown key is BAD_USER_INPUT.
    pub plan: Option<String>,
    /// Whether it hosts agents on Trellis runners: it is then PROVISIONING (runs wait)
    /// until its runner first reports health (`reportHealth`). False when omitted.
    #[graphql(default)]
    pub hosted: bool,
}

/// Changes to the active tenant; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateTenantInput {
    /// A new display name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new slug: 3 to 64 lowercase letters, digits or dashes; unique.
    pub slug: Option<String>,
    /// Replaces the whole settings object (a JSON object; see `Tenant.settings`).
    pub settings: Option<Json<serde_json::Value>>,
}

/// Confirms the deletion of the active tenant.
#[derive(InputObject)]
pub struct DeleteTenantInput {
    /// The active tenant's slug, to confirm.
    pub slug: String,
}

/// The deleted tenant to restore.
#[derive(InputObject)]
pub struct RestoreTenantInput {
    /// A soft-deleted tenant the caller owns (`ten_…`), in its grace period; any
    /// other is NOT_FOUND.
    pub tenant_id: ID,
}

/// The tenant to act in.
#[derive(InputObject)]
pub struct SwitchTenantInput {
    /// A tenant the user is a member of (`ten_…`); any other is NOT_FOUND.
    pub tenant_id: ID,
}

/// Whom to invite, and as what.
#[derive(InputObject)]
pub struct InviteMemberInput {
    /// The invitee's email address; CONFLICT when they are already a member.
    pub email: String,
    /// The role they get on joining; only owners may invite an OWNER.
    pub role: Role,
}

/// The object a mutation acts on, by global ID.
#[derive(InputObject)]
pub struct IdInput {
    /// The object's global ID; one of another kind or tenant is NOT_FOUND.
    pub id: ID,
}

/// An invitation to accept.
#[derive(InputObject)]
pub struct AcceptInvitationInput {
    /// The token (`tri_…`) the invitation was created with.
    #[graphql(secret)]
    pub token: String,
}

/// A member's new role.
#[derive(InputObject)]
pub struct UpdateMemberRoleInput {
    /// The membership.
    pub id: ID,
    /// The new role.
    pub role: Role,
}

/// A new API key of the active tenant.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// A label, 1 to 100 characters, unique among the tenant's keys that are not revoked.
    pub name: String,
    /// At least one: the strongest sets the key's role, and RUNNER also allows the
    /// runner mutations.
    pub scopes: Vec<ApiKeyScope>,
    /// From when the key is refused; must be in the future. Null: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Keys with INVOKE: the one environment whose processes it may call; any when
    /// null.
    pub process_environment: Option<crate::processes::types::Environment>,
    /// Keys with INVOKE: the keys of the processes it may call (1 to 100); any when
    /// null.
    pub process_keys: Option<Vec<String>>,
}

/// A tenant, for the platform-administration mutations.
#[derive(InputObject)]
pub struct TenantIdInput {
    /// The tenant's global ID (`ten_…`).
    pub tenant_id: ID,
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates a user with a password; no credential needed. With email confirmation
    /// off (development's default) the user is signed in at once and a taken email is a
    /// CONFLICT userError. With it on (production's default, `TRELLIS_SIGNUP_VERIFICATION`)
    /// the answer is `confirmationSent: true` whether or not the address has an
    /// account, and the address gets a token for `verifyEmail` (or, when it already has
    /// a confirmed account, a notice). The session acts in no tenant yet.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new account.")] input: SignUpInput,
    ) -> async_graphql::Result<SignUpPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (outcome, user_errors) = mutate(
            ctx,
            services.identity.sign_up(
                scope,
                &input.email,
                &input.name,
                SecretString::from(input.password),
            ),
        )
        .await?;
        Ok(match outcome {
            Some(SignUp::Session(session)) => SignUpPayload {
                session: Some((*session).into()),
                confirmation_sent: Some(false),
                user_errors,
            },
            Some(SignUp::ConfirmationSent) => SignUpPayload {
                session: None,
                confirmation_sent: Some(true),
                user_errors,
            },
            None => SignUpPayload {
                user_errors,
                ..SignUpPayload::default()
            },
        })
    }

    /// Confirms an address with the token from the sign-up mail and signs the user in.
    /// A token that is unknown, used or expired is UNAUTHENTICATED.
    async fn verify_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token.")] input: VerifyEmailInput,
    ) -> async_graphql::Result<SessionPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (session, user_errors) =
            mutate(ctx, services.identity.verify_email(scope, &input.token)).await?;
        Ok(SessionPayload {
            session: session.map(Into::into),
            user_errors,
        })
    }

    /// Signs in with email and password; the session acts in the user's oldest
    /// membership's tenant. A wrong email or password is UNAUTHENTICATED, too many
    /// attempts RATE_LIMITED.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The credentials.")] input: LoginInput,
    ) -> async_graphql::Result<SessionPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (session, user_errors) = mutate(
            ctx,
            services
                .identity
                .login(scope, &input.email, SecretString::from(input.password)),
        )
        .await?;
        Ok(SessionPayload {
            session: session.map(Into::into),
            user_errors,
        })
    }

    /// Exchanges a refresh token for a new session. A refresh token that was already
    /// used revokes every session descended from the same login.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token, and optionally another tenant to act in.")]
        input: RefreshSessionInput,
    ) -> async_graphql::Result<SessionPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let tenant = input
            .tenant_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::Tenant))
            .transpose()?;
        let (session, user_errors) = mutate(
            ctx,
            services
                .identity
                .refresh(scope, &input.refresh_token, tenant),
        )
        .await?;
        Ok(SessionPayload {
            session: session.map(Into::into),
            user_errors,
        })
    }

    /// Ends the session the refresh token belongs to (signed-in users; another user's
    /// token is NOT_FOUND).
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the session to end.")] input: LogoutInput,
    ) -> async_graphql::Result<LogoutPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (ok, user_errors) =
            mutate(ctx, services.identity.logout(scope, &input.refresh_token)).await?;
        Ok(LogoutPayload {
            ok: ok.map(|()| true),
            user_errors,
        })
    }

    /// Creates a tenant (signed-in users, not API keys); the caller becomes its owner.
    /// Use `switchTenant` to act in it.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new tenant.")] input: CreateTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let (tenant, user_errors) = mutate(
            ctx,
            identity::create_tenant(
                scope,
                &input.slug,
                &input.name,
                input.plan.as_deref(),
                input.hosted,
            ),
        )
        .await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// Renames the active tenant or changes its settings (admins).
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The changes.")] input: UpdateTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let changes = TenantChanges {
            name: input.name,
            slug: input.slug,
            settings: input.settings.map(|j| j.0),
        };
        let (tenant, user_errors) = mutate(ctx, identity::update_tenant(scope, changes)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// Soft-deletes the active tenant (owners): its users and keys are refused from then
    /// on. A `slug` that is not the tenant's is a userError.
    async fn delete_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The active tenant's slug, to confirm.")] input: DeleteTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let (tenant, user_errors) =
            mutate(ctx, identity::delete_tenant(scope, &input.slug)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// Cancels a tenant's deletion during its grace period (`TRELLIS_TENANT_PURGE_DAYS`)
    /// for one of its owners, as a signed-in user (a deleted tenant cannot be switched
    /// into). CONFLICT when it is not deleted, when its purge has begun, or on `slug`
    /// when another tenant took the slug meanwhile. Audited as `tenant.restore`.
    async fn restore_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant to restore.")] input: RestoreTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let tenant_id = input_id(ctx, &input.tenant_id, IdKind::Tenant)?;
        let (tenant, user_errors) = mutate(ctx, identity::restore_tenant(scope, tenant_id)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// A new access token acting in another tenant the caller (a signed-in user)
    /// belongs to: NOT_FOUND for any other, FORBIDDEN for a suspended one.
    async fn switch_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant to act in.")] input: SwitchTenantInput,
    ) -> async_graphql::Result<SwitchTenantPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let tenant_id = input_id(ctx, &input.tenant_id, IdKind::Tenant)?;
        let (switched, user_errors) =
            mutate(ctx, services.identity.switch_tenant(scope, tenant_id)).await?;
        let Some((token, expires)) = switched else {
            return Ok(SwitchTenantPayload {
                user_errors,
                ..Default::default()
            });
        };
        let tenant = run(ctx, async {
            Ok(trellis_entity::tenant::Entity::find_by_id(tenant_id)
                .one(scope.tx().await?)
                .await?)
        })
        .await?;
        Ok(SwitchTenantPayload {
            access_token: Some(token),
            access_token_expires_at: Some(expires),
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// Invites someone by email (admins; only owners invite owners).
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Whom to invite, and as what.")] input: InviteMemberInput,
    ) -> async_graphql::Result<InviteMemberPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (created, user_errors) = mutate(
            ctx,
            identity::invite_member(scope, &services.identity, &input.email, input.role.into()),
        )
        .await?;
        Ok(match created {
            Some(c) => InviteMemberPayload {
                invitation: Some(Invitation(c.invitation)),
                token: Some(c.token),
                user_errors,
            },
            None => InviteMemberPayload {
                user_errors,
                ..Default::default()
            },
        })
    }

    /// Revokes a pending invitation (admins): its token stops working. CONFLICT when it
    /// is no longer pending.
    async fn revoke_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The invitation (`inv_…`).")] input: IdInput,
    ) -> async_graphql::Result<InvitationPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Invitation)?;
        let (invitation, user_errors) = mutate(ctx, identity::revoke_invitation(scope, id)).await?;
        Ok(InvitationPayload {
            invitation: invitation.map(Invitation),
            user_errors,
        })
    }

    /// Joins the tenant of an invitation addressed to the signed-in user's email:
    /// NOT_FOUND for another address, a CONFLICT userError once it expired or was used.
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The invitation's token.")] input: AcceptInvitationInput,
    ) -> async_graphql::Result<MembershipPayload> {
        let scope = ctx.scope()?;
        let (membership, user_errors) =
            mutate(ctx, identity::accept_invitation(scope, &input.token)).await?;
        Ok(MembershipPayload {
            membership: membership.map(Membership::from),
            user_errors,
        })
    }

    /// Changes a member's role (admins; only owners touch owners; the last owner stays).
    async fn update_member_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The membership and its new role.")] input: UpdateMemberRoleInput,
    ) -> async_graphql::Result<MembershipPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Membership)?;
        let (membership, user_errors) = mutate(
            ctx,
            identity::update_member_role(scope, id, input.role.into()),
        )
        .await?;
        Ok(MembershipPayload {
            membership: membership.map(Membership::from),
            user_errors,
        })
    }

    /// Removes a member (admins; only owners remove owners), or leaves when it is the
    /// caller's own membership (any role). The last owner stays (CONFLICT).
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The membership (`mem_…`).")] input: IdInput,
    ) -> async_graphql::Result<MembershipPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Membership)?;
        let (membership, user_errors) = mutate(ctx, identity::remove_member(scope, id)).await?;
        Ok(MembershipPayload {
            membership: membership.map(Membership::from),
            user_errors,
        })
    }

    /// Creates an API key (admins). The secret is in the payload, once.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new key.")] input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let scope = ctx.scope()?;
        let scopes: Vec<trellis_core::auth::Scope> =
            input.scopes.into_iter().map(Into::into).collect();
        let (created, user_errors) = mutate(
            ctx,
            identity::create_api_key(
                scope,
                &input.name,
                &scopes,
                input.expires_at,
                identity::ProcessAccess {
                    environment: input.process_environment.map(Into::into),
                    process_keys: input.process_keys,
                },
            ),
        )
        .await?;
        Ok(match created {
            Some(c) => CreateApiKeyPayload {
                api_key: Some(ApiKey(c.key)),
                secret: Some(c.plaintext),
                user_errors,
            },
            None => CreateApiKeyPayload {
                user_errors,
                ..Default::default()
            },
        })
    }

    /// Revokes an API key (admins): requests with it are refused from now on. CONFLICT
    /// when it is already revoked.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key (`key_…`).")] input: IdInput,
    ) -> async_graphql::Result<ApiKeyPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::ApiKey)?;
        let (key, user_errors) = mutate(ctx, identity::revoke_api_key(scope, id)).await?;
        Ok(ApiKeyPayload {
            api_key: key.map(ApiKey),
            user_errors,
        })
    }

    /// Suspends a tenant: its users and keys are refused (platform admins).
    async fn suspend_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant to suspend.")] input: TenantIdInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.tenant_id, IdKind::Tenant)?;
        let (tenant, user_errors) =
            mutate(ctx, identity::set_tenant_suspended(scope, id, true)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// Lifts a suspension (platform admins).
    async fn reactivate_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant to reactivate.")] input: TenantIdInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.tenant_id, IdKind::Tenant)?;
        let (tenant, user_errors) =
            mutate(ctx, identity::set_tenant_suspended(scope, id, false)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }
}
