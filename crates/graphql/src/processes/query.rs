use async_graphql::{Context, Object};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use trellis_entity::{call_log, process, IdKind, PrefixedId, Role};
use uuid::Uuid;

use super::types::{CallFilter, CallLog, Process, ProcessFilter};
use crate::context::{run, ContextExt};
use crate::identity::types::contains_pattern;
use crate::loaders::{prefetch, DeploymentsOfProcess, VersionsOfProcess};
use crate::pagination::{load_page, CreatedOrderBy, Page, PageArgs};

#[derive(Default)]
pub struct ProcessesQuery;

#[Object]
impl ProcessesQuery {
    /// The active tenant's processes (any member; deleted ones only with
    /// `filter.deleted`). Versions and served versions cost one statement each per page.
    async fn processes(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many processes to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the processes after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            ProcessFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Process>> {
        let scope = ctx.scope()?;
        let filter = filter.unwrap_or_default();
        let page: Page<Process> = run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            let args = PageArgs::new(first, after, order_by)?;
            let mut select =
                process::Entity::find().filter(process::Column::TenantId.eq(tenant.tenant_id));
            select = if filter.deleted {
                select.filter(process::Column::DeletedAt.is_not_null())
            } else {
                select.filter(process::Column::DeletedAt.is_null())
            };
            if let Some(search) = filter.search {
                select = select.filter(Expr::cust_with_values(
                    "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                    [contains_pattern(&search)],
                ));
            }
            load_page(
                scope,
                select,
                process::Column::CreatedAt,
                process::Column::Id,
                args,
            )
            .await
        })
        .await?;
        let loader = ctx.loader()?;
        let ids: Vec<Uuid> = page.edges.iter().map(|e| e.node.0.id).collect();
        let prefetched = async {
            prefetch(loader, ids.iter().map(|id| VersionsOfProcess(*id))).await?;
            prefetch(loader, ids.iter().map(|id| DeploymentsOfProcess(*id))).await
        };
        prefetched
            .await
            .map_err(|e| crate::context::load_error(ctx, &e))?;
        Ok(page)
    }

    /// A process of the active tenant by key (any member); null when no live process
    /// has it.
    async fn process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The process's key; a deleted process is not found (null).")] key: String,
    ) -> async_graphql::Result<Option<Process>> {
        let scope = ctx.scope()?;
        run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            let found = process::Entity::find()
                .filter(process::Column::TenantId.eq(tenant.tenant_id))
                .filter(process::Column::Key.eq(key))
                .filter(process::Column::DeletedAt.is_null())
                .one(scope.tx().await?)
                .await?;
            Ok(found.map(Process))
        })
        .await
    }

    /// The active tenant's process calls, newest first (any member).
    async fn calls(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many calls to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the calls after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            CallFilter,
        >,
    ) -> async_graphql::Result<Page<CallLog>> {
        calls_page(ctx, None, first, after, filter.unwrap_or_default()).await
    }
}

/// A page of call logs, newest first, of one process or of the whole tenant.
pub(crate) async fn calls_page(
    ctx: &Context<'_>,
    process_id: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    filter: CallFilter,
) -> async_graphql::Result<Page<CallLog>> {
    let scope = ctx.scope()?;
    run(ctx, async {
        let tenant = scope.require(Role::Viewer).await?;
        let args = PageArgs::new(first, after, Some(CreatedOrderBy::CreatedAtDesc))?;
        let mut select =
            call_log::Entity::find().filter(call_log::Column::TenantId.eq(tenant.tenant_id));
        let process_id = match (process_id, filter.process) {
            (Some(id), _) => Some(id),
            (None, Some(named)) => Some(match PrefixedId::parse_as(&named, IdKind::Process) {
                Some(id) => id,
                None => process::Entity::find()
                    .filter(process::Column::Key.eq(named))
                    .filter(process::Column::DeletedAt.is_null())
                    .one(scope.tx().await?)
                    .await?
                    .map_or(Uuid::nil(), |p| p.id),
            }),
            (None, None) => None,
        };
        if let Some(id) = process_id {
            select = select.filter(call_log::Column::ProcessId.eq(id));
        }
        if let Some(statuses) = filter.status {
            select = select.filter(
                call_log::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::CallStatus::from)),
            );
        }
        if let Some(hit) = filter.cache_hit {
            select = select.filter(call_log::Column::CacheHit.eq(hit));
        }
        if let Some(environment) = filter.environment {
            select = select.filter(
                call_log::Column::Environment.eq(trellis_entity::Environment::from(environment)),
            );
        }
        if let Some(from) = filter.from {
            select = select.filter(call_log::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            select = select.filter(call_log::Column::CreatedAt.lt(to));
        }
        load_page(
            scope,
            select,
            call_log::Column::CreatedAt,
            call_log::Column::Id,
            args,
        )
        .await
    })
    .await
}
