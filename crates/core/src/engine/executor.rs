//! The executor: claims runs the engine can run and carries them through their graph.
//!
//! Each tick asks one SECURITY DEFINER function which tenants have due runs (ids only),
//! then, tenant by tenant (oldest due run first, at most `runs_per_tenant` each, so one
//! tenant's backlog never holds another's run back more than a tick), claims runs in
//! that tenant's transaction as [`Principal::Engine`] with the runner API's own claim
//! (`FOR UPDATE SKIP LOCKED`, a lease), and drives each: one transaction per move,
//! under the tenant's RLS, through the runner API's step and run moves, so the state
//! machine, idempotency and live events are the same as for an outside worker. A step
//! that calls out (HTTP) is started, the move commits, the call is made outside any
//! transaction, and its result is recorded by the next move; a simulation answers such
//! steps from their `sampleOutput`. A worker that dies mid-run leaves a lease that
//! expires; the next claim resumes the run at the step that was running, since every
//! finished step is committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::{self, error::TryRecvError};
use trellis_entity::workflow_step::is_http_request_action_sql;
use trellis_entity::{
    approval_decision, step_run, workflow_run, workflow_step, workflow_transition, StepRunStatus,
    StepType,
};
use uuid::Uuid;

use super::context::{render, RunContext};
use super::retry::RetryPolicy;
use super::routing::{Graph, Outcome, Step, Transition};
use super::steps::approval::DecisionSeen;
use super::steps::{self, StepIds, StepInput, StepResult};
use crate::agents::policy::{self, Verdict};
use crate::egress::Egress;
use crate::integrations::connections::{open_connection, OpenConnection};
use crate::integrations::secrets::Vault;
use crate::runs::live::LiveEvent;
use crate::runs::runner::{self, RunEnd, StepMove};
use crate::runs::start::MAX_PAYLOAD_BYTES;
use crate::runs::state::run_is_finished;
use crate::scope::{stmt, AppDb, RequestScope};
use crate::{Error, Result};

/// How the executor claims and drives runs.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// How long a claim holds a run before another worker may take it over.
    pub lease: Duration,
    /// The most runs claimed from one tenant in one tick.
    pub runs_per_tenant: u64,
    /// The most tenants served in one tick.
    pub tenants_per_tick: i32,
    /// Runs driven at once.
    pub concurrency: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            runs_per_tenant: 10,
            tenants_per_tick: 100,
            concurrency: 4,
        }
    }
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Runs claimed.
    pub claimed: usize,
    /// Runs that ended (succeeded or failed).
    pub finished: usize,
    /// Runs left waiting on a timer.
    pub waiting: usize,
}

/// The executor of one process.
#[derive(Clone)]
pub struct Executor {
    db: AppDb,
    egress: Egress,
    vault: Vault,
    config: ExecutorConfig,
    versions: VersionCache,
}

/// The published versions the executor has loaded, by tenant and version id. A
/// published version never changes (only drafts are edited, and only simulations run
/// drafts, which are never cached), so an entry is good for as long as it is kept.
#[derive(Clone, Default)]
struct VersionCache(Arc<std::sync::Mutex<HashMap<VersionKey, Arc<Version>>>>);

/// A version's tenant and id.
type VersionKey = (Uuid, Uuid);

/// The most versions the cache keeps; past it, it starts over.
const CACHED_VERSIONS: usize = 1024;

impl VersionCache {
    fn get(&self, tenant: Uuid, version: Uuid) -> Option<Arc<Version>> {
        let cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(&(tenant, version)).cloned()
    }

    fn put(&self, tenant: Uuid, version: Uuid, loaded: Arc<Version>) {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHED_VERSIONS {
            cache.clear();
        }
        cache.insert((tenant, version), loaded);
    }
}

/// How driving a run stopped.
enum Stop {
    Finished,
    Waiting,
    /// Another worker holds the run now (our lease expired), or it was cancelled.
    Gone,
}

/// One move's result.
enum Advance {
    Progressed,
    Stop(Stop),
    /// Steps that call out were started: make these calls once the move commits.
    Call(Vec<Call>),
}

/// A call a step makes outside any transaction.
struct Call {
    step: usize,
    step_run_id: Uuid,
    step_type: StepType,
    config: Value,
    connection: Option<OpenConnection>,
    started_at: chrono::DateTime<Utc>,
}

/// A run this executor holds the lease of, with its version once loaded.
struct Claimed {
    tenant: Uuid,
    run_id: Uuid,
    token: Uuid,
    version: Option<Arc<Version>>,
    /// What its first move, made in the claim's transaction, did.
    first: Option<Advance>,
}

/// A run's version, loaded once per drive: the graph and each step's type and config.
struct Version {
    graph: Graph,
    /// The type each step runs as ([`steps::runs_as`]: an ACTION step of the http app's
    /// `request` action runs as HTTP).
    types: Vec<StepType>,
    configs: Vec<Value>,
    connections: Vec<Option<Uuid>>,
    /// The tool each step is (`agents::policy::tool_key`), for agent runs' tool policy.
    tools: Vec<Option<String>>,
    /// For a simulation that replays a real run: that run's step outputs, by key.
    replayed: HashMap<String, Value>,
}

impl Executor {
    /// An executor on the application pool; steps that call out go through `egress`,
    /// and open their connection's secrets with `vault`.
    pub fn new(db: AppDb, egress: Egress, vault: Vault, config: ExecutorConfig) -> Self {
        Self {
            db,
            egress,
            vault,
            config,
            versions: VersionCache::default(),
        }
    }

