//! APPROVAL: the run waits on people. `{approvers, required, timeoutHours, onTimeout,
//! onReject, allowSelfApproval, message}`:
//!
//! - `approvers`: role names (`ADMIN` admits admins and owners: a role and those above
//!   it), user ids (`usr_…`) or email addresses; empty or missing admits operators
//!   and above.
//! - `required` approvals (1 by default) approve the step; one rejection rejects it.
//! - `timeoutHours`: after that long without enough decisions, `onTimeout` decides:
//!   `FAIL` (the default; the step fails with `TIMEOUT`), `APPROVE` or `REJECT`.
//! - A rejection fails the step (`REJECTED`) unless `onReject` is `CONTINUE`: then it
//!   succeeds with `approved: false` and transitions route on it.
//! - The person who started the run may not decide unless `allowSelfApproval` is true.
//!
//! While it waits the step is `WAITING` and the run holds no worker; a decision
//! (`decideApproval`) wakes it. A simulation resolves at once as `simulatedDecision`
//! (`APPROVE` by default) says.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use trellis_entity::approval_decision::Decision;
use trellis_entity::{IdKind, PrefixedId, Role};
use uuid::Uuid;

use super::{StepInput, StepKind, StepResult};
use crate::engine::people::{parse_person, Person};

pub struct Approval;

/// What happens when no decision came in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    Fail,
    Approve,
    Reject,
}

/// An approval step's rules, read from its (rendered) config.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalPolicy {
    pub approvers: Vec<Person>,
    pub required: usize,
    pub timeout: Option<chrono::Duration>,
    pub on_timeout: OnTimeout,
    pub continue_on_reject: bool,
    pub allow_self_approval: bool,
}

/// The most approvals a step may require.
pub const MAX_REQUIRED: u64 = 50;

impl ApprovalPolicy {
    /// The policy of a step's config; entries that name nobody are dropped (the graph
    /// check refuses them on save).
    pub fn of(config: &Value) -> Self {
        // Only a missing or empty list admits operators: a list whose entries name
        // nobody (saved before the check, or rendered from a template) admits nobody,
        // and the timeout decides.
        let named = config
            .get("approvers")
            .and_then(Value::as_array)
            .filter(|list| !list.is_empty());
        let approvers: Vec<Person> = match named {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .filter_map(parse_person)
                .collect(),
            None => vec![Person::Role(Role::Operator)],
        };
        let word = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
        };
        Self {
            approvers,
            required: config
                .get("required")
                .and_then(Value::as_u64)
                .map_or(1, |n| n.clamp(1, MAX_REQUIRED) as usize),
            timeout: config
                .get("timeoutHours")
                .and_then(Value::as_f64)
                .filter(|h| h.is_finite() && *h > 0.0)
                .map(|h| chrono::Duration::milliseconds((h.min(8760.0) * 3_600_000.0) as i64)),
            on_timeout: match word("onTimeout").as_deref() {
                Some("APPROVE") => OnTimeout::Approve,
                Some("REJECT") => OnTimeout::Reject,
                _ => OnTimeout::Fail,
            },
            continue_on_reject: word("onReject").as_deref() == Some("CONTINUE"),
            allow_self_approval: config
                .get("allowSelfApproval")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Whether a member with this id, email and role is one of the approvers.
    pub fn admits(&self, user_id: Uuid, email: &str, role: Role) -> bool {
        self.approvers
            .iter()
            .any(|person| person.names(user_id, email, role))
    }
}

/// One decision as the step reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionSeen {
    pub user_id: Option<Uuid>,
    pub decision: Decision,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

fn decided(approved: bool, how: &str, decisions: &[DecisionSeen]) -> Value {
    let list: Vec<Value> = decisions
        .iter()
        .map(|d| {
            json!({
                "user": d.user_id.map(|u| PrefixedId::new(IdKind::User, u).to_string()),
                "decision": d.decision,
                "comment": d.comment,
                "at": d.at,
            })
        })
        .collect();
    json!({ "approved": approved, "decision": how, "decisions": list })
}

impl StepKind for Approval {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        let policy = ApprovalPolicy::of(input.config);
        let rejected = |how: &str, decisions: &[DecisionSeen]| {
            let output = decided(false, how, decisions);
            if policy.continue_on_reject {
                StepResult::Done(output)
            } else {
                let mut error = output;
                error["code"] = json!("REJECTED");
                error["message"] = json!("the approval was rejected");
                error["retryable"] = json!(false);
                StepResult::Failed(error)
            }
        };
        if input.is_simulation {
            let reject = input
                .config
                .get("simulatedDecision")
                .and_then(Value::as_str)
                .is_some_and(|d| d.eq_ignore_ascii_case("REJECT"));
            return if reject {
                rejected("SIMULATED", &[])
            } else {
                StepResult::Done(decided(true, "SIMULATED", &[]))
            };
        }
        let decisions = input.decisions;
        if decisions.iter().any(|d| d.decision == Decision::Reject) {
            return rejected("REJECTED", decisions);
        }
        let approvals = decisions
            .iter()
            .filter(|d| d.decision == Decision::Approve)
            .count();
        if approvals >= policy.required {
            return StepResult::Done(decided(true, "APPROVED", decisions));
        }
        let deadline = policy.timeout.map(|t| input.started_at + t);
        match deadline {
            Some(deadline) if input.now >= deadline => match policy.on_timeout {
                OnTimeout::Approve => StepResult::Done(decided(true, "TIMED_OUT", decisions)),
                OnTimeout::Reject => rejected("TIMED_OUT", decisions),
                OnTimeout::Fail => StepResult::Failed(json!({
                    "code": "TIMEOUT",
                    "message": "no decision came in time",
                    "retryable": false,
                })),
            },
            _ => StepResult::AwaitingDecision { until: deadline },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_are_roles_users_or_emails() {
        let user = Uuid::now_v7();
        let policy = ApprovalPolicy::of(&json!({
            "approvers": ["admin", format!("usr_{}", user.simple()), "Boss@Example.com", "nobody"],
            "required": 2,
        }));
        assert_eq!(policy.approvers.len(), 3);
        assert_eq!(policy.required, 2);
        let other = Uuid::now_v7();
        assert!(policy.admits(other, "x@y.z", Role::Owner));
        assert!(policy.admits(other, "x@y.z", Role::Admin));
        assert!(!policy.admits(other, "x@y.z", Role::Builder));
        assert!(policy.admits(user, "x@y.z", Role::Viewer));
        assert!(policy.admits(other, "boss@example.com", Role::Viewer));
        // Nobody named: operators and above.
        let open = ApprovalPolicy::of(&json!({}));
        assert!(open.admits(other, "", Role::Operator));
        assert!(!open.admits(other, "", Role::Viewer));
        assert_eq!(open.on_timeout, OnTimeout::Fail);
        // A list that names nobody admits nobody.
        let closed = ApprovalPolicy::of(&json!({ "approvers": ["the boss"] }));
        assert!(!closed.admits(other, "", Role::Owner));
    }
}
