//! Relay connections with keyset cursors over `(created_at, id)`: stable under inserts,
//! an index range scan per page, the id breaking ties. `totalCount` runs only when
//! selected.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields};
use async_graphql::parser::types::Field;
use async_graphql::registry::{MetaType, Registry};
use async_graphql::resolver_utils::ContainerType;
use async_graphql::{
    Context, ContextSelectionSet, Enum, Object, ObjectType, OutputType, Positioned, ServerResult,
    Value,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use sea_orm::sea_query::{Expr, Order, SelectStatement};
use sea_orm::{
    Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, Statement,
};
use trellis_core::{Error, RequestScope, Result};
use uuid::Uuid;

use crate::in_place::resolve_in_place;

/// The most nodes one page may return.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;

/// Orders of a list by creation time, id breaking ties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Enum)]
pub enum CreatedOrderBy {
    /// Oldest first.
    CreatedAtAsc,
    /// Newest first: the default.
    #[default]
    CreatedAtDesc,
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, in microseconds.
const MIN_CURSOR_MICROS: i64 = -62_135_596_800_000_000;
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

/// The position of a row in a list: its creation time and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeysetCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl CursorType for KeysetCursor {
    type Error = &'static str;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| "invalid cursor")?;
        let text = String::from_utf8(bytes).map_err(|_| "invalid cursor")?;
        let (micros, id) = text.split_once('|').ok_or("invalid cursor")?;
        let micros: i64 = micros.parse().map_err(|_| "invalid cursor")?;
        // Cursors name real rows: years 1 to 9999. Beyond that PostgreSQL would refuse
        // the timestamp with an error of its own.
        if !(MIN_CURSOR_MICROS..=MAX_CURSOR_MICROS).contains(&micros) {
            return Err("invalid cursor");
        }
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or("invalid cursor")?,
            id: Uuid::try_parse(id).map_err(|_| "invalid cursor")?,
        })
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }
}

/// A row that can be paged by `(created_at, id)`.
pub trait Keyed {
    fn cursor(&self) -> KeysetCursor;
}

/// Every model a connection pages, each by its `created_at` and `id`.
macro_rules! keyed {
    ($($module:ident),+) => {
        $(impl Keyed for trellis_entity::$module::Model {
            fn cursor(&self) -> KeysetCursor {
                KeysetCursor { created_at: self.created_at, id: self.id }
            }
        })+
    };
}
keyed!(
    tenant,
    agent_template,
    skill,
    membership,
    invitation,
    api_key,
    audit_event,
    app,
    secret,
    connection,
    client,
    workflow,
    trigger,
    workflow_run,
    process,
    call_log,
    agent,
    agent_activity
);

/// Validated paging arguments.
#[derive(Clone, Copy, Debug)]
pub struct PageArgs {
    pub first: u64,
    pub after: Option<KeysetCursor>,
    pub order: CreatedOrderBy,
}

impl PageArgs {
    pub fn new(
        first: Option<i32>,
        after: Option<String>,
        order: Option<CreatedOrderBy>,
    ) -> Result<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(Error::bad_input(
                "first",
                format!("first must be between 0 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after
            .map(|c| KeysetCursor::decode_cursor(&c).map_err(|e| Error::bad_input("after", e)))
            .transpose()?;
        Ok(Self {
            first: first as u64,
            after,
            order: order.unwrap_or_default(),
        })
    }
}

/// The connection's own fields beside edges and pageInfo.
pub struct ConnectionFields {
    scope: Arc<RequestScope>,
    /// The list's query, turned into SQL only when `totalCount` is selected: a page of
    /// workflows each listing its runs would otherwise write one unused query per row.
    count: SelectStatement,
}

#[Object]
impl ConnectionFields {
    /// The number of nodes in the whole list (all pages). Costs a count query, run only
    /// when this field is selected.
    async fn total_count(&self) -> async_graphql::Result<i64> {
        let count = async {
            let list = DbBackend::Postgres.build(&self.count);
            let sql = format!("SELECT count(*) AS total FROM ({}) AS source", list.sql);
            let stmt = Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                list.values.map(|v| v.0).unwrap_or_default(),
            );
            let row = self.scope.tx().await?.query_one(stmt).await?;
            Ok::<_, Error>(
                row.map(|r| r.try_get::<i64>("", "total"))
                    .transpose()?
                    .unwrap_or(0),
            )
        };
        count
            .await
            .map_err(|e| crate::error::to_graphql(&e, &self.scope.meta().request_id))
    }
}

/// The async-graphql connection a [`Page`] holds: its SDL (type names, fields and
/// descriptions) is every list's.
type PageConnection<N> = Connection<KeysetCursor, N, ConnectionFields>;

/// A page of GraphQL nodes: async-graphql's `Connection`, read through `Deref`, whose
/// `edges` resolve in place ([`crate::in_place`]). A page of workflows lists a page of
/// runs each, 200 edges on the runs dashboard, and async-graphql's generic path spent a
/// boxed future and a `FuturesUnordered` on every edge's `node` and `cursor`.
pub struct Page<N: OutputType>(PageConnection<N>);

impl<N: OutputType> std::ops::Deref for Page<N> {
    type Target = PageConnection<N>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<N: OutputType> OutputType for Page<N> {
    fn type_name() -> Cow<'static, str> {
        <PageConnection<N> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        let name = <PageConnection<N> as OutputType>::create_type_info(registry);
        describe_connection::<N, Edge<KeysetCursor, N, EmptyFields>>(registry, &name);
        name
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_in_place(self, ctx).await
    }
}

impl<N: OutputType> ContainerType for Page<N> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        if ctx.item.node.name.node != "edges" {
            return self.0.resolve_field(ctx).await;
        }
        // As async-graphql resolves a list: every edge at once, so the nodes' relations
        // batch, each with its index in the error path.
        let ctx_edges = ctx.with_selection_set(&ctx.item.node.selection_set);
        let edges = self.0.edges.iter().enumerate().map(|(index, edge)| {
            let ctx_edge = ctx_edges.with_index(index);
            async move {
                resolve_in_place(&EdgeInPlace(edge), &ctx_edge)
                    .await
                    .map_err(|err| ctx_edge.set_error_path(err))
            }
        });
        Ok(Some(Value::List(try_join_all(edges).await?)))
    }
}

