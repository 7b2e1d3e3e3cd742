use async_graphql::{Context, InputObject, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use secrecy::SecretString;
use trellis_core::identity::{self, TenantChanges};
use trellis_entity::IdKind;

use super::types::{
    input_id, ApiKey, ApiKeyScope, Invitation, Membership, Role, Tenant, TenantPlan, User,
};
use crate::context::{mutate, run, ContextExt};

/// A signed-in session.
#[derive(SimpleObject)]
pub struct Session {
    /// Send as `Authorization: Bearer <accessToken>`. Short-lived.
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    /// Exchange for a new session with `refreshSession`; each refresh token works once.
    pub refresh_token: String,
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

payload!(SessionPayload { session: Session });
payload!(TenantPayload { tenant: Tenant });
payload!(LogoutPayload { ok: bool });
payload!(SwitchTenantPayload { access_token: String, access_token_expires_at: DateTime<Utc>, tenant: Tenant });
payload!(
    /// The new invitation and its token: send the token to the invitee; it is not shown again.
    InviteMemberPayload { invitation: Invitation, token: String }
);
payload!(InvitationPayload {
    invitation: Invitation
});
payload!(MembershipPayload {
    membership: Membership
});
payload!(
    /// The new key and its plaintext secret: store it now; it is not shown again.
    CreateApiKeyPayload { api_key: ApiKey, secret: String }
);
payload!(ApiKeyPayload { api_key: ApiKey });

#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    pub name: String,
    /// 10 to 512 characters.
    #[graphql(secret)]
    pub password: String,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
}

#[derive(InputObject)]
pub struct RefreshSessionInput {
    #[graphql(secret)]
    pub refresh_token: String,
    /// Act in this tenant instead of the session's current one.
    pub tenant_id: Option<ID>,
}

#[derive(InputObject)]
pub struct LogoutInput {
    #[graphql(secret)]
    pub refresh_token: String,
}

#[derive(InputObject)]
pub struct CreateTenantInput {
    /// 3 to 64 lowercase letters, digits or dashes; unique.
    pub slug: String,
    pub name: String,
    pub plan: Option<TenantPlan>,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// Replaces the settings object.
    pub settings: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct DeleteTenantInput {
    /// The active tenant's slug, to confirm.
    pub slug: String,
}

#[derive(InputObject)]
pub struct SwitchTenantInput {
    pub tenant_id: ID,
}

#[derive(InputObject)]
pub struct InviteMemberInput {
    pub email: String,
    pub role: Role,
}

#[derive(InputObject)]
pub struct IdInput {
    pub id: ID,
}

#[derive(InputObject)]
pub struct AcceptInvitationInput {
    #[graphql(secret)]
    pub token: String,
}

#[derive(InputObject)]
pub struct UpdateMemberRoleInput {
    /// The membership.
    pub id: ID,
    pub role: Role,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    pub scopes: Vec<ApiKeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct TenantIdInput {
    pub tenant_id: ID,
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates a user with a password and signs them in.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        input: SignUpInput,
    ) -> async_graphql::Result<SessionPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (session, user_errors) = mutate(
            ctx,
            services.identity.sign_up(
                scope,
                &input.email,
                &input.name,
                SecretString::from(input.password),
            ),
        )
        .await?;
        Ok(SessionPayload {
            session: session.map(Into::into),
            user_errors,
        })
    }

    /// Signs in with email and password. A wrong email or password is UNAUTHENTICATED.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
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

    /// Ends the session the refresh token belongs to.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        input: LogoutInput,
    ) -> async_graphql::Result<LogoutPayload> {
        let (scope, services) = (ctx.scope()?, ctx.services()?);
        let (ok, user_errors) =
            mutate(ctx, services.identity.logout(scope, &input.refresh_token)).await?;
        Ok(LogoutPayload {
            ok: ok.map(|()| true),
            user_errors,
        })
    }

    /// Creates a tenant; the caller becomes its owner. Use `switchTenant` to act in it.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        input: CreateTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let (tenant, user_errors) = mutate(
            ctx,
            identity::create_tenant(scope, &input.slug, &input.name, input.plan.map(Into::into)),
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
        input: UpdateTenantInput,
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

    /// Soft-deletes the active tenant (owners).
    async fn delete_tenant(
        &self,
        ctx: &Context<'_>,
        input: DeleteTenantInput,
    ) -> async_graphql::Result<TenantPayload> {
        let scope = ctx.scope()?;
        let (tenant, user_errors) =
            mutate(ctx, identity::delete_tenant(scope, &input.slug)).await?;
        Ok(TenantPayload {
            tenant: tenant.map(Tenant),
            user_errors,
        })
    }

    /// A new access token acting in another tenant the caller belongs to.
    async fn switch_tenant(
        &self,
        ctx: &Context<'_>,
        input: SwitchTenantInput,
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
        input: InviteMemberInput,
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

    async fn revoke_invitation(
        &self,
        ctx: &Context<'_>,
        input: IdInput,
    ) -> async_graphql::Result<InvitationPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Invitation)?;
        let (invitation, user_errors) = mutate(ctx, identity::revoke_invitation(scope, id)).await?;
        Ok(InvitationPayload {
            invitation: invitation.map(Invitation),
            user_errors,
        })
    }

    /// Joins the tenant of an invitation addressed to the signed-in user's email.
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        input: AcceptInvitationInput,
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
        input: UpdateMemberRoleInput,
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

    /// Removes a member, or leaves when it is the caller's own membership.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        input: IdInput,
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
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let scope = ctx.scope()?;
        let scopes: Vec<trellis_core::auth::Scope> =
            input.scopes.into_iter().map(Into::into).collect();
        let (created, user_errors) = mutate(
            ctx,
            identity::create_api_key(scope, &input.name, &scopes, input.expires_at),
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

    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: IdInput,
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
        input: TenantIdInput,
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
        input: TenantIdInput,
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
