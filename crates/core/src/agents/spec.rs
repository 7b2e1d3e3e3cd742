//! What an agent's JSON holds, checked before it is stored: the version spec against
//! the published JSON Schema ([`SPEC_SCHEMA`], printed in docs/agents.md), the tool
//! policy and the budget against their fixed shapes. Every problem is BAD_USER_INPUT
//! naming the field (and the path inside it).

use std::sync::LazyLock;

use serde_json::{json, Map, Value as Json};

use crate::input::json_has_nul;
use crate::integrations::manifest::{check_schema, CompiledSchema};
use crate::{Error, Result};

/// The JSON Schema every agent version's spec satisfies (JSON Schema 2020-12).
pub const SPEC_SCHEMA: &str = include_str!("spec.schema.json");

/// The most bytes a spec may take as JSON.
const MAX_SPEC_BYTES: usize = 256 * 1024;
/// The most tools a tool policy names.
const MAX_POLICY_TOOLS: usize = 500;

static COMPILED: LazyLock<std::result::Result<CompiledSchema, String>> = LazyLock::new(|| {
    let schema: Json = serde_json::from_str(SPEC_SCHEMA).map_err(|e| e.to_string())?;
    CompiledSchema::new(&schema).map_err(|e| e.to_string())
});

/// The spec schema as JSON.
pub fn spec_schema() -> Json {
    serde_json::from_str(SPEC_SCHEMA).unwrap_or(Json::Null)
}

/// Checks a version's spec (`field` names it in errors): an object that satisfies
/// [`SPEC_SCHEMA`], whose `inputSchema` and `outputSchema` are themselves valid JSON
/// Schemas.
pub fn check_spec(field: &str, spec: &Json) -> Result<()> {
    if json_has_nul(spec) {
        return Err(Error::bad_input(field, "must not contain NUL characters"));
    }
    if spec.to_string().len() > MAX_SPEC_BYTES {
        return Err(Error::bad_input(
            field,
            format!("at most {MAX_SPEC_BYTES} bytes of JSON"),
        ));
    }
    let compiled = COMPILED
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the agent spec schema does not compile: {e}"))?;
    compiled.check(field, spec)?;
    for key in ["inputSchema", "outputSchema"] {
        if let Some(schema) = spec.get(key) {
            check_schema(&format!("{field}/{key}"), schema)?;
        }
    }
    Ok(())
}

const DECISIONS: [&str; 3] = ["ALLOW", "ASK", "DENY"];

/// The tool policy of a new agent: nothing named, every tool asks.
pub fn default_tool_policy() -> Json {
    json!({ "tools": {}, "default": "ASK" })
}

fn is_tool_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'))
}

/// Checks a tool policy, `{"tools": {<key>: "ALLOW"|"ASK"|"DENY"}, "default": …}`;
/// `tools` may be omitted (none) and `default` too (ASK). Returns it complete.
pub fn check_tool_policy(policy: Json) -> Result<Json> {
    const FIELD: &str = "toolPolicy";
    let Json::Object(mut object) = policy else {
        return Err(Error::bad_input(
            FIELD,
            "a tool policy is an object: {\"tools\": {\"<key>\": \"ALLOW\"}, \"default\": \"ASK\"}",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["tools", "default"].contains(&k.as_str()))
    {
        return Err(Error::bad_input(
            format!("{FIELD}.{unknown}"),
            "unknown field; a tool policy has only tools and default",
        ));
    }
    let default = object.remove("default").unwrap_or_else(|| json!("ASK"));
    if !default.as_str().is_some_and(|d| DECISIONS.contains(&d)) {
        return Err(Error::bad_input(
            format!("{FIELD}.default"),
            "must be ALLOW, ASK or DENY",
        ));
    }
    let tools = match object.remove("tools") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(tools)) => tools,
        Some(_) => {
            return Err(Error::bad_input(
                format!("{FIELD}.tools"),
                "an object from tool keys to ALLOW, ASK or DENY",
            ))
        }
    };
    if tools.len() > MAX_POLICY_TOOLS {
        return Err(Error::bad_input(
            format!("{FIELD}.tools"),
            format!("at most {MAX_POLICY_TOOLS} tools"),
        ));
    }
    for (key, decision) in &tools {
        if !is_tool_key(key) {
            return Err(Error::bad_input(
                format!("{FIELD}.tools"),
                "a tool key is 1 to 128 letters, digits, '_', '.', ':', '/' or '-', starting with a letter or digit",
            ));
        }
        if !decision.as_str().is_some_and(|d| DECISIONS.contains(&d)) {
            return Err(Error::bad_input(
                format!("{FIELD}.tools.{key}"),
                "must be ALLOW, ASK or DENY",
            ));
        }
    }
    Ok(json!({ "tools": tools, "default": default }))
}

