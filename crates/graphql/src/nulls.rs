//! Field errors null what the GraphQL specification says they null.
//!
//! async-graphql leaves out the key of a field whose resolver failed. The
//! specification wants that field to be `null` when its type is nullable, and when it
//! is not, the nearest nullable field above it (or `data` itself) to be `null`: a
//! client then finds every key it asked for, and never a non-null field holding null.
//! [`propagate`] restores this after execution from each error's path, the document's
//! selections and the schema's field types. It runs only for responses that carry
//! field errors, so successful requests pay nothing for it.
//!
//! One limit: when an item of a list fails, async-graphql has already dropped the whole
//! list, so the list field is what becomes null (or what propagates), not the item.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    BaseType, ExecutableDocument, OperationType, Selection, SelectionSet, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::{Name, PathSegment, Response, Value};

/// Every object and interface field's declared type, by (type name, field name).
pub(crate) struct FieldTypes(HashMap<(String, String), Type>);

impl FieldTypes {
    /// Reads the field types of an SDL document.
    pub(crate) fn from_sdl(sdl: &str) -> Self {
        let mut types = HashMap::new();
        if let Ok(document) = async_graphql::parser::parse_schema(sdl) {
            for definition in document.definitions {
                let TypeSystemDefinition::Type(definition) = definition else {
                    continue;
                };
                let fields = match &definition.node.kind {
                    TypeKind::Object(object) => &object.fields,
                    TypeKind::Interface(interface) => &interface.fields,
                    _ => continue,
                };
                let owner = definition.node.name.node.to_string();
                for field in fields {
                    types.insert(
                        (owner.clone(), field.node.name.node.to_string()),
                        field.node.ty.node.clone(),
                    );
                }
            }
        }
        Self(types)
    }

    fn get(&self, owner: &str, field: &str) -> Option<&Type> {
        self.0.get(&(owner.to_owned(), field.to_owned()))
    }
}

/// The schema's field types, read once from its SDL.
static SCHEMA_TYPES: LazyLock<FieldTypes> =
    LazyLock::new(|| FieldTypes::from_sdl(&crate::export_sdl()));

/// Puts back the nulls async-graphql leaves out for the field errors of `response`,
/// the result of `document`'s operation `operation_name`.
pub(crate) fn propagate(
    response: &mut Response,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    if response.errors.iter().all(|e| e.path.is_empty()) {
        return;
    }
    propagate_with(&SCHEMA_TYPES, response, document, operation_name);
}

fn propagate_with(
    types: &FieldTypes,
    response: &mut Response,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    let Some((_, operation)) = crate::limits::find_operation(document, operation_name) else {
        return;
    };
    let root = match operation.node.ty {
        OperationType::Query => "Query",
        OperationType::Mutation => "Mutation",
        OperationType::Subscription => return,
    };
    let walk = Walk { types, document };
    let paths: Vec<Vec<PathSegment>> = response
        .errors
        .iter()
        .filter(|e| !e.path.is_empty())
        .map(|e| e.path.clone())
        .collect();
    for path in paths {
        let Value::Object(data) = &mut response.data else {
            // Already null: nothing above the error is left to keep.
            return;
        };
        if walk.object_fails(data, root, &[&operation.node.selection_set.node], &path) {
            response.data = Value::Null;
        }
    }
}

struct Walk<'a> {
    types: &'a FieldTypes,
    document: &'a ExecutableDocument,
}

