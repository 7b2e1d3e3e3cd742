//! Prompt templates: Jinja syntax through minijinja, strict (a placeholder naming
//! something the call does not have is an error, never an empty string), sandboxed
//! with fuel and recursion limits. A template sees `input` (the call's input) and
//! `config` (its process's config): `Summarise {{ input.text }} in {{ config.tone }}`.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};

use crate::{Error, Result};

/// The most characters a rendered prompt may have.
const MAX_RENDERED_CHARS: usize = 1 << 20;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(32);
    env.set_fuel(Some(200_000));
    // Prompts are text for a model, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks that `template` compiles; a syntax error names `field` and the line.
pub fn check_template(field: &str, template: &str) -> Result<()> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|err| Error::bad_input(field, format!("template: {}", describe(&err))))
}

/// The rendered system and user messages of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub system: String,
    pub user: String,
}

/// Renders a version's templates for one call. A missing variable is BAD_USER_INPUT on
/// `input`, naming what the template wanted.
pub fn render(system: &str, user: &str, input: &Value, config: &Value) -> Result<RenderedPrompt> {
    let env = environment();
    let context = json!({ "input": input, "config": config });
    let one = |field: &str, template: &str| -> Result<String> {
        if template.is_empty() {
            return Ok(String::new());
        }
        let rendered = env
            .render_str(template, &context)
            .map_err(|err| Error::bad_input("input", format!("{field}: {}", describe(&err))))?;
        if rendered.chars().count() > MAX_RENDERED_CHARS {
            return Err(Error::bad_input(
                "input",
                format!("{field} renders to more than {MAX_RENDERED_CHARS} characters"),
            ));
        }
        Ok(rendered)
    };
    Ok(RenderedPrompt {
        system: one("systemPrompt", system)?,
        user: one("userPrompt", user)?,
    })
}

/// A template error without minijinja's multi-line source excerpt.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = err.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_input_and_config_without_escaping() {
        let rendered = render(
            "You are {{ config.tone }}.",
            "Summarise: {{ input.text }}",
            &json!({"text": "a < b & c"}),
            &json!({"tone": "terse"}),
        )
        .unwrap();
        assert_eq!(rendered.system, "You are terse.");
        assert_eq!(rendered.user, "Summarise: a < b & c");
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_the_template() {
        let err = render("", "Hi {{ input.name }}", &json!({}), &json!({})).unwrap_err();
        match err {
            Error::BadInput { field, message } => {
                assert_eq!(field, "input");
                assert!(message.starts_with("userPrompt:"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_found_when_saved() {
        assert!(check_template("userPrompt", "Hi {{ input.name }}").is_ok());
        let err = check_template("userPrompt", "Hi {{ input.name ").unwrap_err();
        assert!(matches!(err, Error::BadInput { ref field, .. } if field == "userPrompt"));
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let err = render(
            "",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &json!({}),
            &json!({}),
        )
        .unwrap_err();
        assert!(matches!(err, Error::BadInput { .. }));
    }
}
