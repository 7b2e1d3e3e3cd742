//! One way to declare a Relay list. A list type implements [`List`]: which rows it
//! reads and who may read them ([`Access`]), how its filter narrows them, the keyset
//! columns it pages and orders by, and the relations a page prefetches when its nodes
//! select them ([`Relation`]). [`page`] serves any of them: access check, filter, one
//! statement for the page, then one for all the selected relations that read together
//! ([`crate::together`]) and one for each other selected relation, whatever the page
//! size.

use std::hash::Hash;
use std::sync::Arc;

use async_graphql::{Context, InputType, OutputType, SelectionField};
use futures::future::BoxFuture;
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{EntityTrait, FromQueryResult, QueryFilter, Select};
use trellis_entity::Role;

use crate::context::{load_error, run, ContextExt};
use crate::loaders::{prefetch, Loader, RequestLoader};
use crate::pagination::{load_rows, CreatedOrderBy, Keyed, Page, PageArgs};
use crate::together::{pending, prefetch_together, Pending, Together};

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

type PendingKeys<M> = Box<dyn Fn(&[&M], &[SelectionField<'_>]) -> Box<dyn Pending> + Send + Sync>;

/// A relation of a list's nodes: the GraphQL fields that select it and how a page's
/// rows read theirs.
pub(crate) struct Relation<M> {
    fields: &'static [&'static str],
    read: Read<M>,
}

enum Read<M> {
    /// In a statement of its own.
    Alone(LoadKeys<M>),
    /// In the one statement of the page's relations that read together; the keys
    /// depend on the rows and on the fields selecting the relation.
    Together(PendingKeys<M>),
}

impl<M: 'static> Relation<M> {
    /// The relation the node fields `fields` read, loaded by `key` (a row without one
    /// has `None`) in a statement of its own.
    pub(crate) fn by<K>(fields: &'static [&'static str], key: fn(&M) -> Option<K>) -> Self
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        Loader: async_graphql::dataloader::Loader<K, Error = Arc<trellis_core::Error>>,
    {
        Self {
            fields,
            read: Read::Alone(Box::new(move |loader, rows| {
                let keys: Vec<K> = rows.iter().filter_map(|row| key(row)).collect();
                Box::pin(prefetch(loader, keys))
            })),
        }
    }

    /// The relation the node fields `fields` read, loaded by `key`, together with the
    /// page's other such relations.
    pub(crate) fn together<K>(fields: &'static [&'static str], key: fn(&M) -> Option<K>) -> Self
    where
        K: Together,
        Loader: async_graphql::dataloader::Loader<K, Value = K::Value>,
    {
        Self {
            fields,
            read: Read::Together(Box::new(move |rows, _| {
                pending(rows.iter().filter_map(|row| key(row)))
            })),
        }
    }

    /// A relation whose key also depends on the field that selects it (its arguments,
    /// its own selection): `shape` reads what each such field asks for (an alias is
    /// another), once per field, and `key` makes each row's key of it. A field `shape`
    /// cannot tell (`None`) is left to its own resolver. Read together with the page's
    /// other such relations.
    pub(crate) fn selected<K, S: 'static>(
        fields: &'static [&'static str],
        shape: fn(&SelectionField<'_>) -> Option<S>,
        key: fn(&M, &S) -> K,
    ) -> Self
    where
        K: Together,
        Loader: async_graphql::dataloader::Loader<K, Value = K::Value>,
    {
        Self {
            fields,
            read: Read::Together(Box::new(move |rows, selected| {
                let shapes: Vec<S> = selected.iter().filter_map(shape).collect();
                pending(
                    shapes
                        .iter()
                        .flat_map(|s| rows.iter().map(move |row| key(row, s))),
                )
            })),
        }
    }
}

/// The arguments of a field that selects a relation ([`Relation::selected`]), by name.
pub(crate) struct Arguments(Vec<(async_graphql::Name, async_graphql::Value)>);

impl Arguments {
    /// `field`'s arguments, variables resolved; `None` when they do not resolve.
    pub(crate) fn of(field: &SelectionField<'_>) -> Option<Self> {
        field.arguments().ok().map(Self)
    }

    /// The argument `name` as a `T` (an absent one is what `T` makes of no value);
    /// `None` when it does not parse.
    pub(crate) fn get<T: InputType>(&self, name: &str) -> Option<T> {
        let value = self
            .0
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.clone());
        T::parse(value).ok()
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
    let look_ahead = ctx.look_ahead();
    let nodes = [
        look_ahead.field("edges").field("node"),
        look_ahead.field("nodes"),
    ];
    let mut together = Vec::new();
    for relation in L::relations() {
        let selected: Vec<SelectionField<'_>> = relation
            .fields
            .iter()
            .flat_map(|field| nodes.iter().flat_map(|n| n.field(field).selection_fields()))
            .collect();
        if selected.is_empty() {
            continue;
        }
        match relation.read {
            Read::Alone(load) => load(loader, &models)
                .await
                .map_err(|e| load_error(ctx, &e))?,
            Read::Together(keys) => together.push(keys(&models, &selected)),
        }
    }
    prefetch_together(loader, together)
        .await
        .map_err(|e| load_error(ctx, &e))?;
    Ok(rows.into_page())
}