impl<N: OutputType> ObjectType for Page<N> {}

/// Describes a connection type async-graphql generates (`…Connection`), its edge type
/// and `PageInfo` in the registry: async-graphql gives the connection no description,
/// and its `PageInfo` speaks of paging backwards, which no list here does (they page
/// forwards with `first` and `after`). `connection` is the connection's qualified
/// type name as `create_type_info` returned it.
///
/// A type being registered further up the stack is still a placeholder here: what is
/// set on it is lost, and set again when that outer registration finishes and this
/// runs for it.
pub(crate) fn describe_connection<N: OutputType, E: OutputType>(
    registry: &mut Registry,
    connection: &str,
) {
    let connection = connection.trim_end_matches('!');
    let edge = E::type_name();
    let node = N::type_name();
    describe_object(
        registry,
        connection,
        format!(
            "One page of a list of {node} objects. While `pageInfo.hasNextPage`, ask for \
             the next page with `after: pageInfo.endCursor`."
        ),
        &[
            (
                "edges",
                format!("The page's {node} objects with their cursors, in the list's order."),
            ),
            (
                "nodes",
                format!("The page's {node} objects, in the list's order (the edges' nodes)."),
            ),
            (
                "pageInfo",
                "Whether more nodes follow, and the cursors of the page's ends.".into(),
            ),
        ],
    );
    describe_object(
        registry,
        &edge,
        format!("One {node} in a page, with its cursor."),
        &[
            ("node", format!("The {node} at this position.")),
            (
                "cursor",
                "This position in the list, opaque: pass it as `after` for the nodes that \
                 follow."
                    .into(),
            ),
        ],
    );
    describe_object(
        registry,
        "PageInfo",
        "Where a page sits in its list. Lists page forwards: `first` nodes `after` a \
         cursor."
            .into(),
        &[
            ("hasNextPage", "Whether more nodes follow this page.".into()),
            (
                "hasPreviousPage",
                "Whether the page was asked for with `after` (so nodes precede it); false \
                 for a first page."
                    .into(),
            ),
            (
                "startCursor",
                "The cursor of the page's first edge; null when the page is empty.".into(),
            ),
            (
                "endCursor",
                "The cursor of the page's last edge, to pass as `after` for the next page; \
                 null when the page is empty."
                    .into(),
            ),
        ],
    );
}

/// Sets the description of an object type and of some of its fields, where the
/// registry has them.
fn describe_object(
    registry: &mut Registry,
    name: &str,
    description: String,
    field_descriptions: &[(&str, String)],
) {
    if let Some(MetaType::Object {
        description: type_description,
        fields,
        ..
    }) = registry.types.get_mut(name)
    {
        *type_description = Some(description);
        for (field, text) in field_descriptions {
            if let Some(field) = fields.get_mut(*field) {
                field.description = Some(text.clone());
            }
        }
    }
}

/// One edge of a [`Page`], resolved in place: the GraphQL object async-graphql's `Edge`
/// declares.
struct EdgeInPlace<'a, N: OutputType>(&'a Edge<KeysetCursor, N, EmptyFields>);