    fn scope(&self, tenant_id: Uuid) -> Arc<RequestScope> {
        RequestScope::for_engine(self.db.clone(), tenant_id, "executor")
    }

    /// Claims what is due and drives it as far as it goes now. A tenant's claim and the
    /// first move of each run it claimed share one transaction, so a run of steps that
    /// finish at once (or wait) is done in it; the rest are driven on concurrently.
    pub async fn tick(&self) -> Result<Tick> {
        #[derive(FromQueryResult)]
        struct Due {
            tenant_id: Uuid,
        }
        let types = steps::engine_type_names();
        let tenants = Due::find_by_statement(stmt(
            "SELECT t AS tenant_id FROM app.tenants_with_due_runs($1, $2) t",
            [types.clone().into(), self.config.tenants_per_tick.into()],
        ))
        .all(self.db.pool())
        .await?;
        let mut tick = Tick::default();
        let mut unfinished = Vec::new();
        // Tenants are claimed side by side: each claim is a transaction of its own.
        let claims: Vec<(Uuid, Result<Vec<Claimed>>)> = futures::stream::iter(tenants)
            .map(|Due { tenant_id }| {
                let types = &types;
                async move { (tenant_id, self.claim_and_start(tenant_id, types).await) }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (tenant_id, claimed) in claims {
            let started = match claimed {
                Ok(started) => started,
                // One run whose first move fails must not hold back the others: they
                // are claimed again on their own, and each is driven apart.
                Err(err) => {
                    tracing::warn!(tenant = %tenant_id, error = ?err, "executor: claiming and starting runs together failed");
                    match self.claim_only(tenant_id, &types).await {
                        Ok(leases) => leases,
                        // A tenant suspended since the look-up, say: the others go on.
                        Err(err) => {
                            tracing::warn!(tenant = %tenant_id, error = %err, "executor claim failed");
                            continue;
                        }
                    }
                }
            };
            tick.claimed += started.len();
            for mut run in started {
                match run.first.take() {
                    Some(Advance::Stop(Stop::Finished)) => tick.finished += 1,
                    Some(Advance::Stop(Stop::Waiting)) => tick.waiting += 1,
                    Some(Advance::Stop(Stop::Gone)) => {}
                    Some(Advance::Progressed) | None => unfinished.push((run, Vec::new())),
                    Some(Advance::Call(calls)) => unfinished.push((run, calls)),
                }
            }
        }
        metrics::counter!("trellis_executor_runs_claimed_total").increment(tick.claimed as u64);
        let stops: Vec<Result<Stop>> = futures::stream::iter(unfinished)
            .map(|(run, calls)| self.drive(run, calls))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for stop in stops {
            match stop {
                Ok(Stop::Finished) => tick.finished += 1,
                Ok(Stop::Waiting) => tick.waiting += 1,
                Ok(Stop::Gone) => {}
                // The lease runs out and the run is claimed again.
                Err(err) => tracing::error!(error = ?err, "executor: driving a run failed"),
            }
        }
        Ok(tick)
    }

    /// Claims a tenant's due runs and makes each one's first move, in one transaction.
    async fn claim_and_start(&self, tenant_id: Uuid, types: &[String]) -> Result<Vec<Claimed>> {
        let scope = self.scope(tenant_id);
        let started = async {
            let leases = self.claim(&scope, types).await?;
            let mut started = Vec::with_capacity(leases.len());
            for lease in leases {
                let mut claimed = Claimed {
                    tenant: tenant_id,
                    run_id: lease.run.id,
                    token: lease.token,
                    version: None,
                    first: None,
                };
                let first = self
                    .advance(
                        &scope,
                        (claimed.run_id, claimed.token),
                        Some(lease.run),
                        &mut claimed.version,
                        &mut HashMap::new(),
                    )
                    .await?;
                claimed.first = Some(first);
                started.push(claimed);
            }
            Ok(started)
        }
        .await;
        RequestScope::finish_shared(scope, started.is_ok()).await?;
        started
    }

    /// Claims a tenant's due runs, nothing more.
    async fn claim_only(&self, tenant_id: Uuid, types: &[String]) -> Result<Vec<Claimed>> {
        let scope = self.scope(tenant_id);
        let leases = self.claim(&scope, types).await;
        RequestScope::finish_shared(scope, leases.is_ok()).await?;
        Ok(leases?
            .into_iter()
            .map(|lease| Claimed {
                tenant: tenant_id,
                run_id: lease.run.id,
                token: lease.token,
                version: None,
                first: None,
            })
            .collect())
    }

    /// The runner API's claim, as the engine makes it: runs of versions it can run,
    /// new ones only up to the tenant's cap.
    async fn claim(&self, scope: &RequestScope, types: &[String]) -> Result<Vec<runner::Lease>> {
        let new_runs = room_for_new_runs(scope).await?;
        let engine = runner::EngineClaim {
            step_types: types,
            new_runs,
        };
        runner::claim(
            scope,
            self.config.runs_per_tenant,
            self.config.lease,
            Some(engine),
        )
        .await
    }

    /// Ticks until `shutdown` resolves. After a tick that found nothing it rests until a
    /// run changes somewhere (`wake`: the live-update events, which a new run, a decision
    /// or a cancellation sends as it commits) or `idle` has passed (timers and expired
    /// leases come due without an event).
    pub async fn run(
        self,
        idle: Duration,
        mut wake: broadcast::Receiver<LiveEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut listening = true;
        loop {
            // What happened before this tick, it sees.
            while !matches!(
                wake.try_recv(),
                Err(TryRecvError::Empty | TryRecvError::Closed)
            ) {}
            let found = match self.tick().await {
                Ok(tick) => tick.claimed > 0,
                Err(err) => {
                    tracing::error!(error = ?err, "executor tick failed");
                    false
                }
            };
            if found {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(idle) => {}
                woke = wake.recv(), if listening => {
                    listening = !matches!(woke, Err(broadcast::error::RecvError::Closed));
                }
            }
        }
    }

    /// Moves a claimed run until it ends, waits or is taken away: one transaction per
    /// move, after making the calls its last move started.
    async fn drive(&self, mut run: Claimed, mut calls: Vec<Call>) -> Result<Stop> {
        // The results of calls made since the last move, by step, for the next move.
        let mut results: HashMap<usize, StepResult> = HashMap::new();
        // A graph of n steps ends in at most about 3n moves; the bound only guards
        // against a bug looping forever.
        for _ in 0..20_000 {
            if !calls.is_empty() {
                match self.make_calls(&run, &calls).await {
                    Some(made) => results.extend(made),
                    None => return Ok(Stop::Gone),
                }
            }
            let scope = self.scope(run.tenant);
            let mut version = run.version.take();
            let advanced = self
                .advance(
                    &scope,
                    (run.run_id, run.token),
                    None,
                    &mut version,
                    &mut results,
                )
                .await;
            run.version = version;
            RequestScope::finish_shared(scope, advanced.is_ok()).await?;
            calls = match advanced? {
                Advance::Progressed => Vec::new(),
                Advance::Stop(stop) => return Ok(stop),
                Advance::Call(calls) => calls,
            };
        }
        Err(Error::Internal(anyhow::anyhow!(
            "run {} did not settle",
            run.run_id
        )))
    }

    /// Makes the calls of a run's steps that call out, outside any transaction; their
    /// results by step, or `None` when the run was cancelled meanwhile (the requests
    /// are dropped, which aborts them).
    async fn make_calls(
        &self,
        run: &Claimed,
        calls: &[Call],
    ) -> Option<HashMap<usize, StepResult>> {
        let context = json!({});
        let made = futures::future::join_all(calls.iter().map(|call| {
            let input = StepInput {
                ids: StepIds {
                    tenant_id: run.tenant,
                    run_id: run.run_id,
                    step_run_id: call.step_run_id,
                },
                db: None,
                config: &call.config,
                connection: call.connection.as_ref(),
                started_at: call.started_at,
                now: Utc::now(),
                context: &context,
                egress: &self.egress,
                decisions: &[],
                is_simulation: false,
            };
            async move { execute_in_time(call.step_type, &input).await }
        }));
        let made = tokio::select! {
            made = made => made,
            () = self.stopped(run.tenant, run.run_id) => return None,
        };
        Some(calls.iter().map(|call| call.step).zip(made).collect())
    }

    /// Resolves once the run is no longer running (cancelled, say), looking every
    /// [`CANCEL_POLL`]; a failed look is taken as "still running".
    async fn stopped(&self, tenant: Uuid, run_id: Uuid) {
        loop {
            tokio::time::sleep(CANCEL_POLL).await;
            let scope = self.scope(tenant);
            let status = async {
                let tx = scope.tx().await?;
                let row = tx
                    .query_one(stmt(
                        "SELECT status = 'running' AS running FROM workflow_runs WHERE id = $1",
                        [run_id.into()],
                    ))
                    .await?;
                Ok::<_, Error>(match row {
                    Some(row) => row.try_get::<bool>("", "running")?,
                    None => false,
                })
            }
            .await;
            let ok = status.is_ok();
            if RequestScope::finish_shared(scope, ok).await.is_ok() && matches!(status, Ok(false)) {
                return;
            }
        }
    }

    /// One move of a run: as many passes over its graph as finish at once. `claimed`
    /// is the run as this transaction's claim locked and leased it; without it the
    /// run is locked here, and the move is nothing when the lease is no longer ours.
    async fn advance(
        &self,
        scope: &RequestScope,
        (run_id, token): (Uuid, Uuid),
        claimed: Option<workflow_run::Model>,
        version: &mut Option<Arc<Version>>,
        results: &mut HashMap<usize, StepResult>,
    ) -> Result<Advance> {
        let run = match claimed {
            Some(run) => run,
            None => match runner::leased(scope, run_id, token).await {
                Ok(run) => run,
                Err(Error::Conflict { .. } | Error::NotFound) => {
                    return Ok(Advance::Stop(Stop::Gone))
                }
                Err(err) => return Err(err),
            },
        };
        if run_is_finished(run.status) {
            return Ok(Advance::Stop(Stop::Gone));
        }
        let tx = scope.tx().await?;
        if version.is_none() {
            *version = Some(self.version_of(tx, &run).await?);
        }
        let Some(version) = version.as_deref() else {
            return Err(Error::Internal(anyhow::anyhow!("version not loaded")));
        };
        let graph = &version.graph;
        let rows = step_run::Entity::find()
            .filter(step_run::Column::RunId.eq(run_id))
            .all(tx)
            .await?;
        let n = graph.steps.len();
        let mut step_rows: Vec<Option<step_run::Model>> = vec![None; n];
        for row in rows {
            if let Some(i) = graph.steps.iter().position(|s| s.key == row.step_key) {
                step_rows[i] = Some(row);
            }
        }
        // Steps that finish at once lead on to the next ones in the same transaction
        // (the moves keep `step_rows` current), up to PASSES_PER_TRANSACTION passes.
        let mut pass = 0;
        loop {
            pass += 1;
            let mut states = vec![StepRunStatus::Pending; n];
            let mut outputs: Vec<Option<Value>> = vec![None; n];
            let mut context = RunContext::new(
                run.input.clone().unwrap_or_else(|| json!({})),
                run.trigger_payload.clone().unwrap_or_else(|| json!({})),
            );
            for (i, row) in step_rows.iter().enumerate() {
                let Some(row) = row else { continue };
                states[i] = row.status;
                if row.status == StepRunStatus::Succeeded {
                    let output = row.output.clone().unwrap_or(Value::Null);
                    context.record(&row.step_key, output.clone());
                    outputs[i] = Some(output);
                }
            }
            let context = context.to_value();
            let plan = graph.plan(&states, &outputs, &context);
            if let Some(outcome) = plan.outcome {
                let end = match outcome {
                    Outcome::Succeeded => RunEnd::Succeeded {
                        output: leaf_outputs(graph, &states, &outputs),
                    },
                    Outcome::Failed => {
                        let failed = states.iter().position(|s| *s == StepRunStatus::Failed);
                        let step = failed.map(|i| graph.steps[i].key.clone());
                        let error = failed
                            .and_then(|i| step_rows[i].as_ref())
                            .and_then(|row| row.error.clone());
                        RunEnd::Failed {
                            error: json!({ "step": step, "error": error }),
                        }
                    }
                };
                let (end, status) = match (kept_whole(end), outcome) {
                    (Ok(end), Outcome::Succeeded) => (end, "succeeded"),
                    (Ok(end), Outcome::Failed) | (Err(end), _) => (end, "failed"),
                };
                // Nothing is left open when the run succeeds; when it fails, steps on
                // other branches may be.
                let open_steps = states.iter().any(|s| !settled_or_failed(*s));
                runner::end_run(scope, &run, end, open_steps).await?;
                metrics::counter!("trellis_executor_runs_finished_total", "status" => status)
                    .increment(1);
                return Ok(Advance::Stop(Stop::Finished));
            }
            let mut progressed = false;
            for &i in &plan.skip {
                let reason = Some("no transition into it was taken".to_owned());
                move_step(scope, &run, &mut step_rows, i, StepMove::Skip { reason }).await?;
                progressed = true;
            }
            let now = Utc::now();
            let mut wake = None;
            let mut calls = Vec::new();
            // Steps already running (timers, calls) are looked at again, then the ready ones
            // start. A step that calls out gets its call made after this move commits; a
            // simulation answers it from its `sampleOutput` instead and reaches nothing.
            let open = |status| matches!(status, StepRunStatus::Running | StepRunStatus::Waiting);
            let decisions = decisions_on(tx, &step_rows).await?;
            let running = (0..n).filter(|&i| open(states[i]));
            for i in running.chain(plan.ready.iter().copied()) {
                let key = &graph.steps[i].key;
                let step_type = version.types[i];
                // Step runs are made with their run, one per step.
                let Some(step_run_id) = step_rows[i].as_ref().map(|row| row.id) else {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "run {run_id} has no step run for {key:?}"
                    )));
                };
                // A tool step of an agent run goes through the run's frozen tool policy
                // first: denied, it fails; asked, it waits on a member's decision, and
                // runs on (or fails) once one is made.
                if let (Some(policy), Some(key)) = (&run.tool_policy, &version.tools[i]) {
                    let gate = Gate {
                        run: &run,
                        key,
                        i,
                        step_run_id,
                        step_key: key_of(graph, i),
                    };
                    match self
                        .gate(
                            scope,
                            &gate,
                            policy::verdict(policy, key),
                            states[i],
                            &version.configs[i],
                            &context,
                            decisions.get(&i).map(Vec::as_slice).unwrap_or_default(),
                            &mut step_rows,
                        )
                        .await?
                    {
                        Gated::Pass => {}
                        Gated::Moved => {
                            progressed = true;
                            if step_rows[i]
                                .as_ref()
                                .is_some_and(|row| row.status == StepRunStatus::Waiting)
                            {
                                wake = earliest(wake, now + ASK_RECHECK);
                            }
                            continue;
                        }
                        Gated::Waiting => {
                            wake = earliest(wake, now + ASK_RECHECK);
                            continue;
                        }
                        Gated::Resumed => progressed = true,
                    }
                }
                // Whether the step run is RUNNING (or WAITING) already. A ready step that
                // does not call out is not started up front: when it finishes at once it
                // starts and finishes in one move, and only a step that waits or retries
                // needs its RUNNING row first.
                let mut started = true;
                let open_row = step_rows[i]
                    .as_ref()
                    .filter(|row| open(row.status))
                    .map(|row| {
                        (
                            row.input.clone().unwrap_or(Value::Null),
                            row.started_at.unwrap_or(now),
                            row.attempt,
                            row.next_attempt_at,
                        )
                    });
                let (config, started_at, attempt) = match open_row {
                    Some((input, started_at, attempt, next_attempt_at)) => {
                        // A retry that is not due yet waits like a timer.
                        if let Some(due) = next_attempt_at.filter(|due| *due > now) {
                            wake = earliest(wake, due);
                            continue;
                        }
                        (input, started_at, attempt)
                    }
                    None => {
                        let attempt = step_rows[i].as_ref().map_or(0, |row| row.attempt) + 1;
                        let field = format!("steps.{key}.config");
                        match render(&version.configs[i], &context, &field) {
                            Ok(config) => {
                                started =
                                    steps::calls_out(step_type, &config) && !run.is_simulation;
                                if started {
                                    let input = config.clone();
                                    move_step(
                                        scope,
                                        &run,
                                        &mut step_rows,
                                        i,
                                        StepMove::Start { input },
                                    )
                                    .await?;
                                    progressed = true;
                                }
                                (config, now, attempt)
                            }
                            Err(err) => {
                                let input = version.configs[i].clone();
                                move_step(
                                    scope,
                                    &run,
                                    &mut step_rows,
                                    i,
                                    StepMove::Start { input },
                                )
                                .await?;
                                let error = match err {
                                    Error::BadInput { field, message } => {
                                        json!({ "message": message, "field": field })
                                    }
                                    other => json!({ "message": other.to_string() }),
                                };
                                move_step(scope, &run, &mut step_rows, i, StepMove::Fail { error })
                                    .await?;
                                count_step("failed");
                                progressed = true;
                                continue;
                            }
                        }
                    }
                };
                let result = if let Some(result) = results.remove(&i) {
                    result
                } else if steps::reaches_outside(step_type) && run.is_simulation {
                    // What the same step answered in the replayed run, else the config's
                    // sample.
                    let recorded = version.replayed.get(key).or(config.get("sampleOutput"));
                    StepResult::Done(
                        recorded
                            .cloned()
                            .unwrap_or_else(|| json!({ "simulated": true })),
                    )
                } else if steps::calls_out(step_type, &config) {
                    // The connection is opened in the tenant's transaction; the call then
                    // carries its secrets in memory only.
                    let connection = match version.connections[i] {
                        None => None,
                        Some(id) => match open_connection(&self.vault, scope, id).await {
                            Ok(open) => Some(open),
                            Err(Error::NotFound) => {
                                let error = json!({
                                    "message": "the step's connection no longer exists",
                                    "retryable": false,
                                });
                                move_step(scope, &run, &mut step_rows, i, StepMove::Fail { error })
                                    .await?;
                                count_step("failed");
                                progressed = true;
                                continue;
                            }
                            Err(err) => return Err(err),
                        },
                    };
                    calls.push(Call {
                        step: i,
                        step_run_id,
                        step_type,
                        config,
                        connection,
                        started_at,
                    });
                    continue;
                } else {
                    let no_decisions = Vec::new();
                    let input = StepInput {
                        ids: StepIds {
                            tenant_id: run.tenant_id,
                            run_id,
                            step_run_id,
                        },
                        db: Some(tx),
                        config: &config,
                        connection: None,
                        started_at,
                        now,
                        context: &context,
                        egress: &self.egress,
                        decisions: decisions.get(&i).unwrap_or(&no_decisions),
                        is_simulation: run.is_simulation,
                    };
                    execute_in_time(step_type, &input).await
                };
                let result = kept_or_failed(result);
                // The step run must be running before it waits or retries.
                let start = StepMove::Start {
                    input: config.clone(),
                };
                match result {
                    StepResult::Done(output) => {
                        let change = if started {
                            StepMove::Complete { output }
                        } else {
                            StepMove::Settle {
                                input: config.clone(),
                                result: Ok(output),
                            }
                        };
                        move_step(scope, &run, &mut step_rows, i, change).await?;
                        count_step("succeeded");
                        progressed = true;
                    }
                    StepResult::Failed(error) => {
                        let policy =
                            RetryPolicy::of(&config, steps::default_attempts(step_type, &config));
                        let next = u32::try_from(attempt).unwrap_or(u32::MAX).saturating_add(1);
                        let wait = policy
                            .delay_before(next, rand::random::<f64>())
                            .filter(|_| steps::is_retryable(&error));
                        let change = match wait {
                            Some(after) => {
                                if !started {
                                    move_step(scope, &run, &mut step_rows, i, start).await?;
                                }
                                count_step("retried");
                                StepMove::Retry {
                                    attempt,
                                    error,
                                    after,
                                }
                            }
                            None if started => {
                                count_step("failed");
                                StepMove::Fail { error }
                            }
                            None => {
                                count_step("failed");
                                StepMove::Settle {
                                    input: config.clone(),
                                    result: Err(error),
                                }
                            }
                        };
                        move_step(scope, &run, &mut step_rows, i, change).await?;
                        progressed = true;
                    }
                    StepResult::Waiting { until } => {
                        if !started {
                            move_step(scope, &run, &mut step_rows, i, start).await?;
                            progressed = true;
                        }
                        wake = earliest(wake, until);
                    }
                    StepResult::AwaitingDecision { until } => {
                        if !started {
                            move_step(scope, &run, &mut step_rows, i, start).await?;
                        }
                        if states[i] != StepRunStatus::Waiting {
                            move_step(scope, &run, &mut step_rows, i, StepMove::Wait).await?;
                            progressed = true;
                        }
                        // A decision wakes the run; without a deadline it sleeps a day and
                        // looks again.
                        let until = until.unwrap_or(now + chrono::Duration::days(1));
                        wake = earliest(wake, until);
                    }
                }
            }
            if !calls.is_empty() {
                // The lease must outlast the calls (an HTTP step may take 300 s), or another
                // worker would take the run over and call again mid-call.
                let budget = calls
                    .iter()
                    .map(|c| steps::timeout_of(c.step_type, &c.config, c.connection.as_ref()))
                    .max()
                    .unwrap_or_default()
                    + CALL_LEASE_MARGIN;
                let until = now + chrono::Duration::from_std(budget).unwrap_or_default();
                scope
                .tx()
                .await?
                .execute(stmt(
                    "UPDATE workflow_runs SET lease_expires_at = greatest(lease_expires_at, $3) \
                     WHERE id = $1 AND lease_token = $2",
                    [run_id.into(), token.into(), until.into()],
                ))
                .await?;
                return Ok(Advance::Call(calls));
            }
            if progressed && pass < PASSES_PER_TRANSACTION {
                continue;
            }
            if progressed {
                return Ok(Advance::Progressed);
            }
            // Nothing moves until a timer is due or people decide: hand the run back until
            // then (no token: nobody holds it), so it holds no worker; the due look-up finds
            // it when its lease runs out, which a decision brings forward to now. The run
            // stays locked until this commits, and a decision locks it first, so a decision
            // is either seen above or finds the run handed back.
            let until = wake
                .unwrap_or(now + chrono::Duration::from_std(self.config.lease).unwrap_or_default());
            scope
                .tx()
                .await?
                .execute(stmt(
                    "UPDATE workflow_runs SET lease_expires_at = $3, lease_token = NULL \
                 WHERE id = $1 AND lease_token = $2",
                    [run_id.into(), token.into(), until.into()],
                ))
                .await?;
            return Ok(Advance::Stop(Stop::Waiting));
        }
    }
}

