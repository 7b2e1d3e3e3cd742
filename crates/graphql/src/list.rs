//! One way to declare a Relay list. A list type implements [`List`]: which rows it
//! reads and who may read them ([`Access`]), how its filter narrows them, the keyset
//! columns it pages and orders by, and the relations a page prefetches when its nodes
//! select them ([`Relation`]). [`page`] serves any of them: access check, filter, one
//! statement for the page, one per selected relation, whatever the page size.

use std::hash::Hash;
use std::sync::Arc;

use async_graphql::{Context, OutputType};
use futures::future::BoxFuture;
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{EntityTrait, FromQueryResult, QueryFilter, Select};
use trellis_entity::Role;

use crate::context::{load_error, run, ContextExt};
use crate::loaders::{prefetch, Loader, RequestLoader};
use crate::pagination::{load_rows, node_selects, CreatedOrderBy, Keyed, Page, PageArgs};

/// Who may read a list, and which rows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Members with at least this role, the rows of their active tenant
    /// ([`List::TENANT`] matches it).
    Tenant(Role),
    /// Anyone, every row RLS shows them (the catalog: public rows, and the active
    /// tenant's own).
    Anyone,
    /// Platform admins, on the audited platform-administration path.
    PlatformAdmin,
}

/// The model a list's rows are.
pub(crate) type ModelOf<L> = <<L as List>::Entity as EntityTrait>::Model;
/// A column of a list's entity.
pub(crate) type ColumnOf<L> = <<L as List>::Entity as EntityTrait>::Column;

/// A Relay list, declared once.
pub(crate) trait List: 'static {
    /// The table the list pages.
    type Entity: EntityTrait;
    /// The GraphQL type of its nodes.
    type Node: From<ModelOf<Self>> + OutputType;
    /// Its filter input; `Default` is "no condition".
    type Filter: Default + Send;
    /// Who may read it.
    const ACCESS: Access;
    /// The tenant column [`Access::Tenant`] matches.
    const TENANT: Option<ColumnOf<Self>>;
    /// The keyset columns: creation time, then the id breaking ties.
    const CREATED_AT: ColumnOf<Self>;
    const ID: ColumnOf<Self>;

    /// Narrows the rows by the filter (BAD_USER_INPUT on a malformed value).
    fn narrow(
        select: Select<Self::Entity>,
        filter: Self::Filter,
    ) -> trellis_core::Result<Select<Self::Entity>>;

    /// The relations a page prefetches when its nodes select them.
    fn relations() -> Vec<Relation<ModelOf<Self>>> {
        Vec::new()
    }
}

type LoadKeys<M> = Box<
    dyn for<'a> Fn(&'a RequestLoader, &[&M]) -> BoxFuture<'a, Result<(), Arc<trellis_core::Error>>>
        + Send
        + Sync,
>;

/// A relation of a list's nodes: the GraphQL fields that select it and the dataloader
/// key of each row's.
pub(crate) struct Relation<M> {
    fields: &'static [&'static str],
    load: LoadKeys<M>,
}

impl<M: 'static> Relation<M> {
    /// The relation the node fields `fields` read, loaded by `key` (a row without one
    /// has `None`).
    pub(crate) fn by<K>(fields: &'static [&'static str], key: fn(&M) -> Option<K>) -> Self
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        Loader: async_graphql::dataloader::Loader<K, Error = Arc<trellis_core::Error>>,
    {
        Self {
            fields,
            load: Box::new(move |loader, rows| {
                let keys: Vec<K> = rows.iter().filter_map(|row| key(row)).collect();
                Box::pin(prefetch(loader, keys))
            }),
        }
    }
}

/// A page of `L`, its rows narrowed further by `within` (a parent's rows: one
/// workflow's runs) when given.
pub(crate) async fn page<L: List>(
    ctx: &Context<'_>,
    within: Option<sea_orm::Condition>,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<L::Filter>,
    order_by: Option<CreatedOrderBy>,
) -> async_graphql::Result<Page<L::Node>>
where
    ModelOf<L>: Keyed + FromQueryResult + Send + Sync,
{
    let scope = ctx.scope()?;
    let filter = filter.unwrap_or_default();
    let rows = run(ctx, async {
        let mut select = L::Entity::find();
        match L::ACCESS {
            Access::Tenant(role) => {
                let tenant = scope.require(role).await?;
                let column = L::TENANT.ok_or_else(|| {
                    trellis_core::anyhow::anyhow!("a tenant list names its tenant column")
                })?;
                select = select.filter(Expr::col(column).eq(tenant.tenant_id));
            }
            Access::Anyone => {}
            Access::PlatformAdmin => {
                scope.require_platform_admin().await?;
            }
        }
        if let Some(within) = within {
            select = select.filter(within.into_condition());
        }
        let select = L::narrow(select, filter)?;
        let args = PageArgs::new(first, after, order_by)?;
        load_rows(scope, select, L::CREATED_AT, L::ID, args).await
    })
    .await?;
    let loader = ctx.loader()?;
    let models: Vec<&ModelOf<L>> = rows.models().collect();
    for relation in L::relations() {
        if relation.fields.iter().any(|field| node_selects(ctx, field)) {
            (relation.load)(loader, &models)
                .await
                .map_err(|e| load_error(ctx, &e))?;
        }
    }
    Ok(rows.into_page())
}
