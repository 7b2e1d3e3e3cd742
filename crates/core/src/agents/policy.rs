//! The tool policy, enforced. An agent's `toolPolicy` (`{"tools": {<key>: "ALLOW" |
//! "ASK" | "DENY"}, "default": …}`, checked by [`super::spec::check_tool_policy`]) is
//! copied onto each of its runs when the run starts (`workflow_runs.tool_policy`), and
//! the engine asks [`verdict`] before it runs a tool step of that run.
//!
//! Which steps are tools, and their keys ([`tool_key`]):
//!
//! - an HTTP step is the tool `http`;
//! - an ACTION step is the tool `<app key>.<action key>` (`slack.post`; the built-in
//!   http app's request action is `http.request`).
//!
//! The other step types (conditions, transforms, delays, approvals, in-app and
//! connection notifications) are the flow's own plumbing, not tools an agent picks.
//!
//! A key is looked up as written, then by its app (the part before the first `.`), then
//! the policy's `default` decides: `{"tools": {"slack": "DENY", "slack.read": "ALLOW"}}`
//! denies every Slack action but `read`.

use sea_orm::{ConnectionTrait, FromQueryResult};
use serde_json::{json, Value as Json};
use trellis_entity::approval_decision::Decision;
use trellis_entity::{Role, StepRunStatus, StepType};

use crate::engine::people::Person;
use crate::engine::steps::approval::{ApprovalPolicy, OnTimeout};
use crate::scope::stmt;

/// What a tool policy says about one tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The step runs.
    Allow,
    /// The step waits until a member approves it (`decideApproval`); a rejection fails
    /// it with [`TOOL_DENIED`].
    Ask,
    /// The step fails with [`TOOL_DENIED`], and the denial is audited.
    Deny,
}

impl Verdict {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "ALLOW" => Some(Self::Allow),
            "ASK" => Some(Self::Ask),
            "DENY" => Some(Self::Deny),
            _ => None,
        }
    }

    /// The policy's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Ask => "ASK",
            Self::Deny => "DENY",
        }
    }
}

/// The error code of a tool step the policy (or a person it asked) refused.
pub const TOOL_DENIED: &str = "TOOL_DENIED";

/// Whether steps of this type are tools: HTTP and ACTION steps.
pub fn is_tool_type(step_type: StepType) -> bool {
    matches!(step_type, StepType::Http | StepType::Action)
}

/// Who decides on a tool step the policy asks about: one approval of an operator or
/// above, who may be the member that started the run (the agent chose the call, not
/// them); no deadline.
pub fn ask_approvers() -> ApprovalPolicy {
    ApprovalPolicy {
        approvers: vec![Person::Role(Role::Operator)],
        required: 1,
        timeout: None,
        on_timeout: OnTimeout::Fail,
        continue_on_reject: false,
        allow_self_approval: true,
    }
}

/// The tool a step of `step_type` is, with the app and action keys of an ACTION step's
/// action; `None` when the step is not a tool (or an ACTION step whose action is gone).
pub fn tool_key(step_type: StepType, action: Option<(&str, &str)>) -> Option<String> {
    match step_type {
        StepType::Http => Some("http".to_owned()),
        StepType::Action => action.map(|(app, action)| format!("{app}.{action}")),
        _ => None,
    }
}

/// What `policy` (a frozen `{"tools", "default"}`) says about the tool `key`: its own
/// entry, else its app's (`slack` for `slack.post`), else the default, else ASK. A
/// malformed entry asks: a policy never allows by accident.
pub fn verdict(policy: &Json, key: &str) -> Verdict {
    let tools = policy.get("tools");
    let entry = |k: &str| {
        tools
            .and_then(|t| t.get(k))
            .map(|v| v.as_str().and_then(Verdict::parse).unwrap_or(Verdict::Ask))
    };
    let app = key.split_once('.').map(|(app, _)| app);
    entry(key)
        .or_else(|| app.and_then(entry))
        .or_else(|| {
            policy
                .get("default")
                .map(|v| v.as_str().and_then(Verdict::parse).unwrap_or(Verdict::Ask))
        })
        .unwrap_or(Verdict::Ask)
}

/// What becomes of a tool step of an agent run before it runs: the one rule the
/// engine and the runner API both follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// It runs (allowed; or already running, approved before).
    Pass,
    /// About to start and denied: it fails with [`TOOL_DENIED`], audited.
    Deny,
    /// About to start and asked about: it starts and waits (WAITING) on a member.
    Ask,
    /// Waiting, and nobody decided yet.
    Wait,
    /// Waiting, and a member approved: it runs on (WAITING → RUNNING).
    Resume,
    /// Waiting, and a member rejected: it fails with [`TOOL_DENIED`], audited.
    Reject,
}