impl<N: OutputType> OutputType for EdgeInPlace<'_, N> {
    fn type_name() -> Cow<'static, str> {
        <Edge<KeysetCursor, N, EmptyFields> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Edge<KeysetCursor, N, EmptyFields> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_in_place(self, ctx).await
    }
}

impl<N: OutputType> ContainerType for EdgeInPlace<'_, N> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        match ctx.item.node.name.node.as_str() {
            "node" => {
                let ctx_node = ctx.with_selection_set(&ctx.item.node.selection_set);
                self.0.node.resolve(&ctx_node, ctx.item).await.map(Some)
            }
            "cursor" => Ok(Some(Value::String(self.0.cursor.encode_cursor()))),
            _ => self.0.resolve_field(ctx).await,
        }
    }
}

impl<N: OutputType> ObjectType for EdgeInPlace<'_, N> {}

/// One page's rows, before they become GraphQL nodes (a list prefetches their
/// relations first).
pub struct Rows<M> {
    scope: Arc<RequestScope>,
    count: SelectStatement,
    rows: Vec<M>,
    has_previous: bool,
    has_next: bool,
}

impl<M: Keyed> Rows<M> {
    /// The page's rows, in order.
    pub fn models(&self) -> impl Iterator<Item = &M> {
        self.rows.iter()
    }

    /// The page, its rows as `N`.
    pub fn into_page<N: From<M> + OutputType>(self) -> Page<N> {
        let mut page = PageConnection::with_additional_fields(
            self.has_previous,
            self.has_next,
            ConnectionFields {
                scope: self.scope,
                count: self.count,
            },
        );
        page.edges = self
            .rows
            .into_iter()
            .map(|row| Edge::new(row.cursor(), N::from(row)))
            .collect();
        Page(page)
    }
}

/// Runs one page of `select` (already filtered) in the request's transaction, keyset
/// paged on `(created_at, id)`.
pub async fn load_rows<E>(
    scope: &Arc<RequestScope>,
    select: Select<E>,
    created_at: E::Column,
    id: E::Column,
    args: PageArgs,
) -> Result<Rows<E::Model>>
where
    E: EntityTrait,
    E::Model: Keyed + FromQueryResult + Send + Sync,
{
    let count = select.clone().into_query();
    let (order, older) = match args.order {
        CreatedOrderBy::CreatedAtAsc => (Order::Asc, false),
        CreatedOrderBy::CreatedAtDesc => (Order::Desc, true),
    };
    let mut select = select
        .order_by(created_at, order.clone())
        .order_by(id, order);
    if let Some(after) = args.after {
        let beyond = |col: E::Column, v: sea_orm::Value| {
            if older {
                Expr::col(col).lt(v)
            } else {
                Expr::col(col).gt(v)
            }
        };
        select = select.filter(
            Condition::any()
                .add(beyond(created_at, after.created_at.into()))
                .add(
                    Condition::all()
                        .add(Expr::col(created_at).eq(after.created_at))
                        .add(beyond(id, after.id.into())),
                ),
        );
    }
    let mut rows = select.limit(args.first + 1).all(scope.tx().await?).await?;
    let has_next = rows.len() as u64 > args.first;
    rows.truncate(args.first as usize);
    Ok(Rows {
        scope: scope.clone(),
        count,
        rows,
        has_previous: args.after.is_some(),
        has_next,
    })
}

/// A first page (no `after`) from rows already loaded, newest first or as ordered, with
/// one row past the page telling whether there is a next one. `count` is the list's
/// query for `totalCount`.
pub fn first_page<E, N>(
    scope: &Arc<RequestScope>,
    count: Select<E>,
    mut rows: Vec<E::Model>,
    first: u64,
) -> Page<N>
where
    E: EntityTrait,
    E::Model: Keyed,
    N: From<E::Model> + OutputType,
{
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    let mut page = PageConnection::with_additional_fields(
        false,
        has_next,
        ConnectionFields {
            scope: scope.clone(),
            count: count.into_query(),
        },
    );
    page.edges = rows
        .into_iter()
        .map(|row| Edge::new(row.cursor(), N::from(row)))
        .collect();
    Page(page)
}

/// What the current connection field's selection asks of its nodes
/// (`edges { node { … } }`), so a list resolver prefetches only what is selected.
pub fn node_selection<'a>(ctx: &'a async_graphql::Context<'_>) -> async_graphql::Lookahead<'a> {
    ctx.look_ahead().field("edges").field("node")
}

/// Whether the current connection field's nodes select `field` (see [`node_selection`]).
pub fn node_selects(ctx: &async_graphql::Context<'_>, field: &str) -> bool {
    node_selection(ctx).field(field).exists()
}
