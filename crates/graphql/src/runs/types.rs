//! Run types: WorkflowRun and StepRun, with filters.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_entity::columns::ColumnSet;
use trellis_entity::{step_run, workflow_run, IdKind, Role};

use crate::agents::types::{Agent, AgentVersion};
use crate::context::{load, present};
use crate::ids::gid;
use crate::in_place::in_place_object;
use crate::list::{Access, List, Relation};
use crate::loaders::{
    columns_for, AgentById, AgentVersionById, AttemptsOfStepRun, ClientById, DecisionsOfStepRun,
    RunById, StepRunsOfRun, TriggerById, WorkflowById, WorkflowStepById, WorkflowVersionById,
};
use crate::payload::Json;
use crate::runs::logs::{log_page, LogConnection, LogLineFilter};
use crate::runs::reports::{run_report, WorkflowReport};
use crate::workflows::types::{
    Client, Trigger, TriggerType, Workflow, WorkflowStep, WorkflowVersion,
};

/// A run's life cycle: PENDING → RUNNING → SUCCEEDED | FAILED | CANCELLED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::RunStatus")]
pub enum RunStatus {
    /// Waiting for a worker to claim it.
    Pending,
    /// Claimed by a worker, which moves its steps.
    Running,
    /// Finished well (`completeRun`).
    Succeeded,
    /// Finished with an error (`failRun`).
    Failed,
    /// Stopped by `cancelRun`.
    Cancelled,
}

/// A step run's life cycle: PENDING → RUNNING → SUCCEEDED | FAILED | CANCELLED, or
/// PENDING → SKIPPED | CANCELLED; an approval step waits on people (RUNNING → WAITING →
/// SUCCEEDED | FAILED | CANCELLED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::StepRunStatus")]
pub enum StepRunStatus {
    /// Not started.
    Pending,
    /// Started by the worker (`startStep`), or between attempts while a retry is due
    /// (`nextAttemptAt`).
    Running,
    /// Waiting on people: an approval step until enough approvers decide.
    Waiting,
    /// Finished well (`completeStep`).
    Succeeded,
    /// Finished with an error (`failStep`).
    Failed,
    /// Not run: `skipStep` (a branch not taken), or still pending when its run succeeded.
    Skipped,
    /// Stopped while pending or running, because its run was cancelled or failed.
    Cancelled,
}

/// Narrows a list of runs.
#[derive(InputObject, Default)]
pub struct RunFilter {
    /// Only runs of this workflow (its ID).
    pub workflow: Option<ID>,
    /// Any of these statuses.
    pub status: Option<Vec<RunStatus>>,
    /// Only runs started by this kind of trigger (MANUAL for `startRun`).
    pub trigger_type: Option<TriggerType>,
    /// Only simulations (true) or only real runs (false).
    pub simulation: Option<bool>,
    /// Only runs created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Only runs that started at or after this instant (a run that has not started
    /// does not match).
    pub started_after: Option<DateTime<Utc>>,
    /// Only runs that started before this instant (a run that has not started does not
    /// match).
    pub started_before: Option<DateTime<Utc>>,
}

impl RunFilter {
    /// True when nothing narrows the list.
    pub fn is_empty(&self) -> bool {
        self.workflow.is_none()
            && self.status.is_none()
            && self.trigger_type.is_none()
            && self.simulation.is_none()
            && self.created_after.is_none()
            && self.created_before.is_none()
            && self.started_after.is_none()
            && self.started_before.is_none()
    }
}

/// What lists of runs read of each run whatever they select: the id and creation time
/// (the cursor), the workflow (a page's runs are grouped by it) and the enums.
const RUN_COLUMNS_ALWAYS: [workflow_run::Column; 5] = [
    workflow_run::Column::Id,
    workflow_run::Column::WorkflowId,
    workflow_run::Column::TriggerType,
    workflow_run::Column::Status,
    workflow_run::Column::CreatedAt,
];

