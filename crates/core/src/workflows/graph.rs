//! Checks a workflow version's graph before it is saved and again before it is
//! published. Pure and linear in steps plus transitions: keys are looked up in hash
//! maps, the entry and cycle checks are one topological sort, and each action's input
//! schema is compiled once however many steps use it.
//!
//! Every problem names its field by key (`steps.fetch.config/url`,
//! `transitions.fetch->notify.condition/all/0/operator`), so an editor can point at it.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Value};
use trellis_entity::{ActionKind, StepType};
use uuid::Uuid;

use crate::engine::condition::{compile_pattern, Operator, FIELD_PATH, MAX_PATTERN_CHARS};
use crate::engine::people::parse_person;
use crate::engine::steps::notification::channel_of;
use crate::engine::steps::{http, ENGINE_KEYS};
use crate::error::FieldProblem;
use crate::integrations::manifest::CompiledSchema;
use crate::{Error, Result};

/// The most steps one version may hold.
pub const MAX_STEPS: usize = 2_000;
/// The most transitions one version may hold.
pub const MAX_TRANSITIONS: usize = 8_000;
/// The most problems reported for one graph; past that the list is cut.
pub const MAX_PROBLEMS: usize = 100;
/// How deeply conditions may nest (`all`, `any`, `not`).
pub const MAX_CONDITION_DEPTH: usize = 16;
/// The longest step description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;

/// The order in which a graph's steps are stored: their input positions, sorted by
/// the `order` each asks for (its input position when it asks for none), ties kept
/// in input order. A step's stored `sort_order` is its place in this list, so stored
/// positions are always 0, 1, 2, … whatever numbers the editor sent (gaps close,
/// duplicates keep their input order).
pub fn save_order(steps: &[StepSpec]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| {
        let wanted = steps[i].order.map_or(i as i64, i64::from);
        (wanted, i)
    });
    order
}

/// A step as an editor sends it.
#[derive(Clone, Debug)]
pub struct StepSpec {
    pub key: String,
    pub name: String,
    pub step_type: StepType,
    pub position: Value,
    pub config: Value,
    pub action_id: Option<Uuid>,
    pub connection_id: Option<Uuid>,
    pub is_required: bool,
    /// What the step is for, in words (at most [`MAX_DESCRIPTION_CHARS`]).
    pub description: String,
    /// Where it goes among the version's steps (0 or more); its place in the input
    /// when `None`. See [`save_order`].
    pub order: Option<i32>,
}

/// A transition as an editor sends it: endpoints by step key.
#[derive(Clone, Debug)]
pub struct TransitionSpec {
    /// Defaults to `from->to`.
    pub key: Option<String>,
    pub from: String,
    pub to: String,
    pub condition: Option<Value>,
    pub is_default: bool,
}

impl TransitionSpec {
    /// The key given, or `from->to`.
    pub fn key(&self) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("{}->{}", self.from, self.to))
    }
}

/// An action a step binds, as the database describes it.
pub struct BoundAction {
    pub app_id: Uuid,
    pub kind: ActionKind,
    pub input_schema: Value,
}

/// The actions and connections the graph's steps bind, looked up by the caller in the
/// request's transaction (so only the tenant's own and public ones are there).
#[derive(Default)]
pub struct Bindings {
    pub actions: HashMap<Uuid, BoundAction>,
    /// Connection id to the id of its app.
    pub connections: HashMap<Uuid, Uuid>,
    /// Connection id to its app's key (`email`, `http`, …).
    pub connection_apps: HashMap<Uuid, String>,
}

/// A transition whose endpoints are resolved to step positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedTransition {
    /// Its position in the input.
    pub spec: usize,
    pub key: String,
    pub from: usize,
    pub to: usize,
}

/// Collects problems, keeping at most [`MAX_PROBLEMS`].
#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(FieldProblem::new(field, message));
        }
    }

    fn add_error(&mut self, err: Error) -> Result<()> {
        match err {
            Error::BadInput { field, message } => self.add(field, message),
            Error::Invalid(problems) => {
                for p in problems {
                    self.add(p.field, p.message);
                }
            }
            other => return Err(other),
        }
        Ok(())
    }
}

static STEP_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$").expect("step key pattern"));
static HTTP_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^https?://").expect("http url pattern"));
static TRANSITION_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_>.-]{0,160}$").expect("transition key pattern")
});

