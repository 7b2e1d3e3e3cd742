//! The runner API: workers with a runner API key claim pending runs under a lease
//! (`FOR UPDATE SKIP LOCKED`, so concurrent workers never claim the same run), then
//! move the run's steps and finish it. Every call names the run and the lease token
//! its claim returned; a claim after the lease expired issues a new token, which locks
//! the old holder out. Each call is safe to retry: repeating a transition that already
//! happened with the same result succeeds and changes nothing; with another result it
//! is CONFLICT.
//!
//! Step transitions live in the step runs themselves (status and timestamps); the
//! audit log records run-level events (start, claim, finish, cancel), not each step,
//! so that workers of one tenant do not queue on its audit chain.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value as Json};
use trellis_entity::workflow_step::foreign_step_sql;
use trellis_entity::{
    approval_decision, step_attempt, step_run, workflow_run, IdKind, RunStatus, StepRunStatus,
};
use uuid::Uuid;

use super::events;
use super::start::{lock_run, MAX_PAYLOAD_BYTES};
use super::state::{check_run_move, check_step_move};
use crate::agents::activity::{self, NewActivity, RecordedBy};
use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The most runs one claim takes.
pub const MAX_CLAIM: u64 = 100;
/// The shortest and longest lease a claim may ask for.
pub const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3600));

/// A claimed run and the token of its lease.
#[derive(Debug)]
pub struct Lease {
    pub run: workflow_run::Model,
    pub token: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Leases up to `limit` open runs of the key's tenant, oldest first: pending runs and
/// runs whose lease expired. Pending runs become running.
pub async fn claim_runs(scope: &RequestScope, limit: u64, lease: Duration) -> Result<Vec<Lease>> {
    claim(scope, limit, lease, None).await
}

/// The open runs of tenant `$1` in `status` whose lease is free, oldest first, at most
/// `limit` (a parameter), locked: with `$5` (step types) set, only runs of versions with
/// no foreign step ([`foreign_step_sql`]: of another type, unless an ACTION step of the
/// http app's `request` action, or marked `"external": true`).
fn open_runs(status: &str, limit: &str) -> String {
    format!(
        "SELECT w.id, w.created_at FROM workflow_runs w \
         WHERE w.tenant_id = $1 AND w.status = '{status}' \
           AND (w.lease_expires_at IS NULL OR w.lease_expires_at < now()) \
           AND ($5::text[] IS NULL OR NOT EXISTS ( \
             SELECT 1 FROM workflow_steps s WHERE s.tenant_id = w.tenant_id \
               AND s.version_id = w.version_id \
               AND ({foreign}))) \
         ORDER BY w.created_at, w.id LIMIT {limit} FOR UPDATE OF w SKIP LOCKED",
        foreign = foreign_step_sql("$5::text[]"),
    )
}

/// The claim: running runs to resume (at most `$2`) and pending ones to start (at most
/// `$6`), picked apart so that a cap on new runs never keeps a running one from
/// resuming, then the oldest `$2` of both leased to `$3` for `$4` ms.
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH resumed AS ({}), fresh AS ({}), \
         picked AS ( \
           SELECT id FROM (SELECT * FROM resumed UNION ALL SELECT * FROM fresh) open \
           ORDER BY created_at, id LIMIT $2) \
         UPDATE workflow_runs r SET lease_token = gen_random_uuid(), lease_owner = $3, \
           lease_expires_at = now() + $4 * interval '1 millisecond', status = 'running', \
           started_at = coalesce(r.started_at, now()) \
         FROM picked WHERE r.id = picked.id RETURNING r.*",
        open_runs("running", "$2"),
        open_runs("pending", "$6"),
    )
});

/// Which runs an executor's claim takes: of versions made only of `step_types`, and of
/// pending runs at most `new_runs` (the tenant's room under its cap on concurrent runs;
/// runs already running, a timer or a dead worker's, are always resumed).
pub(crate) struct EngineClaim<'a> {
    pub step_types: &'a [String],
    pub new_runs: u64,
}

