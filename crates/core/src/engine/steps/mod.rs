//! The step types the engine runs itself, one module each behind [`StepKind`]. A step
//! of any other type is external: a version that has one is left to runner API workers
//! (docs/runs.md), and the executor never claims its runs. One kind of ACTION step is
//! the engine's too: one bound to the built-in `http` app's `request` action runs as an
//! HTTP step (the executor gives it the type HTTP when it loads the version, see
//! [`runs_as`]), so every function here that takes a type treats it as one.

pub mod approval;
pub mod condition;
pub mod delay;
pub mod http;
pub mod notification;
pub mod transform;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveEnum;
use serde_json::Value;
use trellis_entity::StepType;

use crate::egress::Egress;
use crate::integrations::connections::OpenConnection;

/// What a step is given: its config with templates rendered (stored as the step run's
/// input when it started), when it started, the run context, the one egress guard for
/// steps that call out, the decisions people made on it (approvals) and whether the
/// run is a simulation.
pub struct StepInput<'a> {
    /// Which step run this is, in which run and tenant.
    pub ids: StepIds,
    /// The move's transaction, in the run's tenant under its RLS, for steps that
    /// write with their move (in-app notifications); `None` for calls made outside
    /// any transaction.
    pub db: Option<&'a crate::tx::RequestTx>,
    pub config: &'a Value,
    /// The step's connection, opened (its secrets in memory), for steps that call out
    /// through one.
    pub connection: Option<&'a OpenConnection>,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub context: &'a Value,
    pub egress: &'a Egress,
    pub decisions: &'a [approval::DecisionSeen],
    pub is_simulation: bool,
}

/// A step run's id, its run's and its tenant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepIds {
    pub tenant_id: uuid::Uuid,
    pub run_id: uuid::Uuid,
    pub step_run_id: uuid::Uuid,
}

/// Where a step stands after the executor ran it.
#[derive(Clone, Debug, PartialEq)]
pub enum StepResult {
    /// It succeeded with this output.
    Done(Value),
    /// It failed with this error.
    Failed(Value),
    /// It waits (a timer) until then, holding no worker; the executor comes back.
    Waiting { until: DateTime<Utc> },
    /// It waits on people (step status WAITING) until a decision wakes the run, or
    /// until `until` when the wait has a deadline.
    AwaitingDecision { until: Option<DateTime<Utc>> },
}

/// One type of step the engine runs.
pub trait StepKind {
    /// Runs (or, for a waiting step, looks at again) one step.
    fn execute(
        &self,
        input: &StepInput<'_>,
    ) -> impl std::future::Future<Output = StepResult> + Send;
}

/// The types the engine runs.
pub const ENGINE_TYPES: [StepType; 6] = [
    StepType::Approval,
    StepType::Condition,
    StepType::Delay,
    StepType::Http,
    StepType::Notification,
    StepType::Transform,
];

/// How long a notification may take to send, unless its `timeoutSeconds` is shorter.
const NOTIFICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest any step may run before it fails with `TIMEOUT`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long one attempt of a step may run: `timeoutSeconds` in its config (at most
/// [`MAX_TIMEOUT`]), else its type's own limit (HTTP: `timeoutMs`, else its
/// connection's, 30 s by default; notifications 30 s), else [`MAX_TIMEOUT`]. A timer's
/// or an approval's wait does not count: only the time the executor spends running the
/// step.
pub fn timeout_of(
    step_type: StepType,
    config: &Value,
    connection: Option<&OpenConnection>,
) -> Duration {
    let own = match step_type {
        StepType::Http => http::timeout_of(config, connection),
        StepType::Notification => NOTIFICATION_TIMEOUT,
        _ => MAX_TIMEOUT,
    };
    config
        .get("timeoutSeconds")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(own, |s| Duration::from_secs_f64(s).min(own))
}

/// The error of an attempt that ran out of time.
pub fn timed_out(limit: Duration) -> Value {
    serde_json::json!({
        "code": "TIMEOUT",
        "message": format!("the step ran longer than its timeout of {} ms", limit.as_millis()),
    })
}

/// How many attempts a step gets when its config names none: steps that call out
/// are tried 3 times (networks fail), the others once.
pub fn default_attempts(step_type: StepType, config: &Value) -> u32 {
    if calls_out(step_type, config) {
        3
    } else {
        1
    }
}

/// Whether a failed attempt may be tried again: every error may, unless the step
/// said `"retryable": false` (a bad config, a 4xx answer: the same call fails again).
pub fn is_retryable(error: &Value) -> bool {
    error.get("retryable").and_then(Value::as_bool) != Some(false)
}

/// Whether a step calls out: HTTP (and so ACTION steps of the http app's `request`
/// action, which run as HTTP), and notifications sent through a connection (email,
/// Slack, webhook). The executor then runs it outside any transaction (start, commit,
/// call, record), with its connection opened.
pub fn calls_out(step_type: StepType, config: &Value) -> bool {
    match step_type {
        StepType::Http => true,
        StepType::Notification => notification::channel_of(config).is_some_and(|c| c != "in_app"),
        _ => false,
    }
}

/// Whether a step of this type reaches anything outside its run (a server, a person's
/// inbox; ACTION steps of the http app's `request` action run as HTTP): a simulation
/// does not run it, and answers from its `sampleOutput`.
pub fn reaches_outside(step_type: StepType) -> bool {
    matches!(step_type, StepType::Http | StepType::Notification)
}

/// The type the engine runs a step as: HTTP for an ACTION step bound to the built-in
/// http app's `request` action (`is_http_request`, which the executor looks up with
/// `trellis_entity::workflow_step::is_http_request_action_sql`, the test the claim
/// uses), else its own.
pub fn runs_as(step_type: StepType, is_http_request: bool) -> StepType {
    if step_type == StepType::Action && is_http_request {
        StepType::Http
    } else {
        step_type
    }
}

/// Keys of a step's config that are the engine's, not the step's: accepted on any
/// step, ACTION steps included, whose config is otherwise checked against their
/// action's input schema.
pub const ENGINE_KEYS: [&str; 4] = ["retry", "timeoutSeconds", "sampleOutput", "external"];

/// The stored names of [`ENGINE_TYPES`], as the claim and the due look-up take them.
pub fn engine_type_names() -> Vec<String> {
    ENGINE_TYPES.iter().map(ActiveEnum::to_value).collect()
}

/// Runs a step of one of [`ENGINE_TYPES`]; any other type fails (the claim keeps
/// them away).
pub async fn execute(step_type: StepType, input: &StepInput<'_>) -> StepResult {
    match step_type {
        StepType::Approval => approval::Approval.execute(input).await,
        StepType::Condition => condition::Condition.execute(input).await,
        StepType::Delay => delay::Delay.execute(input).await,
        StepType::Http => http::Http.execute(input).await,
        StepType::Notification => notification::Notification.execute(input).await,
        StepType::Transform => transform::Transform.execute(input).await,
        other => StepResult::Failed(serde_json::json!({
            "message": format!("the engine does not run {} steps", other.to_value()),
        })),
    }
}
