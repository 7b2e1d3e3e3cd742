use std::time::Duration;

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use trellis_core::engine::events;
use trellis_core::runs::{runner, start};
use trellis_entity::IdKind;
use uuid::Uuid;

use super::types::{StepRun, WorkflowRun};
use crate::context::{mutate, ContextExt};
use crate::identity::types::input_id;
use crate::identity::IdInput;
use crate::payload::{json_or_empty, Json};

payload!(
    /// The run, and whether an earlier start with the same idempotency key made it.
    StartRunPayload {
        /// The new run (PENDING), or the one the earlier start made; null when
        /// `userErrors` is not empty.
        run: WorkflowRun,
        /// True when an earlier start with the same idempotency key and input made the
        /// run, and nothing new was started.
        deduplicated: bool,
    }
);
payload!(
    /// The runs an event started.
    EmitEventPayload {
        /// One run per active EVENT trigger that names the event and whose filter
        /// holds (empty when none does); null when `userErrors` is not empty.
        runs: Vec<WorkflowRun>,
    }
);
payload!(
    /// The run a mutation started, changed or ended, or the input's problems.
    RunPayload {
        /// The run as it is now; null when `userErrors` is not empty.
        run: WorkflowRun,
    }
);
payload!(
    /// How many lines were stored.
    AppendLogsPayload {
        /// The number of lines stored (0 for an empty `entries`); null when
        /// `userErrors` is not empty.
        appended: i32,
    }
);
payload!(
    /// The step run a runner call moved, or the input's problems.
    StepRunPayload {
        /// The step run as it is now; null when `userErrors` is not empty.
        step_run: StepRun,
    }
);
payload!(
    /// The runs this claim leased, each with its lease token.
    ClaimRunsPayload {
        /// The leases, oldest run first; empty when no run is waiting.
        leases: Vec<RunLease>,
    }
);

/// A run a worker holds: pass `token` with every runner call for it.
#[derive(SimpleObject)]
pub struct RunLease {
    /// The run, now RUNNING.
    pub run: WorkflowRun,
    /// The lease token. Once the lease expires another claim may take the run with a
    /// new token, and this one is refused (CONFLICT).
    pub token: ID,
    /// When the lease ends unless `renewLease` extends it.
    pub expires_at: DateTime<Utc>,
}

/// A run to start.
#[derive(InputObject)]
pub struct StartRunInput {
    /// The workflow (`wf_…`); an ARCHIVED one is a CONFLICT userError.
    pub workflow_id: ID,
    /// The run's input: any JSON value, at most 1 MiB as JSON text; `{}` when omitted.
    pub input: Option<Json<serde_json::Value>>,
    /// The same key with the same input returns the run it made (for 24 h); with
    /// another input it is CONFLICT.
    pub idempotency_key: Option<String>,
    /// A dry run, which may use a draft version (false when omitted or null).
    pub simulation: Option<bool>,
    /// A version of the workflow; its active version when omitted.
    pub version_id: Option<ID>,
    /// With `simulation: true`: a finished real run of this workflow (`run_…`) to
    /// replay. Steps that reach outside (HTTP, notifications) answer with the output
    /// the same step had in that run, else their `sampleOutput`.
    pub replay_from_run_id: Option<ID>,
    /// The client (`cli_…`) the run is for; the workflow's client when omitted. One
    /// that does not exist (or is another tenant's) is BAD_USER_INPUT.
    pub client_id: Option<ID>,
    /// Anything the starter wants kept with the run (seed 003's execution metadata):
    /// a JSON object of at most 16 KiB as JSON text; `{}` when omitted. Unlike the
    /// input, it is not compared by `idempotencyKey`.
    pub metadata: Option<Json<serde_json::Value>>,
}

/// An event to emit.
#[derive(InputObject)]
pub struct EmitEventInput {
    /// The event's name: lowercase letters, digits, `_`, `.` or `-`, such as
    /// `order.created`. `run.*` names are the engine's own.
    pub name: String,
    /// The event's data: the started runs' input, and what trigger filters read as
    /// `payload.…`; at most 1 MiB as JSON text; `{}` when omitted.
    pub payload: Option<Json<serde_json::Value>>,
    /// The sender's id for this event: emitting the same id again starts no second
    /// run per trigger (for 24 h), and with another payload it is CONFLICT.
    pub event_id: Option<String>,
}