/// The JSON Schema a step's config must satisfy, by type. Action steps are checked
/// against their action's input schema instead.
fn step_config_schema(step_type: StepType) -> Value {
    match step_type {
        StepType::Action | StepType::Condition => json!({ "type": "object" }),
        // Each approver is checked by `check_approvers`.
        StepType::Approval => json!({
            "type": "object",
            "properties": {
                "approvers": { "type": "array", "maxItems": 50, "items": { "type": "string" } },
                "required": { "type": "integer", "minimum": 1, "maximum": 50 },
                "message": { "type": "string", "maxLength": 10000 },
                "timeoutHours": { "type": "number", "exclusiveMinimum": 0, "maximum": 8760 },
                "onTimeout": { "enum": ["FAIL", "APPROVE", "REJECT"] },
                "onReject": { "enum": ["FAIL", "CONTINUE"] },
                "allowSelfApproval": { "type": "boolean" },
                "simulatedDecision": { "enum": ["APPROVE", "REJECT"] }
            }
        }),
        // Today's shape, or the seeds' (`notificationType`, `recipients`, `template`).
        StepType::Notification => json!({
            "type": "object",
            "anyOf": [
                { "required": ["channel", "message"] },
                { "required": ["notificationType", "template"] }
            ],
            "properties": {
                "channel": { "enum": ["email", "slack", "webhook", "in_app"] },
                "notificationType": { "enum": ["email", "slack", "webhook", "in_app"] },
                "to": { "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" }, "maxItems": 100 }] },
                "recipients": { "type": "array", "items": { "type": "string" }, "maxItems": 100 },
                "title": { "type": "string", "maxLength": 500 },
                "subject": { "type": "string", "maxLength": 500 },
                "message": { "type": "string", "minLength": 1, "maxLength": 10000 },
                "template": { "type": "string", "minLength": 1, "maxLength": 10000 }
            }
        }),
        StepType::Delay => json!({
            "type": "object",
            "required": ["seconds"],
            "properties": { "seconds": { "type": "integer", "minimum": 1, "maximum": 31_536_000 } }
        }),
        // An absolute http(s) URL, or with a connection a path under its baseUrl
        // (`check_http_url`).
        StepType::Http => json!({
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": { "type": "string", "minLength": 1, "maxLength": 2048 },
                "method": { "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] },
                "query": { "type": "object", "maxProperties": 100 },
                "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                "bodyType": { "enum": ["json", "form", "text"] },
                "responseType": { "enum": ["auto", "json", "text"] },
                "timeoutMs": { "type": "integer", "minimum": 1, "maximum": 300_000 },
                "failOnStatus": { "type": "boolean" }
            }
        }),
        StepType::Agent => json!({
            "type": "object",
            "required": ["agent"],
            "properties": {
                "agent": { "type": "string", "minLength": 1, "maxLength": 128 },
                "prompt": { "type": "string", "maxLength": 100_000 }
            }
        }),
        StepType::Code => json!({
            "type": "object",
            "required": ["language", "source"],
            "properties": {
                "language": { "enum": ["javascript", "python"] },
                "source": { "type": "string", "minLength": 1, "maxLength": 100_000 }
            }
        }),
        StepType::Transform => json!({
            "type": "object",
            "required": ["mapping"],
            "properties": { "mapping": { "type": "object" } }
        }),
    }
}

/// Each step type's compiled config schema, built once per process.
static STEP_SCHEMAS: LazyLock<HashMap<StepType, CompiledSchema>> = LazyLock::new(|| {
    use sea_orm::Iterable;
    StepType::iter()
        .map(|t| {
            let schema = CompiledSchema::new(&step_config_schema(t))
                .unwrap_or_else(|e| panic!("built-in schema of {t:?} steps: {e}"));
            (t, schema)
        })
        .collect()
});

