//! Starting, cancelling and retrying runs. Starts are idempotent: the same key for the
//! same workflow returns the run it first made while the key lives, when the input is
//! the same, and CONFLICT when it differs. A unique key row makes concurrent starts
//! agree on one run: the first holds it until its transaction ends, the others then
//! find it.

use std::collections::BTreeMap;

use chrono::Utc;
use ring::digest;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{
    step_run, trigger, workflow, workflow_run, workflow_step, workflow_version, IdKind, Role,
    RunStatus, Severity, StepRunStatus, TriggerType, VersionStatus, WorkflowStatus,
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

fn check_payload(field: &str, value: &Json) -> Result<()> {
    if value.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_input(
            field,
            format!("{field} is at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

fn check_key(key: Option<String>) -> Result<Option<String>> {
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
    if let Some(replayed) = request.replay_of {
        check_replay(scope, request.workflow_id, request.simulation, replayed).await?;
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
            client_id: None,
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

/// Makes a run and its pending step runs in the request's transaction. The caller has
/// established the right to (a role, or a verified webhook signature) and set the
/// tenant.
pub(crate) async fn create_run(
    scope: &RequestScope,
    settings: &RunSettings,
    new: NewRun<'_>,
) -> Result<Started> {
    let tx = scope.tx().await?;
    let workflow = workflow::Entity::find_by_id(new.workflow_id)
        .filter(workflow::Column::DeletedAt.is_null())
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    if workflow.status == WorkflowStatus::Archived {
        return Err(Error::conflict(
            Some("workflowId"),
            "an archived workflow does not run",
        ));
    }
    let version = match new.version_id.or(workflow.active_version_id) {
        Some(id) => workflow_version::Entity::find_by_id(id)
            .filter(workflow_version::Column::WorkflowId.eq(workflow.id))
            .one(tx)
            .await?
            .ok_or_else(|| Error::bad_input("versionId", "no such version of this workflow"))?,
        None => {
            return Err(Error::conflict(
                Some("workflowId"),
                "the workflow has no active version: publish and activate one",
            ))
        }
    };
    if version.status != VersionStatus::Published && !new.simulation {
        return Err(Error::bad_input(
            "versionId",
            "only simulations run a version that is not published",
        ));
    }

    let run_id = Uuid::now_v7();
    if let Some(key) = &new.idempotency_key {
        let hash = input_hash(&new.input);
        let ttl = chrono::Duration::from_std(settings.idempotency_ttl)
            .map_err(|e| anyhow::anyhow!("idempotency ttl: {e}"))?;
        // Claims the key, or takes over an expired one; a live key of another start
        // returns nothing (after waiting for that start's transaction).
        let claimed = tx
            .query_one(stmt(
                "INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 second') \
                 ON CONFLICT (tenant_id, workflow_id, key) DO UPDATE \
                   SET run_id = EXCLUDED.run_id, input_hash = EXCLUDED.input_hash, \
                       expires_at = EXCLUDED.expires_at, created_at = now() \
                   WHERE run_idempotency_keys.expires_at <= now() \
                 RETURNING run_id",
                [
                    workflow.tenant_id.into(),
                    workflow.id.into(),
                    key.clone().into(),
                    run_id.into(),
                    hash.clone().into(),
                    ttl.num_seconds().into(),
                ],
            ))
            .await?;
        if claimed.is_none() {
            let row = tx
                .query_one(stmt(
                    "SELECT run_id, input_hash FROM run_idempotency_keys \
                     WHERE tenant_id = $1 AND workflow_id = $2 AND key = $3",
                    [
                        workflow.tenant_id.into(),
                        workflow.id.into(),
                        key.clone().into(),
                    ],
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
            return Ok(Started {
                run,
                deduplicated: true,
            });
        }
    }

    let run = workflow_run::ActiveModel {
        id: Set(run_id),
        tenant_id: Set(workflow.tenant_id),
        workflow_id: Set(workflow.id),
        version_id: Set(version.id),
        trigger_id: Set(new.trigger.map(|t| t.id)),
        trigger_type: Set(new.trigger_type),
        client_id: Set(new.client_id.or(workflow.client_id)),
        retry_of_id: Set(new.retry_of),
        replay_of_id: Set(new.replay_of),
        status: Set(RunStatus::Pending),
        trigger_payload: Set(new.trigger_payload),
        input: Set(Some(new.input)),
        is_simulation: Set(new.simulation),
        idempotency_key: Set(new.idempotency_key),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let steps: Vec<(Uuid, String)> = workflow_step::Entity::find()
        .select_only()
        .column(workflow_step::Column::Id)
        .column(workflow_step::Column::Key)
        .filter(workflow_step::Column::VersionId.eq(version.id))
        .order_by_asc(workflow_step::Column::Id)
        .into_tuple()
        .all(tx)
        .await?;
    for chunk in steps.chunks(500) {
        step_run::Entity::insert_many(chunk.iter().map(|(id, key)| step_run::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(run.tenant_id),
            run_id: Set(run.id),
            step_id: Set(Some(*id)),
            step_key: Set(key.clone()),
            status: Set(StepRunStatus::Pending),
            attempt: Set(0),
            ..Default::default()
        }))
        .exec(tx)
        .await?;
    }
    audit::record(
        scope,
        Event::new(Some(run.tenant_id), "run.start")
            .target(IdKind::WorkflowRun, run.id)
            .details(json!({
                "workflow": workflow.key,
                "version": version.number,
                "trigger": run.trigger_type,
                "simulation": run.is_simulation,
                "retryOf": run.retry_of_id,
            })),
    )
    .await?;
    events::run_changed(scope, &run);
    Ok(Started {
        run,
        deduplicated: false,
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
