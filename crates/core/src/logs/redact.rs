//! Redaction of log lines before any write.
//!
//! Rules come from `tenants.settings.redaction`:
//! `{"patterns": ["<regex>", …], "jsonPaths": ["$.password", "$.card.number", …],
//! "maskEmails": true}`. Applied in this order: the plaintext of every run secret
//! becomes `[secret]` (always, in the message and in every string and key of the
//! context, also inside longer strings); JSON-path values of the context become
//! `[redacted]`; pattern matches become `[redacted]`; e-mail addresses become
//! `a***@example.com` (unless `maskEmails` is false); and secrets are replaced once
//! more, so no rule can reassemble one.
//!
//! Rules are bounded (count, length, compiled size). A rule that does not compile is
//! an error, not skipped: a tenant that asked for redaction never gets a silent leak.
//! [`Redactor::validate_settings`] lets the settings mutation refuse such rules first.

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value as Json;

use crate::{Error, Result};

/// Replaces a run secret's plaintext.
pub const SECRET_MASK: &str = "[secret]";
/// Replaces a pattern match or a JSON-path value.
pub const REDACTED: &str = "[redacted]";

const MAX_PATTERNS: usize = 32;
const MAX_PATTERN_CHARS: usize = 1000;
const MAX_COMPILED_BYTES: usize = 256 * 1024;
const MAX_PATHS: usize = 64;
const MAX_PATH_CHARS: usize = 256;
const FIELD: &str = "settings.redaction";

/// The rules of one tenant and the secrets of one run, compiled once per append.
#[derive(Debug)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
    patterns: Vec<Regex>,
    paths: Vec<Vec<Segment>>,
    mask_emails: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    /// `*` or `[*]`: every member.
    Any,
    /// `..key`: that key at any depth.
    Deep(String),
}

impl Redactor {
    /// Compiles the tenant's rules (`settings.redaction`) and the run's secrets.
    pub fn new(settings: &Json, run_secrets: &[SecretString]) -> Result<Self> {
        let rules = settings.get("redaction").unwrap_or(&Json::Null);
        let mut secrets: Vec<String> = run_secrets
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        if rules.is_null() {
            return Ok(Self {
                secrets,
                patterns: Vec::new(),
                paths: Vec::new(),
                mask_emails: true,
            });
        }
        if !rules.is_object() {
            return Err(Error::bad_input(FIELD, "must be an object"));
        }
        let patterns = strings(rules, "patterns", MAX_PATTERNS)?
            .into_iter()
            .enumerate()
            .map(|(i, p)| compile(i, p))
            .collect::<Result<Vec<_>>>()?;
        let paths = strings(rules, "jsonPaths", MAX_PATHS)?
            .into_iter()
            .enumerate()
            .map(|(i, p)| parse_path(p).map_err(|why| path_error(i, why)))
            .collect::<Result<Vec<_>>>()?;
        let mask_emails = match rules.get("maskEmails") {
            None | Some(Json::Null) => true,
            Some(Json::Bool(mask)) => *mask,
            Some(_) => {
                return Err(Error::bad_input(
                    format!("{FIELD}.maskEmails"),
                    "must be true or false",
                ))
            }
        };
        Ok(Self {
            secrets,
            patterns,
            paths,
            mask_emails,
        })
    }

    /// Checks a `settings` object's redaction rules without secrets; for the mutation
    /// that writes tenant settings.
    pub fn validate_settings(settings: &Json) -> Result<()> {
        Self::new(settings, &[]).map(|_| ())
    }

    /// The redacted form of a message (or any string).
    pub fn text(&self, text: &str) -> String {
        let mut out = self.replace_secrets(text);
        for pattern in &self.patterns {
            if pattern.is_match(&out) {
                out = pattern.replace_all(&out, REDACTED).into_owned();
            }
        }
        if self.mask_emails {
            let emails = email_regex();
            if emails.is_match(&out) {
                out = emails
                    .replace_all(&out, "${first}***@${domain}")
                    .into_owned();
            }
        }
        self.replace_secrets(&out)
    }

    /// The redacted form of a context: JSON-path values first, then every string and
    /// key as [`Self::text`].
    pub fn json(&self, mut value: Json) -> Json {
        for path in &self.paths {
            apply_path(&mut value, path);
        }
        self.walk(value)
    }

