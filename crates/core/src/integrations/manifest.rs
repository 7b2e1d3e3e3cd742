//! App manifests and JSON Schema validation for the connector catalog.
//!
//! Schemas come from the catalog (built in, or written by a tenant) and describe a
//! connection's config and an action's input and output. Three rules hold here:
//! - A schema never makes the server fetch anything: a `$ref` must be local (`#…`), `$schema`
//!   must name a bundled draft, and the validators are built with a retriever that refuses
//!   every URI (so even a dependency that turns on `jsonschema`'s HTTP resolving changes
//!   nothing).
//! - A schema without `$schema` is draft 2020-12.
//! - An instance error names the path and the rule, never the value: a connection config or an
//!   action input may hold something secret.

use std::collections::HashSet;
use std::fmt::Write as _;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Retrieve, Uri, ValidationError};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The parsed manifest of an app version.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// How connections authenticate: "none", "apiKey", "bearer", "basic", "oauth2", "smtp".
    pub auth: AuthKind,
    /// JSON Schema (draft 2020-12) of a connection's non-secret config; must be an object schema.
    pub config_schema: Value,
    /// Names of the secret fields a connection must reference (unique,
    /// `[a-zA-Z][a-zA-Z0-9_]{0,63}`); must not also be properties of `config_schema`.
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// The secret fields a connection may leave unset (a subset of `secret_fields`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_secret_fields: Vec<String>,
    /// Optional base URL template / docs URL
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
}

/// How an app's connections authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthKind {
    None,
    ApiKey,
    Bearer,
    Basic,
    Oauth2,
    Smtp,
}

/// The manifest's keys, as they are spelled in JSON.
const MANIFEST_FIELDS: &[&str] = &[
    "auth",
    "configSchema",
    "secretFields",
    "optionalSecretFields",
    "docsUrl",
];
const AUTH_KINDS: &str = r#""none", "apiKey", "bearer", "basic", "oauth2" or "smtp""#;
const MAX_SECRET_FIELDS: usize = 32;
const MAX_DOCS_URL_LEN: usize = 2048;
/// How deep schemas may nest subschemas; real ones stay far below, and the walk is recursive.
const MAX_SCHEMA_DEPTH: usize = 64;
/// How many instance errors one message reports.
const MAX_REPORTED_ERRORS: usize = 3;
/// Longest message we build from validation errors (schema text can be long).
const MAX_MESSAGE_LEN: usize = 600;
/// Up to how many `anyOf`/`oneOf` alternatives a message spells out.
const MAX_DESCRIBED_BRANCHES: usize = 4;

/// Validates `schema` as a JSON Schema (meta-schema check, draft 2020-12 by default), error
/// field = `field` (e.g. "input.inputSchema") and the message names the JSON pointer inside
/// the schema that is wrong, e.g. `"/properties/url/type": "strin" is not valid under any of
/// the schemas...`. Refuses remote $ref (anything not starting with '#').
pub fn check_schema(field: &str, schema: &Value) -> Result<()> {
    schema_problem(schema).map_or(Ok(()), |problem| {
        Err(Error::bad_input(field, problem.message()))
    })
}