/// A tool step of an agent run, as the policy gate sees it.
struct Gate<'a> {
    run: &'a workflow_run::Model,
    /// The tool it is.
    key: &'a str,
    /// Its position in the version, and its step run.
    i: usize,
    step_run_id: Uuid,
    step_key: &'a str,
}

/// What the policy gate did with a tool step.
enum Gated {
    /// Nothing: the step runs as any step would (allowed, or approved and running).
    Pass,
    /// It moved the step (failed it, or made it wait on people).
    Moved,
    /// The step waits on people still.
    Waiting,
    /// A member approved it: it is RUNNING again and runs now.
    Resumed,
}

/// How often a tool step waiting on people with no decision is looked at again, though
/// a decision wakes its run at once.
const ASK_RECHECK: chrono::Duration = chrono::Duration::days(1);

fn key_of(graph: &Graph, i: usize) -> &str {
    &graph.steps[i].key
}

impl Executor {
    /// Applies the run's tool policy to tool step `gate.i` before it runs: a step about
    /// to start that the policy denies fails with `TOOL_DENIED` (audited); one the
    /// policy asks about starts and waits (WAITING) for a member's decision; a waiting
    /// one that was rejected fails with `TOOL_DENIED` (audited), and one that was
    /// approved resumes and runs.
    #[expect(clippy::too_many_arguments)]
    async fn gate(
        &self,
        scope: &RequestScope,
        gate: &Gate<'_>,
        verdict: Verdict,
        state: StepRunStatus,
        raw_config: &Value,
        context: &Value,
        decisions: &[DecisionSeen],
        step_rows: &mut [Option<step_run::Model>],
    ) -> Result<Gated> {
        let i = gate.i;
        let decided: Vec<_> = decisions.iter().map(|d| d.decision).collect();
        match policy::gate(verdict, state, &decided) {
            policy::Gate::Pass => Ok(Gated::Pass),
            policy::Gate::Wait => Ok(Gated::Waiting),
            policy::Gate::Deny => {
                let error = policy::denied(gate.key, "DENIED");
                let change = StepMove::Settle {
                    input: raw_config.clone(),
                    result: Err(error),
                };
                move_step(scope, gate.run, step_rows, i, change).await?;
                count_step("failed");
                audit_tool(scope, gate, "DENIED").await?;
                Ok(Gated::Moved)
            }
            policy::Gate::Ask => {
                let field = format!("steps.{}.config", gate.step_key);
                // A config that does not render fails the step as for any step.
                let Ok(config) = render(raw_config, context, &field) else {
                    return Ok(Gated::Pass);
                };
                let start = StepMove::Start { input: config };
                move_step(scope, gate.run, step_rows, i, start).await?;
                move_step(scope, gate.run, step_rows, i, StepMove::Wait).await?;
                Ok(Gated::Moved)
            }
            policy::Gate::Reject => {
                let error = policy::denied(gate.key, "REJECTED");
                move_step(scope, gate.run, step_rows, i, StepMove::Fail { error }).await?;
                count_step("failed");
                audit_tool(scope, gate, "REJECTED").await?;
                Ok(Gated::Moved)
            }
            policy::Gate::Resume => {
                move_step(scope, gate.run, step_rows, i, StepMove::Resume).await?;
                Ok(Gated::Resumed)
            }
        }
    }

