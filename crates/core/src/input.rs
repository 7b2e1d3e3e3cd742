//! Checks of raw input that PostgreSQL would refuse with an error of its own: `text` and
//! `jsonb` cannot hold the NUL character, so a NUL that reached a statement failed it as
//! an internal error instead of bad input.

use serde_json::Value as Json;

/// Whether any string (or object key) in `value` holds a NUL character.
pub fn json_has_nul(value: &Json) -> bool {
    match value {
        Json::String(s) => s.contains('\0'),
        Json::Array(items) => items.iter().any(json_has_nul),
        Json::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || json_has_nul(value)),
        Json::Null | Json::Bool(_) | Json::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_in_strings_and_keys_at_any_depth() {
        assert!(!json_has_nul(&serde_json::json!({"a": ["b", 1, null]})));
        assert!(json_has_nul(&serde_json::json!({"a": ["b\u{0}"]})));
        assert!(json_has_nul(&serde_json::json!({"a\u{0}": 1})));
    }
}