/// Parses and checks a manifest: shape (deny unknown fields), config_schema is a valid schema
/// whose top-level "type" is "object", secret field names valid/unique/not in config
/// properties. Errors use field paths under `field`, e.g.
/// "input.manifest.configSchema/properties/url" or "input.manifest.secretFields[1]".
pub fn parse_manifest(field: &str, manifest: &Value) -> Result<Manifest> {
    let Some(object) = manifest.as_object() else {
        return Err(Error::bad_input(field, "must be a JSON object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !MANIFEST_FIELDS.contains(&key.as_str()))
    {
        return Err(Error::bad_input(
            format!("{field}.{unknown}"),
            format!(
                "unknown field; a manifest has only {}",
                MANIFEST_FIELDS.join(", ")
            ),
        ));
    }

    let auth = match object.get("auth") {
        None => return Err(Error::bad_input(format!("{field}.auth"), "is required")),
        Some(auth) => AuthKind::deserialize_from(auth).ok_or_else(|| {
            Error::bad_input(format!("{field}.auth"), format!("must be {AUTH_KINDS}"))
        })?,
    };

    let schema_field = format!("{field}.configSchema");
    let Some(config_schema) = object.get("configSchema") else {
        return Err(Error::bad_input(schema_field, "is required"));
    };
    if let Some(problem) = schema_problem(config_schema) {
        return Err(Error::bad_input(
            format!("{schema_field}{}", problem.pointer),
            problem.message(),
        ));
    }
    if config_schema.get("type") != Some(&Value::from("object")) {
        return Err(Error::bad_input(
            format!("{schema_field}/type"),
            r#"a connection config schema must have "type": "object""#,
        ));
    }
    let config_properties = config_schema.get("properties").and_then(Value::as_object);

    let secret_fields = match object.get("secretFields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            parse_secret_fields(&format!("{field}.secretFields"), items, config_properties)?
        }
        Some(_) => {
            return Err(Error::bad_input(
                format!("{field}.secretFields"),
                "must be an array of field names",
            ))
        }
    };

    let optional_field = format!("{field}.optionalSecretFields");
    let optional_secret_fields = match object.get("optionalSecretFields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(name) if secret_fields.iter().any(|f| f == name) => {
                        names.push(name.to_owned())
                    }
                    _ => {
                        return Err(Error::bad_input(
                            format!("{optional_field}[{i}]"),
                            "must name one of secretFields",
                        ))
                    }
                }
            }
            names
        }
        Some(_) => {
            return Err(Error::bad_input(
                optional_field,
                "must be an array of secret field names",
            ))
        }
    };

    let docs_url = match object.get("docsUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) if is_http_url(url) => Some(url.clone()),
        Some(_) => {
            return Err(Error::bad_input(
                format!("{field}.docsUrl"),
                format!("must be an http(s) URL of at most {MAX_DOCS_URL_LEN} characters"),
            ))
        }
    };

    Ok(Manifest {
        auth,
        config_schema: config_schema.clone(),
        secret_fields,
        optional_secret_fields,
        docs_url,
    })
}

/// Validates an instance (a connection config, an action input) against a schema; on failure
/// Error::bad_input with field = format!("{field}{instance_path}") e.g. "input.config/url" and
/// a message from the first few validation errors, joined by "; ". Messages name paths and
/// rules, never the offending value.
///
/// The schema is expected to have passed [`check_schema`] when it was stored; one that does
/// not compile is an internal error, not the caller's.
pub fn validate_instance(field: &str, schema: &Value, instance: &Value) -> Result<()> {
    CompiledSchema::new(schema)?.check(field, instance)
}

/// A stored schema compiled once, to check many instances (every step of a workflow
/// bound to one action) without compiling it again for each.
pub struct CompiledSchema(jsonschema::Validator);

impl CompiledSchema {
    /// Compiles a schema that passed [`check_schema`]; one that does not compile is an
    /// internal error.
    pub fn new(schema: &Value) -> Result<Self> {
        let validator = jsonschema::options()
            .with_retriever(NoRemoteRefs)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|error| {
                anyhow::anyhow!(
                    "a stored JSON Schema does not compile at {:?}: {}",
                    error.instance_path().as_str(),
                    error.masked()
                )
            })?;
        Ok(Self(validator))
    }

    /// Checks `instance`, with errors as [`validate_instance`] describes them.
    pub fn check(&self, field: &str, instance: &Value) -> Result<()> {
        let mut errors = self.0.iter_errors(instance).take(MAX_REPORTED_ERRORS);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let mut message = describe_masked(&first);
        for error in errors {
            let path = error.instance_path().as_str();
            let path = if path.is_empty() { "(root)" } else { path };
            let _ = write!(message, "; {path}: {}", describe_masked(&error));
        }
        Err(Error::bad_input(
            format!("{field}{}", first.instance_path().as_str()),
            truncate(message),
        ))
    }
}