    /// The version `run` runs: from the cache when it is published, else read in `tx`
    /// (with, for a simulation that replays a run, that run's outputs).
    async fn version_of(
        &self,
        tx: &impl ConnectionTrait,
        run: &workflow_run::Model,
    ) -> Result<Arc<Version>> {
        if run.is_simulation {
            let mut loaded = load_version(tx, run.version_id).await?;
            if let Some(replayed) = run.replay_of_id {
                loaded.replayed = replayed_outputs(tx, replayed).await?;
            }
            return Ok(Arc::new(loaded));
        }
        if let Some(cached) = self.versions.get(run.tenant_id, run.version_id) {
            return Ok(cached);
        }
        let loaded = Arc::new(load_version(tx, run.version_id).await?);
        self.versions
            .put(run.tenant_id, run.version_id, loaded.clone());
        Ok(loaded)
    }
}

/// The error of a step or run whose output (or error) is too large to keep.
fn too_large(what: &str) -> Value {
    json!({
        "code": "TOO_LARGE",
        "message": format!("the {what} is larger than {MAX_PAYLOAD_BYTES} bytes of JSON"),
        "retryable": false,
    })
}

fn fits(value: &Value) -> bool {
    value.to_string().len() <= MAX_PAYLOAD_BYTES
}

/// A step's result as it can be kept: an output or error larger than a run's payloads
/// may be fails the step instead (for good: it would answer the same again).
fn kept_or_failed(result: StepResult) -> StepResult {
    match result {
        StepResult::Done(output) if !fits(&output) => {
            StepResult::Failed(too_large("step's output"))
        }
        StepResult::Failed(error) if !fits(&error) => StepResult::Failed(too_large("step's error")),
        other => other,
    }
}

