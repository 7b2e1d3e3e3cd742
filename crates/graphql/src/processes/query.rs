use async_graphql::{Context, Object};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use trellis_entity::{call_log, process, Role};
use uuid::Uuid;

use super::types::{CallFilter, CallLog, Process, ProcessFilter};
use crate::context::{run, ContextExt};
use crate::list;
use crate::pagination::{CreatedOrderBy, Page};

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
        list::page::<Process>(ctx, None, first, after, filter, order_by).await
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
    let within = process_id.map(|id| Condition::all().add(call_log::Column::ProcessId.eq(id)));
    list::page::<CallLog>(ctx, within, first, after, Some(filter), None).await
}
