//! Limits that keep one request from costing too much, checked by [`execute`] before a
//! document is parsed and right after.
//!
//! - **Nesting** of brackets in the document text (`{`, `[`, `(`), counted by a linear
//!   scan before the parser runs: the parser turns argument values into trees by
//!   recursion, so an input value nested a few thousand levels deep would overflow the
//!   stack and abort the process. No real query comes near the limit.
//! - **Mutation cost** per HTTP request, across aliases and the operations of a batch,
//!   and anonymous mutations per client address (counted in PostgreSQL).
//! - **Depth** of selections, counted without what lies inside `__schema` and `__type`:
//!   the standard introspection query (GraphiQL's, graphql-codegen's) is about 14
//!   levels deep, and its cost is bounded by the recursion depth and the complexity
//!   limit, which still count it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{
    Name, Positioned, Request, Response, ServerError, ServerResult, Value as ConstValue, Variables,
};
use trellis_core::{throttle, Principal, RequestScope};

use crate::context::request_data;
use crate::error::{request_error, to_graphql};
use crate::telemetry;
use crate::trusted::TrustedDocuments;
use crate::ApiSchema;

/// Limits that keep one request from costing too much.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Deepest selection, not counting inside introspection fields.
    pub depth: usize,
    pub complexity: usize,
    /// Deepest nesting of selection sets and fragments, introspection included.
    pub recursive_depth: usize,
    /// Most mutation cost per HTTP request, all operations of a batch together: each
    /// mutation field (each alias) costs 1, or more when it is expensive (see
    /// [`mutation_cost`]).
    pub mutation_cost: u32,
    /// Anonymous mutation fields one client address may send a minute; 0 turns the
    /// throttle off.
    pub anonymous_mutations_per_minute: u32,
    /// Whether introspection (and field suggestions) are on; off in production.
    pub introspection: bool,
    /// The operations clients were built with, and whether only they may run.
    pub trusted_documents: TrustedDocuments,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 12,
            complexity: 5_000,
            recursive_depth: 32,
            mutation_cost: 50,
            anonymous_mutations_per_minute: 60,
            introspection: true,
            trusted_documents: TrustedDocuments::none(),
        }
    }
}

/// The bound on bracket nesting in a document: far above any real query (the
/// introspection query nests about 30), far below what overflows a worker's stack.
pub const MAX_NESTING: usize = 128;

/// The mutation fields an operation would run: distinct response keys (fields of the
/// same key are merged and run once, so only aliases repeat a mutation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutationFields {
    /// How many distinct mutation fields.
    pub count: u32,
    /// What they cost together (see [`Limits::mutation_cost`]).
    pub cost: u32,
}

/// Runs one GraphQL operation of a request in `scope`, with the checks async-graphql
/// does not make (see the module docs), and ends the operation in the scope
/// afterwards (closing the platform-administration path it may have opened). The
/// document is parsed once, here; the schema executes that parse.
///
/// These checks are not a schema extension on purpose: with any extension registered,
/// async-graphql takes its slow path for every field and list item it resolves.
pub async fn execute(
    schema: &ApiSchema,
    limits: &Limits,
    request: Request,
    scope: &Arc<RequestScope>,
) -> Response {
    let started = std::time::Instant::now();
    let mut request = request;
    let operation = match check(&mut request, limits) {
        Ok(operation) => operation,
        Err(error) => {
            let refused = Response::from_errors(vec![error]);
            telemetry::record_operation("refused", None, started.elapsed(), &refused.errors);
            return refused;
        }
    };
    if !telemetry::tracing_enabled() {
        return run(schema, limits, request, scope, operation, started).await;
    }
    // With traces on, the operation is a span (`query Name`, as OpenTelemetry's
    // conventions for GraphQL say) under the request's; its dataloader batches and
    // statements are its children.
    let name = operation.name.as_deref().unwrap_or("anonymous");
    let span = tracing::info_span!(
        target: "trellis::graphql",
        "graphql operation",
        otel.name = %format_args!("{} {name}", operation.kind),
        graphql.operation.type = operation.kind,
        graphql.operation.name = name,
    );
    tracing::Instrument::instrument(
        run(schema, limits, request, scope, operation, started),
        span,
    )
    .await
}