    fn walk(&self, value: Json) -> Json {
        match value {
            Json::String(s) => Json::String(self.text(&s)),
            Json::Array(items) => Json::Array(items.into_iter().map(|v| self.walk(v)).collect()),
            Json::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (key, v) in map {
                    out.insert(self.text(&key), self.walk(v));
                }
                Json::Object(out)
            }
            other => other,
        }
    }

    fn replace_secrets(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), SECRET_MASK);
            }
        }
        out
    }
}

fn email_regex() -> &'static Regex {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    EMAIL.get_or_init(|| {
        Regex::new(
            r"(?i)(?P<first>[a-z0-9_%+-])[a-z0-9._%+-]*@(?P<domain>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,})",
        )
        .expect("valid e-mail pattern")
    })
}

fn strings<'a>(rules: &'a Json, key: &str, max: usize) -> Result<Vec<&'a str>> {
    let field = format!("{FIELD}.{key}");
    match rules.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => {
            if items.len() > max {
                return Err(Error::bad_input(field, format!("at most {max} rules")));
            }
            items
                .iter()
                .map(|item| {
                    item.as_str().ok_or_else(|| {
                        Error::bad_input(field.clone(), "every rule must be a string")
                    })
                })
                .collect()
        }
        Some(_) => Err(Error::bad_input(field, "must be a list of strings")),
    }
}

fn compile(i: usize, pattern: &str) -> Result<Regex> {
    let field = format!("{FIELD}.patterns.{i}");
    if pattern.is_empty() || pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(Error::bad_input(
            field,
            format!("a pattern must be 1 to {MAX_PATTERN_CHARS} characters"),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|_| Error::bad_input(field, "not a valid regular expression, or too large"))
}

fn path_error(i: usize, why: &str) -> Error {
    Error::bad_input(format!("{FIELD}.jsonPaths.{i}"), why.to_owned())
}

/// Parses `$`, `.key`, `['key']`, `["key"]`, `[3]`, `[*]`, `.*` and `..key`.
fn parse_path(path: &str) -> Result<Vec<Segment>, &'static str> {
    if path.chars().count() > MAX_PATH_CHARS {
        return Err("a JSON path is at most 256 characters");
    }
    let rest = path.strip_prefix('$').ok_or("a JSON path starts with $")?;
    let chars: Vec<char> = rest.chars().collect();
    let mut segments = Vec::new();
    let mut i = 0;
    let key_end = |from: usize| {
        let mut end = from;
        while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
            end += 1;
        }
        end
    };
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                let end = key_end(i + 2);
                if end == i + 2 {
                    return Err("`..` needs a key after it");
                }
                segments.push(Segment::Deep(chars[i + 2..end].iter().collect()));
                i = end;
            }
            '.' => {
                let end = key_end(i + 1);
                let key: String = chars[i + 1..end].iter().collect();
                segments.push(match key.as_str() {
                    "" => return Err("an empty key"),
                    "*" => Segment::Any,
                    _ => Segment::Key(key),
                });
                i = end;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| p + i)
                    .ok_or("an unclosed [")?;
                let inner: String = chars[i + 1..close].iter().collect();
                let quoted =
                    |q: char| inner.len() >= 2 && inner.starts_with(q) && inner.ends_with(q);
                segments.push(if inner == "*" {
                    Segment::Any
                } else if quoted('\'') || quoted('"') {
                    Segment::Key(inner[1..inner.len() - 1].to_owned())
                } else {
                    Segment::Index(
                        inner
                            .parse()
                            .map_err(|_| "a [ ] holds an index, * or a quoted key")?,
                    )
                });
                i = close + 1;
            }
            _ => return Err("expected . or [ after $"),
        }
    }
    Ok(segments)
}