/// The gate of a tool step in `status` under `verdict`, with the decisions made on it.
pub fn gate(verdict: Verdict, status: StepRunStatus, decisions: &[Decision]) -> Gate {
    match status {
        StepRunStatus::Pending => match verdict {
            Verdict::Allow => Gate::Pass,
            Verdict::Deny => Gate::Deny,
            Verdict::Ask => Gate::Ask,
        },
        StepRunStatus::Waiting if decisions.contains(&Decision::Reject) => Gate::Reject,
        StepRunStatus::Waiting if decisions.contains(&Decision::Approve) => Gate::Resume,
        StepRunStatus::Waiting => Gate::Wait,
        _ => Gate::Pass,
    }
}

/// The tool a step of a version is (`None`: not a tool), read in `db`.
pub(crate) async fn tool_of_step(
    db: &impl ConnectionTrait,
    step_id: uuid::Uuid,
) -> crate::Result<Option<String>> {
    #[derive(FromQueryResult)]
    struct Row {
        step_type: StepType,
        app_key: Option<String>,
        action_key: Option<String>,
    }
    let row = Row::find_by_statement(stmt(
        "SELECT s.type AS step_type, p.key AS app_key, a.key AS action_key \
         FROM workflow_steps s LEFT JOIN actions a ON a.id = s.action_id \
         LEFT JOIN app_versions v ON v.id = a.app_version_id \
         LEFT JOIN apps p ON p.id = v.app_id WHERE s.id = $1",
        [step_id.into()],
    ))
    .one(db)
    .await?;
    Ok(row.and_then(|r| {
        let action = r.app_key.as_deref().zip(r.action_key.as_deref());
        tool_key(r.step_type, action)
    }))
}

/// The error of a tool step the policy denied (`decision` DENIED), or that a person it
/// asked rejected (`decision` REJECTED). Not retried: it would be refused again.
pub fn denied(key: &str, decision: &str) -> Json {
    let message = match decision {
        "REJECTED" => format!("the agent's call of the tool {key:?} was rejected by an approver"),
        _ => format!("the agent's tool policy denies the tool {key:?}"),
    };
    json!({
        "code": TOOL_DENIED,
        "tool": key,
        "decision": decision,
        "message": message,
        "retryable": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_then_its_app_then_the_default_decide() {
        let policy = json!({
            "tools": { "slack": "DENY", "slack.read": "ALLOW", "http": "ASK" },
            "default": "ALLOW",
        });
        assert_eq!(verdict(&policy, "slack.read"), Verdict::Allow);
        assert_eq!(verdict(&policy, "slack.post"), Verdict::Deny);
        assert_eq!(verdict(&policy, "http"), Verdict::Ask);
        assert_eq!(verdict(&policy, "http.request"), Verdict::Ask);
        assert_eq!(verdict(&policy, "github.issue"), Verdict::Allow);
        assert_eq!(verdict(&json!({}), "http"), Verdict::Ask);
        assert_eq!(
            verdict(
                &json!({ "tools": { "http": "maybe" }, "default": "ALLOW" }),
                "http"
            ),
            Verdict::Ask
        );
    }

    #[test]
    fn the_gate_denies_asks_and_follows_decisions() {
        use StepRunStatus::{Pending, Running, Waiting};
        assert_eq!(gate(Verdict::Allow, Pending, &[]), Gate::Pass);
        assert_eq!(gate(Verdict::Deny, Pending, &[]), Gate::Deny);
        assert_eq!(gate(Verdict::Ask, Pending, &[]), Gate::Ask);
        assert_eq!(gate(Verdict::Ask, Waiting, &[]), Gate::Wait);
        assert_eq!(
            gate(Verdict::Ask, Waiting, &[Decision::Approve]),
            Gate::Resume
        );
        assert_eq!(
            gate(
                Verdict::Ask,
                Waiting,
                &[Decision::Approve, Decision::Reject]
            ),
            Gate::Reject
        );
        assert_eq!(gate(Verdict::Deny, Running, &[]), Gate::Pass);
    }

    #[test]
    fn http_and_action_steps_are_tools() {
        assert_eq!(tool_key(StepType::Http, None).as_deref(), Some("http"));
        assert_eq!(
            tool_key(StepType::Action, Some(("slack", "post"))).as_deref(),
            Some("slack.post")
        );
        assert_eq!(tool_key(StepType::Action, None), None);
        assert_eq!(tool_key(StepType::Transform, None), None);
        assert_eq!(tool_key(StepType::Approval, None), None);
    }
}
