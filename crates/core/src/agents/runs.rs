//! Runs of agents. `runAgent` picks a version of the agent (the one named, else the
//! one a label names, else the agent's active version) and starts a run of that
//! version's flow, a published workflow version, through the same start as `startRun`
//! (`runs::start::create_run`): the same run tables, idempotency rules and audit event,
//! so the engine executes it like any run. The run records the agent, the version and
//! the agent's tool policy as it is at the start; the engine enforces that frozen
//! policy on the run's tool steps ([`super::policy`]). A trigger of the agent (SCHEDULE,
//! WEBHOOK, EVENT) starts the same run of its active version, recording the trigger,
//! its type and its payload ([`fire`]).

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value as Json};
use trellis_entity::{
    agent, agent_label, agent_version, trigger, workflow_run, AgentStatus, AgentVersionStatus,
    IdKind, Role, Severity, TriggerType,
};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::runs::start::{check_key, check_payload, create_run, AgentOfRun, NewRun, Started};
use crate::runs::triggered::{Fired, Firing};
use crate::runs::RunSettings;
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// A request to run an agent.
#[derive(Clone, Debug)]
pub struct RunAgent {
    pub agent_id: Uuid,
    /// The version to run: ACTIVE, or one a label of the agent points at.
    pub version_id: Option<Uuid>,
    /// A label of the agent (`production`) whose version runs.
    pub label: Option<String>,
    pub input: Json,
    pub idempotency_key: Option<String>,
}

/// The version a run of `agent` runs, as `request` names it, with the reason it may
/// run; refused with the field at fault.
async fn pick_version(
    scope: &RequestScope,
    agent: &agent::Model,
    request: &RunAgent,
) -> Result<agent_version::Model> {
    let tx = scope.tx().await?;
    let labelled = |version: Uuid| async move {
        Ok::<_, Error>(
            agent_label::Entity::find()
                .filter(agent_label::Column::AgentId.eq(agent.id))
                .filter(agent_label::Column::VersionId.eq(version))
                .one(tx)
                .await?
                .is_some(),
        )
    };
    let (version, field) = match (request.version_id, request.label.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_input(
                "label",
                "name a version or a label, not both",
            ))
        }
        (Some(id), None) => {
            // Another agent's version (or another tenant's) is one that does not exist.
            let version = agent_version::Entity::find_by_id(id)
                .filter(agent_version::Column::AgentId.eq(agent.id))
                .one(tx)
                .await?
                .ok_or(Error::NotFound)?;
            match version.status {
                AgentVersionStatus::Active => {}
                AgentVersionStatus::Draft => {
                    return Err(Error::conflict(
                        Some("versionId"),
                        "a draft version does not run: activate it, or point a label at it",
                    ))
                }
                AgentVersionStatus::Archived if labelled(id).await? => {}
                AgentVersionStatus::Archived => {
                    return Err(Error::conflict(
                        Some("versionId"),
                        "an archived version runs only while a label points at it",
                    ))
                }
            }
            (version, "versionId")
        }
        (None, Some(name)) => {
            let label = agent_label::Entity::find()
                .filter(agent_label::Column::AgentId.eq(agent.id))
                .filter(agent_label::Column::Name.eq(name.trim()))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    Error::bad_input("label", format!("the agent has no label {name:?}"))
                })?;
            let version = agent_version::Entity::find_by_id(label.version_id)
                .one(tx)
                .await?
                .ok_or_else(|| anyhow::anyhow!("label {} points nowhere", label.id))?;
            (version, "label")
        }
        (None, None) => {
            let id = agent.active_version_id.ok_or_else(|| {
                Error::conflict(
                    Some("agentId"),
                    "the agent has no active version: activate one, or name a version or a label",
                )
            })?;
            let version = agent_version::Entity::find_by_id(id)
                .one(tx)
                .await?
                .ok_or_else(|| anyhow::anyhow!("agent {} has no active version row", agent.id))?;
            (version, "agentId")
        }
    };
    if version.flow_version_id.is_none() {
        return Err(Error::conflict(
            Some(field),
            "this version has no flow to run: give a draft version a flow and activate it",
        ));
    }
    Ok(version)
}