/// A run's end as it can be kept, or (`Err`) the failure that replaces an output or
/// error too large to keep.
fn kept_whole(end: RunEnd) -> std::result::Result<RunEnd, RunEnd> {
    match &end {
        RunEnd::Succeeded { output } if !fits(output) => Err(RunEnd::Failed {
            error: too_large("run's output"),
        }),
        RunEnd::Failed { error } if !fits(error) => Err(RunEnd::Failed {
            error: too_large("run's error"),
        }),
        _ => Ok(end),
    }
}

/// Whether a step is done with: succeeded, skipped, failed or cancelled.
fn settled_or_failed(status: StepRunStatus) -> bool {
    !matches!(
        status,
        StepRunStatus::Pending | StepRunStatus::Running | StepRunStatus::Waiting
    )
}

/// How many passes over a run's graph one transaction makes at most: steps that finish
/// at once lead on to the next ones without a new transaction, but a long chain still
/// commits now and then.
const PASSES_PER_TRANSACTION: usize = 16;

/// The earlier of a wake-up time so far and `at`.
fn earliest(
    wake: Option<chrono::DateTime<Utc>>,
    at: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    Some(wake.map_or(at, |w| w.min(at)))
}

/// How often a run with calls in flight is looked at for a cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// How much longer than its calls' timeouts a run's lease lasts while they are made.
const CALL_LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The most runs a tenant may set for `maxConcurrentRuns`.
pub const MAX_CONCURRENT_RUNS: u64 = 1_000;