/// Checks a whole graph. `publishing` adds the rules only a publish needs (at least one
/// step). Returns the transitions resolved to step positions, or every problem found.
pub fn check_graph(
    steps: &[StepSpec],
    transitions: &[TransitionSpec],
    bindings: &Bindings,
    publishing: bool,
) -> Result<Vec<CheckedTransition>> {
    let mut problems = Problems::default();
    if steps.len() > MAX_STEPS {
        return Err(Error::bad_input(
            "steps",
            format!("a version holds at most {MAX_STEPS} steps"),
        ));
    }
    if transitions.len() > MAX_TRANSITIONS {
        return Err(Error::bad_input(
            "transitions",
            format!("a version holds at most {MAX_TRANSITIONS} transitions"),
        ));
    }
    if publishing && steps.is_empty() {
        problems.add("steps", "a version needs at least one step to be published");
    }

    let mut index: HashMap<&str, usize> = HashMap::with_capacity(steps.len());
    let mut compiled: HashMap<Uuid, CompiledSchema> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let at = if STEP_KEY.is_match(&step.key) {
            format!("steps.{}", step.key)
        } else {
            problems.add(
                format!("steps[{i}].key"),
                "a step key is 1 to 64 letters, digits, '_' or '-', starting with a letter",
            );
            format!("steps[{i}]")
        };
        if index.insert(step.key.as_str(), i).is_some() {
            problems.add(format!("{at}.key"), "another step has this key");
        }
        let name_len = step.name.trim().chars().count();
        if !(1..=200).contains(&name_len) {
            problems.add(format!("{at}.name"), "name must be 1 to 200 characters");
        }
        if !step.position.is_object() {
            problems.add(format!("{at}.position"), "position must be an object");
        }
        if step.description.chars().count() > MAX_DESCRIPTION_CHARS {
            problems.add(
                format!("{at}.description"),
                format!("description is at most {MAX_DESCRIPTION_CHARS} characters"),
            );
        }
        if step.order.is_some_and(|o| o < 0) {
            problems.add(format!("{at}.order"), "order is 0 or more");
        }
        check_step_binding(step, &at, bindings, &mut compiled, &mut problems)?;
    }

    let mut keys: HashSet<String> = HashSet::with_capacity(transitions.len());
    let mut has_default: HashSet<usize> = HashSet::new();
    let mut checked = Vec::with_capacity(transitions.len());
    for (i, transition) in transitions.iter().enumerate() {
        let key = transition.key();
        let at = if TRANSITION_KEY.is_match(&key) {
            format!("transitions.{key}")
        } else {
            problems.add(
                format!("transitions[{i}].key"),
                "a transition key is 1 to 161 letters, digits, '_', '-', '.' or '>'",
            );
            format!("transitions[{i}]")
        };
        if !keys.insert(key.clone()) {
            problems.add(format!("{at}.key"), "another transition has this key");
        }
        let from = index.get(transition.from.as_str()).copied();
        let to = index.get(transition.to.as_str()).copied();
        if from.is_none() {
            problems.add(
                format!("{at}.from"),
                format!("no step {:?} in this version", transition.from),
            );
        }
        if to.is_none() {
            problems.add(
                format!("{at}.to"),
                format!("no step {:?} in this version", transition.to),
            );
        }
        if let Some(condition) = &transition.condition {
            if transition.is_default {
                problems.add(
                    format!("{at}.condition"),
                    "a default transition is taken when no other is, so it has no condition",
                );
            }
            if let Err((path, message)) = check_condition(condition, 0) {
                problems.add(format!("{at}.condition{path}"), message);
            }
        }
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if from == to {
            problems.add(format!("{at}.to"), "a step cannot lead to itself");
            continue;
        }
        if transition.is_default && !has_default.insert(from) {
            problems.add(
                format!("{at}.isDefault"),
                format!(
                    "step {:?} already has a default transition",
                    transition.from
                ),
            );
        }
        checked.push(CheckedTransition {
            spec: i,
            key,
            from,
            to,
        });
    }

    if !steps.is_empty() {
        check_shape(steps, &checked, &mut problems);
    }
    if problems.0.is_empty() {
        Ok(checked)
    } else {
        Err(Error::Invalid(problems.0))
    }
}

/// The action, connection and config rules of one step.
fn check_step_binding(
    step: &StepSpec,
    at: &str,
    bindings: &Bindings,
    compiled: &mut HashMap<Uuid, CompiledSchema>,
    problems: &mut Problems,
) -> Result<()> {
    if !step.config.is_object() {
        problems.add(format!("{at}.config"), "config must be an object");
        return Ok(());
    }
    if step.step_type != StepType::Action {
        if step.action_id.is_some() {
            problems.add(format!("{at}.actionId"), "only action steps bind an action");
        }
        check_step_connection(step, at, bindings, problems);
        if let Err(err) = STEP_SCHEMAS[&step.step_type].check(&format!("{at}.config"), &step.config)
        {
            problems.add_error(err)?;
        }
        match step.step_type {
            StepType::Approval => check_people(&step.config, "approvers", at, problems),
            StepType::Http => check_http_url(step, at, problems),
            StepType::Notification if channel_of(&step.config) == Some("in_app") => {
                check_people(&step.config, "to", at, problems);
                check_people(&step.config, "recipients", at, problems);
            }
            _ => {}
        }
        return Ok(());
    }
    let Some(action_id) = step.action_id else {
        problems.add(format!("{at}.actionId"), "an action step needs an action");
        return Ok(());
    };
    let Some(action) = bindings.actions.get(&action_id) else {
        problems.add(format!("{at}.actionId"), "no such action");
        return Ok(());
    };
    if action.kind != ActionKind::Action {
        problems.add(
            format!("{at}.actionId"),
            "this is a trigger, which starts runs; a step needs an action",
        );
        return Ok(());
    }
    if let Some(connection_id) = step.connection_id {
        match bindings.connections.get(&connection_id) {
            None => problems.add(format!("{at}.connectionId"), "no such connection"),
            Some(app_id) if *app_id != action.app_id => problems.add(
                format!("{at}.connectionId"),
                "this connection is for another app than the step's action",
            ),
            Some(_) => {}
        }
    }
    let schema = match compiled.entry(action_id) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.insert(CompiledSchema::new(&action.input_schema)?)
        }
    };
    // The engine's own keys (retries, a simulation's sample, …) are not the action's.
    let mut config = step.config.clone();
    if let Value::Object(keys) = &mut config {
        for key in ENGINE_KEYS {
            keys.remove(key);
        }
    }
    if let Err(err) = schema.check(&format!("{at}.config"), &config) {
        problems.add_error(err)?;
    }
    Ok(())
}