/// The workflow a flow (a workflow version) belongs to.
async fn workflow_of(scope: &RequestScope, flow: Uuid) -> Result<Uuid> {
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT workflow_id FROM workflow_versions WHERE id = $1",
            [flow.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("flow {flow} is gone"))?;
    Ok(row.try_get("", "workflow_id")?)
}

/// Starts a run of an agent (operators): of the version `request` picks, MANUAL, with
/// the agent's tool policy frozen on it. The same idempotency key and input return the
/// run the first start made (`deduplicated`). Refused: another tenant's or a made-up
/// agent or version (NOT_FOUND), a deleted or paused agent (CONFLICT on `agentId`), a
/// draft version or an archived one no label points at (CONFLICT on `versionId`), a
/// version without a flow (CONFLICT), an unknown label (BAD_USER_INPUT on `label`).
pub async fn run_agent(
    scope: &RequestScope,
    settings: &RunSettings,
    request: RunAgent,
) -> Result<Started> {
    let ctx = scope.require(Role::Operator).await?;
    check_payload("input", &request.input)?;
    let idempotency_key = check_key(request.idempotency_key.clone())?;
    let agent = match find_agent(scope, request.agent_id, false).await {
        Ok(agent) => agent,
        Err(Error::NotFound) => {
            // A deleted agent of the tenant is told apart from one that does not exist
            // (RLS hides another tenant's either way).
            let deleted = agent::Entity::find_by_id(request.agent_id)
                .one(scope.tx().await?)
                .await?
                .is_some();
            return Err(if deleted {
                Error::conflict(
                    Some("agentId"),
                    "a deleted agent does not run: restore it first",
                )
            } else {
                Error::NotFound
            });
        }
        Err(err) => return Err(err),
    };
    if agent.status == AgentStatus::Paused {
        return Err(Error::conflict(
            Some("agentId"),
            "a paused agent does not run: change its status first",
        ));
    }
    // Over its monthly budget: RATE_LIMITED, and the budget alert raised.
    super::budget::admit(scope, ctx.tenant_id, agent.id).await?;
    let version = pick_version(scope, &agent, &request).await?;
    let start = AgentStart {
        trigger: None,
        trigger_type: TriggerType::Manual,
        trigger_payload: None,
        input: request.input,
        idempotency_key,
    };
    start_version(scope, settings, &agent, &version, start).await
}

/// How a run of an agent's version starts: by hand or by a trigger.
struct AgentStart<'a> {
    trigger: Option<&'a trigger::Model>,
    trigger_type: TriggerType,
    trigger_payload: Option<Json>,
    input: Json,
    idempotency_key: Option<String>,
}

/// Starts a run of `version`'s flow for `agent`, with its tool policy frozen on it, and
/// marks the agent active (unless an earlier start with the same key made the run).
async fn start_version(
    scope: &RequestScope,
    settings: &RunSettings,
    agent: &agent::Model,
    version: &agent_version::Model,
    start: AgentStart<'_>,
) -> Result<Started> {
    let flow = version
        .flow_version_id
        .ok_or_else(|| anyhow::anyhow!("picked a version without a flow"))?;
    let workflow_id = workflow_of(scope, flow).await?;
    let started = create_run(
        scope,
        settings,
        NewRun {
            workflow_id,
            version_id: Some(flow),
            trigger: start.trigger,
            trigger_type: start.trigger_type,
            trigger_payload: start.trigger_payload,
            input: start.input,
            idempotency_key: start.idempotency_key,
            simulation: false,
            retry_of: None,
            replay_of: None,
            client_id: None,
            metadata: None,
            agent: Some(AgentOfRun {
                agent_id: agent.id,
                version_id: version.id,
                tool_policy: agent.tool_policy.clone(),
            }),
        },
    )
    .await?;
    if !started.deduplicated {
        touch(scope, agent.id).await?;
    }
    Ok(started)
}

