//! Firing a trigger: the one path the scheduler, signed webhook deliveries and events
//! take to start a run of what a trigger targets ([`Target`]): its workflow's active
//! version, or its agent's active version (recorded with the agent, its version and
//! its frozen tool policy, as `runAgent` records them).

use sea_orm::EntityTrait;
use serde_json::Value as Json;
use trellis_entity::{trigger, workflow, TriggerType, WorkflowStatus};

use super::start::{create_run, NewRun, Started};
use super::RunSettings;
use crate::scope::RequestScope;
use crate::workflows::triggers::Target;
use crate::{Error, Result};

/// One firing of a trigger: what the run records and is keyed by.
pub(crate) struct Firing {
    pub trigger_type: TriggerType,
    pub payload: Json,
    pub input: Json,
    /// Names the firing, so that firing it again finds its run.
    pub idempotency_key: String,
}

/// What a firing did.
#[derive(Debug)]
pub(crate) enum Fired {
    Started(Box<Started>),
    /// The target does not run now, which is not the firing's error: a workflow that is
    /// deleted, not ACTIVE or without an active version; an agent that is deleted,
    /// paused or without an active version that has a flow. The reason is a metric label.
    Idle(&'static str),
}

/// Whether `err` refused a firing before anything was written (a conflict, bad input,
/// something gone, an agent over its budget, a tenant past its plan's runs this
/// month): the scheduler and events skip such a firing rather than fail their pass,
/// which would only meet the same refusal again.
pub(crate) fn refused_before_writing(err: &Error) -> bool {
    matches!(
        err,
        Error::Conflict { .. }
            | Error::BadInput { .. }
            | Error::NotFound
            | Error::RateLimited { .. }
            | Error::LimitReached { .. }
    )
}

/// Starts the run a firing of `trigger` makes, in the scope's transaction. An agent
/// over its monthly budget refuses with RATE_LIMITED (and its budget alert raised).
pub(crate) async fn fire(
    scope: &RequestScope,
    settings: &RunSettings,
    trigger: &trigger::Model,
    firing: Firing,
) -> Result<Fired> {
    match Target::of(trigger)? {
        Target::Workflow(workflow_id) => {
            let runs = workflow::Entity::find_by_id(workflow_id)
                .one(scope.tx().await?)
                .await?
                .is_some_and(|w| {
                    w.deleted_at.is_none()
                        && w.status == WorkflowStatus::Active
                        && w.active_version_id.is_some()
                });
            if !runs {
                return Ok(Fired::Idle("workflow_inactive"));
            }
            let started = create_run(
                scope,
                settings,
                NewRun {
                    workflow_id,
                    version_id: None,
                    trigger: Some(trigger),
                    trigger_type: firing.trigger_type,
                    trigger_payload: Some(firing.payload),
                    input: firing.input,
                    idempotency_key: Some(firing.idempotency_key),
                    simulation: false,
                    retry_of: None,
                    replay_of: None,
                    client_id: None,
                    agent: None,
                    metadata: None,
                },
            )
            .await?;
            Ok(Fired::Started(Box::new(started)))
        }
        Target::Agent(agent_id) => {
            crate::agents::runs::fire(scope, settings, agent_id, trigger, firing).await
        }
    }
}
