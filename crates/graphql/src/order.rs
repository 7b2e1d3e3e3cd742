//! A response's fields in the order the query selected them.
//!
//! The specification orders a response's keys as the selection lists them (fragments
//! expanded in place, a key at its first occurrence). async-graphql resolves an
//! object's fields concurrently and writes each where it completes, so a field that
//! waits on a batch lands after the scalars that follow it, and the same request can
//! answer in a different order each time. [`reorder`] restores the query's order after
//! execution. It builds the order of each selection once (lazily, as the response is
//! walked) and moves keys only in an object that is out of order, so a page of a
//! thousand rows costs a comparison of keys per row.
//!
//! One limit: type conditions are not evaluated. A key selected in two fragments on
//! different types of an interface, with other keys between them, takes its first
//! position for every type. The keys an object has are never changed, only moved.

use std::cell::OnceCell;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Response, Value};

/// Fragments nested deeper than this are not followed: validation refuses cycles, and
/// real documents nest a few levels.
const MAX_FRAGMENT_DEPTH: usize = 32;

/// Puts every object of `response`, the result of `document`'s operation
/// `operation_name`, in the order of its selection.
pub(crate) fn reorder_response(
    response: &mut Response,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    if let Some((_, operation)) = crate::limits::find_operation(document, operation_name) {
        reorder(
            &mut response.data,
            document,
            &operation.node.selection_set.node,
        );
    }
}

/// Puts every object of `data`, the result of a selection `root` of `document`, in
/// the selection's order.
pub fn reorder(data: &mut Value, document: &ExecutableDocument, root: &SelectionSet) {
    let plan = Plan::of(document, &[root]);
    plan.apply(document, data);
}

/// The response keys one (merged) selection produces, in order, each with the
/// selections of its fields, whose own plan is built the first time it is needed.
struct Plan<'a> {
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    key: &'a Name,
    sets: Vec<&'a SelectionSet>,
    child: OnceCell<Plan<'a>>,
}

impl<'a> Plan<'a> {
    fn of(document: &'a ExecutableDocument, sets: &[&'a SelectionSet]) -> Self {
        let mut entries: Vec<Entry<'a>> = Vec::new();
        for set in sets {
            collect(document, set, &mut entries, 0);
        }
        Self { entries }
    }

    /// Orders `value` (an object or a list of them) and everything below it.
    fn apply(&self, document: &'a ExecutableDocument, value: &mut Value) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.apply(document, item);
                }
            }
            Value::Object(object) => {
                if !self.is_in_order(object) {
                    self.sort(object);
                }
                for (key, child) in object.iter_mut() {
                    if !matches!(child, Value::Object(_) | Value::List(_)) {
                        continue;
                    }
                    let Some(entry) = self.entries.iter().find(|e| e.key == key) else {
                        continue;
                    };
                    // A leaf (a JSON scalar is an object too) has nothing to order.
                    if entry.sets.iter().all(|s| s.items.is_empty()) {
                        continue;
                    }
                    entry
                        .child
                        .get_or_init(|| Plan::of(document, &entry.sets))
                        .apply(document, child);
                }
            }
            _ => {}
        }
    }

    /// Whether `object`'s keys appear in the plan's order.
    fn is_in_order(&self, object: &IndexMap<Name, Value>) -> bool {
        let mut planned = self.entries.iter();
        object
            .keys()
            .all(|key| planned.by_ref().any(|entry| entry.key == key))
    }

    fn sort(&self, object: &mut IndexMap<Name, Value>) {
        let mut sorted = IndexMap::with_capacity(object.len());
        for entry in &self.entries {
            if let Some((key, value)) = object.shift_remove_entry(entry.key) {
                sorted.insert(key, value);
            }
        }
        // Keys the plan does not know (none are expected) keep their relative order.
        sorted.extend(object.drain(..));
        *object = sorted;
    }
}

/// Appends the fields of `set` to `entries` in the specification's order: fragments
/// expanded where they stand, a repeated key merged into its first entry.
fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    entries: &mut Vec<Entry<'a>>,
    depth: usize,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let child = &field.node.selection_set.node;
                match entries.iter_mut().find(|e| e.key == key) {
                    Some(entry) => entry.sets.push(child),
                    None => entries.push(Entry {
                        key,
                        sets: vec![child],
                        child: OnceCell::new(),
                    }),
                }
            }
            Selection::InlineFragment(fragment) => {
                collect(document, &fragment.node.selection_set.node, entries, depth);
            }
            Selection::FragmentSpread(spread) if depth < MAX_FRAGMENT_DEPTH => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(
                        document,
                        &fragment.node.selection_set.node,
                        entries,
                        depth + 1,
                    );
                }
            }
            Selection::FragmentSpread(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` (JSON text, whose key order is kept) reordered for `query`.
    fn reordered(query: &str, data: &str) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let (_, operation) = document.operations.iter().next().unwrap();
        let mut value: Value = serde_json::from_str(data).unwrap();
        reorder(&mut value, &document, &operation.node.selection_set.node);
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn objects_follow_the_selection_and_fragments_expand_in_place() {
        let query = "{ node { id ... on Workflow { name ...More } kind } }
                     fragment More on Workflow { versions { b a } createdAt }";
        let data = r#"{"node": {
            "kind": 1, "createdAt": 2, "versions": [{"a": 1, "b": 2}, {"b": 3, "a": 4}],
            "name": "n", "id": "x"
        }}"#;
        assert_eq!(
            reordered(query, data),
            r#"{"node":{"id":"x","name":"n","versions":[{"b":2,"a":1},{"b":3,"a":4}],"createdAt":2,"kind":1}}"#
        );
    }

    #[test]
    fn aliases_repeated_keys_and_json_scalars() {
        let query = "{ b: x { id } a: x { id } b: x { name } settings }";
        let data = r#"{
            "settings": {"z": 1, "a": 2},
            "a": {"id": 1},
            "b": {"name": "n", "id": 2}
        }"#;
        // `settings` is a JSON scalar: its own keys are left as they are.
        assert_eq!(
            reordered(query, data),
            r#"{"b":{"id":2,"name":"n"},"a":{"id":1},"settings":{"z":1,"a":2}}"#
        );
    }
}
