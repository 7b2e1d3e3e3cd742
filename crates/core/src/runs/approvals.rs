//! People decide on approval steps: `decideApproval` records one person's decision on
//! a waiting approval step and wakes its run; `approvalsPending` lists the waiting
//! approvals the caller may decide on. A tool step of an agent run whose tool policy
//! says ASK waits and is decided the same way (`agents::policy`). The rules of who may decide live in the step's
//! policy (`engine::steps::approval`); a decision is final (one per person and step,
//! repeating it is a no-op), audited, and announced to the run's live watchers.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use trellis_entity::approval_decision::{self, Decision};
use trellis_entity::{
    step_run, user, workflow_run, workflow_step, IdKind, StepRunStatus, StepType,
};
use uuid::Uuid;

use super::events;
use super::start::lock_run;
use crate::agents::policy;
use crate::audit::{self, Event};
use crate::engine::steps::approval::ApprovalPolicy;
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};
use trellis_entity::Role;

/// The longest comment a decision keeps.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// A decision as a person sends it.
#[derive(Clone, Debug)]
pub struct NewDecision {
    pub step_run_id: Uuid,
    pub decision: Decision,
    pub comment: Option<String>,
}

/// Who the caller is, as approvers are named.
struct Caller {
    user_id: Uuid,
    email: String,
    role: Role,
}

async fn caller(scope: &RequestScope) -> Result<Caller> {
    let ctx = scope.require(Role::Viewer).await?;
    let user_id = scope.user_id()?;
    let me = user::Entity::find_by_id(user_id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::Unauthenticated)?;
    Ok(Caller {
        user_id,
        email: me.email,
        role: ctx.role,
    })
}

/// Whether `caller` may decide on a waiting approval of a run started by `started_by`.
fn may_decide(policy: &ApprovalPolicy, caller: &Caller, started_by: Option<Uuid>) -> Result<()> {
    if !policy.admits(caller.user_id, &caller.email, caller.role) {
        return Err(Error::Forbidden("you are not an approver of this step"));
    }
    if started_by == Some(caller.user_id) && !policy.allow_self_approval {
        return Err(Error::Forbidden(
            "you started this run: another approver must decide",
        ));
    }
    Ok(())
}

