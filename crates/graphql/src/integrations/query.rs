use async_graphql::{Context, Object};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use trellis_entity::app;

use super::types::{App, AppFilter, Connection, ConnectionFilter, Secret, SecretFilter};
use crate::context::{load_error, run, ContextExt};
use crate::list;
use crate::loaders::{
    prefetch, ActionsOfVersion, SecretById, SecretRefsOfConnection, VersionsOfApp,
};
use crate::pagination::{node_selection, CreatedOrderBy, Page};

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
        let page = list::page::<App>(ctx, None, first, after, filter, order_by).await?;
        let loader = ctx.loader()?;
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
        list::page::<Secret>(ctx, None, first, after, filter, order_by).await
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
        let page = list::page::<Connection>(ctx, None, first, after, filter, order_by).await?;
        let loader = ctx.loader()?;
        let rows = || page.edges.iter().map(|e| &e.node.0);
        // The secret behind each reference is a relation of a relation.
        {
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