/// The columns each field of [`WorkflowRunFields`] reads beyond
/// [`RUN_COLUMNS_ALWAYS`]. A field missing here makes a list read whole rows: a new
/// field is correct before it is listed, only slower.
const RUN_FIELD_COLUMNS: &[(&str, &[workflow_run::Column])] = {
    use workflow_run::Column as C;
    &[
        ("__typename", &[]),
        ("id", &[]),
        ("status", &[]),
        ("triggerType", &[]),
        ("createdAt", &[]),
        ("workflow", &[]),
        ("stepRuns", &[]),
        ("currentSteps", &[]),
        ("nextRetryAt", &[]),
        ("context", &[C::Input, C::TriggerPayload]),
        ("logs", &[]),
        ("isSimulation", &[C::IsSimulation]),
        ("idempotencyKey", &[C::IdempotencyKey]),
        ("input", &[C::Input]),
        ("output", &[C::Output]),
        ("triggerPayload", &[C::TriggerPayload]),
        ("error", &[C::Error]),
        ("updatedAt", &[C::UpdatedAt]),
        ("startedAt", &[C::StartedAt]),
        ("finishedAt", &[C::FinishedAt]),
        ("cancelledAt", &[C::CancelledAt]),
        ("durationMs", &[C::StartedAt, C::FinishedAt]),
        ("leaseExpiresAt", &[C::LeaseExpiresAt]),
        ("payloadsPurgedAt", &[C::PayloadsPurgedAt]),
        ("version", &[C::VersionId]),
        ("trigger", &[C::TriggerId]),
        ("retryOf", &[C::RetryOfId]),
        ("replayOf", &[C::ReplayOfId]),
        ("agent", &[C::AgentId]),
        ("agentVersion", &[C::AgentVersionId]),
        ("toolPolicy", &[C::ToolPolicy]),
        ("client", &[C::ClientId]),
        ("metadata", &[C::Metadata]),
        ("report", &[C::StartedAt, C::FinishedAt, C::IsSimulation]),
    ]
};

/// The columns a list of runs reads for `selection` (the runs' own fields).
pub(crate) fn run_columns(selection: &async_graphql::Lookahead<'_>) -> ColumnSet {
    columns_for(selection, RUN_COLUMNS_ALWAYS, RUN_FIELD_COLUMNS)
}

/// What lists of step runs read of each whatever they select: the id (the order), the
/// run (they are grouped by it) and the status (an enum).
const STEP_RUN_COLUMNS_ALWAYS: [step_run::Column; 3] = [
    step_run::Column::Id,
    step_run::Column::RunId,
    step_run::Column::Status,
];

/// The columns each field of [`StepRunFields`] reads beyond
/// [`STEP_RUN_COLUMNS_ALWAYS`] (see [`RUN_FIELD_COLUMNS`]).
const STEP_RUN_FIELD_COLUMNS: &[(&str, &[step_run::Column])] = {
    use step_run::Column as C;
    &[
        ("__typename", &[]),
        ("id", &[]),
        ("status", &[]),
        ("run", &[]),
        ("stepKey", &[C::StepKey]),
        ("attempt", &[C::Attempt]),
        ("input", &[C::Input]),
        ("output", &[C::Output]),
        ("error", &[C::Error]),
        ("createdAt", &[C::CreatedAt]),
        ("updatedAt", &[C::UpdatedAt]),
        ("startedAt", &[C::StartedAt]),
        ("finishedAt", &[C::FinishedAt]),
        ("nextAttemptAt", &[C::NextAttemptAt]),
        (
            "attempts",
            &[
                C::Attempt,
                C::Error,
                C::StartedAt,
                C::FinishedAt,
                C::NextAttemptAt,
            ],
        ),
        ("decisions", &[]),
        ("logs", &[]),
        ("step", &[C::StepId]),
    ]
};

/// The columns a list of step runs reads for `selection` (the step runs' own fields).
pub(crate) fn step_run_columns(selection: &async_graphql::Lookahead<'_>) -> ColumnSet {
    columns_for(selection, STEP_RUN_COLUMNS_ALWAYS, STEP_RUN_FIELD_COLUMNS)
}