/// Runs an operation `check` admitted; see [`execute`].
async fn run(
    schema: &ApiSchema,
    limits: &Limits,
    request: Request,
    scope: &Arc<RequestScope>,
    operation: Operation,
    started: std::time::Instant,
) -> Response {
    let mut request = request_data(request, scope.clone());
    if let Some(fields) = operation.mutation {
        scope.note_mutation();
        if let Err(error) = charge(scope, fields, limits).await {
            let refused = Response::from_errors(vec![error]);
            telemetry::record_operation("refused", None, started.elapsed(), &refused.errors);
            return refused;
        }
    }
    // The schema consumes the parse `check` made; a copy stays to order the response
    // and put back the nulls of field errors afterwards.
    let document = request.parsed_query().ok().cloned();
    let mut response = schema.execute(request).await;
    if let Some(document) = &document {
        // Nulls first: the keys they put back go at the end until ordered.
        crate::nulls::propagate(&mut response, document, operation.name.as_deref());
        crate::order::reorder_response(&mut response, document, operation.name.as_deref());
    }
    // The platform-administration path is open for one operation only.
    if let Err(err) = scope.end_operation().await {
        scope.mark_failed();
        let error = to_graphql(&err, &scope.meta().request_id);
        response
            .errors
            .push(error.into_server_error(Default::default()));
    }
    telemetry::record_operation(
        operation.kind,
        operation.name.as_deref(),
        started.elapsed(),
        &response.errors,
    );
    response
}

/// What [`check`] found about the operation a request names.
#[derive(Clone, Debug, Default)]
pub struct Operation {
    /// `query`, `mutation` or `subscription`; `unknown` when the name matches none.
    pub kind: &'static str,
    /// The operation's name in the document, if it has one.
    pub name: Option<String>,
    /// Its mutation fields, when it is a mutation.
    pub mutation: Option<MutationFields>,
}

/// Admits a request's document (trusted documents), then checks it against
/// [`MAX_NESTING`], NUL characters and [`Limits::depth`],
/// parsing its document once (the schema reuses the parse). Returns what it found of
/// the operation the request names. Also for subscriptions, which have no request
/// scope to charge.
pub fn check(request: &mut Request, limits: &Limits) -> ServerResult<Operation> {
    limits.trusted_documents.admit(request)?;
    check_nesting(&request.query)?;
    check_no_nul(&request.query, &request.variables)?;
    let operation_name = request.operation_name.clone();
    let document = parse(request)?;
    if selection_depth(document) > limits.depth {
        return Err(bad_input("Query is nested too deep."));
    }
    // A name that matches nothing is reported by execution.
    let Some((name, op)) = find_operation(document, operation_name.as_deref()) else {
        return Ok(Operation {
            kind: "unknown",
            ..Operation::default()
        });
    };
    Ok(Operation {
        kind: match op.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        },
        name: name.map(|n| n.to_string()),
        mutation: (op.node.ty == OperationType::Mutation)
            .then(|| mutation_fields(document, &op.node.selection_set)),
    })
}

/// The most documents [`parse`] keeps parsed; past it the cache starts over.
const MAX_PARSED_DOCUMENTS: usize = 256;
/// The longest document [`parse`] keeps, in bytes: the cache holds at most
/// [`MAX_PARSED_DOCUMENTS`] of these, whatever clients send.
const MAX_PARSED_DOCUMENT_BYTES: usize = 16 * 1024;

/// Query documents parsed before, by their text. A dashboard or an SDK sends the same
/// few documents over and over, and copying a parse costs a few percent of parsing
/// again (about 1.4 against 56 µs for the agents dashboard's document). Documents with
/// a mutation or a subscription are not kept: they are the ones that carry values
/// (a password, a secret) written into their text, which must not outlive the request.
static PARSED: std::sync::LazyLock<std::sync::Mutex<HashMap<String, ExecutableDocument>>> =
    std::sync::LazyLock::new(Default::default);