/// How many runs of a tenant may run at once: its `maxConcurrentRuns` setting, or its
/// plan's (`limits.maxConcurrentRuns`; 5 when the plan sets none).
pub fn concurrent_runs_cap(plan_limits: &Value, settings: &Value) -> u64 {
    let default = crate::plans::Limits::from_json(plan_limits)
        .max_concurrent_runs
        .filter(|n| *n >= 1)
        .unwrap_or(5)
        .min(MAX_CONCURRENT_RUNS);
    settings
        .get("maxConcurrentRuns")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_CONCURRENT_RUNS).contains(n))
        .unwrap_or(default)
}

/// How many more runs the scope's tenant may start now: its cap less the runs it has
/// running (by the executor or by runner workers).
async fn room_for_new_runs(scope: &RequestScope) -> Result<u64> {
    #[derive(FromQueryResult)]
    struct Room {
        limits: Value,
        settings: Value,
        running: i64,
    }
    let ctx = scope.require_runner().await?;
    let room = Room::find_by_statement(stmt(
        "SELECT p.limits, t.settings, (SELECT count(*) FROM workflow_runs r \
           WHERE r.tenant_id = t.id AND r.status = 'running') AS running \
         FROM tenants t JOIN plans p ON p.key = t.plan WHERE t.id = $1",
        [ctx.tenant_id.into()],
    ))
    .one(scope.tx().await?)
    .await?
    .ok_or(Error::NotFound)?;
    let running = u64::try_from(room.running).unwrap_or(0);
    Ok(concurrent_runs_cap(&room.limits, &room.settings).saturating_sub(running))
}

