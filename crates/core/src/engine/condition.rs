//! The condition language of transitions: `{field, operator, value}`, composed with
//! `{all: [...]}`, `{any: [...]}` and `{not: {...}}`. The graph check
//! (`workflows::graph::check_condition`) and the engine read operators here, so a
//! condition that saves is one the engine can evaluate.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::path;

/// A comparison of a field with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Contains,
    Exists,
    Matches,
}

impl Operator {
    /// The canonical names, as error messages list them.
    pub const NAMES: [&'static str; 10] = [
        "eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists", "matches",
    ];

    /// An operator by its canonical name or one of the seeds' spellings (`equals`,
    /// `not_equals`, `greater_than`, `greater_than_or_equal`, `less_than`,
    /// `less_than_or_equal`, …) or a symbol (`==`, `!=`, `>`, `>=`, `<`, `<=`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "eq" | "equals" | "equal" | "==" => Self::Eq,
            "ne" | "not_equals" | "not_equal" | "!=" => Self::Ne,
            "gt" | "greater_than" | ">" => Self::Gt,
            "gte" | "greater_than_or_equal" | "greater_than_or_equals" | ">=" => Self::Gte,
            "lt" | "less_than" | "<" => Self::Lt,
            "lte" | "less_than_or_equal" | "less_than_or_equals" | "<=" => Self::Lte,
            "in" | "one_of" => Self::In,
            "contains" | "includes" => Self::Contains,
            "exists" | "is_set" => Self::Exists,
            "matches" | "regex" => Self::Matches,
            _ => return None,
        })
    }
}

/// The longest regular expression a condition may hold, and the compiled size limit.
pub const MAX_PATTERN_CHARS: usize = 1_000;
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a `matches` pattern within the size limit.
pub fn compile_pattern(pattern: &str) -> Option<Regex> {
    if pattern.len() > MAX_PATTERN_CHARS {
        return None;
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .ok()
}

/// Where a condition's fields are looked up: the run context, and the output of the
/// step the transition leaves, for a bare field (`approved`, as the seeds write it)
/// that names no part of the context.
pub struct Scope<'a> {
    pub context: &'a Value,
    pub step_output: Option<&'a Value>,
}

impl Scope<'_> {
    fn field(&self, field: &str) -> Option<&Value> {
        let root = field.split(['.', '[']).next().unwrap_or_default();
        if matches!(root, "input" | "trigger" | "steps" | "run") {
            return path::resolve(self.context, field);
        }
        self.step_output
            .and_then(|output| path::resolve(output, field))
            .or_else(|| path::resolve(self.context, field))
    }
}

/// Whether `condition` holds in `scope`. A condition that does not parse (the graph
/// check refuses those before a version is saved) is false.
pub fn holds(condition: &Value, scope: &Scope<'_>) -> bool {
    let Some(object) = condition.as_object() else {
        return false;
    };
    if let Some(all) = object.get("all").and_then(Value::as_array) {
        return all.iter().all(|c| holds(c, scope));
    }
    if let Some(any) = object.get("any").and_then(Value::as_array) {
        return any.iter().any(|c| holds(c, scope));
    }
    if let Some(inner) = object.get("not") {
        return !holds(inner, scope);
    }
    let (Some(field), Some(operator)) = (
        object.get("field").and_then(Value::as_str),
        object
            .get("operator")
            .and_then(Value::as_str)
            .and_then(Operator::parse),
    ) else {
        return false;
    };
    compare(scope.field(field), operator, object.get("value"))
}