/// The request's document, parsed: a copy of an earlier parse of the same text when
/// there is one. A document that fails to parse is parsed (and refused) every time.
fn parse(request: &mut Request) -> ServerResult<&ExecutableDocument> {
    let short = request.query.len() <= MAX_PARSED_DOCUMENT_BYTES;
    let parsed = || {
        PARSED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let earlier = short
        .then(|| parsed().get(request.query.as_str()).cloned())
        .flatten();
    if let Some(document) = earlier {
        request.set_parsed_query(document);
        return request.parsed_query();
    }
    let document = request.parsed_query()?;
    let queries_only = document
        .operations
        .iter()
        .all(|(_, op)| op.node.ty == OperationType::Query);
    if short && queries_only {
        let document = document.clone();
        let mut documents = parsed();
        if documents.len() >= MAX_PARSED_DOCUMENTS {
            documents.clear();
        }
        documents.insert(request.query.clone(), document);
    }
    request.parsed_query()
}

/// The operation of `document` a request names: the one called `name`, or without a
/// name the document's only operation.
pub(crate) fn find_operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'a Name>, &'a Positioned<OperationDefinition>)> {
    match name {
        Some(wanted) => document
            .operations
            .iter()
            .find(|(name, _)| name.is_some_and(|n| n.as_str() == wanted)),
        None => {
            let mut all = document.operations.iter();
            all.next().filter(|_| all.next().is_none())
        }
    }
}

/// Charges a mutation operation to the request's budget, and an anonymous one to its
/// client address's throttle.
async fn charge(scope: &RequestScope, fields: MutationFields, limits: &Limits) -> ServerResult<()> {
    let limit = limits.mutation_cost;
    if !scope.charge_mutations(fields.cost, limit) {
        return Err(bad_input(&format!(
            "too many mutations in one request: at most a cost of {limit} per request, \
             where each mutation field costs 1 and signUp and login cost {PASSWORD_COST}"
        )));
    }
    if *scope.principal() != Principal::Anonymous || limits.anonymous_mutations_per_minute == 0 {
        return Ok(());
    }
    let Some(ip) = &scope.meta().ip else {
        return Ok(());
    };
    let key = format!("anonymous:address:{ip}");
    let per_minute = throttle::Limit {
        max_hits: i32::try_from(limits.anonymous_mutations_per_minute).unwrap_or(i32::MAX),
        window_seconds: 60,
    };
    throttle::hit(scope.db(), &key, fields.count, per_minute)
        .await
        .map_err(|err| {
            to_graphql(&err, &scope.meta().request_id).into_server_error(Default::default())
        })
}

/// What a password-hashing mutation costs: argon2 takes about 19 MiB and tens of
/// milliseconds a call.
const PASSWORD_COST: u32 = 10;

/// The cost of one mutation field.
fn mutation_cost(field: &str) -> u32 {
    match field {
        "signUp" | "login" => PASSWORD_COST,
        _ => 1,
    }
}

/// The distinct response keys of a mutation's root selection (fragments expanded, each
/// once) and their cost.
fn mutation_fields(
    document: &ExecutableDocument,
    root: &Positioned<SelectionSet>,
) -> MutationFields {
    fn collect<'a>(
        document: &'a ExecutableDocument,
        set: &'a Positioned<SelectionSet>,
        keys: &mut HashMap<&'a str, &'a str>,
        seen: &mut HashSet<&'a str>,
    ) {
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let key = field.node.alias.as_ref().map_or(name, |a| a.node.as_str());
                    keys.entry(key).or_insert(name);
                }
                Selection::InlineFragment(inline) => {
                    collect(document, &inline.node.selection_set, keys, seen);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if seen.insert(name) {
                        if let Some(fragment) = document.fragments.get(name) {
                            collect(document, &fragment.node.selection_set, keys, seen);
                        }
                    }
                }
            }
        }
    }
    let (mut keys, mut seen) = (HashMap::new(), HashSet::new());
    collect(document, root, &mut keys, &mut seen);
    MutationFields {
        count: u32::try_from(keys.len()).unwrap_or(u32::MAX),
        cost: keys.values().map(|field| mutation_cost(field)).sum(),
    }
}