/// One execution of a workflow version: the GraphQL object `WorkflowRun`, whose fields
/// [`WorkflowRunFields`] resolves in place (a page lists hundreds).
pub struct WorkflowRun(pub workflow_run::Model);

impl From<workflow_run::Model> for WorkflowRun {
    fn from(m: workflow_run::Model) -> Self {
        Self(m)
    }
}

impl WorkflowRun {
    /// Its global ID (what the `Node` interface reads).
    pub async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        WorkflowRunFields(&self.0).id(ctx).await
    }
}

in_place_object!(WorkflowRun => WorkflowRunFields);

/// The fields of [`WorkflowRun`].
pub struct WorkflowRunFields<'a>(&'a workflow_run::Model);

/// One execution of a workflow version: its status, payloads, steps and log.
#[Object(name = "WorkflowRun")]
impl WorkflowRunFields<'_> {
    /// Its global ID (`run_…`).
    async fn id(&self) -> ID {
        gid(IdKind::WorkflowRun, self.0.id)
    }
    /// Where it is in its life cycle.
    async fn status(&self) -> RunStatus {
        self.0.status.into()
    }
    /// What started it: MANUAL for `startRun`, WEBHOOK for a webhook delivery; a retry
    /// keeps the type of the run it retries.
    async fn trigger_type(&self) -> TriggerType {
        self.0.trigger_type.into()
    }
    /// A dry run: it may use a draft version.
    async fn is_simulation(&self) -> bool {
        self.0.is_simulation
    }
    /// The idempotency key `startRun` was given; null without one.
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    /// What the run was started with; null once the payload retention has cleared it.
    async fn input(&self) -> Option<Json<&serde_json::Value>> {
        self.0.input.as_ref().map(Json)
    }
    /// What `completeRun` reported; null until the run succeeds, and once the payload
    /// retention has cleared it.
    async fn output(&self) -> Option<Json<&serde_json::Value>> {
        self.0.output.as_ref().map(Json)
    }
    /// What the webhook or event carried; null for other runs, and once the payload
    /// retention has cleared it.
    async fn trigger_payload(&self) -> Option<Json<&serde_json::Value>> {
        self.0.trigger_payload.as_ref().map(Json)
    }
    /// What `failRun` reported; null unless the run failed.
    async fn error(&self) -> Option<Json<&serde_json::Value>> {
        self.0.error.as_ref().map(Json)
    }
    /// What its starter attached (`startRun`'s `metadata`): a JSON object, `{}` when
    /// none was given. A retry keeps it; payload retention leaves it.
    async fn metadata(&self) -> Json<&serde_json::Value> {
        Json(&self.0.metadata)
    }
    /// The client it runs for: the one `startRun` named, else its workflow's client
    /// when it started; null when neither had one.
    async fn client(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Client>> {
        let Some(id) = self.0.client_id else {
            return Ok(None);
        };
        Ok(load(ctx, ClientById(id)).await?.map(Client))
    }
    /// Its EXECUTION report (seed 003): its duration and its steps by outcome,
    /// computed from its step runs (as of now while it has not finished).
    async fn report(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowReport> {
        run_report(ctx, self.0).await
    }
    /// When it was started (created, PENDING).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When a worker first claimed it; null while it has not been claimed.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it succeeded, failed or was cancelled; null until then.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// When `cancelRun` stopped it; null otherwise.
    async fn cancelled_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancelled_at
    }
    /// Milliseconds from start to finish; null until it finishes, and for a run
    /// cancelled before a worker claimed it.
    async fn duration_ms(&self) -> Option<i64> {
        Some((self.0.finished_at? - self.0.started_at?).num_milliseconds())
    }
    /// When the runner's lease ends, while a worker holds the run.
    async fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.lease_expires_at
    }
    /// When the retention policy cleared its payloads.
    async fn payloads_purged_at(&self) -> Option<DateTime<Utc>> {
        self.0.payloads_purged_at
    }
    /// The workflow it runs.
    async fn workflow(&self, ctx: &Context<'_>) -> async_graphql::Result<Workflow> {
        let workflow = load(ctx, WorkflowById(self.0.workflow_id)).await?;
        present(workflow, "a run's workflow").map(Workflow)
    }
    /// The workflow version it runs.
    async fn version(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowVersion> {
        let version = load(ctx, WorkflowVersionById(self.0.version_id)).await?;
        present(version, "a run's version").map(WorkflowVersion)
    }
    /// The trigger that started it; null for `startRun` and retries, and once the
    /// trigger is deleted.
    async fn trigger(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Trigger>> {
        let Some(id) = self.0.trigger_id else {
            return Ok(None);
        };
        Ok(load(ctx, TriggerById(id)).await?.map(Trigger))
    }
    /// The run this one retries.
    async fn retry_of(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WorkflowRun>> {
        let Some(id) = self.0.retry_of_id else {
            return Ok(None);
        };
        Ok(load(ctx, RunById(id)).await?.map(WorkflowRun))
    }
    /// The real run this simulation replays (`replayFromRunId`); null otherwise.
    async fn replay_of(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WorkflowRun>> {
        let Some(id) = self.0.replay_of_id else {
            return Ok(None);
        };
        Ok(load(ctx, RunById(id)).await?.map(WorkflowRun))
    }
    /// The agent whose run this is (`runAgent`); null for other runs.
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Agent>> {
        let Some(id) = self.0.agent_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentById(id)).await?.map(Agent))
    }
    /// The agent version it runs, whose flow is this run's workflow version; null for
    /// runs that are not an agent's.
    async fn agent_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<AgentVersion>> {
        let Some(id) = self.0.agent_version_id else {
            return Ok(None);
        };
        Ok(load(ctx, AgentVersionById(id)).await?.map(AgentVersion))
    }
    /// The agent's tool policy as it was when the run started, which the engine
    /// enforces on the run's tool steps (`{tools, default}`); null for runs that are not
    /// an agent's.
    async fn tool_policy(&self) -> Option<Json<&serde_json::Value>> {
        self.0.tool_policy.as_ref().map(Json)
    }
    /// Its execution log, oldest first.
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many lines to return: 1 to 100, 50 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the lines after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the first line when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the lines; every condition given must hold.")] filter: Option<
            LogLineFilter,
        >,
    ) -> async_graphql::Result<LogConnection> {
        log_page(ctx, self.0.id, None, first, after, filter).await
    }
    /// Its steps, in the version's order.
    async fn step_runs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StepRun>> {
        let key = StepRunsOfRun {
            run_id: self.0.id,
            columns: step_run_columns(&ctx.look_ahead()),
        };
        let rows = load(ctx, key).await?;
        Ok(rows.unwrap_or_default().into_iter().map(StepRun).collect())
    }
    /// The steps it is on now: running (or between attempts) and waiting on people.
    async fn current_steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StepRun>> {
        Ok(whole_step_runs(ctx, self.0.id)
            .await?
            .into_iter()
            .filter(|s| {
                matches!(
                    s.status,
                    trellis_entity::StepRunStatus::Running | trellis_entity::StepRunStatus::Waiting
                )
            })
            .map(StepRun)
            .collect())
    }
    /// When its next retry is due: the earliest `nextAttemptAt` of its steps; null when
    /// no retry waits.
    async fn next_retry_at(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(whole_step_runs(ctx, self.0.id)
            .await?
            .iter()
            .filter_map(|s| s.next_attempt_at)
            .min())
    }
    /// What its steps read: `{input, trigger, steps: {<key>: {output}}}`, the outputs
    /// of the steps that succeeded so far. Conditions' `field` paths and config
    /// templates (`{{ steps.fetch.output.body.id }}`) are read against it.
    async fn context(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<serde_json::Value>> {
        let mut context = trellis_core::engine::context::RunContext::new(
            self.0
                .input
                .clone()
                .unwrap_or_else(|| serde_json::json!({})),
            self.0
                .trigger_payload
                .clone()
                .unwrap_or_else(|| serde_json::json!({})),
        );
        for step in whole_step_runs(ctx, self.0.id).await? {
            if step.status == trellis_entity::StepRunStatus::Succeeded {
                context.record(
                    &step.step_key,
                    step.output.clone().unwrap_or(serde_json::Value::Null),
                );
            }
        }
        Ok(Json(context.to_value()))
    }
}

/// A run's step runs with every column (one statement for a page's runs, shared by the
/// fields that need whole rows).
async fn whole_step_runs(
    ctx: &Context<'_>,
    run_id: uuid::Uuid,
) -> async_graphql::Result<Vec<Arc<step_run::Model>>> {
    let key = StepRunsOfRun {
        run_id,
        columns: ColumnSet::ALL,
    };
    Ok(load(ctx, key).await?.unwrap_or_default())
}

/// One step of a run: the GraphQL object `StepRun`, whose fields [`StepRunFields`]
/// resolves in place (a page of runs lists a thousand). Shared with the request's
/// dataloader cache, which hands out each run's step runs without copying them.
pub struct StepRun(pub Arc<step_run::Model>);

impl From<step_run::Model> for StepRun {
    fn from(m: step_run::Model) -> Self {
        Self(Arc::new(m))
    }
}

impl StepRun {
    /// Its global ID (what the `Node` interface reads).
    pub async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        StepRunFields(&self.0).id(ctx).await
    }
}

