//! Field paths into JSON: `input.order.items[0].sku`.

use serde_json::Value;

/// The value at `path` in `root`, if there is one. Segments are separated by dots;
/// `[n]` indexes a list (`items[0]`), and a numeric segment after a dot does too
/// (`items.0`), as templates write it.
pub fn resolve<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => segment.split_at(at),
            None => (segment, ""),
        };
        if !name.is_empty() {
            current = match current {
                Value::Object(map) => map.get(name)?,
                Value::Array(items) => items.get(name.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        for index in indexes.split('[').skip(1) {
            let index: usize = index.strip_suffix(']')?.parse().ok()?;
            current = current.as_array()?.get(index)?;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_walk_objects_and_lists() {
        let doc = json!({"input": {"items": [{"sku": "a"}, {"sku": "b"}], "n": 1}});
        assert_eq!(resolve(&doc, "input.items[1].sku"), Some(&json!("b")));
        assert_eq!(resolve(&doc, "input.items.0.sku"), Some(&json!("a")));
        assert_eq!(resolve(&doc, "input.n"), Some(&json!(1)));
        assert_eq!(resolve(&doc, "input.items[2].sku"), None);
        assert_eq!(resolve(&doc, "input.n.deeper"), None);
        assert_eq!(resolve(&doc, "input.items[x]"), None);
    }
}
