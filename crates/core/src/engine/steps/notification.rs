//! NOTIFICATION: tells people. `{channel, to, title, message}`, or the seeds' shape
//! `{notificationType, recipients, template}` (the same, named differently).
//!
//! - `in_app`: one row per recipient in the inbox the dashboard lists
//!   (`notifications`). Recipients are members, named as approvers are: roles (and
//!   those above), user ids or email addresses. The rows are written in the move that
//!   completes the step, so a step notifies exactly once.
//! - `email`, `slack`, `webhook`: not built yet (they go through the step's
//!   connection); such a step fails, not retried, saying so.
//!
//! A simulation notifies nobody: the step answers from its `sampleOutput`.

use serde_json::{json, Value};

use super::{StepInput, StepKind, StepResult};
use crate::engine::people::{parse_person, Person};
use crate::notifications::{deliver_in_app, InApp};

pub struct Notification;

/// The channel of a notification config (`channel` or the seeds' `notificationType`).
pub fn channel_of(config: &Value) -> Option<&str> {
    config
        .get("channel")
        .or_else(|| config.get("notificationType"))
        .and_then(Value::as_str)
}

fn text<'a>(config: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| config.get(*k).and_then(Value::as_str))
}

/// The people a config names in `to` or `recipients` (one string or a list).
fn recipients(config: &Value) -> Vec<Person> {
    let named = config.get("to").or_else(|| config.get("recipients"));
    let entries: Vec<&str> = match named {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    entries.into_iter().filter_map(parse_person).collect()
}

impl StepKind for Notification {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        let config = input.config;
        let fail =
            |message: &str| StepResult::Failed(json!({ "message": message, "retryable": false }));
        match channel_of(config) {
            Some("in_app") => {}
            Some(other) => {
                return fail(&format!(
                    "{other} notifications are not available yet; use in_app"
                ))
            }
            None => return fail("the step names no channel"),
        }
        let Some(db) = input.db else {
            return fail("an in-app notification is delivered inside its run's transaction");
        };
        let body = text(config, &["message", "template", "body"]).unwrap_or_default();
        let title = text(config, &["title", "subject"]).unwrap_or("Notification");
        let people = recipients(config);
        let message = InApp {
            run_id: input.ids.run_id,
            step_run_id: input.ids.step_run_id,
            title,
            body,
            data: config.get("data").cloned(),
        };
        match deliver_in_app(db, input.ids.tenant_id, &people, &message).await {
            Ok(reached) => StepResult::Done(json!({
                "channel": "in_app",
                "delivered": reached.len(),
            })),
            // A database error: the move fails and the step is tried again.
            Err(err) => StepResult::Failed(json!({ "message": err.to_string() })),
        }
    }
}