in_place_object!(StepRun => StepRunFields);

/// The fields of [`StepRun`].
pub struct StepRunFields<'a>(&'a step_run::Model);

/// One step of a run: its status, payloads and log lines.
#[Object(name = "StepRun")]
impl StepRunFields<'_> {
    /// Its global ID (`srn_…`).
    async fn id(&self) -> ID {
        gid(IdKind::StepRun, self.0.id)
    }
    /// The key of the version's step it runs; runner calls name the step by it.
    async fn step_key(&self) -> &str {
        &self.0.step_key
    }
    /// Where it is in its life cycle.
    async fn status(&self) -> StepRunStatus {
        self.0.status.into()
    }
    /// Which attempt it is on: how many times it was started, retries included (0
    /// before it starts).
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    /// When its next attempt is due, while a failed attempt waits to be tried again
    /// (the retry policy's backoff); null otherwise.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
    /// Its attempts, oldest first: each failed attempt that was tried again, then the
    /// current (or last) one once it started. Empty before it starts.
    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StepAttempt>> {
        let earlier = load(ctx, AttemptsOfStepRun(self.0.id))
            .await?
            .unwrap_or_default();
        let mut attempts: Vec<StepAttempt> = earlier
            .into_iter()
            .map(|a| StepAttempt {
                attempt: a.attempt,
                status: StepRunStatus::Failed,
                error: a.error.map(Json),
                started_at: a.started_at,
                finished_at: Some(a.finished_at),
            })
            .collect();
        let step = &self.0;
        let retry_pending = step.next_attempt_at.is_some_and(|at| at > Utc::now());
        if step.attempt > 0 && !retry_pending {
            let status = StepRunStatus::from(step.status);
            attempts.push(StepAttempt {
                attempt: step.attempt,
                status,
                error: (status == StepRunStatus::Failed)
                    .then(|| step.error.clone().map(Json))
                    .flatten(),
                started_at: step.started_at,
                finished_at: step.finished_at,
            });
        }
        Ok(attempts)
    }
    /// What `startStep` passed (`{}` when nothing); null until the step starts, and
    /// once the payload retention has cleared it.
    async fn input(&self) -> Option<Json<&serde_json::Value>> {
        self.0.input.as_ref().map(Json)
    }
    /// What `completeStep` passed; null until the step succeeds, and once the payload
    /// retention has cleared it.
    async fn output(&self) -> Option<Json<&serde_json::Value>> {
        self.0.output.as_ref().map(Json)
    }
    /// What `failStep` passed, or `{skipped: reason}` when `skipStep` gave a reason;
    /// null otherwise.
    async fn error(&self) -> Option<Json<&serde_json::Value>> {
        self.0.error.as_ref().map(Json)
    }
    /// When its run was started (step runs are made with their run).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When `startStep` started it; null while it has not started.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it succeeded, failed, was skipped or cancelled; null until then.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// The decisions people made on it, oldest first: empty unless it is an approval
    /// step.
    async fn decisions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::approvals::ApprovalDecision>> {
        let rows = load(ctx, DecisionsOfStepRun(self.0.id)).await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(super::approvals::ApprovalDecision)
            .collect())
    }
    /// The run it belongs to.
    async fn run(&self, ctx: &Context<'_>) -> async_graphql::Result<WorkflowRun> {
        let run = load(ctx, RunById(self.0.run_id)).await?;
        present(run, "a step run's run").map(WorkflowRun)
    }
    /// Its lines of the run's execution log, oldest first.
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many lines to return: 1 to 100, 50 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the lines after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the first line when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the lines; every condition given must hold.")] filter: Option<
            LogLineFilter,
        >,
    ) -> async_graphql::Result<LogConnection> {
        log_page(ctx, self.0.run_id, Some(self.0.id), first, after, filter).await
    }
    /// The version's step it runs.
    async fn step(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WorkflowStep>> {
        let Some(id) = self.0.step_id else {
            return Ok(None);
        };
        Ok(load(ctx, WorkflowStepById(id)).await?.map(WorkflowStep))
    }
}

