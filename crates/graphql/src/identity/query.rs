use async_graphql::{Context, InputObject, Object};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use trellis_entity::{membership, tenant, user};

use super::types::{Membership, Role, Tenant, TenantStatus, User};
use crate::context::{run, ContextExt};
use crate::pagination::{CreatedOrderBy, Page};

/// The caller: who they are, where they belong, and where they are acting now.
pub struct Viewer;

/// The caller: who they are, where they belong, and where they are acting now.
#[Object]
impl Viewer {
    /// The signed-in user; null for an API key.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let scope = ctx.scope()?;
        let Ok(user_id) = scope.user_id() else {
            return Ok(None);
        };
        run(ctx, async {
            Ok(user::Entity::find_by_id(user_id)
                .into_partial_model::<user::Profile>()
                .one(scope.tx().await?)
                .await?
                .map(User))
        })
        .await
    }

    /// Every tenant the user belongs to, oldest membership first; empty for an API key.
    async fn memberships(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Membership>> {
        let scope = ctx.scope()?;
        let Ok(user_id) = scope.user_id() else {
            return Ok(vec![]);
        };
        run(ctx, async {
            let rows = membership::Entity::find()
                .filter(membership::Column::UserId.eq(user_id))
                .order_by_asc(membership::Column::CreatedAt)
                .order_by_asc(membership::Column::Id)
                .all(scope.tx().await?)
                .await?;
            Ok(rows.into_iter().map(Membership::from).collect())
        })
        .await
    }

    /// The signed-in user's live sessions, most recently active first (revoke one
    /// with `revokeSession`); empty for an API key.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::account::UserSession>> {
        let scope = ctx.scope()?;
        if scope.user_id().is_err() {
            return Ok(vec![]);
        }
        let current = scope.session_id();
        run(ctx, async {
            Ok(trellis_core::accounts::sessions(scope)
                .await?
                .into_iter()
                .map(|info| super::account::UserSession::new(info, current))
                .collect())
        })
        .await
    }

    /// The tenant the request acts in, when the caller may act there.
    async fn active_tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        active_tenant(ctx).await
    }

    /// The caller's role in the active tenant (an API key's follows from its scopes);
    /// null without one.
    async fn role(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Role>> {
        let scope = ctx.scope()?;
        run(ctx, async {
            Ok(scope.active_tenant().await?.map(|t| t.role.into()))
        })
        .await
    }
}

async fn active_tenant(ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
    let scope = ctx.scope()?;
    run(ctx, async {
        let Some(active) = scope.active_tenant().await? else {
            return Ok(None);
        };
        Ok(tenant::Entity::find_by_id(active.tenant_id)
            .one(scope.tx().await?)
            .await?
            .map(Tenant))
    })
    .await
}

/// Narrows the platform's tenants; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct TenantFilter {
    /// Only tenants in one of these states.
    pub statuses: Option<Vec<TenantStatus>>,
    /// Matches slug or name, case-insensitively.
    pub search: Option<String>,
    /// Only deleted tenants (true), like the other lists' filter: those an owner can
    /// still restore and those waiting for their purge; false when omitted.
    #[graphql(default)]
    pub deleted: bool,
    /// Also list soft-deleted tenants (default false).
    pub include_deleted: Option<bool>,
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The caller; null when not signed in.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Viewer>> {
        Ok((*ctx.scope()?.principal() != trellis_core::Principal::Anonymous).then_some(Viewer))
    }

    /// The tenant the credential acts in; null when it names none. FORBIDDEN when it
    /// names one the caller may no longer act in (removed, suspended, deleted).
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        let scope = ctx.scope()?;
        let names_tenant = matches!(
            scope.principal(),
            trellis_core::Principal::User {
                tenant_id: Some(_),
                ..
            } | trellis_core::Principal::ApiKey { .. }
        );
        if !names_tenant {
            return Ok(None);
        }
        run(ctx, async {
            let active = scope.require(trellis_entity::Role::Viewer).await?;
            Ok(tenant::Entity::find_by_id(active.tenant_id)
                .one(scope.tx().await?)
                .await?
                .map(Tenant))
        })
        .await
    }

    /// Every tenant on the platform (platform admins only; audited path).
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many tenants to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the tenants after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            TenantFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Tenant>> {
        crate::list::page::<Tenant>(ctx, None, first, after, filter, order_by).await
    }
}
