//! Approvals: `decideApproval`, `approvalsPending`, and the decisions on a step run.

use async_graphql::{Context, Enum, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use trellis_core::runs::approvals::{self, NewDecision, PendingApproval};
use trellis_entity::{approval_decision, IdKind};

use super::types::{StepRun, WorkflowRun};
use crate::context::{mutate, run, ContextExt};
use crate::identity::types::{input_id, load_user, User};

/// What a person decides on an approval step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::approval_decision::Decision")]
pub enum Decision {
    /// Count one approval; the step succeeds once `required` approvals are in.
    Approve,
    /// Reject: one rejection decides the step (it fails, or succeeds with
    /// `approved: false` when its `onReject` is CONTINUE).
    Reject,
}

/// One person's decision on an approval step.
pub struct ApprovalDecision(pub approval_decision::Model);

/// One person's decision on an approval step; final once made.
#[Object]
impl ApprovalDecision {
    /// What they decided.
    async fn decision(&self) -> Decision {
        self.0.decision.into()
    }
    /// Why, in their words; null when they gave no comment.
    async fn comment(&self) -> Option<&str> {
        self.0.comment.as_deref()
    }
    /// Who decided; null once their account is deleted.
    async fn decided_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.user_id).await
    }
    /// When.
    async fn decided_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// An approval step waiting on people, which the caller may decide on.
pub struct Approval(pub PendingApproval);

/// An approval step waiting on people, which the caller may decide on.
#[Object]
impl Approval {
    /// The waiting step run; pass its `id` to `decideApproval`.
    async fn step_run(&self) -> StepRun {
        StepRun::from(self.0.step.clone())
    }
    /// The run it holds up.
    async fn run(&self) -> WorkflowRun {
        WorkflowRun(self.0.run.clone())
    }
    /// The step's `message` for the approvers, rendered; null when it has none.
    async fn message(&self) -> Option<&str> {
        self.0
            .step
            .input
            .as_ref()
            .and_then(|c| c.get("message"))
            .and_then(serde_json::Value::as_str)
    }
    /// How many approvals approve the step.
    async fn required(&self) -> i32 {
        i32::try_from(self.0.policy.required).unwrap_or(i32::MAX)
    }
    /// The decisions so far (approvals only: a rejection would have decided it).
    async fn decisions(&self) -> Vec<ApprovalDecision> {
        self.0
            .decisions
            .iter()
            .cloned()
            .map(ApprovalDecision)
            .collect()
    }
    /// When `onTimeout` decides for the approvers; null when the step waits for as
    /// long as it takes.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        let timeout = self.0.policy.timeout?;
        Some(self.0.step.started_at? + timeout)
    }
}

/// A decision on a waiting approval step.
#[derive(InputObject)]
pub struct DecideApprovalInput {
    /// The waiting approval step run (`srn_…`).
    pub step_run_id: ID,
    /// APPROVE or REJECT.
    pub decision: Decision,
    /// Why, for the run's history and the audit log: at most 2,000 characters.
    pub comment: Option<String>,
}

payload!(
    /// The decision and the step run it was made on.
    DecideApprovalPayload {
        /// The step run as it is now (still WAITING: the engine moves it on at once);
        /// null when `userErrors` is not empty.
        step_run: StepRun,
        /// The decision recorded (the first one, when the same decision is repeated);
        /// null when `userErrors` is not empty.
        decision: ApprovalDecision,
    }
);

#[derive(Default)]
pub struct ApprovalsQuery;

#[Object]
impl ApprovalsQuery {
    /// The approval steps waiting on people that the caller may decide on and has not,
    /// oldest first: they are named among its approvers (by role, id or email), and
    /// they did not start the run unless the step allows self-approval.
    async fn approvals_pending(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return: 1 to 100, 50 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Approval>> {
        let limit = u64::try_from(first.unwrap_or(50)).unwrap_or(0);
        let pending = run(ctx, approvals::pending_approvals(ctx.scope()?, limit)).await?;
        Ok(pending.into_iter().map(Approval).collect())
    }
}

#[derive(Default)]
pub struct ApprovalsMutation;

#[Object]
impl ApprovalsMutation {
    /// Decides on a waiting approval step (its approvers; FORBIDDEN for others, and for
    /// the person who started the run unless the step allows self-approval). Audited;
    /// the same decision again changes nothing, another one is a CONFLICT userError.
    async fn decide_approval(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The step run and the decision.")] input: DecideApprovalInput,
    ) -> async_graphql::Result<DecideApprovalPayload> {
        let step_run_id = input_id(ctx, &input.step_run_id, IdKind::StepRun)?;
        let new = NewDecision {
            step_run_id,
            decision: input.decision.into(),
            comment: input.comment,
        };
        let (decided, user_errors) =
            mutate(ctx, approvals::decide_approval(ctx.scope()?, new)).await?;
        let (step_run, decision) = match decided {
            Some((step, decision)) => (Some(StepRun::from(step)), Some(ApprovalDecision(decision))),
            None => (None, None),
        };
        Ok(DecideApprovalPayload {
            step_run,
            decision,
            user_errors,
        })
    }
}