/// How many runs to lease, and for how long.
#[derive(InputObject)]
pub struct ClaimRunsInput {
    /// 1 to 100 runs.
    #[graphql(default = 10)]
    pub limit: i32,
    /// 5 to 3600 seconds; claim again (or `renewLease`) before it ends.
    #[graphql(default = 60)]
    pub lease_seconds: i32,
}

/// A lease to extend.
#[derive(InputObject)]
pub struct RenewLeaseInput {
    /// The leased run (`run_…`).
    pub run_id: ID,
    /// The lease token from `claimRuns`.
    pub token: ID,
    /// The new lease, 5 to 3600 seconds from now.
    #[graphql(default = 60)]
    pub lease_seconds: i32,
}

/// A runner call on one step of a leased run.
#[derive(InputObject)]
pub struct StepInput {
    /// The leased run (`run_…`); it must be RUNNING.
    pub run_id: ID,
    /// The lease token from `claimRuns`.
    pub token: ID,
    /// The step run's `stepKey`; a userError when the run has no such step.
    pub step_key: String,
    /// `startStep`: the step's input; `completeStep`: its output; `failStep`: the
    /// error; `skipStep`: ignored.
    pub payload: Option<Json<serde_json::Value>>,
    /// `skipStep`: why.
    pub reason: Option<String>,
}

/// One log line from a runner.
#[derive(InputObject)]
pub struct LogLineInput {
    /// The step it belongs to; the run itself when omitted.
    pub step_key: Option<String>,
    /// How serious it is.
    pub level: super::logs::LogLevel,
    /// The text, at most 16,384 characters; redacted before it is stored.
    pub message: String,
    /// Structured details (any JSON, at most 64 KiB as JSON text), redacted like the
    /// message; `{}` when omitted.
    pub context: Option<Json<serde_json::Value>>,
    /// When it happened, to the millisecond; now when omitted. More than 5 minutes
    /// ahead is a userError.
    pub logged_at: Option<DateTime<Utc>>,
}

/// Log lines of a leased run.
#[derive(InputObject)]
pub struct AppendLogsInput {
    /// The leased run (`run_…`).
    pub run_id: ID,
    /// The lease token from `claimRuns`.
    pub token: ID,
    /// At most 1,000 lines; redacted before they are stored.
    pub entries: Vec<LogLineInput>,
}

/// A runner call that ends a leased run.
#[derive(InputObject)]
pub struct FinishRunInput {
    /// The leased run (`run_…`).
    pub run_id: ID,
    /// The lease token from `claimRuns`.
    pub token: ID,
    /// `completeRun`: the output; `failRun`: the error; `{}` when omitted.
    pub payload: Option<Json<serde_json::Value>>,
}

