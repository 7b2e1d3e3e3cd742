//! Change announcements for live updates: a NOTIFY on one channel, sent in the
//! changing transaction, so it is delivered only if (and when) that commits, to every
//! server process listening on the database. A run's changes are announced once per
//! transaction (listeners re-read the run, so its last state is what they see).

use sea_orm::ConnectionTrait;
use serde_json::json;
use trellis_entity::workflow_run;
use uuid::Uuid;

use crate::scope::{stmt, RequestScope};
use crate::Result;

/// The channel run changes are announced on.
pub const RUNS_CHANNEL: &str = "trellis_runs";
/// The channel log appends are announced on.
pub const LOGS_CHANNEL: &str = "trellis_logs";

/// Announces, when `scope` commits, that `run` changed (status, steps, output).
pub fn run_changed(scope: &RequestScope, run: &workflow_run::Model) {
    let payload = json!({
        "tenantId": run.tenant_id,
        "runId": run.id,
        "workflowId": run.workflow_id,
    });
    scope.announce(RUNS_CHANNEL, payload.to_string());
}

/// Announces that `count` log entries were appended to a run.
pub async fn logs_appended(
    db: &impl ConnectionTrait,
    tenant_id: Uuid,
    run_id: Uuid,
    count: usize,
) -> Result<()> {
    let payload = json!({ "tenantId": tenant_id, "runId": run_id, "count": count });
    db.execute(stmt(
        "SELECT pg_notify($1, $2)",
        [LOGS_CHANNEL.into(), payload.to_string().into()],
    ))
    .await?;
    Ok(())
}
