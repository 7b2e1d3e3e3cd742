//! The agent settings of a tenant (`updateTenant(input: {settings})`), checked when
//! they are saved (`identity::parse_settings` calls these) and read here:
//!
//! - `modelDefaults`: `{tier, thinking, temperature, maxOutputTokens}`, each optional;
//!   a new agent takes `tier` and `thinking` unless it is given its own.
//! - `resourceLimits`: `{maxAgents, cpu, memoryMb}`, each optional; `maxAgents` lowers
//!   the plan's agent limit ([`crate::plans::check_agent_limit`]), `cpu` (cores) and
//!   `memoryMb` are what a runner should give each container.

use serde_json::Value as Json;
use trellis_entity::{ModelTier, ThinkingMode};

use crate::error::FieldProblem;

fn object<'a>(
    value: &'a Json,
    field: &str,
    keys: &[&str],
    problems: &mut Vec<FieldProblem>,
) -> Option<&'a serde_json::Map<String, Json>> {
    let Some(map) = value.as_object() else {
        problems.push(FieldProblem::new(field, "must be a JSON object"));
        return None;
    };
    for key in map.keys().filter(|k| !keys.contains(&k.as_str())) {
        problems.push(FieldProblem::new(
            format!("{field}.{key}"),
            format!("unknown key: {} has {}", field, keys.join(", ")),
        ));
    }
    Some(map)
}

fn number_in(
    map: &serde_json::Map<String, Json>,
    field: &str,
    key: &str,
    range: std::ops::RangeInclusive<f64>,
    whole: bool,
    problems: &mut Vec<FieldProblem>,
) {
    let Some(value) = map.get(key) else { return };
    let ok =
        value.as_f64().is_some_and(|n| range.contains(&n)) && (!whole || value.as_u64().is_some());
    if !ok {
        let kind = if whole { "a whole number" } else { "a number" };
        problems.push(FieldProblem::new(
            format!("{field}.{key}"),
            format!("{kind} from {} to {}", range.start(), range.end()),
        ));
    }
}

fn one_of(
    map: &serde_json::Map<String, Json>,
    field: &str,
    key: &str,
    allowed: &[&str],
    problems: &mut Vec<FieldProblem>,
) {
    let Some(value) = map.get(key) else { return };
    if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
        problems.push(FieldProblem::new(
            format!("{field}.{key}"),
            format!("one of {}", allowed.join(", ")),
        ));
    }
}

/// Checks `settings.modelDefaults`.
pub(crate) fn check_model_defaults(value: &Json) -> Vec<FieldProblem> {
    let field = "settings.modelDefaults";
    let mut problems = Vec::new();
    let keys = ["tier", "thinking", "temperature", "maxOutputTokens"];
    if let Some(map) = object(value, field, &keys, &mut problems) {
        one_of(
            map,
            field,
            "tier",
            &["HAIKU", "SONNET", "OPUS"],
            &mut problems,
        );
        one_of(
            map,
            field,
            "thinking",
            &["OFF", "LOW", "HIGH"],
            &mut problems,
        );
        number_in(map, field, "temperature", 0.0..=2.0, false, &mut problems);
        number_in(
            map,
            field,
            "maxOutputTokens",
            1.0..=1_000_000.0,
            true,
            &mut problems,
        );
    }
    problems
}

/// Checks `settings.resourceLimits`.
pub(crate) fn check_resource_limits(value: &Json) -> Vec<FieldProblem> {
    let field = "settings.resourceLimits";
    let mut problems = Vec::new();
    let keys = ["maxAgents", "cpu", "memoryMb"];
    if let Some(map) = object(value, field, &keys, &mut problems) {
        number_in(
            map,
            field,
            "maxAgents",
            0.0..=100_000.0,
            true,
            &mut problems,
        );
        number_in(map, field, "cpu", 0.1..=64.0, false, &mut problems);
        number_in(
            map,
            field,
            "memoryMb",
            64.0..=1_048_576.0,
            true,
            &mut problems,
        );
    }
    problems
}

/// The model tier and thinking mode a new agent of a tenant with `settings` takes
/// when it is not given its own.
pub(crate) fn model_defaults(settings: &Json) -> (Option<ModelTier>, Option<ThinkingMode>) {
    let defaults = settings.get("modelDefaults");
    let text = |key: &str| defaults.and_then(|d| d.get(key)).and_then(Json::as_str);
    let tier = match text("tier") {
        Some("HAIKU") => Some(ModelTier::Haiku),
        Some("SONNET") => Some(ModelTier::Sonnet),
        Some("OPUS") => Some(ModelTier::Opus),
        _ => None,
    };
    let thinking = match text("thinking") {
        Some("OFF") => Some(ThinkingMode::Off),
        Some("LOW") => Some(ThinkingMode::Low),
        Some("HIGH") => Some(ThinkingMode::High),
        _ => None,
    };
    (tier, thinking)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_defaults_are_checked_field_by_field() {
        assert!(check_model_defaults(
            &json!({"tier": "OPUS", "thinking": "LOW", "temperature": 0.5, "maxOutputTokens": 4096})
        )
        .is_empty());
        let fields: Vec<String> = check_model_defaults(
            &json!({"tier": "GPT", "temperature": 3, "maxOutputTokens": 1.5, "colour": 1}),
        )
        .into_iter()
        .map(|p| p.field)
        .collect();
        assert_eq!(
            fields,
            [
                "settings.modelDefaults.colour",
                "settings.modelDefaults.tier",
                "settings.modelDefaults.temperature",
                "settings.modelDefaults.maxOutputTokens"
            ]
        );
        assert_eq!(check_model_defaults(&json!([])).len(), 1);
    }

    #[test]
    fn resource_limits_are_checked_field_by_field() {
        assert!(
            check_resource_limits(&json!({"maxAgents": 2, "cpu": 0.5, "memoryMb": 512})).is_empty()
        );
        let fields: Vec<String> =
            check_resource_limits(&json!({"maxAgents": -1, "cpu": 0, "memoryMb": "1G"}))
                .into_iter()
                .map(|p| p.field)
                .collect();
        assert_eq!(
            fields,
            [
                "settings.resourceLimits.maxAgents",
                "settings.resourceLimits.cpu",
                "settings.resourceLimits.memoryMb"
            ]
        );
    }

    #[test]
    fn new_agents_take_the_model_defaults() {
        let settings = json!({"modelDefaults": {"tier": "OPUS", "thinking": "HIGH"}});
        assert_eq!(
            model_defaults(&settings),
            (Some(ModelTier::Opus), Some(ThinkingMode::High))
        );
        assert_eq!(model_defaults(&json!({})), (None, None));
    }
}
