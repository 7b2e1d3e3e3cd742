use async_graphql::{Context, Object};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use trellis_entity::{app, connection, secret, IdKind, Role};

use super::types::{App, AppFilter, Connection, ConnectionFilter, Secret, SecretFilter};
use crate::context::{load_error, run, ContextExt};
use crate::identity::types::contains_pattern;
use crate::ids;
use crate::loaders::{
    prefetch, ActionsOfVersion, AppById, AppVersionById, SecretById, SecretRefsOfConnection,
    UsesOfSecret, VersionsOfApp,
};
use crate::pagination::{load_page, node_selection, node_selects, CreatedOrderBy, Page, PageArgs};

#[derive(Default)]
pub struct IntegrationsQuery;

#[Object]
impl IntegrationsQuery {
    /// The connector catalog: the public apps and the active tenant's own.
    async fn apps(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many apps to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the apps after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            AppFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<App>> {
        let scope = ctx.scope()?;
        let filter = filter.unwrap_or_default();
        let page: Page<App> = run(ctx, async {
            let args = PageArgs::new(first, after, order_by)?;
            // Row-level security admits the public rows and the active tenant's.
            let mut select = app::Entity::find().filter(app::Column::DeletedAt.is_null());
            match filter.public {
                Some(true) => select = select.filter(app::Column::TenantId.is_null()),
                Some(false) => select = select.filter(app::Column::TenantId.is_not_null()),
                None => {}
            }
            if let Some(categories) = filter.categories {
                select = select.filter(
                    app::Column::Category.is_in(
                        categories
                            .into_iter()
                            .map(trellis_entity::AppCategory::from),
                    ),
                );
            }
            if let Some(search) = filter.search {
                select = select.filter(Expr::cust_with_values(
                    "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                    [contains_pattern(&search)],
                ));
            }
            load_page(scope, select, app::Column::CreatedAt, app::Column::Id, args).await
        })
        .await?;
        let loader = ctx.loader()?;
        let wants_versions = node_selects(ctx, "versions") || node_selects(ctx, "latestVersion");
        if wants_versions {
            let apps = page.edges.iter().map(|e| VersionsOfApp(e.node.0.id));
            prefetch(loader, apps)
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
        let wants_actions = ["versions", "latestVersion"]
            .iter()
            .any(|field| node_selection(ctx).field(field).field("actions").exists());
        if wants_actions {
            let mut version_ids = vec![];
            for edge in &page.edges {
                let versions = loader
                    .load_one(VersionsOfApp(edge.node.0.id))
                    .await
                    .map_err(|e| load_error(ctx, &e))?;
                version_ids.extend(versions.unwrap_or_default().iter().map(|v| v.id));
            }
            prefetch(loader, version_ids.into_iter().map(ActionsOfVersion))
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
        Ok(page)
    }

    /// An app by key: the active tenant's own, else the public one.
    async fn app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app's key (`http`, `slack`).")] key: String,
    ) -> async_graphql::Result<Option<App>> {
        let scope = ctx.scope()?;
        run(ctx, async {
            let found = app::Entity::find()
                .filter(app::Column::Key.eq(key))
                .filter(app::Column::DeletedAt.is_null())
                .order_by_asc(Expr::cust("tenant_id IS NULL"))
                .one(scope.tx().await?)
                .await?;
            Ok(found.map(App))
        })
        .await
    }

    /// The active tenant's secrets (admins): names and versions, never values.
    async fn secrets(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many secrets to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the secrets after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            SecretFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Secret>> {
        let scope = ctx.scope()?;
        let filter = filter.unwrap_or_default();
        let page: Page<Secret> = run(ctx, async {
            let tenant = scope.require(Role::Admin).await?;
            let args = PageArgs::new(first, after, order_by)?;
            let mut select =
                secret::Entity::find().filter(secret::Column::TenantId.eq(tenant.tenant_id));
            if let Some(search) = filter.search {
                select = select.filter(Expr::cust_with_values(
                    "name ILIKE $1",
                    [contains_pattern(&search)],
                ));
            }
            load_page(
                scope,
                select,
                secret::Column::CreatedAt,
                secret::Column::Id,
                args,
            )
            .await
        })
        .await?;
        if node_selects(ctx, "usedBy") {
            let secrets = page.edges.iter().map(|e| UsesOfSecret(e.node.0.id));
            prefetch(ctx.loader()?, secrets)
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
        Ok(page)
    }

    /// The active tenant's connections (any member may list them; admins change them).
    async fn connections(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many connections to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the connections after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            ConnectionFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Connection>> {
        let scope = ctx.scope()?;
        let filter = filter.unwrap_or_default();
        let page: Page<Connection> = run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            let args = PageArgs::new(first, after, order_by)?;
            let mut select = connection::Entity::find()
                .filter(connection::Column::TenantId.eq(tenant.tenant_id))
                .filter(connection::Column::DeletedAt.is_null());
            if let Some(app) = filter.app {
                select =
                    select.filter(connection::Column::AppId.eq(ids::parse(&app, IdKind::App)?));
            }
            if let Some(active) = filter.active {
                select = select.filter(connection::Column::IsActive.eq(active));
            }
            if let Some(search) = filter.search {
                select = select.filter(Expr::cust_with_values(
                    "name ILIKE $1",
                    [contains_pattern(&search)],
                ));
            }
            load_page(
                scope,
                select,
                connection::Column::CreatedAt,
                connection::Column::Id,
                args,
            )
            .await
        })
        .await?;
        let loader = ctx.loader()?;
        let rows = || page.edges.iter().map(|e| &e.node.0);
        if node_selects(ctx, "app") {
            prefetch(loader, rows().map(|c| AppById(c.app_id)))
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
        if node_selects(ctx, "appVersion") {
            prefetch(loader, rows().map(|c| AppVersionById(c.app_version_id)))
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
        if node_selects(ctx, "secrets") {
            prefetch(loader, rows().map(|c| SecretRefsOfConnection(c.id)))
                .await
                .map_err(|e| load_error(ctx, &e))?;
            let wants_secret = node_selection(ctx)
                .field("secrets")
                .field("secret")
                .exists();
            if wants_secret {
                let mut secret_ids = vec![];
                for c in rows() {
                    let refs = loader
                        .load_one(SecretRefsOfConnection(c.id))
                        .await
                        .map_err(|e| load_error(ctx, &e))?;
                    secret_ids.extend(
                        refs.unwrap_or_default()
                            .iter()
                            .map(|r| SecretById(r.secret_id)),
                    );
                }
                prefetch(loader, secret_ids)
                    .await
                    .map_err(|e| load_error(ctx, &e))?;
            }
        }
        Ok(page)
    }
}