/// [`claim_runs`], for the executor when `engine` is given (see [`EngineClaim`]).
pub(crate) async fn claim(
    scope: &RequestScope,
    limit: u64,
    lease: Duration,
    engine: Option<EngineClaim<'_>>,
) -> Result<Vec<Lease>> {
    let ctx = scope.require_runner().await?;
    if !(1..=MAX_CLAIM).contains(&limit) {
        return Err(Error::bad_input(
            "limit",
            format!("limit is 1 to {MAX_CLAIM}"),
        ));
    }
    if lease < LEASE_RANGE.0 || lease > LEASE_RANGE.1 {
        return Err(Error::bad_input(
            "leaseSeconds",
            "a lease lasts 5 to 3600 seconds",
        ));
    }
    let tx = scope.tx().await?;
    let types: Option<Vec<String>> = engine.as_ref().map(|e| e.step_types.to_vec());
    let new_runs = engine.as_ref().map_or(limit, |e| e.new_runs.min(limit));
    let runs = workflow_run::Entity::find()
        .from_raw_sql(stmt(
            &CLAIM_SQL,
            [
                ctx.tenant_id.into(),
                (limit as i64).into(),
                scope.api_key_id().into(),
                (lease.as_millis() as i64).into(),
                types.into(),
                (new_runs as i64).into(),
            ],
        ))
        .all(tx)
        .await?;
    let mut leases = Vec::with_capacity(runs.len());
    for run in runs {
        events::run_changed(scope, &run);
        leases.push(Lease {
            token: run
                .lease_token
                .ok_or_else(|| anyhow::anyhow!("claimed run has no lease"))?,
            expires_at: run
                .lease_expires_at
                .ok_or_else(|| anyhow::anyhow!("claimed run has no lease expiry"))?,
            run,
        });
    }
    if !leases.is_empty() {
        audit::record(
            scope,
            Event::new(Some(ctx.tenant_id), "run.claim").details(json!({
                "runs": leases.iter().map(|l| l.run.id).collect::<Vec<_>>(),
                "leaseMs": lease.as_millis() as u64,
            })),
        )
        .await?;
    }
    Ok(leases)
}

/// The run, locked, if the caller holds its lease.
pub(crate) async fn leased(
    scope: &RequestScope,
    run_id: Uuid,
    token: Uuid,
) -> Result<workflow_run::Model> {
    scope.require_runner().await?;
    let run = lock_run(scope, run_id).await?;
    if run.lease_token != Some(token) {
        return Err(Error::conflict(
            Some("leaseToken"),
            "this lease is not (or no longer) the run's: claim the run again",
        ));
    }
    Ok(run)
}

