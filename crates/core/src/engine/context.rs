//! The run context, `{input, trigger, steps: {<key>: {output}}}`, and the templates in
//! step configs that read it (`{{ steps.fetch.output.body.id }}`), rendered with
//! minijinja: a well-kept engine with Jinja's syntax, sandboxed (no file or network
//! access), and strict here, so a name that is not in the context fails the step
//! with a clear message instead of rendering as an empty string.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The context a run's conditions and templates read.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    pub input: Value,
    pub trigger: Value,
    steps: Map<String, Value>,
}

impl RunContext {
    /// A run's context before any step ran.
    pub fn new(input: Value, trigger: Value) -> Self {
        Self {
            input,
            trigger,
            steps: Map::new(),
        }
    }

    /// Records the output of a step that succeeded.
    pub fn record(&mut self, step: &str, output: Value) {
        let mut entry = Map::new();
        entry.insert("output".to_owned(), output);
        self.steps.insert(step.to_owned(), Value::Object(entry));
    }

    /// The context as one JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "input": self.input,
            "trigger": self.trigger,
            "steps": self.steps,
        })
    }
}

/// The longest template rendered; longer strings are taken literally.
const MAX_TEMPLATE_CHARS: usize = 64 * 1024;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Templates are short; a loop or recursion that runs away is cut off.
    env.set_recursion_limit(32);
    env.set_fuel(Some(100_000));
    env
}

/// Renders every template in `config` (strings holding `{{` or `{%`) against `context`, at
/// any depth. A string that is one expression and nothing else
/// (`"{{ steps.fetch.output.body }}"`) becomes that expression's JSON value, so an
/// object or a number passes through whole; any other template renders to a string.
/// `field` names the config in errors (`steps.notify.config`). A config that renders
/// larger than a run's payloads may be (it is kept as the step run's input) is refused.
pub fn render(config: &Value, context: &Value, field: &str) -> Result<Value> {
    let env = environment();
    let rendered = render_value(&env, config, context, field)?;
    let limit = crate::runs::start::MAX_PAYLOAD_BYTES;
    if rendered.to_string().len() > limit {
        return Err(Error::bad_input(
            field,
            format!("the config renders to more than {limit} bytes of JSON"),
        ));
    }
    Ok(rendered)
}

fn render_value(
    env: &Environment<'_>,
    value: &Value,
    context: &Value,
    field: &str,
) -> Result<Value> {
    Ok(match value {
        Value::String(text)
            if (text.contains("{{") || text.contains("{%")) && text.len() <= MAX_TEMPLATE_CHARS =>
        {
            render_string(env, text, context, field)?
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| render_value(env, item, context, &format!("{field}/{i}")))
                .collect::<Result<_>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        render_value(env, v, context, &format!("{field}/{k}"))?,
                    ))
                })
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(env: &Environment<'_>, text: &str, context: &Value, field: &str) -> Result<Value> {
    let bad = |err: minijinja::Error| Error::bad_input(field, format!("template: {err}"));
    let trimmed = text.trim();
    let single = trimmed
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
        .filter(|inner| !inner.contains("{{") && !inner.contains("}}"));
    if let Some(expression) = single {
        let value = env
            .compile_expression(expression.trim())
            .map_err(bad)?
            .eval(context)
            .map_err(bad)?;
        if value.is_undefined() {
            return Err(Error::bad_input(field, "template: undefined value"));
        }
        return serde_json::to_value(&value)
            .map_err(|err| Error::bad_input(field, format!("template: {err}")));
    }
    let rendered = env.render_str(text, context).map_err(bad)?;
    Ok(Value::String(rendered))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> Value {
        let mut ctx = RunContext::new(
            json!({"orderId": 42, "name": "Ada"}),
            json!({"type": "manual"}),
        );
        ctx.record(
            "fetch",
            json!({"status": 200, "body": {"id": 7, "tags": ["a", "b"]}}),
        );
        ctx.to_value()
    }

    #[test]
    fn templates_read_the_context_and_single_expressions_keep_their_type() {
        let config = json!({
            "url": "https://api.example.com/orders/{{ input.orderId }}",
            "body": "{{ steps.fetch.output.body }}",
            "count": "{{ steps.fetch.output.body.tags | length }}",
            "greeting": "Hello {{ input.name | upper }}",
            "plain": "no template here",
            "nested": [{"id": "{{ steps.fetch.output.body.id }}"}]
        });
        let rendered = render(&config, &context(), "steps.call.config").unwrap();
        assert_eq!(
            rendered,
            json!({
                "url": "https://api.example.com/orders/42",
                "body": {"id": 7, "tags": ["a", "b"]},
                "count": 2,
                "greeting": "Hello ADA",
                "plain": "no template here",
                "nested": [{"id": 7}]
            })
        );
    }

    #[test]
    fn an_unknown_name_fails_with_the_field() {
        let err = render(
            &json!({"to": "{{ steps.nope.output.email }}"}),
            &context(),
            "steps.n.config",
        )
        .unwrap_err();
        match err {
            Error::BadInput { field, message } => {
                assert_eq!(field, "steps.n.config/to");
                assert!(message.starts_with("template:"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let err = render(&json!("Hi {{ input.missing }}"), &context(), "c").unwrap_err();
        assert!(matches!(err, Error::BadInput { .. }));
    }

    #[test]
    fn runaway_templates_are_cut_off() {
        let looping =
            json!("{% for i in range(9000) %}{% for j in range(9000) %}x{% endfor %}{% endfor %}");
        assert!(render(&looping, &context(), "c").is_err());
    }
}