/// An HTTP step's `url` is an absolute http(s) URL, unless the step has a connection,
/// whose `baseUrl` a path is appended to.
fn check_http_url(step: &StepSpec, at: &str, problems: &mut Problems) {
    let Some(url) = step.config.get("url").and_then(Value::as_str) else {
        return;
    };
    if step.connection_id.is_none() && !HTTP_URL.is_match(url) {
        problems.add(
            format!("{at}.config/url"),
            "an http(s) URL; a path (appended to its baseUrl) needs a connection of the http app",
        );
    }
}

/// Which app's connection a step of another type than ACTION uses, and whether it
/// needs one: a notification by email goes through an `email` (SMTP) connection, one
/// to Slack or a webhook through an `http` connection; an HTTP step may call through
/// an `http` connection; nothing else uses one.
fn connection_app_of(step: &StepSpec) -> Option<(&'static str, Need)> {
    match step.step_type {
        StepType::Http => Some((http::APP, Need::Optional)),
        StepType::Notification => match channel_of(&step.config)? {
            "email" => Some(("email", Need::Required)),
            "slack" | "webhook" => Some(("http", Need::Required)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a step must have its connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// The connection rules of a step of another type than ACTION.
fn check_step_connection(step: &StepSpec, at: &str, bindings: &Bindings, problems: &mut Problems) {
    let field = format!("{at}.connectionId");
    let what = if step.step_type == StepType::Http {
        "an HTTP step calls out"
    } else {
        "this notification is sent"
    };
    match (connection_app_of(step), step.connection_id) {
        (None, None) | (Some((_, Need::Optional)), None) => {}
        (None, Some(_)) => problems.add(
            field,
            "only action steps, HTTP steps and email, Slack or webhook notifications use a connection",
        ),
        (Some((app, Need::Required)), None) => problems.add(
            field,
            format!("{what} through a connection of the {app} app"),
        ),
        (Some((app, _)), Some(id)) => match bindings.connection_apps.get(&id) {
            None => problems.add(field, "no such connection"),
            Some(key) if key != app => problems.add(
                field,
                format!("{what} through a connection of the {app} app"),
            ),
            Some(_) => {}
        },
    }
}

/// Every entry of a list of people (`approvers` of an approval step, recipients of an
/// in-app notification) names someone: a role, a user id, an email address, or a
/// template that renders one when the step runs.
fn check_people(config: &Value, key: &str, at: &str, problems: &mut Problems) {
    let entries: Vec<&Value> = match config.get(key) {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::String(_)) => vec![one],
        _ => return,
    };
    for (i, entry) in entries.into_iter().enumerate() {
        let Some(entry) = entry.as_str() else {
            continue;
        };
        if !entry.contains("{{") && parse_person(entry).is_none() {
            let field = match config.get(key) {
                Some(Value::Array(_)) => format!("{at}.config/{key}/{i}"),
                _ => format!("{at}.config/{key}"),
            };
            problems.add(
                field,
                "a person is a role (ADMIN), a user id (usr_…) or an email address",
            );
        }
    }
}

/// Exactly one entry step (no incoming transition) and no cycles, by one topological
/// sort. With no cycle and one entry, every step is reachable from the entry.
fn check_shape(steps: &[StepSpec], transitions: &[CheckedTransition], problems: &mut Problems) {
    let n = steps.len();
    let mut indegree = vec![0usize; n];
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); n];
    for t in transitions {
        indegree[t.to] += 1;
        outgoing[t.from].push(t.to);
    }
    let entries: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    if entries.len() > 1 {
        let names: Vec<&str> = entries
            .iter()
            .take(5)
            .map(|&i| steps[i].key.as_str())
            .collect();
        problems.add(
            "steps",
            format!(
                "a version has exactly one entry step (one without incoming transitions); {} have none: {}{}",
                entries.len(),
                names.join(", "),
                if entries.len() > 5 { ", …" } else { "" }
            ),
        );
    }
    let mut remaining = indegree.clone();
    let mut queue = entries;
    let mut seen = 0;
    while let Some(i) = queue.pop() {
        seen += 1;
        for &next in &outgoing[i] {
            remaining[next] -= 1;
            if remaining[next] == 0 {
                queue.push(next);
            }
        }
    }
    if seen < n {
        let cycle = find_cycle(n, transitions, &remaining);
        let first = steps[cycle[0]].key.as_str();
        let path: Vec<&str> = cycle.iter().map(|&i| steps[i].key.as_str()).collect();
        problems.add(
            format!("steps.{first}"),
            format!(
                "the transitions form a cycle: {} -> {first}",
                path.join(" -> ")
            ),
        );
    }
}

/// One cycle among the steps a topological sort could not order (`remaining` > 0).
/// Each such step has a predecessor that is also left, so walking predecessors must
/// come back to a step already walked: that step is on a cycle.
fn find_cycle(n: usize, transitions: &[CheckedTransition], remaining: &[usize]) -> Vec<usize> {
    let mut predecessor = vec![usize::MAX; n];
    for t in transitions {
        if remaining[t.from] > 0 && remaining[t.to] > 0 {
            predecessor[t.to] = t.from;
        }
    }
    let start = (0..n).find(|&i| remaining[i] > 0).unwrap_or(0);
    let mut visited = vec![false; n];
    let mut at = start;
    while !visited[at] && predecessor[at] != usize::MAX {
        visited[at] = true;
        at = predecessor[at];
    }
    // `at` is on the cycle; walk it once, then put it in edge order.
    let mut cycle = vec![at];
    let mut next = predecessor[at];
    while next != at && next != usize::MAX && cycle.len() <= n {
        cycle.push(next);
        next = predecessor[next];
    }
    cycle.reverse();
    // Start at the first step of the input on the cycle, so the report is stable.
    if let Some(first) = (0..cycle.len()).min_by_key(|&i| cycle[i]) {
        cycle.rotate_left(first);
    }
    cycle
}

/// Checks a condition: `{field, operator, value}`, or `{all: [...]}`, `{any: [...]}`,
/// `{not: {...}}`. On failure returns the JSON pointer inside it and what is wrong.
pub fn check_condition(condition: &Value, depth: usize) -> Result<(), (String, String)> {
    let fail = |path: &str, message: &str| Err((path.to_owned(), message.to_owned()));
    if depth > MAX_CONDITION_DEPTH {
        return fail(
            "",
            &format!("conditions nest at most {MAX_CONDITION_DEPTH} deep"),
        );
    }
    let Some(object) = condition.as_object() else {
        return fail("", "a condition is an object");
    };
    let combinators = ["all", "any", "not"];
    let combinator = combinators.iter().find(|c| object.contains_key(**c));
    if let Some(&name) = combinator {
        if object.len() != 1 {
            return fail("", &format!("a {name:?} condition has no other keys"));
        }
        let inner = &object[name];
        if name == "not" {
            return check_condition(inner, depth + 1).map_err(|(p, m)| (format!("/not{p}"), m));
        }
        let Some(items) = inner.as_array().filter(|items| !items.is_empty()) else {
            return fail(&format!("/{name}"), "a non-empty list of conditions");
        };
        for (i, item) in items.iter().enumerate() {
            check_condition(item, depth + 1).map_err(|(p, m)| (format!("/{name}/{i}{p}"), m))?;
        }
        return Ok(());
    }
    for key in object.keys() {
        if !matches!(key.as_str(), "field" | "operator" | "value") {
            return fail(
                &format!("/{key}"),
                "a condition has field, operator and value, or is all, any or not",
            );
        }
    }
    match object.get("field").and_then(Value::as_str) {
        Some(field) if field.len() <= 256 && FIELD_PATH.is_match(field) => {}
        _ => {
            return fail(
                "/field",
                "a field path such as input.order.total or items[0].sku",
            )
        }
    }
    let Some(operator) = object.get("operator").and_then(Value::as_str) else {
        return fail("/operator", "an operator is required");
    };
    let Some(operator) = Operator::parse(operator) else {
        return fail(
            "/operator",
            &format!(
                "the operator is one of {} (or a spelling such as equals or greater_than)",
                Operator::NAMES.join(", ")
            ),
        );
    };
    let value = object.get("value");
    let ok = match (operator, value) {
        (Operator::Exists, None | Some(Value::Bool(_))) => Ok(()),
        (Operator::Exists, Some(_)) => Err("exists takes no value, or true or false"),
        (_, None) => Err("this operator needs a value"),
        (Operator::In, Some(Value::Array(_))) => Ok(()),
        (Operator::In, Some(_)) => Err("in takes a list of values"),
        (
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte,
            Some(Value::Number(_) | Value::String(_)),
        ) => Ok(()),
        (Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte, Some(_)) => {
            Err("a comparison takes a number or a string")
        }
        (Operator::Contains, Some(Value::Object(_) | Value::Array(_))) => {
            Err("contains takes a string, number or boolean")
        }
        (Operator::Matches, Some(Value::String(pattern))) => {
            if pattern.len() > MAX_PATTERN_CHARS {
                Err("a pattern is at most 1000 characters")
            } else if compile_pattern(pattern).is_none() {
                Err("not a valid regular expression")
            } else {
                Ok(())
            }
        }
        (Operator::Matches, Some(_)) => Err("matches takes a regular expression string"),
        _ => Ok(()),
    };
    ok.or_else(|message| fail("/value", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, step_type: StepType, config: Value) -> StepSpec {
        StepSpec {
            key: key.into(),
            name: key.into(),
            step_type,
            position: json!({}),
            config,
            action_id: None,
            connection_id: None,
            is_required: true,
            description: String::new(),
            order: None,
        }
    }

    fn delay(key: &str) -> StepSpec {
        step(key, StepType::Delay, json!({ "seconds": 5 }))
    }

    #[test]
    fn steps_are_stored_by_their_order_densely_and_stably() {
        let with = |key: &str, order: Option<i32>| StepSpec {
            order,
            ..delay(key)
        };
        // Asked: 50, 0, none (its index, 2), 2 (a tie with the one before it).
        let steps = [
            with("c", Some(50)),
            with("a", Some(0)),
            with("b", None),
            with("d", Some(2)),
        ];
        assert_eq!(save_order(&steps), [1, 2, 3, 0]);
        // Without orders, the input order.
        let plain = [delay("x"), delay("y"), delay("z")];
        assert_eq!(save_order(&plain), [0, 1, 2]);
    }

    #[test]
    fn a_negative_order_and_a_long_description_are_reported_on_the_step() {
        let steps = [
            StepSpec {
                order: Some(-1),
                ..delay("a")
            },
            StepSpec {
                description: "x".repeat(MAX_DESCRIPTION_CHARS + 1),
                ..delay("b")
            },
        ];
        assert_eq!(
            fields(check_graph(
                &steps,
                &[edge("a", "b")],
                &Bindings::default(),
                false
            )),
            ["steps.a.order", "steps.b.description"]
        );
    }

    fn edge(from: &str, to: &str) -> TransitionSpec {
        TransitionSpec {
            key: None,
            from: from.into(),
            to: to.into(),
            condition: None,
            is_default: false,
        }
    }

    fn problems(result: Result<Vec<CheckedTransition>>) -> Vec<(String, String)> {
        match result {
            Err(Error::Invalid(problems)) => {
                problems.into_iter().map(|p| (p.field, p.message)).collect()
            }
            Err(other) => panic!("expected problems, got {other:?}"),
            Ok(_) => panic!("expected problems, got a valid graph"),
        }
    }

    fn fields(result: Result<Vec<CheckedTransition>>) -> Vec<String> {
        problems(result).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_chain_is_valid_and_resolved() {
        let steps = [delay("a"), delay("b"), delay("c")];
        let checked = check_graph(
            &steps,
            &[edge("a", "b"), edge("b", "c")],
            &Bindings::default(),
            true,
        )
        .unwrap();
        assert_eq!(
            checked,
            vec![
                CheckedTransition {
                    spec: 0,
                    key: "a->b".into(),
                    from: 0,
                    to: 1
                },
                CheckedTransition {
                    spec: 1,
                    key: "b->c".into(),
                    from: 1,
                    to: 2
                },
            ]
        );
    }

    #[test]
    fn duplicate_step_keys() {
        let steps = [delay("a"), delay("a")];
        assert_eq!(
            fields(check_graph(&steps, &[], &Bindings::default(), false))[0],
            "steps.a.key"
        );
    }

    #[test]
    fn two_entry_steps() {
        let steps = [delay("a"), delay("b"), delay("c")];
        let found = problems(check_graph(
            &steps,
            &[edge("a", "c")],
            &Bindings::default(),
            false,
        ));
        assert_eq!(found[0].0, "steps");
        assert!(found[0].1.contains("exactly one entry step"), "{found:?}");
        assert!(found[0].1.contains("a, b"), "{found:?}");
    }

    #[test]
    fn transition_to_a_step_of_another_version() {
        let steps = [delay("a")];
        assert_eq!(
            fields(check_graph(
                &steps,
                &[edge("a", "elsewhere")],
                &Bindings::default(),
                false
            )),
            ["transitions.a->elsewhere.to"]
        );
    }

    #[test]
    fn two_default_transitions_from_one_step() {
        let steps = [delay("a"), delay("b"), delay("c")];
        let mut ab = edge("a", "b");
        ab.is_default = true;
        let mut ac = edge("a", "c");
        ac.is_default = true;
        assert_eq!(
            fields(check_graph(&steps, &[ab, ac], &Bindings::default(), false)),
            ["transitions.a->c.isDefault"]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let steps = [delay("start"), delay("x"), delay("y"), delay("z")];
        let edges = [
            edge("start", "x"),
            edge("x", "y"),
            edge("y", "z"),
            edge("z", "x"),
        ];
        let found = problems(check_graph(&steps, &edges, &Bindings::default(), false));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0.starts_with("steps."), "{found:?}");
        assert!(found[0].1.contains("cycle"), "{found:?}");
        for key in ["x", "y", "z"] {
            assert!(found[0].1.contains(key), "{found:?}");
        }
        assert!(!found[0].1.contains("start"), "{found:?}");
    }

    #[test]
    fn a_self_loop_is_refused() {
        let steps = [delay("a")];
        assert_eq!(
            fields(check_graph(
                &steps,
                &[edge("a", "a")],
                &Bindings::default(),
                false
            )),
            ["transitions.a->a.to"]
        );
    }

    #[test]
    fn the_seeds_operator_spellings_save() {
        for operator in [
            "equals",
            "not_equals",
            "greater_than",
            "less_than_or_equal",
            ">=",
        ] {
            let condition = json!({ "field": "approved", "operator": operator, "value": 1 });
            assert_eq!(check_condition(&condition, 0), Ok(()), "{operator}");
        }
    }

    #[test]
    fn conditions_must_be_well_formed() {
        let good = json!({ "all": [
            { "field": "input.total", "operator": "gte", "value": 100 },
            { "not": { "field": "input.email", "operator": "matches", "value": "@example\\.com$" } },
            { "any": [
                { "field": "input.tags", "operator": "contains", "value": "vip" },
                { "field": "input.country", "operator": "in", "value": ["DE", "FR"] },
                { "field": "input.coupon", "operator": "exists" }
            ] }
        ] });
        assert_eq!(check_condition(&good, 0), Ok(()));
        let cases = [
            (
                json!({ "field": "a", "operator": "like", "value": 1 }),
                "/operator",
            ),
            (
                json!({ "field": "a", "operator": "in", "value": 1 }),
                "/value",
            ),
            (
                json!({ "field": "a", "operator": "matches", "value": "(" }),
                "/value",
            ),
            (
                json!({ "field": "", "operator": "eq", "value": 1 }),
                "/field",
            ),
            (json!({ "field": "a", "operator": "eq" }), "/value"),
            (json!({ "all": [] }), "/all"),
            (
                json!({ "any": [{ "field": "a", "operator": "gt", "value": {} }] }),
                "/any/0/value",
            ),
            (json!({ "not": { "field": "a", "op": "eq" } }), "/not/op"),
            (json!([1]), ""),
        ];
        for (condition, path) in cases {
            let (at, _) = check_condition(&condition, 0).expect_err(&condition.to_string());
            assert_eq!(at, path, "{condition}");
        }
        let mut deep = json!({ "field": "a", "operator": "exists" });
        for _ in 0..=MAX_CONDITION_DEPTH {
            deep = json!({ "not": deep });
        }
        assert!(check_condition(&deep, 0).is_err());
    }

    #[test]
    fn a_bad_condition_is_reported_on_its_transition() {
        let steps = [delay("a"), delay("b")];
        let mut ab = edge("a", "b");
        ab.condition = Some(json!({ "field": "x", "operator": "between", "value": 1 }));
        assert_eq!(
            fields(check_graph(&steps, &[ab], &Bindings::default(), false)),
            ["transitions.a->b.condition/operator"]
        );
    }

    #[test]
    fn step_config_is_checked_for_its_type() {
        let steps = [step("call", StepType::Http, json!({ "url": "ftp://x" }))];
        assert_eq!(
            fields(check_graph(&steps, &[], &Bindings::default(), false)),
            ["steps.call.config/url"]
        );
        let steps = [step("wait", StepType::Delay, json!({}))];
        assert_eq!(
            fields(check_graph(&steps, &[], &Bindings::default(), false)),
            ["steps.wait.config"]
        );
    }

    #[test]
    fn action_steps_are_checked_against_their_action() {
        let slack = Uuid::now_v7();
        let gmail = Uuid::now_v7();
        let action = Uuid::now_v7();
        let trigger = Uuid::now_v7();
        let slack_connection = Uuid::now_v7();
        let gmail_connection = Uuid::now_v7();
        let schema = json!({ "type": "object", "required": ["channel"], "properties": { "channel": { "type": "string" } } });
        let bindings = Bindings {
            actions: HashMap::from([
                (
                    action,
                    BoundAction {
                        app_id: slack,
                        kind: ActionKind::Action,
                        input_schema: schema.clone(),
                    },
                ),
                (
                    trigger,
                    BoundAction {
                        app_id: slack,
                        kind: ActionKind::Trigger,
                        input_schema: schema,
                    },
                ),
            ]),
            connections: HashMap::from([(slack_connection, slack), (gmail_connection, gmail)]),
            connection_apps: HashMap::new(),
        };
        let bound = |key: &str, action_id, connection_id, config| StepSpec {
            action_id: Some(action_id),
            connection_id,
            ..step(key, StepType::Action, config)
        };
        let steps = [bound(
            "post",
            action,
            Some(slack_connection),
            json!({ "channel": "#ops" }),
        )];
        check_graph(&steps, &[], &bindings, true).unwrap();
        let cases = [
            (bound("s", action, None, json!({})), "steps.s.config"),
            (
                bound("s", trigger, None, json!({ "channel": "x" })),
                "steps.s.actionId",
            ),
            (
                bound("s", Uuid::now_v7(), None, json!({})),
                "steps.s.actionId",
            ),
            (
                bound(
                    "s",
                    action,
                    Some(gmail_connection),
                    json!({ "channel": "x" }),
                ),
                "steps.s.connectionId",
            ),
            (
                bound("s", action, Some(Uuid::now_v7()), json!({ "channel": "x" })),
                "steps.s.connectionId",
            ),
            (step("s", StepType::Action, json!({})), "steps.s.actionId"),
        ];
        for (spec, field) in cases {
            assert_eq!(fields(check_graph(&[spec], &[], &bindings, false)), [field]);
        }
    }

    #[test]
    fn http_steps_take_only_a_connection_of_the_http_app() {
        let http_connection = Uuid::now_v7();
        let email_connection = Uuid::now_v7();
        let bindings = Bindings {
            connection_apps: HashMap::from([
                (http_connection, "http".to_owned()),
                (email_connection, "email".to_owned()),
            ]),
            ..Bindings::default()
        };
        let call = |url: &str, connection_id| StepSpec {
            connection_id,
            ..step("call", StepType::Http, json!({ "url": url }))
        };
        for ok in [
            call("https://api.example.com/x", None),
            call("https://api.example.com/x", Some(http_connection)),
            call("/orders/{{ input.id }}", Some(http_connection)),
        ] {
            check_graph(&[ok], &[], &bindings, true).unwrap();
        }
        let found = problems(check_graph(
            &[call("/x", Some(email_connection))],
            &[],
            &bindings,
            false,
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "steps.call.connectionId");
        assert!(found[0].1.contains("http app"), "{found:?}");
        assert_eq!(
            fields(check_graph(&[call("/x", None)], &[], &bindings, false)),
            ["steps.call.config/url"]
        );
        assert_eq!(
            fields(check_graph(
                &[call("/x", Some(Uuid::now_v7()))],
                &[],
                &bindings,
                false
            )),
            ["steps.call.connectionId"]
        );
    }

    #[test]
    fn action_steps_may_carry_the_engines_keys() {
        let app = Uuid::now_v7();
        let action = Uuid::now_v7();
        let bindings = Bindings {
            actions: HashMap::from([(
                action,
                BoundAction {
                    app_id: app,
                    kind: ActionKind::Action,
                    input_schema: json!({ "type": "object", "additionalProperties": false,
                                          "properties": { "path": { "type": "string" } } }),
                },
            )]),
            ..Bindings::default()
        };
        let bound = |config| StepSpec {
            action_id: Some(action),
            ..step("s", StepType::Action, config)
        };
        let config = json!({ "path": "/x", "retry": { "maxAttempts": 2 }, "timeoutSeconds": 5,
                             "sampleOutput": { "status": 200 }, "external": true });
        check_graph(&[bound(config)], &[], &bindings, true).unwrap();
        assert_eq!(
            fields(check_graph(
                &[bound(json!({ "path": "/x", "other": 1 }))],
                &[],
                &bindings,
                false
            )),
            ["steps.s.config"]
        );
    }

    #[test]
    fn publishing_needs_a_step() {
        assert!(check_graph(&[], &[], &Bindings::default(), false).is_ok());
        assert_eq!(
            fields(check_graph(&[], &[], &Bindings::default(), true)),
            ["steps"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let steps = [delay("a"), step("b", StepType::Http, json!({})), delay("a")];
        let found = fields(check_graph(
            &steps,
            &[edge("a", "nowhere")],
            &Bindings::default(),
            false,
        ));
        assert!(found.len() >= 3, "{found:?}");
    }

    #[test]
    fn built_in_step_schemas_compile() {
        assert_eq!(STEP_SCHEMAS.len(), 9);
    }
}