/// One attempt of a step run.
#[derive(async_graphql::SimpleObject)]
pub struct StepAttempt {
    /// Its number, from 1.
    pub attempt: i32,
    /// FAILED for an attempt that was tried again; the step run's own status for the
    /// current one.
    pub status: StepRunStatus,
    /// Why it failed; null unless it did.
    pub error: Option<Json<serde_json::Value>>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended; null while it runs.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run's step runs load with the columns their selection reads, and a page of runs
/// prefetches them itself.
impl List for WorkflowRun {
    type Entity = workflow_run::Entity;
    type Node = Self;
    type Filter = RunFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<workflow_run::Column> = Some(workflow_run::Column::TenantId);
    const CREATED_AT: workflow_run::Column = workflow_run::Column::CreatedAt;
    const ID: workflow_run::Column = workflow_run::Column::Id;

    fn narrow(
        mut select: Select<workflow_run::Entity>,
        filter: RunFilter,
    ) -> trellis_core::Result<Select<workflow_run::Entity>> {
        if let Some(workflow) = filter.workflow {
            select = select.filter(
                workflow_run::Column::WorkflowId
                    .eq(crate::ids::parse(&workflow, IdKind::Workflow)?),
            );
        }
        if let Some(statuses) = filter.status {
            select = select.filter(
                workflow_run::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::RunStatus::from)),
            );
        }
        if let Some(trigger_type) = filter.trigger_type {
            select = select.filter(
                workflow_run::Column::TriggerType
                    .eq(trellis_entity::TriggerType::from(trigger_type)),
            );
        }
        if let Some(simulation) = filter.simulation {
            select = select.filter(workflow_run::Column::IsSimulation.eq(simulation));
        }
        if let Some(after) = filter.created_after {
            select = select.filter(workflow_run::Column::CreatedAt.gte(after));
        }
        if let Some(before) = filter.created_before {
            select = select.filter(workflow_run::Column::CreatedAt.lt(before));
        }
        if let Some(after) = filter.started_after {
            select = select.filter(workflow_run::Column::StartedAt.gte(after));
        }
        if let Some(before) = filter.started_before {
            select = select.filter(workflow_run::Column::StartedAt.lt(before));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<workflow_run::Model>> {
        vec![
            Relation::together(&["workflow"], |r| Some(WorkflowById(r.workflow_id))),
            Relation::together(&["agent"], |r| r.agent_id.map(AgentById)),
            Relation::together(&["agentVersion"], |r| {
                r.agent_version_id.map(AgentVersionById)
            }),
        ]
    }
}
