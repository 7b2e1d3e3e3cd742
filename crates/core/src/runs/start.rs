//! Starting, cancelling and retrying runs. Starts are idempotent: the same key for the
//! same workflow returns the run it first made while the key lives, when the input is
//! the same, and CONFLICT when it differs. A unique key row makes concurrent starts
//! agree on one run: the first holds it until its transaction ends, the others then
//! find it.

use std::collections::BTreeMap;

use chrono::Utc;
use ring::digest;
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ConnectionTrait, EntityTrait, FromQueryResult, QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{
    client, trigger, workflow_run, IdKind, Role, RunStatus, Severity, TriggerType, VersionStatus,
    WorkflowStatus,
};
use uuid::Uuid;

use super::events;
use super::state::check_run_move;
use super::RunSettings;
use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The largest input or trigger payload a run takes, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The largest metadata a run takes, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 16 << 10;

/// A request to start a run.
pub struct StartRun {
    pub workflow_id: Uuid,
    pub input: Json,
    pub idempotency_key: Option<String>,
    pub simulation: bool,
    /// A version of the workflow; the active one when `None`. Simulations may run drafts.
    pub version_id: Option<Uuid>,
    /// A simulation only: a finished real run of the same workflow whose step outputs
    /// the simulation's outside-reaching steps answer with.
    pub replay_of: Option<Uuid>,
    /// The client the run is for; the workflow's client when `None`.
    pub client_id: Option<Uuid>,
    /// What the starter attaches to the run: a JSON object of at most
    /// [`MAX_METADATA_BYTES`]; `{}` when `None`. Not part of the idempotency check,
    /// which compares inputs.
    pub metadata: Option<Json>,
}

/// What started: the run, and whether an earlier start with the same key made it.
#[derive(Debug)]
pub struct Started {
    pub run: workflow_run::Model,
    pub deduplicated: bool,
}

/// Everything a new run is made from, whoever starts it.
pub(crate) struct NewRun<'a> {
    pub workflow_id: Uuid,
    pub version_id: Option<Uuid>,
    pub trigger: Option<&'a trigger::Model>,
    pub trigger_type: TriggerType,
    pub trigger_payload: Option<Json>,
    pub input: Json,
    pub idempotency_key: Option<String>,
    pub simulation: bool,
    pub retry_of: Option<Uuid>,
    pub replay_of: Option<Uuid>,
    pub client_id: Option<Uuid>,
    /// For a run of an agent (`runAgent`): the agent, its version and its tool policy.
    pub agent: Option<AgentOfRun>,
    /// `{}` when `None`.
    pub metadata: Option<Json>,
}

/// What a run of an agent records: the agent, the version run and the agent's tool
/// policy as it is now (frozen on the run: later changes to the agent do not reach it).
pub(crate) struct AgentOfRun {
    pub agent_id: Uuid,
    pub version_id: Uuid,
    pub tool_policy: Json,
}