/// An agent's monthly budget. Stored only: runs do not check it yet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    /// USD per calendar month (UTC).
    pub monthly_cost_limit: Option<f64>,
    /// Input plus output tokens per calendar month (UTC).
    pub monthly_token_limit: Option<i64>,
}

impl Budget {
    /// Checks the limits (not negative, finite) and returns the stored JSON.
    pub fn to_json(self) -> Result<Json> {
        let mut object = Map::new();
        if let Some(cost) = self.monthly_cost_limit {
            if !(0.0..=1e12).contains(&cost) {
                return Err(Error::bad_input(
                    "budget.monthlyCostLimit",
                    "must be between 0 and 1e12 USD",
                ));
            }
            object.insert("monthlyCostLimit".into(), json!(cost));
        }
        if let Some(tokens) = self.monthly_token_limit {
            if tokens < 0 {
                return Err(Error::bad_input(
                    "budget.monthlyTokenLimit",
                    "must not be negative",
                ));
            }
            object.insert("monthlyTokenLimit".into(), json!(tokens));
        }
        Ok(Json::Object(object))
    }

    /// Reads the stored JSON.
    pub fn from_json(value: &Json) -> Self {
        Self {
            monthly_cost_limit: value.get("monthlyCostLimit").and_then(Json::as_f64),
            monthly_token_limit: value.get("monthlyTokenLimit").and_then(Json::as_i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn the_published_schema_compiles_and_accepts_a_full_spec() {
        assert!(COMPILED.is_ok());
        check_spec("spec", &json!({})).unwrap();
        check_spec(
            "spec",
            &json!({
                "instructions": "Triage incoming bugs.",
                "goals": ["label every issue"],
                "model": {"tier": "OPUS", "thinking": "HIGH", "temperature": 0.2, "maxOutputTokens": 4000},
                "tools": ["github.issues:label", "slack.post"],
                "inputSchema": {"type": "object", "properties": {"issue": {"type": "string"}}},
                "outputSchema": {"type": "object"},
                "memory": {"enabled": true, "windowMessages": 20},
                "metadata": {"team": "platform"}
            }),
        )
        .unwrap();
    }

    #[test]
    fn a_bad_spec_names_the_path() {
        assert_eq!(
            field_of(check_spec("spec", &json!({"model": {"tier": "GPT"}}))),
            "spec/model/tier"
        );
        assert_eq!(
            field_of(check_spec("spec", &json!({"tools": [1]}))),
            "spec/tools/0"
        );
        assert_eq!(field_of(check_spec("spec", &json!({"unknown": 1}))), "spec");
        assert_eq!(
            field_of(check_spec(
                "spec",
                &json!({"inputSchema": {"type": "strin"}})
            )),
            "spec/inputSchema"
        );
    }

    #[test]
    fn tool_policies_are_checked_and_completed() {
        assert_eq!(
            check_tool_policy(json!({"tools": {"slack.post": "DENY"}})).unwrap(),
            json!({"tools": {"slack.post": "DENY"}, "default": "ASK"})
        );
        assert_eq!(check_tool_policy(json!({})).unwrap(), default_tool_policy());
        assert_eq!(field_of(check_tool_policy(json!([]))), "toolPolicy");
        assert_eq!(
            field_of(check_tool_policy(json!({"default": "MAYBE"}))),
            "toolPolicy.default"
        );
        assert_eq!(
            field_of(check_tool_policy(json!({"tools": {"x": "allow"}}))),
            "toolPolicy.tools.x"
        );
        assert_eq!(
            field_of(check_tool_policy(json!({"tools": {" ": "ALLOW"}}))),
            "toolPolicy.tools"
        );
        assert_eq!(
            field_of(check_tool_policy(json!({"rules": {}}))),
            "toolPolicy.rules"
        );
    }

    #[test]
    fn budgets_round_trip_and_refuse_negative_limits() {
        let budget = Budget {
            monthly_cost_limit: Some(12.5),
            monthly_token_limit: Some(3_000_000_000),
        };
        assert_eq!(Budget::from_json(&budget.to_json().unwrap()), budget);
        assert_eq!(Budget::default().to_json().unwrap(), json!({}));
        let negative = Budget {
            monthly_cost_limit: Some(-1.0),
            ..Budget::default()
        };
        assert_eq!(field_of(negative.to_json()), "budget.monthlyCostLimit");
    }
}
