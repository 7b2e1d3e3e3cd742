//! Events start runs: every active EVENT trigger of the tenant whose `config.event`
//! names an event starts a run of its workflow when that event is emitted, in the
//! emitter's transaction and under its tenant's RLS.
//!
//! - The engine emits `run.succeeded`, `run.failed` and `run.cancelled` when a run
//!   ends (not for simulations), with `{runId, workflowId, status, output | error}`.
//!   A trigger's `config.workflowId` limits it to the runs of one workflow.
//! - `emitEvent` (operators) emits any other name with a JSON payload.
//! - `config.filter`, a condition (`{field, operator, value}`, `all`, `any`, `not`), is
//!   evaluated against `{event, payload}`: `{"field": "payload.total", "operator": "gt",
//!   "value": 100}`.
//! - The run's input is the payload; its trigger payload is `{event, eventId, depth,
//!   payload}`; its idempotency key `event:<event id>:<trigger id>`.
//! - Loops are bounded: an event emitted by hand has depth 1, a run's end has the depth
//!   of the event that started the run plus one, and an event deeper than
//!   [`MAX_EVENT_DEPTH`] starts nothing. A workflow that triggers itself on its own
//!   `run.succeeded` runs at most that many times in a row.

use sea_orm::EntityTrait;
use serde_json::{json, Value as Json};
use trellis_entity::{trigger, workflow_run, IdKind, PrefixedId, Role, RunStatus, TriggerType};
use uuid::Uuid;

use super::condition::{holds, Scope};
use crate::audit;
use crate::runs::start::MAX_PAYLOAD_BYTES;
use crate::runs::triggered::{self, Fired, Firing};
use crate::runs::RunSettings;
use crate::scope::{stmt, RequestScope};
use crate::workflows::triggers::EVENT_NAME;
use crate::{Error, Result};

/// The deepest chain of event-started runs: an event deeper than this starts nothing.
pub const MAX_EVENT_DEPTH: i64 = 10;

/// One event as it is delivered to the tenant's triggers.
struct Event<'a> {
    name: &'a str,
    id: String,
    payload: Json,
    /// The workflow whose run the event is about (run events only).
    workflow_id: Option<Uuid>,
    depth: i64,
}

