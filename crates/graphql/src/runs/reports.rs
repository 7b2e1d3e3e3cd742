//! Report types: `Workflow.stats` buckets and the tenant's runs-by-status series.

use async_graphql::{Context, Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};
use trellis_core::runs::reports;
use trellis_entity::IdKind;
use uuid::Uuid;

use crate::context::{load, run, ContextExt};
use crate::ids;
use crate::loaders::StatsOfWorkflow;

/// The length of a report bucket: a UTC day, an ISO week (from Monday) or a calendar
/// month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_core::runs::reports::Period")]
pub enum ReportPeriod {
    /// A day, from 00:00 UTC.
    Day,
    /// An ISO week, from Monday 00:00 UTC.
    Week,
    /// A calendar month, from the 1st at 00:00 UTC.
    Month,
}

/// One period of a workflow's runs (simulations left out). Every period of the range
/// has a bucket; an empty one has zero counts and null durations.
#[derive(SimpleObject)]
pub struct WorkflowStatsBucket {
    /// Where the period begins (UTC).
    pub period_start: DateTime<Utc>,
    /// Runs created in the period, whatever their status.
    pub total: i64,
    /// Of those, the runs that succeeded.
    pub succeeded: i64,
    /// Of those, the runs that failed.
    pub failed: i64,
    /// Of those, the runs that were cancelled.
    pub cancelled: i64,
    /// Mean of `finishedAt - startedAt` over the period's finished runs that started.
    pub average_duration_ms: Option<f64>,
    /// 95th percentile (continuous) of the same durations.
    pub p95_duration_ms: Option<f64>,
}

impl From<reports::WorkflowBucket> for WorkflowStatsBucket {
    fn from(b: reports::WorkflowBucket) -> Self {
        Self {
            period_start: b.period_start,
            total: b.total,
            succeeded: b.succeeded,
            failed: b.failed,
            cancelled: b.cancelled,
            average_duration_ms: b.average_duration_ms,
            p95_duration_ms: b.p95_duration_ms,
        }
    }
}

/// One period of the tenant's runs by their current status (simulations left out).
#[derive(SimpleObject)]
pub struct RunStatsBucket {
    /// Where the period begins (UTC).
    pub period_start: DateTime<Utc>,
    /// Runs created in the period that are PENDING now.
    pub pending: i64,
    /// Runs created in the period that are RUNNING now.
    pub running: i64,
    /// Runs created in the period that have SUCCEEDED.
    pub succeeded: i64,
    /// Runs created in the period that have FAILED.
    pub failed: i64,
    /// Runs created in the period that were CANCELLED.
    pub cancelled: i64,
}

impl From<reports::StatusBucket> for RunStatsBucket {
    fn from(b: reports::StatusBucket) -> Self {
        Self {
            period_start: b.period_start,
            pending: b.pending,
            running: b.running,
            succeeded: b.succeeded,
            failed: b.failed,
            cancelled: b.cancelled,
        }
    }
}

/// `Workflow.stats`. The range is checked here, so a bad one is this field's error;
/// the figures come through the request's loader, one read for a whole page.
pub(crate) async fn workflow_stats(
    ctx: &Context<'_>,
    workflow_id: Uuid,
    period: ReportPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<Vec<WorkflowStatsBucket>> {
    run(ctx, async { reports::buckets(period.into(), from, to) }).await?;
    let key = StatsOfWorkflow {
        workflow_id,
        period: period.into(),
        from,
        to,
    };
    let rows = load(ctx, key).await?.unwrap_or_default();
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The root `runStats`.
pub(crate) async fn run_stats(
    ctx: &Context<'_>,
    period: ReportPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    workflow: Option<ID>,
) -> async_graphql::Result<Vec<RunStatsBucket>> {
    let scope = ctx.scope()?;
    let rows = run(ctx, async {
        // Another tenant's workflow and a made-up one both find no runs, as in the
        // `runs` filter; an ID that names no workflow at all is NOT_FOUND.
        let workflow = workflow
            .map(|id| ids::parse(&id, IdKind::Workflow))
            .transpose()?;
        reports::run_stats(scope, workflow, period.into(), from, to).await
    })
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