/// Moves step `i` of the locked, leased `run` by the runner API's rules, keeping
/// `rows[i]` current for the next move of this transaction.
async fn move_step(
    scope: &RequestScope,
    run: &trellis_entity::workflow_run::Model,
    rows: &mut [Option<step_run::Model>],
    i: usize,
    change: StepMove,
) -> Result<()> {
    let row = rows[i]
        .take()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("step run {i} was not read")))?;
    rows[i] = Some(runner::apply_move(scope, run, row, change).await?);
    Ok(())
}

/// Audits a tool step of an agent run that the policy denied or a person rejected.
async fn audit_tool(scope: &RequestScope, gate: &Gate<'_>, decision: &str) -> Result<()> {
    crate::agents::runs::audit_denial(
        scope,
        gate.run,
        gate.step_run_id,
        gate.step_key,
        gate.key,
        decision,
    )
    .await
}

/// The decisions people made on the run's waiting steps, by step.
async fn decisions_on(
    tx: &impl ConnectionTrait,
    step_rows: &[Option<step_run::Model>],
) -> Result<HashMap<usize, Vec<DecisionSeen>>> {
    let waiting: Vec<(usize, Uuid)> = step_rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let row = row.as_ref()?;
            (row.status == StepRunStatus::Waiting).then_some((i, row.id))
        })
        .collect();
    let mut by_step: HashMap<usize, Vec<DecisionSeen>> = HashMap::new();
    if waiting.is_empty() {
        return Ok(by_step);
    }
    let rows = approval_decision::Entity::find()
        .filter(approval_decision::Column::StepRunId.is_in(waiting.iter().map(|(_, id)| *id)))
        .order_by_asc(approval_decision::Column::CreatedAt)
        .all(tx)
        .await?;
    for row in rows {
        if let Some((i, _)) = waiting.iter().find(|(_, id)| *id == row.step_run_id) {
            by_step.entry(*i).or_default().push(DecisionSeen {
                user_id: row.user_id,
                decision: row.decision,
                comment: row.comment,
                at: row.created_at,
            });
        }
    }
    Ok(by_step)
}