/// Emits a custom event (operators): starts a run for every active EVENT trigger of
/// the tenant that names it and whose filter holds. `event_id`, when given, names the
/// delivery: emitting it again starts no second run per trigger.
pub async fn emit_event(
    scope: &RequestScope,
    settings: &RunSettings,
    name: &str,
    payload: Json,
    event_id: Option<String>,
) -> Result<Vec<workflow_run::Model>> {
    let ctx = scope.require(Role::Operator).await?;
    if !EVENT_NAME.is_match(name) {
        return Err(Error::bad_input(
            "name",
            "an event name: lowercase letters, digits, '_', '.' or '-' (order.created)",
        ));
    }
    if name.starts_with("run.") {
        return Err(Error::bad_input(
            "name",
            "run.* events are emitted by the engine when runs end",
        ));
    }
    if payload.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(Error::bad_input(
            "payload",
            format!("payload is at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    if crate::input::json_has_nul(&payload) {
        return Err(Error::bad_input(
            "payload",
            "a string in the payload holds a NUL character",
        ));
    }
    let id = match event_id.map(|id| id.trim().to_owned()) {
        Some(id) if id.is_empty() || id.len() > 200 => {
            return Err(Error::bad_input("eventId", "an event id is 1 to 200 bytes"))
        }
        Some(id) => id,
        None => Uuid::now_v7().simple().to_string(),
    };
    let event = Event {
        name,
        id,
        payload,
        workflow_id: None,
        depth: 1,
    };
    let runs = match deliver(scope, settings, &event, Refusals::Fail).await {
        Err(Error::Conflict {
            field: Some(field),
            message,
        }) if field == "idempotencyKey" => Err(Error::Conflict {
            field: Some("eventId".into()),
            message,
        }),
        other => other,
    }?;
    audit::record(
        scope,
        audit::Event::new(Some(ctx.tenant_id), "event.emit").details(json!({
            "name": name,
            "eventId": event.id,
            "runs": runs.iter().map(|r| PrefixedId::new(IdKind::WorkflowRun, r.id).to_string()).collect::<Vec<_>>(),
        })),
    )
    .await?;
    Ok(runs)
}

/// Emits `run.succeeded`, `run.failed` or `run.cancelled` for a run that has just
/// ended, in the transaction that ended it. Simulations emit nothing.
pub async fn run_ended(scope: &RequestScope, run: &workflow_run::Model) -> Result<()> {
    if run.is_simulation {
        return Ok(());
    }
    let (name, status) = match run.status {
        RunStatus::Succeeded => ("run.succeeded", "SUCCEEDED"),
        RunStatus::Failed => ("run.failed", "FAILED"),
        RunStatus::Cancelled => ("run.cancelled", "CANCELLED"),
        RunStatus::Pending | RunStatus::Running => return Ok(()),
    };
    let started_by_event = if run.trigger_type == TriggerType::Event {
        run.trigger_payload
            .as_ref()
            .and_then(|p| p.get("depth"))
            .and_then(Json::as_i64)
            .unwrap_or(MAX_EVENT_DEPTH)
    } else {
        0
    };
    let mut payload = json!({
        "runId": PrefixedId::new(IdKind::WorkflowRun, run.id).to_string(),
        "workflowId": PrefixedId::new(IdKind::Workflow, run.workflow_id).to_string(),
        "status": status,
    });
    match run.status {
        RunStatus::Succeeded => payload["output"] = run.output.clone().unwrap_or(Json::Null),
        RunStatus::Failed => payload["error"] = run.error.clone().unwrap_or(Json::Null),
        _ => {}
    }
    let event = Event {
        name,
        id: format!("{name}:{}", run.id.simple()),
        payload,
        workflow_id: Some(run.workflow_id),
        depth: started_by_event.saturating_add(1),
    };
    // A run's end must not fail because a run it triggers cannot start.
    deliver(scope, &RunSettings::default(), &event, Refusals::Skip).await?;
    Ok(())
}

/// What a delivery does when a run is refused (CONFLICT, BAD_USER_INPUT, NOT_FOUND:
/// checked before anything is written, so the transaction goes on).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusals {
    /// Fail the emission: the caller is told.
    Fail,
    /// Log it and go on with the other triggers.
    Skip,
}

/// Starts the runs of the tenant's triggers that `event` matches.
async fn deliver(
    scope: &RequestScope,
    settings: &RunSettings,
    event: &Event<'_>,
    refusals: Refusals,
) -> Result<Vec<workflow_run::Model>> {
    let Some(ctx) = scope.active_tenant().await? else {
        return Ok(vec![]);
    };
    let tx = scope.tx().await?;
    let triggers = trigger::Entity::find()
        .from_raw_sql(stmt(
            "SELECT * FROM triggers WHERE tenant_id = $1 AND type = 'event' AND is_active \
               AND config->>'event' = $2 ORDER BY id",
            [ctx.tenant_id.into(), event.name.into()],
        ))
        .all(tx)
        .await?;
    if triggers.is_empty() {
        return Ok(vec![]);
    }
    if event.depth > MAX_EVENT_DEPTH {
        tracing::warn!(
            tenant = %ctx.tenant_id,
            event = event.name,
            depth = event.depth,
            "event starts no run: too many event-started runs in a row"
        );
        metrics::counter!("trellis_event_runs_skipped_total", "reason" => "depth")
            .increment(triggers.len() as u64);
        return Ok(vec![]);
    }
    let context = json!({ "event": event.name, "payload": event.payload });
    let mut runs = Vec::new();
    for trigger in &triggers {
        if let Some(only) = trigger.config.get("workflowId").and_then(Json::as_str) {
            let source = event
                .workflow_id
                .map(|id| PrefixedId::new(IdKind::Workflow, id).to_string());
            if source.as_deref() != Some(only) {
                continue;
            }
        }
        if let Some(filter) = trigger.config.get("filter").filter(|f| !f.is_null()) {
            let scope = Scope {
                context: &context,
                step_output: None,
            };
            if !holds(filter, &scope) {
                continue;
            }
        }
        let trigger_id = PrefixedId::new(IdKind::Trigger, trigger.id).to_string();
        let firing = Firing {
            trigger_type: TriggerType::Event,
            payload: json!({
                "event": event.name,
                "eventId": event.id,
                "depth": event.depth,
                "payload": event.payload,
            }),
            input: event.payload.clone(),
            idempotency_key: format!("event:{}:{trigger_id}", event.id),
        };
        let started = match triggered::fire(scope, settings, trigger, firing).await {
            Ok(Fired::Started(started)) => *started,
            Ok(Fired::Idle(reason)) => {
                metrics::counter!("trellis_event_runs_skipped_total", "reason" => reason)
                    .increment(1);
                continue;
            }
            Err(err) if refusals == Refusals::Skip && triggered::refused_before_writing(&err) => {
                tracing::warn!(trigger = %trigger_id, event = event.name, error = %err, "event trigger started no run");
                metrics::counter!("trellis_event_runs_skipped_total", "reason" => "refused")
                    .increment(1);
                continue;
            }
            Err(err) => return Err(err),
        };
        if !started.deduplicated {
            metrics::counter!("trellis_event_runs_started_total").increment(1);
        }
        runs.push(started.run);
    }
    Ok(runs)
}