/// Refuses a document whose brackets nest deeper than [`MAX_NESTING`], before anything
/// parses it. Strings, block strings and comments are skipped.
pub fn check_nesting(query: &str) -> ServerResult<()> {
    if bracket_nesting(query) > MAX_NESTING {
        return Err(bad_input(&format!(
            "the document nests more than {MAX_NESTING} levels of brackets"
        )));
    }
    Ok(())
}

/// Refuses a NUL character in a variable or a string literal of the document:
/// PostgreSQL's `text` and `jsonb` cannot hold one, so it would fail a statement as an
/// internal error instead of being bad input. The error names the variable's path.
fn check_no_nul(query: &str, variables: &Variables) -> ServerResult<()> {
    let escaped = query.contains('\0')
        || query.match_indices("\\u").any(|(at, _)| {
            let rest = &query[at + 2..];
            rest.starts_with("0000")
                || rest
                    .strip_prefix('{')
                    .and_then(|r| r.split_once('}'))
                    .is_some_and(|(digits, _)| {
                        !digits.is_empty() && digits.bytes().all(|b| b == b'0')
                    })
        });
    if escaped {
        return Err(bad_input("a string in the document holds a NUL character"));
    }
    for (name, value) in variables.iter() {
        let mut path = name.to_string();
        if value_has_nul(value, &mut path) {
            let mut error = bad_input(&format!("variable {path} holds a NUL character"));
            if let Some(extensions) = error.extensions.as_mut() {
                extensions.set("field", path);
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Whether `value` holds a NUL in a string or key; `path` then names where.
fn value_has_nul(value: &ConstValue, path: &mut String) -> bool {
    match value {
        ConstValue::String(s) => s.contains('\0'),
        ConstValue::List(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!(".{i}"));
            let found = value_has_nul(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        ConstValue::Object(map) => map.iter().any(|(key, item)| {
            let len = path.len();
            path.push('.');
            path.push_str(key);
            let found = key.contains('\0') || value_has_nul(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

fn bad_input(message: &str) -> ServerError {
    request_error(message, "BAD_USER_INPUT")
}

/// The deepest nesting of `{`, `[` and `(` in a GraphQL document, in one pass.
fn bracket_nesting(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut i, mut depth, mut deepest) = (0, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// The depth of the deepest selection of any operation, counting an introspection
/// field (`__schema`, `__type`) as one level whatever it selects.
fn selection_depth(document: &ExecutableDocument) -> usize {
    let mut fragments = HashMap::new();
    document
        .operations
        .iter()
        .map(|(_, op)| set_depth(document, &op.node.selection_set, &mut fragments))
        .max()
        .unwrap_or(0)
}

/// `fragments` memoises each fragment's depth (`None` while it is being measured, so a
/// cycle, which validation refuses later, ends the walk instead of looping).
fn set_depth(
    document: &ExecutableDocument,
    set: &Positioned<SelectionSet>,
    fragments: &mut HashMap<Name, Option<usize>>,
) -> usize {
    set.node
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                let name = field.node.name.node.as_str();
                if name == "__schema" || name == "__type" {
                    1
                } else {
                    1 + set_depth(document, &field.node.selection_set, fragments)
                }
            }
            Selection::InlineFragment(inline) => {
                set_depth(document, &inline.node.selection_set, fragments)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(known) = fragments.get(name) {
                    return known.unwrap_or(0);
                }
                let Some(fragment) = document.fragments.get(name) else {
                    return 0;
                };
                fragments.insert(name.clone(), None);
                let depth = set_depth(document, &fragment.node.selection_set, fragments);
                fragments.insert(name.clone(), Some(depth));
                depth
            }
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(query: &str) -> MutationFields {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let (_, op) = document.operations.iter().next().unwrap();
        mutation_fields(&document, &op.node.selection_set)
    }

    #[test]
    fn mutation_fields_count_aliases_once_per_key() {
        assert_eq!(
            fields_of("mutation { a { x } b { x } }"),
            MutationFields { count: 2, cost: 2 }
        );
        // The same key twice runs once.
        assert_eq!(
            fields_of("mutation { a { x } a { x } }"),
            MutationFields { count: 1, cost: 1 }
        );
        assert_eq!(
            fields_of("mutation { one: login { x } two: login { x } signUp { x } }"),
            MutationFields { count: 3, cost: 30 }
        );
        assert_eq!(
            fields_of("mutation { ...F ...F ... on Mutation { c: a { x } } } fragment F on Mutation { a { x } b: a { x } }"),
            MutationFields { count: 3, cost: 3 }
        );
    }

    #[test]
    fn a_query_parsed_before_is_the_same_parse_and_other_documents_are_not_kept() {
        let text = "query Cached { a { b } } query Other { c }";
        let first = parse(&mut Request::new(text)).unwrap().clone();
        let mut again = Request::new(text);
        assert_eq!(
            format!("{:?}", parse(&mut again).unwrap()),
            format!("{first:?}")
        );
        assert!(PARSED.lock().unwrap().contains_key(text));
        let bad = "query { a { ";
        for _ in 0..2 {
            assert!(parse(&mut Request::new(bad)).is_err());
        }
        assert!(!PARSED.lock().unwrap().contains_key(bad));
        // A mutation's text may carry a secret: parsed, not kept.
        let mutation = "query Q { a } mutation M { b(password: \"hunter2\") }";
        assert!(parse(&mut Request::new(mutation)).is_ok());
        assert!(!PARSED.lock().unwrap().contains_key(mutation));
        // Too long to keep: parsed, not kept.
        let long = format!("{{ a {} }}", " ".repeat(MAX_PARSED_DOCUMENT_BYTES));
        assert!(parse(&mut Request::new(long.as_str())).is_ok());
        assert!(!PARSED.lock().unwrap().contains_key(long.as_str()));
    }

    #[test]
    fn nul_characters_are_found_in_literals_and_variables() {
        let none = Variables::default();
        assert!(check_no_nul("{ a(x: \"fine\") }", &none).is_ok());
        assert!(check_no_nul("{ a(x: \"\\u0000\") }", &none).is_err());
        assert!(check_no_nul("{ a(x: \"\\u{00}\") }", &none).is_err());
        assert!(check_no_nul("{ a(x: \"\\u0041\") }", &none).is_ok());
        let vars = Variables::from_json(serde_json::json!({"input": {"tags": ["ok", "b\u{0}d"]}}));
        let err = check_no_nul("{ a }", &vars).unwrap_err();
        let field = err.extensions.unwrap().get("field").cloned();
        assert_eq!(field, Some(ConstValue::String("input.tags.1".into())));
    }

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        assert_eq!(bracket_nesting("{ a(x: [1, {b: 2}]) }"), 4);
        assert_eq!(bracket_nesting(r#"{ a(x: "[[[[{{{{") }"#), 2);
        assert_eq!(bracket_nesting("{ a # [[[[[[\n }"), 1);
        assert_eq!(bracket_nesting(r#"{ a(x: """ [[[[ \""" [[[ """) }"#), 2);
        assert_eq!(bracket_nesting(r#"{ a(x: "\"[[[[") }"#), 2);
        assert_eq!(bracket_nesting(&"[".repeat(100_000)), 100_000);
        assert_eq!(bracket_nesting("\"unterminated [[["), 0);
    }

    fn depth_of(query: &str) -> usize {
        selection_depth(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn depth_skips_inside_introspection_and_follows_fragments_once() {
        assert_eq!(depth_of("{ a { b { c } } }"), 3);
        assert_eq!(
            depth_of("{ __schema { types { fields { type { ofType { name } } } } } }"),
            1
        );
        assert_eq!(depth_of("{ a { ...F } } fragment F on T { b { c } }"), 3);
        assert_eq!(depth_of("{ a { ... on T { b } } }"), 2);
        // A cycle (refused by validation later) does not loop here.
        assert_eq!(
            depth_of("{ a { ...F } } fragment F on T { b { ...G } } fragment G on T { ...F }"),
            2
        );
    }
}