/// A firing of a trigger of `agent_id` ([`crate::runs::triggered`]): a run of the
/// agent's active version, as `runAgent` without a version or label, recording the
/// trigger, its type and payload. Idle when the agent is deleted (`agent_deleted`),
/// paused (`agent_paused`) or has no active version with a flow (`agent_inactive`);
/// RATE_LIMITED, with the budget alert raised, over its monthly budget.
pub(crate) async fn fire(
    scope: &RequestScope,
    settings: &RunSettings,
    agent_id: Uuid,
    trigger: &trigger::Model,
    firing: Firing,
) -> Result<Fired> {
    let agent = match find_agent(scope, agent_id, false).await {
        Ok(agent) => agent,
        Err(Error::NotFound) => return Ok(Fired::Idle("agent_deleted")),
        Err(err) => return Err(err),
    };
    if agent.status == AgentStatus::Paused {
        return Ok(Fired::Idle("agent_paused"));
    }
    super::budget::admit(scope, trigger.tenant_id, agent.id).await?;
    let request = RunAgent {
        agent_id,
        version_id: None,
        label: None,
        input: firing.input,
        idempotency_key: Some(firing.idempotency_key),
    };
    let version = match pick_version(scope, &agent, &request).await {
        Ok(version) => version,
        Err(Error::Conflict { .. }) => return Ok(Fired::Idle("agent_inactive")),
        Err(err) => return Err(err),
    };
    let start = AgentStart {
        trigger: Some(trigger),
        trigger_type: firing.trigger_type,
        trigger_payload: Some(firing.payload),
        input: request.input,
        idempotency_key: request.idempotency_key,
    };
    start_version(scope, settings, &agent, &version, start)
        .await
        .map(|started| Fired::Started(Box::new(started)))
}

/// Marks the agent active now (`lastActiveAt`).
async fn touch(scope: &RequestScope, agent_id: Uuid) -> Result<()> {
    scope
        .tx()
        .await?
        .execute(stmt(
            "UPDATE agents SET last_active_at = now() WHERE id = $1",
            [agent_id.into()],
        ))
        .await?;
    Ok(())
}

/// What a retry of a run of `agent_id`'s version `version_id` records: the same agent
/// and version, under the agent's tool policy as it is now (a retry is a new run, and
/// a run's policy is the one of its start). A deleted agent's runs are not retried.
pub(crate) async fn rerun(
    scope: &RequestScope,
    agent_id: Uuid,
    version_id: Uuid,
) -> Result<AgentOfRun> {
    let agent = find_agent(scope, agent_id, false)
        .await
        .map_err(|err| match err {
            Error::NotFound => Error::conflict(
                Some("id"),
                "this run's agent was deleted: restore it to retry its runs",
            ),
            other => other,
        })?;
    touch(scope, agent.id).await?;
    Ok(AgentOfRun {
        agent_id: agent.id,
        version_id,
        tool_policy: agent.tool_policy,
    })
}

/// Audits a tool step of an agent run that the policy denied (`decision` DENIED) or
/// that a member it asked rejected (REJECTED): `agent.tool.deny`, a warning, on the step
/// run, by whoever drove the step (the engine is the system).
pub(crate) async fn audit_denial(
    scope: &RequestScope,
    run: &workflow_run::Model,
    step_run_id: Uuid,
    step_key: &str,
    tool: &str,
    decision: &str,
) -> Result<()> {
    audit::record(
        scope,
        Event::new(Some(run.tenant_id), "agent.tool.deny")
            .target(IdKind::StepRun, step_run_id)
            .severity(Severity::Warning)
            .details(json!({
                "run": run.id,
                "agent": run.agent_id,
                "agentVersion": run.agent_version_id,
                "step": step_key,
                "tool": tool,
                "decision": decision,
            })),
    )
    .await
}