fn token(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<Uuid> {
    Uuid::try_parse(id).map_err(|_| {
        crate::context::load_error(
            ctx,
            &trellis_core::Error::conflict(Some("token"), "not a lease token of this run"),
        )
    })
}

fn seconds(field: &str, value: i32) -> trellis_core::Result<Duration> {
    u64::try_from(value)
        .map(Duration::from_secs)
        .map_err(|_| trellis_core::Error::bad_input(field, "must not be negative"))
}

async fn step(
    ctx: &Context<'_>,
    input: StepInput,
    make: impl FnOnce(Option<serde_json::Value>, Option<String>) -> runner::StepMove,
) -> async_graphql::Result<StepRunPayload> {
    let run_id = input_id(ctx, &input.run_id, IdKind::WorkflowRun)?;
    let lease = token(ctx, &input.token)?;
    let change = make(input.payload.map(|p| p.0), input.reason);
    let (step, user_errors) = mutate(
        ctx,
        runner::move_step(ctx.scope()?, run_id, lease, &input.step_key, change),
    )
    .await?;
    Ok(StepRunPayload {
        step_run: step.map(StepRun::from),
        user_errors,
    })
}

async fn finish(
    ctx: &Context<'_>,
    input: FinishRunInput,
    end: impl FnOnce(serde_json::Value) -> runner::RunEnd,
) -> async_graphql::Result<RunPayload> {
    let run_id = input_id(ctx, &input.run_id, IdKind::WorkflowRun)?;
    let lease = token(ctx, &input.token)?;
    let (run, user_errors) = mutate(
        ctx,
        runner::finish_run(
            ctx.scope()?,
            run_id,
            lease,
            end(json_or_empty(input.payload)),
        ),
    )
    .await?;
    Ok(RunPayload {
        run: run.map(WorkflowRun),
        user_errors,
    })
}

#[derive(Default)]
pub struct RunsMutation;

#[Object]
impl RunsMutation {
    /// Starts a run (operators) of the workflow's active version unless `versionId`
    /// names another; idempotent under `idempotencyKey`. The run is PENDING until a
    /// worker claims it.
    async fn start_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow, its input, and how to run it.")] input: StartRunInput,
    ) -> async_graphql::Result<StartRunPayload> {
        let workflow_id = input_id(ctx, &input.workflow_id, IdKind::Workflow)?;
        let version_id = input
            .version_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::WorkflowVersion))
            .transpose()?;
        let replay_of = input
            .replay_from_run_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::WorkflowRun))
            .transpose()?;
        let client_id = input
            .client_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::Client))
            .transpose()?;
        let request = start::StartRun {
            workflow_id,
            input: json_or_empty(input.input),
            idempotency_key: input.idempotency_key,
            simulation: input.simulation.unwrap_or(false),
            version_id,
            replay_of,
            client_id,
            metadata: input.metadata.map(|m| m.0),
        };
        let settings = &ctx.services()?.runs;
        let (started, user_errors) =
            mutate(ctx, start::start_run(ctx.scope()?, settings, request)).await?;
        let (run, deduplicated) = match started {
            Some(s) => (Some(WorkflowRun(s.run)), Some(s.deduplicated)),
            None => (None, None),
        };
        Ok(StartRunPayload {
            run,
            deduplicated,
            user_errors,
        })
    }

    /// Emits an event (operators): starts a run of every workflow whose active EVENT
    /// trigger names it and whose filter holds (docs/engine.md, "Triggers").
    async fn emit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event's name and payload.")] input: EmitEventInput,
    ) -> async_graphql::Result<EmitEventPayload> {
        let settings = &ctx.services()?.runs;
        let (runs, user_errors) = mutate(
            ctx,
            events::emit_event(
                ctx.scope()?,
                settings,
                &input.name,
                json_or_empty(input.payload),
                input.event_id,
            ),
        )
        .await?;
        Ok(EmitEventPayload {
            runs: runs.map(|runs| runs.into_iter().map(WorkflowRun).collect()),
            user_errors,
        })
    }

    /// Cancels a run and its open steps (operators). Cancelling it again changes
    /// nothing; a run that succeeded or failed is a CONFLICT userError.
    async fn cancel_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run (`run_…`).")] input: IdInput,
    ) -> async_graphql::Result<RunPayload> {
        let id = input_id(ctx, &input.id, IdKind::WorkflowRun)?;
        let (run, user_errors) = mutate(ctx, start::cancel_run(ctx.scope()?, id)).await?;
        Ok(RunPayload {
            run: run.map(WorkflowRun),
            user_errors,
        })
    }

    /// Starts a new run from a finished one's version and input, linked to it
    /// (operators). CONFLICT while the run is unfinished or once its input was purged.
    async fn retry_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The finished run to retry (`run_…`).")] input: IdInput,
    ) -> async_graphql::Result<RunPayload> {
        let id = input_id(ctx, &input.id, IdKind::WorkflowRun)?;
        let settings = &ctx.services()?.runs;
        let (run, user_errors) = mutate(ctx, start::retry_run(ctx.scope()?, settings, id)).await?;
        Ok(RunPayload {
            run: run.map(WorkflowRun),
            user_errors,
        })
    }

    /// Runner keys (API keys with the RUNNER scope; others are FORBIDDEN): leases open
    /// runs, oldest first (pending ones, and ones whose lease expired). Concurrent
    /// claims never share a run.
    async fn claim_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many runs, and for how long.")] input: ClaimRunsInput,
    ) -> async_graphql::Result<ClaimRunsPayload> {
        let scope = ctx.scope()?;
        let (leases, user_errors) = mutate(ctx, async {
            let lease = seconds("leaseSeconds", input.lease_seconds)?;
            let limit = u64::try_from(input.limit)
                .map_err(|_| trellis_core::Error::bad_input("limit", "limit is 1 to 100"))?;
            runner::claim_runs(scope, limit, lease).await
        })
        .await?;
        Ok(ClaimRunsPayload {
            leases: leases.map(|leases| {
                leases
                    .into_iter()
                    .map(|l| RunLease {
                        token: ID(l.token.to_string()),
                        expires_at: l.expires_at,
                        run: WorkflowRun(l.run),
                    })
                    .collect()
            }),
            user_errors,
        })
    }

    /// Runner keys: extends a lease.
    async fn renew_lease(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token and the new lease.")]
        input: RenewLeaseInput,
    ) -> async_graphql::Result<RunPayload> {
        let run_id = input_id(ctx, &input.run_id, IdKind::WorkflowRun)?;
        let lease = token(ctx, &input.token)?;
        let scope = ctx.scope()?;
        let (run, user_errors) = mutate(ctx, async {
            let duration = seconds("leaseSeconds", input.lease_seconds)?;
            runner::renew_lease(scope, run_id, lease, duration).await
        })
        .await?;
        Ok(RunPayload {
            run: run.map(WorkflowRun),
            user_errors,
        })
    }

    /// Runner keys: a pending step starts (with its input).
    async fn start_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token, the step and its input (`payload`).")]
        input: StepInput,
    ) -> async_graphql::Result<StepRunPayload> {
        step(ctx, input, |payload, _| runner::StepMove::Start {
            input: payload.unwrap_or_else(|| serde_json::json!({})),
        })
        .await
    }

    /// Runner keys: a running step succeeds (with its output).
    async fn complete_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token, the step and its output (`payload`).")]
        input: StepInput,
    ) -> async_graphql::Result<StepRunPayload> {
        step(ctx, input, |payload, _| runner::StepMove::Complete {
            output: payload.unwrap_or_else(|| serde_json::json!({})),
        })
        .await
    }

    /// Runner keys: a running step fails (with its error).
    async fn fail_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token, the step and its error (`payload`).")]
        input: StepInput,
    ) -> async_graphql::Result<StepRunPayload> {
        step(ctx, input, |payload, _| runner::StepMove::Fail {
            error: payload.unwrap_or_else(|| serde_json::json!({})),
        })
        .await
    }

    /// Runner keys: a pending step is skipped (a branch not taken).
    async fn skip_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token, the step and why (`reason`).")]
        input: StepInput,
    ) -> async_graphql::Result<StepRunPayload> {
        step(ctx, input, |_, reason| runner::StepMove::Skip { reason }).await
    }

    /// Runner keys: appends lines to a leased run's execution log. Secrets the run uses,
    /// emails and the tenant's redaction rules are masked before anything is stored.
    async fn append_logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token and the lines.")] input: AppendLogsInput,
    ) -> async_graphql::Result<AppendLogsPayload> {
        let run_id = input_id(ctx, &input.run_id, IdKind::WorkflowRun)?;
        let lease = token(ctx, &input.token)?;
        let lines = input
            .entries
            .into_iter()
            .map(|l| runner::RunnerLogLine {
                step_key: l.step_key,
                level: l.level.into(),
                message: l.message,
                context: json_or_empty(l.context),
                logged_at: l.logged_at,
            })
            .collect();
        let services = ctx.services()?;
        let (appended, user_errors) = mutate(
            ctx,
            runner::append_logs(
                &services.logs,
                &services.vault,
                ctx.scope()?,
                run_id,
                lease,
                lines,
            ),
        )
        .await?;
        Ok(AppendLogsPayload {
            appended: appended.map(|n| n as i32),
            user_errors,
        })
    }

    /// Runner keys: the run succeeds; its pending steps are skipped. CONFLICT while a
    /// step is still running.
    async fn complete_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token and its output (`payload`).")]
        input: FinishRunInput,
    ) -> async_graphql::Result<RunPayload> {
        finish(ctx, input, |output| runner::RunEnd::Succeeded { output }).await
    }

    /// Runner keys: the run fails; its open steps are cancelled.
    async fn fail_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The leased run, its lease token and its error (`payload`).")]
        input: FinishRunInput,
    ) -> async_graphql::Result<RunPayload> {
        finish(ctx, input, |error| runner::RunEnd::Failed { error }).await
    }
}