fn compare(actual: Option<&Value>, operator: Operator, expected: Option<&Value>) -> bool {
    let actual = actual.filter(|v| !v.is_null());
    match operator {
        Operator::Exists => {
            let wanted = expected.and_then(Value::as_bool).unwrap_or(true);
            actual.is_some() == wanted
        }
        Operator::Eq => same(
            actual.unwrap_or(&Value::Null),
            expected.unwrap_or(&Value::Null),
        ),
        Operator::Ne => !same(
            actual.unwrap_or(&Value::Null),
            expected.unwrap_or(&Value::Null),
        ),
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
            let (Some(a), Some(b)) = (actual, expected) else {
                return false;
            };
            let Some(ordering) = order(a, b) else {
                return false;
            };
            match operator {
                Operator::Gt => ordering.is_gt(),
                Operator::Gte => ordering.is_ge(),
                Operator::Lt => ordering.is_lt(),
                _ => ordering.is_le(),
            }
        }
        Operator::In => match (actual, expected) {
            (Some(a), Some(Value::Array(options))) => options.iter().any(|o| same(a, o)),
            _ => false,
        },
        Operator::Contains => match (actual, expected) {
            (Some(Value::String(text)), Some(needle)) => {
                let needle = match needle {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                text.contains(&needle)
            }
            (Some(Value::Array(items)), Some(needle)) => items.iter().any(|i| same(i, needle)),
            _ => false,
        },
        Operator::Matches => match (actual, expected) {
            (Some(Value::String(text)), Some(Value::String(pattern))) => {
                compile_pattern(pattern).is_some_and(|re| re.is_match(text))
            }
            _ => false,
        },
    }
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers by value, strings by their characters (RFC 3339 times order correctly);
/// anything else does not compare.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A field path as conditions and templates write it: `input.order.total`,
/// `items[0].sku`.
pub static FIELD_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z_$][A-Za-z0-9_$-]*(\.[A-Za-z0-9_$-]+|\[[0-9]+\])*$")
        .expect("field path pattern")
});

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(condition: &Value) -> bool {
        let context = json!({
            "input": { "total": 120, "email": "a@example.com", "tags": ["vip", "eu"],
                       "country": "DE", "coupon": null, "when": "2026-12-06T10:00:00Z" },
            "steps": { "fetch": { "output": { "status": 200, "body": { "id": 7 } } } }
        });
        let output = json!({ "approved": true });
        holds(
            condition,
            &Scope {
                context: &context,
                step_output: Some(&output),
            },
        )
    }

    #[test]
    fn operators_compare_as_documented() {
        assert!(check(
            &json!({"field": "input.total", "operator": "gte", "value": 100})
        ));
        assert!(check(
            &json!({"field": "input.total", "operator": "eq", "value": 120.0})
        ));
        assert!(!check(
            &json!({"field": "input.total", "operator": "lt", "value": 100})
        ));
        assert!(check(
            &json!({"field": "input.tags", "operator": "contains", "value": "vip"})
        ));
        assert!(check(
            &json!({"field": "input.email", "operator": "contains", "value": "@example"})
        ));
        assert!(check(
            &json!({"field": "input.country", "operator": "in", "value": ["DE", "FR"]})
        ));
        assert!(!check(
            &json!({"field": "input.coupon", "operator": "exists"})
        ));
        assert!(check(
            &json!({"field": "input.coupon", "operator": "exists", "value": false})
        ));
        assert!(check(
            &json!({"field": "input.email", "operator": "matches", "value": "@example\\.com$"})
        ));
        assert!(check(
            &json!({"field": "input.when", "operator": "gt", "value": "2026-01-01T00:00:00Z"})
        ));
        assert!(check(
            &json!({"field": "steps.fetch.output.body.id", "operator": "eq", "value": 7})
        ));
        // A missing field compares as absent: not greater, not equal to a value.
        assert!(!check(
            &json!({"field": "input.nope", "operator": "gt", "value": 1})
        ));
        assert!(check(
            &json!({"field": "input.nope", "operator": "ne", "value": 1})
        ));
        // Numbers and strings do not order against each other.
        assert!(!check(
            &json!({"field": "input.total", "operator": "gt", "value": "1"})
        ));
    }

    #[test]
    fn the_seeds_spellings_and_bare_fields_work() {
        // Seed 003: `{"field": "approved", "operator": "equals", "value": true}`, the
        // field being the output of the step the transition leaves.
        assert!(check(
            &json!({"field": "approved", "operator": "equals", "value": true})
        ));
        assert!(check(
            &json!({"field": "input.total", "operator": "greater_than", "value": 5})
        ));
        assert!(check(
            &json!({"field": "input.total", "operator": "less_than_or_equal", "value": 120})
        ));
        assert!(check(
            &json!({"field": "input.country", "operator": "not_equals", "value": "FR"})
        ));
        assert_eq!(Operator::parse("between"), None);
    }

    #[test]
    fn combinators_compose() {
        assert!(check(&json!({"all": [
            {"field": "input.total", "operator": "gte", "value": 100},
            {"not": {"field": "input.email", "operator": "matches", "value": "@other\\.com$"}},
            {"any": [
                {"field": "input.tags", "operator": "contains", "value": "nope"},
                {"field": "input.country", "operator": "in", "value": ["DE"]}
            ]}
        ]})));
        assert!(!check(
            &json!({"any": [{"field": "input.total", "operator": "eq", "value": 1}]})
        ));
        assert!(!check(&json!("not a condition")));
    }
}