fn apply_path(value: &mut Json, path: &[Segment]) {
    let Some((first, rest)) = path.split_first() else {
        *value = Json::String(REDACTED.to_owned());
        return;
    };
    match first {
        Segment::Key(key) => {
            if let Some(child) = value.as_object_mut().and_then(|m| m.get_mut(key)) {
                apply_path(child, rest);
            }
        }
        Segment::Index(index) => {
            if let Some(child) = value.as_array_mut().and_then(|a| a.get_mut(*index)) {
                apply_path(child, rest);
            }
        }
        Segment::Any => match value {
            Json::Object(map) => map.values_mut().for_each(|child| apply_path(child, rest)),
            Json::Array(items) => items.iter_mut().for_each(|child| apply_path(child, rest)),
            _ => {}
        },
        Segment::Deep(key) => {
            if let Some(child) = value.as_object_mut().and_then(|m| m.get_mut(key)) {
                apply_path(child, rest);
            }
            match value {
                Json::Object(map) => map.values_mut().for_each(|child| apply_path(child, path)),
                Json::Array(items) => items.iter_mut().for_each(|child| apply_path(child, path)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(s: &str) -> SecretString {
        s.to_owned().into()
    }

    #[test]
    fn secrets_are_replaced_everywhere_also_inside_longer_strings() {
        let r = Redactor::new(
            &json!({}),
            &[secret("hunter2"), secret("hunter2-long"), secret("")],
        )
        .unwrap();
        assert_eq!(r.text("pw=hunter2;x"), "pw=[secret];x");
        assert_eq!(r.text("token hunter2-long"), "token [secret]");
        let context = r.json(json!({
            "headers": {"authorization": "Bearer xhunter2x"},
            "list": ["a", "hunter2", 3],
            "hunter2": true,
        }));
        assert_eq!(
            context,
            json!({
                "headers": {"authorization": "Bearer x[secret]x"},
                "list": ["a", "[secret]", 3],
                "[secret]": true,
            })
        );
        assert!(!context.to_string().contains("hunter2"));
    }

    #[test]
    fn emails_are_masked_by_default_and_can_be_kept() {
        let r = Redactor::new(&json!({}), &[]).unwrap();
        assert_eq!(
            r.text("mail Alice.Smith@Example.co.uk and b@x.io now"),
            "mail A***@Example.co.uk and b***@x.io now"
        );
        let keep = Redactor::new(&json!({"redaction": {"maskEmails": false}}), &[]).unwrap();
        assert_eq!(keep.text("alice@example.com"), "alice@example.com");
    }

    #[test]
    fn tenant_patterns_and_json_paths_apply() {
        let settings = json!({"redaction": {
            "patterns": [r"\b\d{4}-\d{4}-\d{4}-\d{4}\b", "(?i)ssn:\\s*\\d+"],
            "jsonPaths": ["$.password", "$.card.number", "$.items[*].token", "$..apiKey", "$['odd key']", "$.list[1]"],
        }});
        let r = Redactor::new(&settings, &[]).unwrap();
        assert_eq!(
            r.text("card 1234-5678-9012-3456, SSN: 123456789"),
            "card [redacted], [redacted]"
        );
        let context = r.json(json!({
            "password": {"nested": "x"},
            "card": {"number": "4111", "brand": "visa"},
            "items": [{"token": "t1"}, {"token": "t2", "keep": 1}],
            "deep": {"deeper": {"apiKey": "k"}},
            "apiKey": "top",
            "odd key": 1,
            "list": [0, 1, 2],
            "user": "x",
        }));
        assert_eq!(
            context,
            json!({
                "password": REDACTED,
                "card": {"number": REDACTED, "brand": "visa"},
                "items": [{"token": REDACTED}, {"token": REDACTED, "keep": 1}],
                "deep": {"deeper": {"apiKey": REDACTED}},
                "apiKey": REDACTED,
                "odd key": REDACTED,
                "list": [0, REDACTED, 2],
                "user": "x",
            })
        );
    }

    #[test]
    fn bad_or_oversized_rules_are_refused() {
        for rules in [
            json!({"redaction": {"patterns": ["("]}}),
            json!({"redaction": {"patterns": ["a{1000}{1000}"]}}),
            json!({"redaction": {"patterns": [""]}}),
            json!({"redaction": {"patterns": "x"}}),
            json!({"redaction": {"patterns": vec!["x"; 33]}}),
            json!({"redaction": {"jsonPaths": ["password"]}}),
            json!({"redaction": {"jsonPaths": ["$.a["]}}),
            json!({"redaction": {"jsonPaths": ["$.."]}}),
            json!({"redaction": {"maskEmails": "no"}}),
            json!({"redaction": []}),
        ] {
            let err = Redactor::validate_settings(&rules).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT", "{rules}");
        }
        assert!(Redactor::validate_settings(&json!({"redaction": {"jsonPaths": ["$"]}})).is_ok());
    }

    #[test]
    fn a_rule_cannot_reassemble_a_secret() {
        // The pattern turns "s-X-cret" into "s[redacted]cret"... and the secret is that.
        let r = Redactor::new(
            &json!({"redaction": {"patterns": ["-X-"]}}),
            &[secret("s[redacted]cret")],
        )
        .unwrap();
        assert_eq!(r.text("s-X-cret"), SECRET_MASK);
    }
}