impl AuthKind {
    fn deserialize_from(value: &Value) -> Option<Self> {
        serde::Deserialize::deserialize(value).ok()
    }
}

/// What is wrong with a schema, and where (a JSON pointer inside it).
struct SchemaProblem {
    pointer: String,
    detail: String,
}

impl SchemaProblem {
    fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        SchemaProblem {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }

    fn message(&self) -> String {
        if self.pointer.is_empty() {
            truncate(self.detail.clone())
        } else {
            truncate(format!("{:?}: {}", self.pointer, self.detail))
        }
    }
}

/// The first thing wrong with `schema`, if anything is.
fn schema_problem(schema: &Value) -> Option<SchemaProblem> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Some(SchemaProblem::new(
            "",
            "a JSON Schema must be an object or a boolean",
        ));
    }
    if let Some(uri) = schema.get("$schema") {
        let known = uri.is_string() && Draft::default().detect(schema) != Draft::Unknown;
        if !known {
            return Some(SchemaProblem::new(
                "/$schema",
                "only the bundled drafts may be named (default and recommended: \
                 \"https://json-schema.org/draft/2020-12/schema\")",
            ));
        }
    }
    // Before the meta-schema: the walk also bounds the depth the validators recurse to.
    if let Some(problem) = walk_schema(schema, &mut String::new(), 0) {
        return Some(problem);
    }

    let meta = match jsonschema::meta::validator_for(schema) {
        Ok(meta) => meta,
        Err(error) => return Some(SchemaProblem::new("/$schema", error.to_string())),
    };
    let errors: Vec<_> = meta.iter_errors(schema).take(MAX_REPORTED_ERRORS).collect();
    if let Some(first) = errors.first() {
        let mut detail = first.to_string();
        for error in &errors[1..] {
            let _ = write!(detail, "; {:?}: {error}", error.instance_path().as_str());
        }
        return Some(SchemaProblem::new(first.instance_path().as_str(), detail));
    }

    // The meta-schema does not see everything: a regex that does not compile, a local `$ref`
    // that points nowhere.
    match jsonschema::options()
        .with_retriever(NoRemoteRefs)
        .build(schema)
    {
        Ok(_) => None,
        Err(error) => Some(SchemaProblem::new(
            error.instance_path().as_str(),
            compile_detail(&error),
        )),
    }
}

fn compile_detail(error: &ValidationError<'_>) -> String {
    match error.kind() {
        ValidationErrorKind::Referencing(inner) => format!("unresolvable reference: {inner}"),
        _ => error.to_string(),
    }
}

/// Keywords whose values are data, not subschemas: nothing inside them is a reference.
const DATA_KEYWORDS: &[&str] = &["const", "enum", "default", "examples", "required"];
/// Keywords whose values map names to subschemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Keywords that reference another schema by URI.
const REFERENCE_KEYWORDS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// Refuses references that leave the document and schemas nested beyond
/// [`MAX_SCHEMA_DEPTH`]. `pointer` is where `schema` sits.
fn walk_schema(schema: &Value, pointer: &mut String, depth: usize) -> Option<SchemaProblem> {
    if depth > MAX_SCHEMA_DEPTH {
        return Some(SchemaProblem::new(
            pointer.clone(),
            format!("schemas may nest at most {MAX_SCHEMA_DEPTH} levels deep"),
        ));
    }
    let Value::Object(keywords) = schema else {
        return None;
    };
    for (keyword, value) in keywords {
        if DATA_KEYWORDS.contains(&keyword.as_str()) {
            continue;
        }
        let len = pointer.len();
        push_token(pointer, keyword);
        let problem = if REFERENCE_KEYWORDS.contains(&keyword.as_str()) {
            check_reference(pointer, value)
        } else if SCHEMA_MAP_KEYWORDS.contains(&keyword.as_str()) {
            value
                .as_object()
                .and_then(|map| walk_map(map, pointer, depth + 1))
        } else {
            match value {
                Value::Object(_) => walk_schema(value, pointer, depth + 1),
                Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                    let len = pointer.len();
                    push_token(pointer, &i.to_string());
                    let problem = walk_schema(item, pointer, depth + 1);
                    pointer.truncate(len);
                    problem
                }),
                _ => None,
            }
        };
        if problem.is_some() {
            return problem;
        }
        pointer.truncate(len);
    }
    None
}