/// JSON with object keys sorted at every level, so equal documents hash alike
/// whatever order their keys arrived in.
fn canonical(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// SHA-256 of the canonical JSON of an input.
pub fn input_hash(input: &Json) -> Vec<u8> {
    let text = canonical(input).to_string();
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

pub(crate) fn check_payload(field: &str, value: &Json) -> Result<()> {
    if value.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_input(
            field,
            format!("{field} is at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

/// Run metadata is a JSON object of at most [`MAX_METADATA_BYTES`] as JSON text.
pub fn check_metadata(metadata: &Json) -> Result<()> {
    if !metadata.is_object() {
        return Err(Error::bad_input(
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(Error::bad_input(
            "metadata",
            format!("metadata is at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

pub(crate) fn check_key(key: Option<String>) -> Result<Option<String>> {
    match key.map(|k| k.trim().to_owned()) {
        Some(k) if k.is_empty() || k.len() > 255 => Err(Error::bad_input(
            "idempotencyKey",
            "an idempotency key is 1 to 255 bytes",
        )),
        other => Ok(other),
    }
}

/// Starts a run (operators), on the active version unless one is named.
pub async fn start_run(
    scope: &RequestScope,
    settings: &RunSettings,
    request: StartRun,
) -> Result<Started> {
    scope.require(Role::Operator).await?;
    check_payload("input", &request.input)?;
    if let Some(metadata) = &request.metadata {
        check_metadata(metadata)?;
    }
    if let Some(replayed) = request.replay_of {
        check_replay(scope, request.workflow_id, request.simulation, replayed).await?;
    }
    if let Some(client_id) = request.client_id {
        // Another tenant's client is hidden by RLS, like one that does not exist.
        client::Entity::find_by_id(client_id)
            .one(scope.tx().await?)
            .await?
            .ok_or_else(|| Error::bad_input("clientId", "no such client"))?;
    }
    create_run(
        scope,
        settings,
        NewRun {
            workflow_id: request.workflow_id,
            version_id: request.version_id,
            trigger: None,
            trigger_type: TriggerType::Manual,
            trigger_payload: None,
            input: request.input,
            idempotency_key: check_key(request.idempotency_key)?,
            simulation: request.simulation,
            retry_of: None,
            replay_of: request.replay_of,
            client_id: request.client_id,
            agent: None,
            metadata: request.metadata,
        },
    )
    .await
}

/// A replay is a simulation of a finished real run of the same workflow.
async fn check_replay(
    scope: &RequestScope,
    workflow_id: Uuid,
    simulation: bool,
    replayed: Uuid,
) -> Result<()> {
    if !simulation {
        return Err(Error::bad_input(
            "replayFromRunId",
            "only a simulation replays a run: set simulation to true",
        ));
    }
    let run = workflow_run::Entity::find_by_id(replayed)
        .one(scope.tx().await?)
        .await?
        .filter(|run| run.workflow_id == workflow_id)
        .ok_or_else(|| Error::bad_input("replayFromRunId", "no such run of this workflow"))?;
    if run.is_simulation || !super::state::run_is_finished(run.status) {
        return Err(Error::bad_input(
            "replayFromRunId",
            "a replay needs a finished run that was not itself a simulation",
        ));
    }
    Ok(())
}

/// What a start reads before it writes: the workflow, the version to run (none when
/// the named one is not the workflow's, or no version is active) and its steps in
/// order.
#[derive(FromQueryResult)]
struct RunTarget {
    tenant_id: Uuid,
    workflow_key: String,
    workflow_status: WorkflowStatus,
    client_id: Option<Uuid>,
    version_id: Option<Uuid>,
    version_number: Option<i32>,
    version_status: Option<VersionStatus>,
    step_ids: Vec<Uuid>,
    step_keys: Vec<String>,
}

/// Makes a run and its pending step runs in the request's transaction. The caller has
/// established the right to (a role, or a verified webhook signature) and set the
/// tenant.
pub(crate) async fn create_run(
    scope: &RequestScope,
    settings: &RunSettings,
    new: NewRun<'_>,
) -> Result<Started> {
    let tx = scope.tx().await?;
    // The workflow, the version to run and its steps, in one statement.
    let target = RunTarget::find_by_statement(stmt(
        "SELECT w.tenant_id, w.key AS workflow_key, w.status AS workflow_status, w.client_id, \
           v.id AS version_id, v.number AS version_number, v.status AS version_status, \
           coalesce(st.ids, '{}') AS step_ids, coalesce(st.keys, '{}') AS step_keys \
         FROM workflows w \
         LEFT JOIN workflow_versions v ON v.tenant_id = w.tenant_id AND v.workflow_id = w.id \
           AND v.id = coalesce($2, w.active_version_id) \
         LEFT JOIN LATERAL ( \
           SELECT array_agg(s.id ORDER BY s.sort_order, s.id) AS ids, \
             array_agg(s.key ORDER BY s.sort_order, s.id) AS keys \
           FROM workflow_steps s WHERE s.tenant_id = w.tenant_id AND s.version_id = v.id) st ON true \
         WHERE w.id = $1 AND w.deleted_at IS NULL",
        [new.workflow_id.into(), new.version_id.into()],
    ))
    .one(tx)
    .await?
    .ok_or(Error::NotFound)?;
    if target.workflow_status == WorkflowStatus::Archived {
        return Err(Error::conflict(
            Some("workflowId"),
            "an archived workflow does not run",
        ));
    }
    let (Some(version_id), Some(version_number), Some(version_status)) = (
        target.version_id,
        target.version_number,
        target.version_status,
    ) else {
        return Err(match new.version_id {
            Some(_) => Error::bad_input("versionId", "no such version of this workflow"),
            None => Error::conflict(
                Some("workflowId"),
                "the workflow has no active version: publish and activate one",
            ),
        });
    };
    if version_status != VersionStatus::Published && !new.simulation {
        return Err(Error::bad_input(
            "versionId",
            "only simulations run a version that is not published",
        ));
    }
    let tenant_id = target.tenant_id;
    let workflow_id = new.workflow_id;

    // One statement claims the idempotency key (or takes over an expired one), makes
    // the run and its step runs (one per step, pending) and counts a real run against
    // the plan's `monthlyRuns` when it sets one (`run_counts_within_plan` refuses the
    // one past it: LIMIT_REACHED, and the start rolls back). The count's row lock makes
    // a tenant's starts take turns until commit, so a plan without the limit counts
    // nothing and its starts never queue. A live key of another start claims
    // nothing (after waiting for that start's transaction), and then nothing is made
    // or counted: that start's run is the answer.
    let run_id = Uuid::now_v7();
    let step_run_ids: Vec<Uuid> = target.step_ids.iter().map(|_| Uuid::now_v7()).collect();
    // An agent's run is keyed by the agent too: the same key and input for another
    // agent sharing the flow is another start (CONFLICT), never that agent's run.
    let hash = match &new.agent {
        Some(agent) => input_hash(&json!({ "agent": agent.agent_id, "input": new.input })),
        None => input_hash(&new.input),
    };
    let ttl = chrono::Duration::from_std(settings.idempotency_ttl)
        .map_err(|e| anyhow::anyhow!("idempotency ttl: {e}"))?;
    let key = new.idempotency_key.clone();
    let (claim, claimed) = match key {
        Some(_) => (
            "claim AS ( \
               INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) \
               VALUES ($2, $3, $13, $1, $18, now() + $19 * interval '1 second') \
               ON CONFLICT (tenant_id, workflow_id, key) DO UPDATE \
                 SET run_id = EXCLUDED.run_id, input_hash = EXCLUDED.input_hash, \
                     expires_at = EXCLUDED.expires_at, created_at = now() \
                 WHERE run_idempotency_keys.expires_at <= now() \
               RETURNING run_id), ",
            "WHERE EXISTS (SELECT 1 FROM claim)",
        ),
        None => ("", ""),
    };
    let made = workflow_run::Model::find_by_statement(stmt(
        &format!(
            "WITH {claim}run AS ( \
               INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_id, \
                 trigger_type, client_id, retry_of_id, replay_of_id, status, trigger_payload, \
                 input, is_simulation, idempotency_key, created_by, agent_id, agent_version_id, \
                 tool_policy, metadata) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14, \
                 $20, $21, $22, coalesce($23::jsonb, '{{}}') \
               {claimed} RETURNING *), \
             steps AS ( \
               INSERT INTO step_runs (id, tenant_id, run_id, step_id, step_key, status, attempt) \
               SELECT s.id, $2, $1, s.step_id, s.step_key, 'pending', 0 \
               FROM unnest($15::uuid[], $16::uuid[], $17::text[]) AS s(id, step_id, step_key) \
               WHERE EXISTS (SELECT 1 FROM run)), \
             counted AS ( \
               INSERT INTO run_counts AS c (tenant_id, month, runs, run_limit) \
               SELECT run.tenant_id, date_trunc('month', now(), 'UTC'), 1, l.runs \
               FROM run CROSS JOIN LATERAL ( \
                 SELECT (p.limits ->> 'monthlyRuns')::bigint AS runs FROM tenants t \
                 JOIN plans p ON p.key = t.plan WHERE t.id = run.tenant_id) l \
               WHERE NOT run.is_simulation AND l.runs IS NOT NULL \
               ON CONFLICT (tenant_id, month) DO UPDATE \
                 SET runs = c.runs + 1, run_limit = EXCLUDED.run_limit) \
             SELECT * FROM run"
        ),
        [
            run_id.into(),
            tenant_id.into(),
            workflow_id.into(),
            version_id.into(),
            new.trigger.map(|t| t.id).into(),
            sea_orm::Value::from(new.trigger_type.into_value()),
            new.client_id.or(target.client_id).into(),
            new.retry_of.into(),
            new.replay_of.into(),
            new.trigger_payload.into(),
            Some(new.input).into(),
            new.simulation.into(),
            new.idempotency_key.into(),
            scope.user_id().ok().into(),
            step_run_ids.into(),
            target.step_ids.into(),
            target.step_keys.into(),
            hash.clone().into(),
            ttl.num_seconds().into(),
            new.agent.as_ref().map(|a| a.agent_id).into(),
            new.agent.as_ref().map(|a| a.version_id).into(),
            new.agent.map(|a| a.tool_policy).into(),
            new.metadata.into(),
        ],
    ))
    .one(tx)
    .await?;
    let run = match (made, key) {
        (Some(run), _) => run,
        (None, Some(key)) => return existing_start(tx, tenant_id, workflow_id, &key, &hash).await,
        (None, None) => return Err(anyhow::anyhow!("the new run was not returned").into()),
    };
    let mut details = json!({
        "workflow": target.workflow_key,
        "version": version_number,
        "trigger": run.trigger_type,
        "simulation": run.is_simulation,
        "retryOf": run.retry_of_id,
    });
    if let Some(agent) = run.agent_id {
        details["agent"] = json!(agent);
        details["agentVersion"] = json!(run.agent_version_id);
    }
    audit::record(
        scope,
        Event::new(Some(run.tenant_id), "run.start")
            .target(IdKind::WorkflowRun, run.id)
            .details(details),
    )
    .await?;
    events::run_changed(scope, &run);
    Ok(Started {
        run,
        deduplicated: false,
    })
}

/// The run an earlier start with the same live key made, when the input is the same;
/// CONFLICT on `idempotencyKey` when it differs.
async fn existing_start(
    tx: &crate::tx::RequestTx,
    tenant_id: Uuid,
    workflow_id: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Started> {
    let row = tx
        .query_one(stmt(
            "SELECT run_id, input_hash FROM run_idempotency_keys \
             WHERE tenant_id = $1 AND workflow_id = $2 AND key = $3",
            [tenant_id.into(), workflow_id.into(), key.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("idempotency key vanished"))?;
    let existing: Uuid = row.try_get("", "run_id")?;
    let existing_hash: Vec<u8> = row.try_get("", "input_hash")?;
    if existing_hash != hash {
        return Err(Error::conflict(
            Some("idempotencyKey"),
            "this idempotency key was used with a different input",
        ));
    }
    let run = workflow_run::Entity::find_by_id(existing)
        .one(tx)
        .await?
        .ok_or_else(|| anyhow::anyhow!("idempotent run missing"))?;
    Ok(Started {
        run,
        deduplicated: true,
    })
}

/// A run locked for the rest of the request.
pub(crate) async fn lock_run(scope: &RequestScope, id: Uuid) -> Result<workflow_run::Model> {
    workflow_run::Entity::find_by_id(id)
        .lock_exclusive()
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Cancels a run and its open steps in one transaction (operators). Cancelling a
/// cancelled run again changes nothing.
pub async fn cancel_run(scope: &RequestScope, id: Uuid) -> Result<workflow_run::Model> {
    let ctx = scope.require(Role::Operator).await?;
    let current = lock_run(scope, id).await?;
    if current.status == RunStatus::Cancelled {
        return Ok(current);
    }
    check_run_move(current.status, RunStatus::Cancelled)?;
    let tx = scope.tx().await?;
    let now = Utc::now();
    let run = workflow_run::ActiveModel {
        id: Set(id),
        status: Set(RunStatus::Cancelled),
        cancelled_at: Set(Some(now)),
        finished_at: Set(Some(now)),
        lease_expires_at: Set(None),
        ..Default::default()
    }
    .update(tx)
    .await?;
    crate::engine::events::run_ended(scope, &run).await?;
    let steps = tx
        .execute(stmt(
            "UPDATE step_runs SET status = 'cancelled', finished_at = now(), next_attempt_at = NULL \
             WHERE run_id = $1 AND status IN ('pending', 'running', 'waiting')",
            [id.into()],
        ))
        .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "run.cancel")
            .target(IdKind::WorkflowRun, id)
            .severity(Severity::Warning)
            .details(json!({ "stepsCancelled": steps.rows_affected() })),
    )
    .await?;
    events::run_changed(scope, &run);
    Ok(run)
}

/// Starts a new run with a finished run's workflow version, input and trigger
/// payload, linked to it (operators).
pub async fn retry_run(
    scope: &RequestScope,
    settings: &RunSettings,
    id: Uuid,
) -> Result<workflow_run::Model> {
    scope.require(Role::Operator).await?;
    let previous = workflow_run::Entity::find_by_id(id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    if !super::state::run_is_finished(previous.status) {
        return Err(Error::conflict(
            Some("id"),
            "only a finished run can be retried",
        ));
    }
    if previous.payloads_purged_at.is_some() {
        return Err(Error::conflict(
            Some("id"),
            "this run's input was cleared by the retention policy",
        ));
    }
    // A retry of an agent's run is a new run of the same agent version, under the
    // agent's tool policy as it is now.
    let agent = match (previous.agent_id, previous.agent_version_id) {
        (Some(agent_id), Some(version_id)) => {
            Some(crate::agents::runs::rerun(scope, agent_id, version_id).await?)
        }
        _ => None,
    };
    let started = create_run(
        scope,
        settings,
        NewRun {
            workflow_id: previous.workflow_id,
            version_id: Some(previous.version_id),
            trigger: None,
            trigger_type: previous.trigger_type,
            trigger_payload: previous.trigger_payload,
            input: previous.input.unwrap_or(Json::Null),
            idempotency_key: None,
            simulation: previous.is_simulation,
            retry_of: Some(previous.id),
            replay_of: None,
            client_id: previous.client_id,
            agent,
            metadata: Some(previous.metadata),
        },
    )
    .await?;
    Ok(started.run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_but_not_values() {
        let a = json!({ "b": 1, "a": { "y": [1, { "q": 1, "p": 2 }], "x": null } });
        let b = json!({ "a": { "x": null, "y": [1, { "p": 2, "q": 1 }] }, "b": 1 });
        assert_eq!(input_hash(&a), input_hash(&b));
        assert_ne!(input_hash(&a), input_hash(&json!({ "b": 2 })));
        assert_ne!(input_hash(&json!([1, 2])), input_hash(&json!([2, 1])));
    }
}