/// Records the caller's decision on a waiting approval step and wakes its run. The
/// same decision again returns the first; another one is CONFLICT.
pub async fn decide_approval(
    scope: &RequestScope,
    new: NewDecision,
) -> Result<(step_run::Model, approval_decision::Model)> {
    let caller = caller(scope).await?;
    let comment = new
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(Error::bad_input(
            "comment",
            format!("a comment is at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let tx = scope.tx().await?;
    let found = step_run::Entity::find_by_id(new.step_run_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    // The run is locked before the step is read again: the executor holds the same
    // lock while it looks at decisions, so it either sees this one or finds the run
    // handed back and woken by it.
    let run = lock_run(scope, found.run_id).await?;
    let step = step_run::Entity::find_by_id(new.step_run_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let earlier = approval_decision::Entity::find()
        .filter(approval_decision::Column::StepRunId.eq(step.id))
        .filter(approval_decision::Column::UserId.eq(caller.user_id))
        .one(tx)
        .await?;
    if let Some(earlier) = earlier {
        return if earlier.decision == new.decision {
            Ok((step, earlier))
        } else {
            Err(Error::conflict(
                Some("decision"),
                "you already decided otherwise on this step; a decision is final",
            ))
        };
    }
    let step_type = match step.step_id {
        Some(id) => workflow_step::Entity::find_by_id(id)
            .one(tx)
            .await?
            .map(|s| s.step_type),
        None => None,
    };
    let is_approval = step_type == Some(StepType::Approval);
    // A tool step of an agent run waits on people when the run's tool policy asks.
    let is_tool_gate =
        !is_approval && run.tool_policy.is_some() && step_type.is_some_and(policy::is_tool_type);
    if !is_approval && !is_tool_gate {
        return Err(Error::bad_input(
            "stepRunId",
            "this step is not an approval",
        ));
    }
    if step.status != StepRunStatus::Waiting {
        return Err(Error::conflict(
            Some("stepRunId"),
            format!(
                "this approval is {} and takes no decision",
                super::state::step_status_name(step.status)
            ),
        ));
    }
    let policy = if is_approval {
        ApprovalPolicy::of(step.input.as_ref().unwrap_or(&json!({})))
    } else {
        policy::ask_approvers()
    };
    may_decide(&policy, &caller, run.created_by)?;
    let decision = approval_decision::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(step.tenant_id),
        step_run_id: Set(step.id),
        user_id: Set(Some(caller.user_id)),
        decision: Set(new.decision),
        comment: Set(comment),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(step.tenant_id), "approval.decide")
            .target(IdKind::StepRun, step.id)
            .details(json!({
                "run": run.id,
                "step": step.step_key,
                "decision": new.decision,
            })),
    )
    .await?;
    // A run handed back to wait for people is due again now.
    let woken = tx
        .execute(stmt(
            "UPDATE workflow_runs SET lease_expires_at = now() \
             WHERE id = $1 AND status = 'running' AND lease_token IS NULL \
             RETURNING id",
            [run.id.into()],
        ))
        .await?;
    tracing::debug!(run = %run.id, woken = woken.rows_affected(), "approval decided");
    events::run_changed(scope, &run);
    Ok((step, decision))
}

/// A waiting approval step with what is needed to show it: its run, its policy and
/// the decisions so far.
#[derive(Clone, Debug)]
pub struct PendingApproval {
    pub step: step_run::Model,
    pub run: workflow_run::Model,
    pub policy: ApprovalPolicy,
    pub decisions: Vec<approval_decision::Model>,
}

/// The most approvals one `approvalsPending` call lists.
pub const MAX_PENDING: u64 = 100;

/// The waiting approvals the caller may decide on and has not, oldest first, at most
/// `limit`.
pub async fn pending_approvals(scope: &RequestScope, limit: u64) -> Result<Vec<PendingApproval>> {
    if !(1..=MAX_PENDING).contains(&limit) {
        return Err(Error::bad_input(
            "first",
            format!("first is 1 to {MAX_PENDING}"),
        ));
    }
    let caller = caller(scope).await?;
    let tx = scope.tx().await?;
    // Waiting approval steps are few (the partial index holds only them); those the
    // caller may not decide on are dropped below, so read a bounded batch beyond the
    // page.
    let steps = step_run::Entity::find()
        .from_raw_sql(stmt(
            "SELECT s.* FROM step_runs s \
             JOIN workflow_steps w ON w.tenant_id = s.tenant_id AND w.id = s.step_id \
             WHERE s.status = 'waiting' AND (w.type = 'approval' OR ( \
               w.type IN ('http', 'action') AND EXISTS (SELECT 1 FROM workflow_runs r \
                 WHERE r.tenant_id = s.tenant_id AND r.id = s.run_id \
                   AND r.tool_policy IS NOT NULL))) \
             ORDER BY s.started_at, s.id LIMIT 1000",
            [],
        ))
        .all(tx)
        .await?;
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let runs = workflow_run::Entity::find()
        .filter(workflow_run::Column::Id.is_in(steps.iter().map(|s| s.run_id)))
        .all(tx)
        .await?;
    let decisions = approval_decision::Entity::find()
        .filter(approval_decision::Column::StepRunId.is_in(steps.iter().map(|s| s.id)))
        .order_by_asc(approval_decision::Column::CreatedAt)
        .all(tx)
        .await?;
    // Which are approval steps; the others are tool steps an agent's policy asks about.
    let approval_steps: Vec<uuid::Uuid> = workflow_step::Entity::find()
        .filter(workflow_step::Column::Id.is_in(steps.iter().filter_map(|s| s.step_id)))
        .filter(workflow_step::Column::StepType.eq(StepType::Approval))
        .all(tx)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut pending = Vec::new();
    for step in steps {
        let Some(run) = runs.iter().find(|r| r.id == step.run_id) else {
            continue;
        };
        let is_approval = step.step_id.is_some_and(|id| approval_steps.contains(&id));
        let policy = if is_approval {
            ApprovalPolicy::of(step.input.as_ref().unwrap_or(&json!({})))
        } else {
            policy::ask_approvers()
        };
        let mine: Vec<_> = decisions
            .iter()
            .filter(|d| d.step_run_id == step.id)
            .cloned()
            .collect();
        let decided = mine.iter().any(|d| d.user_id == Some(caller.user_id));
        if decided || may_decide(&policy, &caller, run.created_by).is_err() {
            continue;
        }
        pending.push(PendingApproval {
            step,
            run: run.clone(),
            policy,
            decisions: mine,
        });
        if pending.len() as u64 == limit {
            break;
        }
    }
    Ok(pending)
}