impl<'a> Walk<'a> {
    /// Follows `path` into `object` (of type `owner`, selected by `sets`); true when the
    /// error makes `object` itself null.
    fn object_fails(
        &self,
        object: &mut IndexMap<Name, Value>,
        owner: &str,
        sets: &[&'a SelectionSet],
        path: &[PathSegment],
    ) -> bool {
        let Some(PathSegment::Field(key)) = path.first() else {
            return false;
        };
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for set in sets {
            self.fields_of(set, owner, key, &mut found, &mut seen);
        }
        let Some((first, field_owner)) = found.first() else {
            return false;
        };
        let Some(ty) = self.types.get(field_owner, first.name.node.as_str()) else {
            return false;
        };
        let child_sets: Vec<&SelectionSet> =
            found.iter().map(|(f, _)| &f.selection_set.node).collect();
        match object.get_mut(key.as_str()) {
            // The key async-graphql left out: the error stopped here.
            None => {
                if ty.nullable {
                    object.insert(Name::new(key), Value::Null);
                }
                !ty.nullable
            }
            Some(child) => {
                let fails = self.value_fails(child, ty, &child_sets, &path[1..]);
                if fails && ty.nullable {
                    *child = Value::Null;
                }
                fails && !ty.nullable
            }
        }
    }

    /// Follows `path` into `value` of type `ty`; true when the error makes the value
    /// itself null.
    fn value_fails(
        &self,
        value: &mut Value,
        ty: &Type,
        sets: &[&'a SelectionSet],
        path: &[PathSegment],
    ) -> bool {
        match (&ty.base, value, path.first()) {
            (BaseType::List(inner), Value::List(items), Some(PathSegment::Index(i))) => {
                let Some(item) = items.get_mut(*i) else {
                    return false;
                };
                let fails = self.value_fails(item, inner, sets, &path[1..]);
                if fails && inner.nullable {
                    *item = Value::Null;
                }
                fails && !inner.nullable
            }
            (BaseType::Named(name), Value::Object(object), Some(PathSegment::Field(_))) => {
                self.object_fails(object, name.as_str(), sets, path)
            }
            _ => false,
        }
    }

    /// The fields of `set` (fragments expanded) whose response key is `key`, each with
    /// the type it is selected on.
    fn fields_of(
        &self,
        set: &'a SelectionSet,
        owner: &str,
        key: &str,
        found: &mut Vec<(&'a async_graphql::parser::types::Field, String)>,
        seen: &mut HashSet<&'a str>,
    ) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if field.node.response_key().node.as_str() == key {
                        found.push((&field.node, owner.to_owned()));
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(owner, |c| c.node.on.node.as_str());
                    self.fields_of(&inline.node.selection_set.node, on, key, found, seen);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if !seen.insert(name) {
                        continue;
                    }
                    if let Some(fragment) = self.document.fragments.get(name) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.fields_of(&fragment.node.selection_set.node, on, key, found, seen);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{ServerError, Value};
    use serde_json::json;

    use super::*;

    const SDL: &str = "type Query { viewer: Viewer  node(id: ID!): Node!  items: [Item!] }
        type Viewer { name: String  tenant: Tenant! }
        type Tenant { members: [String!]! }
        interface Node { id: ID! }
        type Run implements Node { id: ID! retryOf: Run  status: String! }
        type Item { id: ID!  label: String! }";

    fn run(query: &str, data: serde_json::Value, path: serde_json::Value) -> serde_json::Value {
        let types = FieldTypes::from_sdl(SDL);
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut error = ServerError::new("failed", None);
        error.path = serde_json::from_value(path).unwrap();
        let mut response = Response::new(Value::from_json(data).unwrap());
        response.errors.push(error);
        propagate_with(&types, &mut response, &document, None);
        response.data.into_json().unwrap()
    }

    #[test]
    fn a_nullable_field_becomes_null() {
        let out = run(
            "{ viewer { name } }",
            json!({ "viewer": {} }),
            json!(["viewer", "name"]),
        );
        assert_eq!(out, json!({ "viewer": { "name": null } }));
    }

    #[test]
    fn a_non_null_field_nulls_its_nearest_nullable_parent() {
        let out = run(
            "{ viewer { name tenant { members } } }",
            json!({ "viewer": { "name": "a" } }),
            json!(["viewer", "tenant", "members"]),
        );
        assert_eq!(out, json!({ "viewer": null }));
    }

    #[test]
    fn a_non_null_root_field_nulls_data() {
        let out = run("{ node(id: \"x\") { id } }", json!({}), json!(["node"]));
        assert_eq!(out, json!(null));
    }

    #[test]
    fn fragments_aliases_and_lists_are_followed() {
        let out = run(
            "{ n: node(id: \"x\") { ... on Run { retryOf { status } } } }",
            json!({ "n": { "retryOf": {} } }),
            json!(["n", "retryOf", "status"]),
        );
        assert_eq!(out, json!({ "n": { "retryOf": null } }));
        let out = run(
            "{ items { id label } }",
            json!({ "items": [{ "id": "1", "label": "a" }, { "id": "2" }] }),
            json!(["items", 1, "label"]),
        );
        assert_eq!(out, json!({ "items": null }));
    }
}