/// Runs one attempt of a step, failing it with `TIMEOUT` past its time limit.
async fn execute_in_time(step_type: StepType, input: &StepInput<'_>) -> StepResult {
    let limit = steps::timeout_of(step_type, input.config, input.connection);
    tokio::time::timeout(limit, steps::execute(step_type, input))
        .await
        .unwrap_or_else(|_| StepResult::Failed(steps::timed_out(limit)))
}

fn count_step(outcome: &'static str) {
    metrics::counter!("trellis_executor_steps_total", "outcome" => outcome).increment(1);
}

/// A run's output: the outputs of the steps that end its branches (no transition out)
/// and succeeded, by step key.
fn leaf_outputs(graph: &Graph, states: &[StepRunStatus], outputs: &[Option<Value>]) -> Value {
    let mut leaves = Map::new();
    for (i, step) in graph.steps.iter().enumerate() {
        let is_leaf = !graph.transitions.iter().any(|t| t.from == i);
        if is_leaf && states[i] == StepRunStatus::Succeeded {
            leaves.insert(step.key.clone(), outputs[i].clone().unwrap_or(Value::Null));
        }
    }
    Value::Object(leaves)
}

/// The outputs of the steps that succeeded in run `run_id`, by key.
async fn replayed_outputs(
    db: &impl ConnectionTrait,
    run_id: Uuid,
) -> Result<HashMap<String, Value>> {
    let rows = step_run::Entity::find()
        .filter(step_run::Column::RunId.eq(run_id))
        .filter(step_run::Column::Status.eq(StepRunStatus::Succeeded))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.step_key, row.output?)))
        .collect())
}

/// An ACTION step's action: its app's and its own key, and whether it is the built-in
/// http app's `request` action (which the engine runs as HTTP).
#[derive(FromQueryResult)]
struct ActionStep {
    id: Uuid,
    is_http_request: bool,
    app_key: String,
    action_key: String,
}

/// The ACTION steps of version `version_id` with their actions; asked only when the
/// version has ACTION steps. The http `request` test is the claim's own SQL text.
async fn action_steps(
    db: &impl ConnectionTrait,
    version_id: Uuid,
    steps: &[workflow_step::Model],
) -> Result<Vec<ActionStep>> {
    if !steps.iter().any(|s| s.step_type == StepType::Action) {
        return Ok(Vec::new());
    }
    Ok(ActionStep::find_by_statement(stmt(
        &format!(
            "SELECT s.id, {} AS is_http_request, p.key AS app_key, a.key AS action_key \
             FROM workflow_steps s JOIN actions a ON a.id = s.action_id \
             JOIN app_versions v ON v.id = a.app_version_id JOIN apps p ON p.id = v.app_id \
             WHERE s.version_id = $1 AND s.type = 'action'",
            is_http_request_action_sql("s.action_id")
        ),
        [version_id.into()],
    ))
    .all(db)
    .await?)
}

/// A version's steps and transitions, in the order they were saved.
async fn load_version(db: &impl ConnectionTrait, version_id: Uuid) -> Result<Version> {
    let steps = workflow_step::Entity::find()
        .filter(workflow_step::Column::VersionId.eq(version_id))
        .order_by_asc(workflow_step::Column::Id)
        .all(db)
        .await?;
    let transitions = workflow_transition::Entity::find()
        .filter(workflow_transition::Column::VersionId.eq(version_id))
        .order_by_asc(workflow_transition::Column::Id)
        .all(db)
        .await?;
    let at = |id: Uuid| steps.iter().position(|s| s.id == id);
    let graph = Graph {
        steps: steps.iter().map(|s| Step { key: s.key.clone() }).collect(),
        transitions: transitions
            .iter()
            .filter_map(|t| {
                Some(Transition {
                    from: at(t.from_step_id)?,
                    to: at(t.to_step_id)?,
                    condition: t.condition.clone(),
                    is_default: t.is_default,
                })
            })
            .collect(),
    };
    let actions = action_steps(db, version_id, &steps).await?;
    let action_of = |id: Uuid| actions.iter().find(|a| a.id == id);
    Ok(Version {
        types: steps
            .iter()
            .map(|s| {
                let is_http_request = action_of(s.id).is_some_and(|a| a.is_http_request);
                steps::runs_as(s.step_type, is_http_request)
            })
            .collect(),
        configs: steps.iter().map(|s| s.config.clone()).collect(),
        connections: steps.iter().map(|s| s.connection_id).collect(),
        tools: steps
            .iter()
            .map(|s| {
                let keys = action_of(s.id).map(|a| (a.app_key.as_str(), a.action_key.as_str()));
                policy::tool_key(s.step_type, keys)
            })
            .collect(),
        replayed: HashMap::new(),
        graph,
    })
}
