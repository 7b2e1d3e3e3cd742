//! Objects listed by the hundred resolve their fields one after another, in place.
//!
//! async-graphql resolves every field of an object as its own boxed future in a
//! `FuturesUnordered`. That suits a root whose fields wait on independent I/O, but it is
//! most of the cost of a page of runs listing 1,000 step runs of two scalar fields each.
//! A type declared with [`in_place_object!`] awaits its selected fields in order inside
//! one future instead: a scalar field is ready at its first poll, and a relation still
//! batches, because a list resolves its rows concurrently and only one row's own fields
//! wait for each other. On the runs dashboard the runs subtree went from about 1.2 ms to
//! 0.45 ms of server CPU per request (bench/README.md, "Runs figures").
//!
//! The answer is the same as async-graphql's own, in the selection's order (async-graphql
//! orders fields as they complete). Fragments on the object's own type (`node(id:) {
//! ... on WorkflowRun { … } }`) resolve in place too; directives, fragments on an
//! abstract type and a response key used twice take async-graphql's path, so its
//! merging rules apply unchanged. Per-field extension hooks would not run here; the schema registers no
//! extension ([`crate::build_schema`]).

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::resolver_utils::{resolve_container, ContainerType};
use async_graphql::{ContextSelectionSet, Positioned, ServerResult, Value};

/// The future of one object's value.
pub type BoxedValue<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = ServerResult<Value>> + Send + 'a>>;

/// [`resolve_in_place`] boxed, once per object rather than once per field: an object can
/// list objects of its own type (a run's retried run), and a future cannot contain
/// itself.
pub fn resolve_boxed<'a, T>(object: T, ctx: &'a ContextSelectionSet<'_>) -> BoxedValue<'a>
where
    T: ContainerType + 'a,
{
    Box::pin(async move { resolve_in_place(&object, ctx).await })
}

/// Resolves `object`'s selection field by field, in order; see the module docs.
pub async fn resolve_in_place<T: ContainerType>(
    object: &T,
    ctx: &ContextSelectionSet<'_>,
) -> ServerResult<Value> {
    let type_name = object.introspection_type_name();
    let mut fields = Vec::with_capacity(ctx.item.node.items.len());
    if !collect_fields(ctx, &ctx.item.node, &type_name, &mut fields, 0) {
        return resolve_container(ctx, object).await;
    }
    // Fields resolve in selection order, so inserting each once keeps that order.
    let mut values = IndexMap::with_capacity(fields.len());
    for field in fields {
        let value = if field.node.name.node == "__typename" {
            Value::String(object.introspection_type_name().into_owned())
        } else {
            match object.resolve_field(&ctx.with_field(field)).await {
                Ok(value) => value.unwrap_or_default(),
                // As async-graphql does: the error is reported and the key left out.
                Err(err) => {
                    ctx.add_error(err);
                    continue;
                }
            }
        };
        values.insert(field.node.response_key().node.clone(), value);
    }
    Ok(if values.is_empty() {
        Value::Null
    } else {
        Value::Object(values)
    })
}

/// Collects the fields `set` selects on an object of type `type_name`, in order:
/// fields, inline fragments on that type (or on none), and fragment spreads on it.
/// False when the selection needs async-graphql's own rules: a directive, a fragment
/// on another (abstract) type, or a response key used twice (whose selections merge).
fn collect_fields<'a>(
    ctx: &'a ContextSelectionSet<'_>,
    set: &'a SelectionSet,
    type_name: &str,
    fields: &mut Vec<&'a Positioned<Field>>,
    depth: usize,
) -> bool {
    if depth > 8 {
        return false;
    }
    for item in &set.items {
        let collected = match &item.node {
            // A repeated response key is found by comparing names: a selection is a
            // handful of fields, and this spares hashing each key more than once.
            Selection::Field(field)
                if field.node.directives.is_empty()
                    && !fields.iter().any(|f: &&Positioned<Field>| {
                        f.node.response_key().node == field.node.response_key().node
                    }) =>
            {
                fields.push(field);
                true
            }
            Selection::InlineFragment(fragment)
                if fragment.node.directives.is_empty()
                    && fragment
                        .node
                        .type_condition
                        .as_ref()
                        .is_none_or(|on| on.node.on.node.as_str() == type_name) =>
            {
                collect_fields(
                    ctx,
                    &fragment.node.selection_set.node,
                    type_name,
                    fields,
                    depth + 1,
                )
            }
            Selection::FragmentSpread(spread) if spread.node.directives.is_empty() => ctx
                .query_env
                .fragments
                .get(&spread.node.fragment_name.node)
                .filter(|fragment| fragment.node.type_condition.node.on.node.as_str() == type_name)
                .is_some_and(|fragment| {
                    collect_fields(
                        ctx,
                        &fragment.node.selection_set.node,
                        type_name,
                        fields,
                        depth + 1,
                    )
                }),
            _ => false,
        };
        if !collected {
            return false;
        }
    }
    true
}

/// Declares `$outer` (a newtype over a model) as the GraphQL object whose fields
/// `$fields` (an `#[Object]` over `&model`) resolves, resolved in place: `$outer` is
/// what resolvers return and what the `Node` interface lists, `$fields` the one place
/// its fields are written.
macro_rules! in_place_object {
    ($outer:ident => $fields:ident) => {
        impl async_graphql::OutputType for $outer {
            fn type_name() -> std::borrow::Cow<'static, str> {
                <$fields<'static> as async_graphql::OutputType>::type_name()
            }

            fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
                <$fields<'static> as async_graphql::OutputType>::create_type_info(registry)
            }

            async fn resolve(
                &self,
                ctx: &async_graphql::ContextSelectionSet<'_>,
                _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
            ) -> async_graphql::ServerResult<async_graphql::Value> {
                $crate::in_place::resolve_boxed($fields(&self.0), ctx).await
            }
        }

        impl async_graphql::resolver_utils::ContainerType for $outer {
            async fn resolve_field(
                &self,
                ctx: &async_graphql::Context<'_>,
            ) -> async_graphql::ServerResult<Option<async_graphql::Value>> {
                $fields(&self.0).resolve_field(ctx).await
            }
        }

        impl async_graphql::ObjectType for $outer {}
    };
}
pub(crate) use in_place_object;