/// Extends a lease the caller holds.
pub async fn renew_lease(
    scope: &RequestScope,
    run_id: Uuid,
    token: Uuid,
    lease: Duration,
) -> Result<workflow_run::Model> {
    let run = leased(scope, run_id, token).await?;
    if lease < LEASE_RANGE.0 || lease > LEASE_RANGE.1 {
        return Err(Error::bad_input(
            "leaseSeconds",
            "a lease lasts 5 to 3600 seconds",
        ));
    }
    if super::state::run_is_finished(run.status) {
        return Ok(run);
    }
    Ok(workflow_run::ActiveModel {
        id: Set(run_id),
        lease_expires_at: Set(Some(
            Utc::now() + chrono::Duration::from_std(lease).map_err(anyhow::Error::new)?,
        )),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?)
}

/// What a step-run call wants to happen.
#[derive(Clone, Debug)]
pub enum StepMove {
    Start {
        input: Json,
    },
    Complete {
        output: Json,
    },
    Fail {
        error: Json,
    },
    Skip {
        reason: Option<String>,
    },
    /// Attempt `attempt` failed with `error` and is tried again `after` the failure:
    /// the attempt is kept in `step_attempts` and the step stays running, its attempt
    /// number one up.
    Retry {
        attempt: i32,
        error: Json,
        after: Duration,
    },
    /// The step waits on people (an approval) until a decision completes or fails it.
    Wait,
    /// A waiting tool step of an agent run that a member approved runs on (WAITING →
    /// RUNNING). The engine's only: the runner API never sends it.
    Resume,
    /// A pending step that ran at once (the engine's inline steps): it starts and
    /// succeeds (`Ok(output)`) or fails (`Err(error)`) in one move.
    Settle {
        input: Json,
        result: std::result::Result<Json, Json>,
    },
}

impl StepMove {
    fn target(&self) -> StepRunStatus {
        match self {
            StepMove::Start { .. } | StepMove::Retry { .. } | StepMove::Resume => {
                StepRunStatus::Running
            }
            StepMove::Complete { .. } => StepRunStatus::Succeeded,
            StepMove::Fail { .. } => StepRunStatus::Failed,
            StepMove::Skip { .. } => StepRunStatus::Skipped,
            StepMove::Wait => StepRunStatus::Waiting,
            StepMove::Settle { result: Ok(_), .. } => StepRunStatus::Succeeded,
            StepMove::Settle { result: Err(_), .. } => StepRunStatus::Failed,
        }
    }
}

fn check_size(field: &str, value: &Json) -> Result<()> {
    if value.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_input(
            field,
            format!("{field} is at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

/// Moves one step of a leased, running run. Repeating a move that already happened
/// with the same payload succeeds without a second effect.
pub async fn move_step(
    scope: &RequestScope,
    run_id: Uuid,
    token: Uuid,
    step_key: &str,
    change: StepMove,
) -> Result<step_run::Model> {
    let run = leased(scope, run_id, token).await?;
    let step = step_run::Entity::find()
        .filter(step_run::Column::RunId.eq(run_id))
        .filter(step_run::Column::StepKey.eq(step_key))
        .one(scope.tx().await?)
        .await?
        .ok_or_else(|| Error::bad_input("stepKey", format!("this run has no step {step_key:?}")))?;
    if run.tool_policy.is_some() {
        if let Some(gated) = gate_tool_step(scope, &run, &step, &change).await? {
            return Ok(gated);
        }
    }
    apply_move(scope, &run, step, change).await
}

/// The tool policy of an agent run, for a worker's move of one of its tool steps
/// (`agents::policy`): a start the policy denies fails the step instead (TOOL_DENIED,
/// audited); a start it asks about makes the step wait, and a start of a waiting step
/// answers the step as it is until a member decides, then runs it (approved) or fails
/// it (rejected). A waiting tool step cannot be completed. `None`: the move goes on as
/// asked.
async fn gate_tool_step(
    scope: &RequestScope,
    run: &workflow_run::Model,
    step: &step_run::Model,
    change: &StepMove,
) -> Result<Option<step_run::Model>> {
    use crate::agents::policy::{self, Gate};
    let (Some(policy_json), Some(step_id)) = (&run.tool_policy, step.step_id) else {
        return Ok(None);
    };
    let tx = scope.tx().await?;
    let Some(tool) = policy::tool_of_step(tx, step_id).await? else {
        return Ok(None);
    };
    if step.status == StepRunStatus::Waiting && matches!(change, StepMove::Complete { .. }) {
        return Err(Error::conflict(
            Some("stepKey"),
            format!(
                "step {:?} waits for a member to approve the tool {tool:?}",
                step.step_key
            ),
        ));
    }
    let StepMove::Start { input } = change else {
        return Ok(None);
    };
    let decisions: Vec<_> = approval_decision::Entity::find()
        .filter(approval_decision::Column::StepRunId.eq(step.id))
        .all(tx)
        .await?
        .into_iter()
        .map(|d| d.decision)
        .collect();
    let verdict = policy::verdict(policy_json, &tool);
    let deny = |decision: &str| StepMove::Fail {
        error: policy::denied(&tool, decision),
    };
    let moved = match policy::gate(verdict, step.status, &decisions) {
        Gate::Pass => return Ok(None),
        Gate::Wait => step.clone(),
        Gate::Deny => {
            let started = apply_move(scope, run, step.clone(), change.clone()).await?;
            let failed = apply_move(scope, run, started, deny("DENIED")).await?;
            crate::agents::runs::audit_denial(scope, run, step.id, &step.step_key, &tool, "DENIED")
                .await?;
            failed
        }
        Gate::Ask => {
            let started = apply_move(
                scope,
                run,
                step.clone(),
                StepMove::Start {
                    input: input.clone(),
                },
            )
            .await?;
            apply_move(scope, run, started, StepMove::Wait).await?
        }
        Gate::Reject => {
            let failed = apply_move(scope, run, step.clone(), deny("REJECTED")).await?;
            crate::agents::runs::audit_denial(
                scope,
                run,
                step.id,
                &step.step_key,
                &tool,
                "REJECTED",
            )
            .await?;
            failed
        }
        Gate::Resume => apply_move(scope, run, step.clone(), StepMove::Resume).await?,
    };
    Ok(Some(moved))
}

/// Moves `step` of `run`, which the caller has locked and leased in this transaction
/// (the engine, which read both already): the rules of [`move_step`] without reading
/// them again.
pub(crate) async fn apply_move(
    scope: &RequestScope,
    run: &workflow_run::Model,
    step: step_run::Model,
    change: StepMove,
) -> Result<step_run::Model> {
    let step_key = step.step_key.clone();
    let step_key = step_key.as_str();
    let tx = scope.tx().await?;
    let target = change.target();
    if let StepMove::Retry {
        attempt,
        error,
        after,
    } = change
    {
        return retry_step(scope, run, step, attempt, error, after).await;
    }
    if step.status == target {
        let same = match &change {
            StepMove::Start { input } => step.input.as_ref() == Some(input),
            StepMove::Complete { output }
            | StepMove::Settle {
                result: Ok(output), ..
            } => step.output.as_ref() == Some(output),
            StepMove::Fail { error }
            | StepMove::Settle {
                result: Err(error), ..
            } => step.error.as_ref() == Some(error),
            StepMove::Skip { .. } | StepMove::Wait | StepMove::Retry { .. } | StepMove::Resume => {
                true
            }
        };
        return if same {
            Ok(step)
        } else {
            Err(Error::conflict(
                Some("stepKey"),
                format!("step {step_key:?} already moved with another payload"),
            ))
        };
    }
    if run.status != RunStatus::Running {
        return Err(Error::conflict(Some("runId"), "the run is not running"));
    }
    // Settling is a start and an end at once: checked as both. Resuming is the one way
    // back from WAITING, outside the state machine runners move by.
    if matches!(change, StepMove::Settle { .. }) {
        check_step_move(step_key, step.status, StepRunStatus::Running)?;
    } else if matches!(change, StepMove::Resume) {
        if step.status != StepRunStatus::Waiting {
            check_step_move(step_key, step.status, target)?;
        }
    } else {
        check_step_move(step_key, step.status, target)?;
    }
    let now = Utc::now();
    let mut row = step_run::ActiveModel {
        id: Set(step.id),
        status: Set(target),
        ..Default::default()
    };
    match change {
        StepMove::Start { input } => {
            check_size("input", &input)?;
            row.input = Set(Some(input));
            row.started_at = Set(Some(now));
            row.attempt = Set(step.attempt + 1);
        }
        StepMove::Complete { output } => {
            check_size("output", &output)?;
            row.output = Set(Some(output));
            row.finished_at = Set(Some(now));
        }
        StepMove::Fail { error } => {
            check_size("error", &error)?;
            row.error = Set(Some(error));
            row.finished_at = Set(Some(now));
        }
        StepMove::Skip { reason } => {
            row.error = Set(reason.map(|r| json!({ "skipped": r })));
            row.finished_at = Set(Some(now));
        }
        StepMove::Settle { input, result } => {
            check_size("input", &input)?;
            row.input = Set(Some(input));
            row.started_at = Set(Some(now));
            row.attempt = Set(step.attempt + 1);
            row.finished_at = Set(Some(now));
            match result {
                Ok(output) => {
                    check_size("output", &output)?;
                    row.output = Set(Some(output));
                }
                Err(error) => {
                    check_size("error", &error)?;
                    row.error = Set(Some(error));
                }
            }
        }
        StepMove::Wait | StepMove::Retry { .. } | StepMove::Resume => {}
    }
    if step.next_attempt_at.is_some() {
        row.next_attempt_at = Set(None);
    }
    let step = row.update(tx).await?;
    events::run_changed(scope, run);
    Ok(step)
}

/// Keeps failed attempt `attempt` of a running step and schedules the next `after`
/// now. Repeating it once the step moved past that attempt changes nothing.
async fn retry_step(
    scope: &RequestScope,
    run: &workflow_run::Model,
    step: step_run::Model,
    attempt: i32,
    error: Json,
    after: Duration,
) -> Result<step_run::Model> {
    if step.attempt > attempt {
        return Ok(step);
    }
    if run.status != RunStatus::Running {
        return Err(Error::conflict(Some("runId"), "the run is not running"));
    }
    if step.status != StepRunStatus::Running || step.attempt != attempt {
        return Err(Error::conflict(
            Some("stepKey"),
            format!("step {:?} is not running attempt {attempt}", step.step_key),
        ));
    }
    check_size("error", &error)?;
    let tx = scope.tx().await?;
    let now = Utc::now();
    let at = now + chrono::Duration::from_std(after).map_err(anyhow::Error::new)?;
    step_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(step.tenant_id),
        step_run_id: Set(step.id),
        attempt: Set(attempt),
        error: Set(Some(error.clone())),
        started_at: Set(step.started_at),
        finished_at: Set(now),
    }
    .insert(tx)
    .await?;
    let step = step_run::ActiveModel {
        id: Set(step.id),
        attempt: Set(attempt + 1),
        error: Set(Some(error)),
        started_at: Set(Some(at)),
        next_attempt_at: Set(Some(at)),
        ..Default::default()
    }
    .update(tx)
    .await?;
    events::run_changed(scope, run);
    Ok(step)
}

/// How a run ends.
#[derive(Clone, Debug)]
pub enum RunEnd {
    Succeeded { output: Json },
    Failed { error: Json },
}

/// Finishes a leased run. Steps still pending are skipped (on success) or cancelled
/// (on failure); a run with a step still running cannot succeed. Repeating the same
/// end succeeds without a second effect.
pub async fn finish_run(
    scope: &RequestScope,
    run_id: Uuid,
    token: Uuid,
    end: RunEnd,
) -> Result<workflow_run::Model> {
    let run = leased(scope, run_id, token).await?;
    let (target, payload) = match &end {
        RunEnd::Succeeded { output } => (RunStatus::Succeeded, output),
        RunEnd::Failed { error } => (RunStatus::Failed, error),
    };
    if run.status == target {
        let stored = match target {
            RunStatus::Succeeded => run.output.as_ref(),
            _ => run.error.as_ref(),
        };
        return if stored == Some(payload) {
            Ok(run)
        } else {
            Err(Error::conflict(
                Some("runId"),
                "the run already ended with another result",
            ))
        };
    }
    check_run_move(run.status, target)?;
    if target == RunStatus::Succeeded {
        let running = step_run::Entity::find()
            .filter(step_run::Column::RunId.eq(run_id))
            .filter(
                step_run::Column::Status.is_in([StepRunStatus::Running, StepRunStatus::Waiting]),
            )
            .one(scope.tx().await?)
            .await?;
        if let Some(step) = running {
            return Err(Error::conflict(
                Some("runId"),
                format!("step {:?} is still running", step.step_key),
            ));
        }
    }
    end_run(scope, &run, end, true).await
}

/// Ends `run`, which the caller has locked and leased in this transaction and may
/// end so (no step still running when it succeeds): the last half of [`finish_run`],
/// for the engine, which has checked all that already. With `settle_open_steps`,
/// steps still pending are skipped (on success) or open ones cancelled (on failure);
/// the engine passes false when it knows there are none.
pub(crate) async fn end_run(
    scope: &RequestScope,
    run: &workflow_run::Model,
    end: RunEnd,
    settle_open_steps: bool,
) -> Result<workflow_run::Model> {
    let (target, payload) = match &end {
        RunEnd::Succeeded { output } => (RunStatus::Succeeded, output),
        RunEnd::Failed { error } => (RunStatus::Failed, error),
    };
    let field = if target == RunStatus::Succeeded {
        "output"
    } else {
        "error"
    };
    check_size(field, payload)?;
    let tx = scope.tx().await?;
    if settle_open_steps {
        let open_steps = if target == RunStatus::Succeeded {
            "UPDATE step_runs SET status = 'skipped', finished_at = now() \
             WHERE run_id = $1 AND status = 'pending'"
        } else {
            "UPDATE step_runs SET status = 'cancelled', finished_at = now(), next_attempt_at = NULL \
             WHERE run_id = $1 AND status IN ('pending', 'running', 'waiting')"
        };
        tx.execute(stmt(open_steps, [run.id.into()])).await?;
    }
    let mut row = workflow_run::ActiveModel {
        id: Set(run.id),
        status: Set(target),
        finished_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    match end {
        RunEnd::Succeeded { output } => row.output = Set(Some(output)),
        RunEnd::Failed { error } => row.error = Set(Some(error)),
    }
    let run = row.update(tx).await?;
    crate::engine::events::run_ended(scope, &run).await?;
    let action = if target == RunStatus::Succeeded {
        "run.succeed"
    } else {
        "run.fail"
    };
    audit::record(
        scope,
        Event::new(Some(run.tenant_id), action).target(IdKind::WorkflowRun, run.id),
    )
    .await?;
    if let Some(agent_id) = run.agent_id {
        // An agent's run that ends is a TASK in the agent's activity feed.
        let outcome = if target == RunStatus::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        activity::record(
            tx,
            run.tenant_id,
            NewActivity {
                agent_id,
                activity_type: trellis_entity::ActivityType::Task,
                summary: format!("Run {outcome}"),
                details: json!({ "status": outcome }),
                run_id: Some(run.id),
            },
            RecordedBy::default(),
        )
        .await?;
    }
    events::run_changed(scope, &run);
    Ok(run)
}

/// A log line as a runner sends it: the step by key.
#[derive(Clone, Debug)]
pub struct RunnerLogLine {
    pub step_key: Option<String>,
    pub level: crate::logs::LogLevel,
    pub message: String,
    pub context: Json,
    pub logged_at: Option<DateTime<Utc>>,
}

/// The most lines one `appendLogs` call takes.
pub const MAX_LOG_LINES: usize = 1_000;

/// The plaintext of every secret a run's version uses through its steps' connections,
/// for redaction only.
pub async fn run_secrets(
    vault: &crate::integrations::secrets::Vault,
    scope: &RequestScope,
    run: &workflow_run::Model,
) -> Result<Vec<secrecy::SecretString>> {
    let secrets = trellis_entity::secret::Entity::find()
        .from_raw_sql(stmt(
            "SELECT DISTINCT s.* FROM workflow_steps st \
             JOIN connection_secrets cs ON cs.connection_id = st.connection_id \
             JOIN secrets s ON s.id = cs.secret_id \
             WHERE st.version_id = $1",
            [run.version_id.into()],
        ))
        .all(scope.tx().await?)
        .await?;
    let mut values = Vec::with_capacity(secrets.len());
    for secret in &secrets {
        values.push(vault.open_for_redaction(scope, secret).await?);
    }
    Ok(values)
}

/// Appends log lines to a leased run (runner keys), redacted with the tenant's rules
/// and the run's secrets, and announces them for live updates.
pub async fn append_logs(
    store: &crate::logs::LogStore,
    vault: &crate::integrations::secrets::Vault,
    scope: &RequestScope,
    run_id: Uuid,
    token: Uuid,
    lines: Vec<RunnerLogLine>,
) -> Result<usize> {
    let run = leased(scope, run_id, token).await?;
    if lines.len() > MAX_LOG_LINES {
        return Err(Error::bad_input(
            "entries",
            format!("at most {MAX_LOG_LINES} lines per call"),
        ));
    }
    if lines.is_empty() {
        return Ok(0);
    }
    let steps: std::collections::HashMap<String, Uuid> = step_run::Entity::find()
        .filter(step_run::Column::RunId.eq(run_id))
        .all(scope.tx().await?)
        .await?
        .into_iter()
        .map(|s| (s.step_key, s.id))
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let step_run_id = match &line.step_key {
            Some(key) => Some(*steps.get(key).ok_or_else(|| {
                Error::bad_input(
                    format!("entries[{i}].stepKey"),
                    format!("this run has no step {key:?}"),
                )
            })?),
            None => None,
        };
        entries.push(crate::logs::NewLogEntry {
            run_id,
            step_run_id,
            level: line.level,
            message: line.message,
            context: line.context,
            logged_at: line.logged_at,
        });
    }
    let secrets = run_secrets(vault, scope, &run).await?;
    let count = store
        .for_tenant(scope)
        .await?
        .append(entries, &secrets)
        .await?;
    events::logs_appended(scope.tx().await?, run.tenant_id, run_id, count).await?;
    Ok(count)
}