fn walk_map(map: &Map<String, Value>, pointer: &mut String, depth: usize) -> Option<SchemaProblem> {
    map.iter().find_map(|(name, subschema)| {
        let len = pointer.len();
        push_token(pointer, name);
        let problem = walk_schema(subschema, pointer, depth);
        pointer.truncate(len);
        problem
    })
}

fn check_reference(pointer: &str, reference: &Value) -> Option<SchemaProblem> {
    match reference.as_str() {
        Some(uri) if uri.starts_with('#') => None,
        Some(_) => Some(SchemaProblem::new(
            pointer,
            "only local references (starting with \"#\", e.g. \"#/$defs/address\") are \
             allowed; remote schemas are never fetched",
        )),
        None => Some(SchemaProblem::new(pointer, "a reference must be a string")),
    }
}

/// Appends one RFC 6901 reference token.
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

fn parse_secret_fields(
    field: &str,
    items: &[Value],
    config_properties: Option<&Map<String, Value>>,
) -> Result<Vec<String>> {
    if items.len() > MAX_SECRET_FIELDS {
        return Err(Error::bad_input(
            field,
            format!("at most {MAX_SECRET_FIELDS} secret fields"),
        ));
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let Some(name) = item.as_str().filter(|name| is_secret_field_name(name)) else {
            return Err(Error::bad_input(
                item_field,
                "a secret field name is a letter followed by up to 63 letters, digits or \
                 underscores",
            ));
        };
        if !seen.insert(name) {
            return Err(Error::bad_input(
                item_field,
                format!("{name:?} is listed twice"),
            ));
        }
        if config_properties.is_some_and(|properties| properties.contains_key(name)) {
            return Err(Error::bad_input(
                item_field,
                format!(
                    "{name:?} is also a property of configSchema; a secret is never part of \
                     a connection's config"
                ),
            ));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// `[a-zA-Z][a-zA-Z0-9_]{0,63}`
fn is_secret_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_http_url(url: &str) -> bool {
    url.len() <= MAX_DOCS_URL_LEN
        && ["https://", "http://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        })
}

/// The rule an instance broke, without the instance's value.
fn describe_masked(error: &ValidationError<'_>) -> String {
    match error.kind() {
        // The crate's masked text shows the inner error unmasked.
        ValidationErrorKind::PropertyNames { error: inner } => {
            inner.masked_with("a property name").to_string()
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context }
            if !context.is_empty() && context.len() <= MAX_DESCRIBED_BRANCHES =>
        {
            // Say what each alternative wanted: "value matches none of: "text" is a required
            // property, or "html" is a required property".
            let mut message = String::from("value matches none of the alternatives: ");
            for (i, branch) in context.iter().enumerate() {
                if i > 0 {
                    message.push_str(", or ");
                }
                match branch.first() {
                    Some(first) => {
                        let path = first.instance_path().as_str();
                        if path != error.instance_path().as_str() {
                            let _ = write!(message, "{path}: ");
                        }
                        message.push_str(&describe_masked(first));
                    }
                    None => message.push_str("(no detail)"),
                }
            }
            message
        }
        _ => error.masked().to_string(),
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Refuses every URI: schemas are self-contained.
struct NoRemoteRefs;

impl Retrieve for NoRemoteRefs {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> std::result::Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("remote schemas are never fetched ({})", uri.as_str()).into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::{json, Value};

    use super::*;

    const BUILTIN: &str = include_str!("../../../../migration/src/catalog/builtin.json");
    const CATEGORIES: &[&str] = &[
        "core",
        "communication",
        "developer",
        "productivity",
        "email",
    ];
    const REQUIRED_APPS: &[&str] = &["http", "webhook", "schedule", "email", "slack", "gmail"];
    const APP_FIELDS: &[&str] = &[
        "key",
        "name",
        "description",
        "category",
        "iconUrl",
        "version",
        "manifest",
        "actions",
    ];
    const ACTION_FIELDS: &[&str] = &[
        "key",
        "name",
        "description",
        "kind",
        "inputSchema",
        "outputSchema",
    ];
    /// Stands in for a secret a caller typed into the wrong place.
    const MARKER: &str = "s3cr3t-MARKER-value";

    fn builtin() -> Vec<Value> {
        serde_json::from_str(BUILTIN).expect("builtin.json is a JSON array")
    }

    fn builtin_app(key: &str) -> Value {
        builtin()
            .into_iter()
            .find(|app| app["key"] == key)
            .unwrap_or_else(|| panic!("no built-in app {key}"))
    }

    fn builtin_action(app: &str, action: &str) -> Value {
        let app = builtin_app(app);
        app["actions"]
            .as_array()
            .and_then(|actions| actions.iter().find(|a| a["key"] == action).cloned())
            .unwrap_or_else(|| panic!("no action {action}"))
    }

    fn bad_input(result: Result<impl std::fmt::Debug>) -> (String, String) {
        match result {
            Err(Error::BadInput { field, message }) => (field, message),
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    fn has_only_fields(value: &Value, allowed: &[&str]) -> bool {
        value
            .as_object()
            .is_some_and(|object| object.keys().all(|key| allowed.contains(&key.as_str())))
    }

    fn is_key(key: &str) -> bool {
        key.starts_with(|c: char| c.is_ascii_lowercase())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    #[test]
    fn every_builtin_app_is_well_formed() {
        let apps = builtin();
        let mut keys = HashSet::new();
        for app in &apps {
            let key = app["key"].as_str().expect("app key is a string");
            let at = format!("builtin[{key}]");
            assert!(is_key(key), "{at}: key format");
            assert!(keys.insert(key), "{at}: duplicate app key");
            assert!(has_only_fields(app, APP_FIELDS), "{at}: unknown app field");
            for field in ["name", "description", "version"] {
                assert!(
                    app[field].as_str().is_some_and(|v| !v.trim().is_empty()),
                    "{at}.{field} missing"
                );
            }
            assert!(
                app["version"].as_str().unwrap().split('.').count() == 3,
                "{at}.version is semver"
            );
            assert!(app["iconUrl"].is_null() || app["iconUrl"].is_string());
            let category = app["category"].as_str().unwrap_or_default();
            assert!(CATEGORIES.contains(&category), "{at}.category {category}");

            let manifest = parse_manifest(&format!("{at}.manifest"), &app["manifest"])
                .unwrap_or_else(|e| panic!("{at}.manifest: {e:?}"));
            assert_eq!(
                serde_json::to_value(&manifest).unwrap(),
                app["manifest"],
                "{at}.manifest round-trips"
            );

            let actions = app["actions"].as_array().expect("actions array");
            assert!(!actions.is_empty(), "{at} has no action");
            let mut action_keys = HashSet::new();
            for action in actions {
                let action_key = action["key"].as_str().expect("action key");
                let at = format!("{at}.actions[{action_key}]");
                assert!(action_keys.insert(action_key), "{at}: duplicate action key");
                assert!(
                    has_only_fields(action, ACTION_FIELDS),
                    "{at}: unknown field"
                );
                assert!(
                    matches!(action["kind"].as_str(), Some("action" | "trigger")),
                    "{at}.kind"
                );
                for field in ["name", "description"] {
                    assert!(action[field].as_str().is_some_and(|v| !v.is_empty()));
                }
                for schema in ["inputSchema", "outputSchema"] {
                    check_schema(&format!("{at}.{schema}"), &action[schema])
                        .unwrap_or_else(|e| panic!("{at}.{schema}: {e:?}"));
                    assert_eq!(action[schema]["type"], "object", "{at}.{schema}.type");
                }
            }
        }
        for required in REQUIRED_APPS {
            assert!(keys.contains(required), "built-in app {required} missing");
        }
    }

    #[test]
    fn builtin_schemas_accept_realistic_input_and_refuse_mistakes() {
        let http = builtin_app("http");
        let config = &http["manifest"]["configSchema"];
        let good = json!({
            "baseUrl": "https://api.example.com/v1",
            "defaultHeaders": {"Accept": "application/json"},
            "timeoutMs": 5000
        });
        validate_instance("input.config", config, &good).unwrap();
        let (field, _) = bad_input(validate_instance(
            "input.config",
            config,
            &json!({"baseUrl": "not a url"}),
        ));
        assert_eq!(field, "input.config/baseUrl");
        let (field, message) = bad_input(validate_instance(
            "input.config",
            config,
            &json!({"baseUrl": "https://x.example", "timeout": 5}),
        ));
        assert_eq!(field, "input.config");
        assert!(message.contains("timeout"), "{message}");

        let send = builtin_action("email", "send");
        let input = &send["inputSchema"];
        validate_instance(
            "input.input",
            input,
            &json!({"to": ["ops@example.com"], "subject": "Hi", "text": "Hello"}),
        )
        .unwrap();
        let (field, message) = bad_input(validate_instance(
            "input.input",
            input,
            &json!({"to": ["ops@example.com"], "subject": "Hi"}),
        ));
        assert_eq!(field, "input.input", "text or html is required");
        assert!(
            message.contains(r#""text" is a required property, or "html""#),
            "{message}"
        );
        let (field, _) = bad_input(validate_instance(
            "input.input",
            input,
            &json!({"to": ["not-an-address"], "subject": "Hi", "html": "<p>x</p>"}),
        ));
        assert_eq!(field, "input.input/to/0");

        let tick = builtin_action("schedule", "tick");
        validate_instance(
            "input.config",
            &tick["inputSchema"],
            &json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}),
        )
        .unwrap();
        let (field, _) = bad_input(validate_instance(
            "input.config",
            &tick["inputSchema"],
            &json!({"cron": "every day"}),
        ));
        assert_eq!(field, "input.config/cron");
    }

    #[test]
    fn check_schema_names_the_pointer_of_a_wrong_keyword() {
        let (field, message) =
            bad_input(check_schema("input.inputSchema", &json!({"type": "strin"})));
        assert_eq!(field, "input.inputSchema");
        assert!(message.contains("/type"), "{message}");

        let schema = json!({"type": "object", "properties": {"url": {"type": "strin"}}});
        let (_, message) = bad_input(check_schema("input.inputSchema", &schema));
        assert!(message.contains("/properties/url/type"), "{message}");

        let (_, message) = bad_input(check_schema("s", &json!({"minLength": -1})));
        assert!(message.contains("/minLength"), "{message}");
        bad_input(check_schema("s", &json!(42)));
        bad_input(check_schema("s", &json!({"pattern": "(unclosed"})));
    }

    #[test]
    fn check_schema_accepts_valid_schemas() {
        check_schema("s", &json!(true)).unwrap();
        check_schema("s", &json!({})).unwrap();
        check_schema(
            "s",
            &json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"type": "string", "format": "email"}},
                "properties": {
                    "to": {"$ref": "#/$defs/address"},
                    // A property may be called "$ref", and data may look like a reference.
                    "$ref": {"type": "string", "enum": ["https://example.com/x.json"]},
                    "meta": {"const": {"$ref": "https://example.com/y.json"}}
                }
            }),
        )
        .unwrap();
    }

    #[test]
    fn check_schema_refuses_references_that_leave_the_document() {
        for (schema, pointer) in [
            (json!({"$ref": "https://example.com/schema.json"}), "/$ref"),
            (
                json!({"properties": {"a": {"$ref": "other.json#/x"}}}),
                "/properties/a/$ref",
            ),
            (
                json!({"anyOf": [{"type": "null"}, {"$dynamicRef": "file:///etc/passwd"}]}),
                "/anyOf/1/$dynamicRef",
            ),
            (
                json!({"$defs": {"a/b": {"items": {"$ref": "urn:x"}}}}),
                "/$defs/a~1b/items/$ref",
            ),
        ] {
            let (field, message) = bad_input(check_schema("input.schema", &schema));
            assert_eq!(field, "input.schema");
            assert!(message.contains(pointer), "{schema}: {message}");
            assert!(message.contains("local"), "{message}");
        }
        // Unknown meta-schemas would be fetched too.
        let (_, message) = bad_input(check_schema(
            "s",
            &json!({"$schema": "https://example.com/my-meta"}),
        ));
        assert!(message.contains("/$schema"), "{message}");
        // A local reference that points nowhere does not compile.
        let (_, message) = bad_input(check_schema("s", &json!({"$ref": "#/$defs/missing"})));
        assert!(message.contains("reference"), "{message}");
    }

    #[test]
    fn check_schema_bounds_nesting() {
        let mut schema = json!({"type": "string"});
        for _ in 0..(MAX_SCHEMA_DEPTH + 5) {
            schema = json!({"items": schema});
        }
        let (_, message) = bad_input(check_schema("s", &schema));
        assert!(message.contains("nest"), "{message}");
    }

    fn manifest(extra: Value) -> Value {
        let mut base = json!({
            "auth": "apiKey",
            "configSchema": {
                "type": "object",
                "properties": {"url": {"type": "string", "format": "uri"}},
                "required": ["url"]
            },
            "secretFields": ["apiKey", "signing_secret"],
            "docsUrl": "https://example.com/docs"
        });
        let Value::Object(extra) = extra else {
            panic!("extra fields are an object");
        };
        for (key, value) in extra {
            base[key] = value;
        }
        base
    }

    #[test]
    fn parse_manifest_reads_a_good_manifest() {
        let parsed = parse_manifest("input.manifest", &manifest(json!({}))).unwrap();
        assert_eq!(parsed.auth, AuthKind::ApiKey);
        assert_eq!(parsed.secret_fields, ["apiKey", "signing_secret"]);
        assert_eq!(parsed.docs_url.as_deref(), Some("https://example.com/docs"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), manifest(json!({})));

        let minimal = json!({"auth": "oauth2", "configSchema": {"type": "object"}});
        let parsed = parse_manifest("m", &minimal).unwrap();
        assert_eq!(parsed.auth, AuthKind::Oauth2);
        assert!(parsed.secret_fields.is_empty() && parsed.docs_url.is_none());
        assert_eq!(
            serde_json::to_value(&parsed).unwrap()["secretFields"],
            json!([])
        );
    }

    #[test]
    fn parse_manifest_refuses_bad_shapes() {
        let cases = [
            (json!({"extra": 1}), "input.manifest.extra"),
            (json!({"auth": "password"}), "input.manifest.auth"),
            (
                json!({"secretFields": "apiKey"}),
                "input.manifest.secretFields",
            ),
            (
                json!({"docsUrl": "javascript:alert(1)"}),
                "input.manifest.docsUrl",
            ),
        ];
        for (extra, expected) in cases {
            let (field, _) = bad_input(parse_manifest("input.manifest", &manifest(extra.clone())));
            assert_eq!(field, expected, "{extra}");
        }
        let (field, _) = bad_input(parse_manifest("input.manifest", &json!([])));
        assert_eq!(field, "input.manifest");
        let (field, _) = bad_input(parse_manifest(
            "input.manifest",
            &json!({"configSchema": {"type": "object"}}),
        ));
        assert_eq!(field, "input.manifest.auth");
    }

    #[test]
    fn parse_manifest_checks_the_config_schema() {
        for schema in [json!({"type": "string"}), json!({}), json!(true)] {
            let (field, message) = bad_input(parse_manifest(
                "input.manifest",
                &manifest(json!({"configSchema": schema})),
            ));
            assert_eq!(field, "input.manifest.configSchema/type", "{schema}");
            assert!(message.contains("object"), "{message}");
        }
        let (field, message) = bad_input(parse_manifest(
            "input.manifest",
            &manifest(json!({"configSchema": {
                "type": "object", "properties": {"url": {"type": "strin"}}
            }})),
        ));
        assert_eq!(field, "input.manifest.configSchema/properties/url/type");
        assert!(message.contains("/properties/url/type"), "{message}");
        let (field, _) = bad_input(parse_manifest(
            "input.manifest",
            &manifest(json!({"configSchema": {
                "type": "object", "properties": {"url": {"$ref": "https://example.com/u"}}
            }})),
        ));
        assert_eq!(field, "input.manifest.configSchema/properties/url/$ref");
    }

    #[test]
    fn parse_manifest_checks_secret_fields() {
        let cases = [
            (json!(["apiKey", "apiKey"]), "[1]", "twice"),
            (json!(["ok", "1abc"]), "[1]", "letter"),
            (json!(["has-dash"]), "[0]", "letter"),
            (json!([""]), "[0]", "letter"),
            (json!([7]), "[0]", "letter"),
            (json!(["a".repeat(65)]), "[0]", "letter"),
            (json!(["token", "url"]), "[1]", "configSchema"),
        ];
        for (secrets, index, needle) in cases {
            let (field, message) = bad_input(parse_manifest(
                "input.manifest",
                &manifest(json!({"secretFields": secrets})),
            ));
            assert_eq!(
                field,
                format!("input.manifest.secretFields{index}"),
                "{secrets}"
            );
            assert!(message.contains(needle), "{secrets}: {message}");
        }
        let longest = "a".repeat(64);
        parse_manifest("m", &manifest(json!({"secretFields": [longest]}))).unwrap();
    }

    #[test]
    fn validate_instance_names_the_path_but_never_the_value() {
        let http = builtin_app("http");
        let config = &http["manifest"]["configSchema"];
        let (field, message) = bad_input(validate_instance(
            "input.config",
            config,
            &json!({"timeoutMs": MARKER}),
        ));
        assert_eq!(field, "input.config/timeoutMs");
        assert!(message.contains("integer"), "{message}");
        assert!(!message.contains(MARKER), "{message}");

        // Every kind of rule whose default message would quote the value.
        let schema = json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "pattern": "^[0-9]+$"},
                "enum": {"enum": ["a", "b"]},
                "const": {"const": "a"},
                "format": {"type": "string", "format": "email"},
                "maxLength": {"type": "string", "maxLength": 3},
                "not": {"not": {"type": "string"}},
                "anyOf": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
                "oneOf": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
                "names": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
                "items": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true}
            }
        });
        for (key, value) in [
            ("pattern", json!(MARKER)),
            ("enum", json!(MARKER)),
            ("const", json!(MARKER)),
            ("format", json!(MARKER)),
            ("maxLength", json!(MARKER)),
            ("not", json!(MARKER)),
            ("anyOf", json!(MARKER)),
            ("oneOf", json!(MARKER)),
            ("names", json!({MARKER: 1})),
            ("items", json!([MARKER, MARKER])),
        ] {
            let (field, message) = bad_input(validate_instance(
                "input.input",
                &schema,
                &json!({key: value}),
            ));
            assert!(
                field.starts_with(&format!("input.input/{key}")),
                "{key}: {field}"
            );
            assert!(!message.contains(MARKER), "{key}: {message}");
        }
    }

    #[test]
    fn validate_instance_reports_a_few_errors() {
        let http = builtin_app("http");
        let config = &http["manifest"]["configSchema"];
        let (field, message) = bad_input(validate_instance(
            "input.config",
            config,
            &json!({"timeoutMs": 1, "followRedirects": "yes", "baseUrl": 3, "x": 1, "y": 2}),
        ));
        assert!(field.starts_with("input.config"), "{field}");
        assert_eq!(
            message.matches("; ").count(),
            MAX_REPORTED_ERRORS - 1,
            "{message}"
        );
        assert!(!message.contains("\"yes\""), "{message}");
    }

    #[test]
    fn validate_instance_never_fetches_and_blames_the_server_for_a_bad_schema() {
        let schema = json!({"$ref": "https://example.com/schema.json"});
        let result = validate_instance("input.config", &schema, &json!({}));
        assert!(matches!(result, Err(Error::Internal(_))), "{result:?}");
    }
}
