//! Report types: `Workflow.stats` buckets, seed 003's report objects
//! (`Workflow.reports`, `WorkflowRun.report`) and the tenant's runs-by-status series.

use async_graphql::{Context, Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};
use trellis_core::runs::reports;
use trellis_entity::columns::ColumnSet;
use trellis_entity::{step_run, workflow_run, IdKind};
use uuid::Uuid;

use crate::context::{load, run, ContextExt};
use crate::ids;
use crate::loaders::{StatsOfWorkflow, StepRunsOfRun};
use crate::payload::Json;

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

/// What a report covers (seed 003's `reportType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum WorkflowReportType {
    /// A UTC day of a workflow's runs.
    Daily,
    /// An ISO week of a workflow's runs.
    Weekly,
    /// A calendar month of a workflow's runs.
    Monthly,
    /// One run.
    Execution,
}

impl From<ReportPeriod> for WorkflowReportType {
    fn from(period: ReportPeriod) -> Self {
        match period {
            ReportPeriod::Day => Self::Daily,
            ReportPeriod::Week => Self::Weekly,
            ReportPeriod::Month => Self::Monthly,
        }
    }
}

/// Seed 003's workflow report: the figures of a workflow's period, or of one run, as a
/// metrics object. Computed from the report rollups and runs when asked, never stored
/// twice.
#[derive(SimpleObject)]
pub struct WorkflowReport {
    /// DAILY, WEEKLY or MONTHLY for a period of a workflow; EXECUTION for one run.
    pub report_type: WorkflowReportType,
    /// The period's length; null for an EXECUTION report.
    pub period: Option<ReportPeriod>,
    /// Where the period begins (UTC); a run's start (its creation while it has not
    /// started).
    pub period_start: DateTime<Utc>,
    /// Where the period ends (the next one begins); when a run finished, null until
    /// then.
    pub period_end: Option<DateTime<Utc>>,
    /// A period: `{totalExecutions, completedExecutions, failedExecutions,
    /// cancelledExecutions, averageExecutionTime, p95ExecutionTime}` (times in
    /// milliseconds, simulations left out). A run: `{executionTime, totalSteps,
    /// completedSteps, failedSteps, skippedSteps, cancelledSteps, pendingSteps,
    /// attempts, simulation}`.
    pub metrics: Json<serde_json::Value>,
}

/// `Workflow.reports`: the same figures as `Workflow.stats`, through the same loader,
/// as report objects.
pub(crate) async fn workflow_reports(
    ctx: &Context<'_>,
    workflow_id: Uuid,
    period: ReportPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<Vec<WorkflowReport>> {
    let buckets = workflow_stats_rows(ctx, workflow_id, period, from, to).await?;
    let core_period: reports::Period = period.into();
    Ok(buckets
        .into_iter()
        .map(|b| WorkflowReport {
            report_type: period.into(),
            period: Some(period),
            period_start: b.period_start,
            period_end: core_period.next(b.period_start),
            metrics: Json(b.metrics()),
        })
        .collect())
}

/// What a run's report reads of its step runs.
fn report_step_columns() -> ColumnSet {
    ColumnSet::NONE.with_all([
        step_run::Column::Id,
        step_run::Column::RunId,
        step_run::Column::Status,
        step_run::Column::Attempt,
    ])
}

/// The step-run key a run's report loads (a page of runs prefetches them all).
pub(crate) fn report_steps_key(run_id: Uuid) -> StepRunsOfRun {
    StepRunsOfRun {
        run_id,
        columns: report_step_columns(),
    }
}

/// `WorkflowRun.report`: the run's EXECUTION report.
pub(crate) async fn run_report(
    ctx: &Context<'_>,
    run: &workflow_run::Model,
) -> async_graphql::Result<WorkflowReport> {
    let steps = load(ctx, report_steps_key(run.id))
        .await?
        .unwrap_or_default();
    Ok(WorkflowReport {
        report_type: WorkflowReportType::Execution,
        period: None,
        period_start: run.started_at.unwrap_or(run.created_at),
        period_end: run.finished_at,
        metrics: Json(reports::run_metrics(run, &steps)),
    })
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
    let rows = workflow_stats_rows(ctx, workflow_id, period, from, to).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A workflow's buckets for a range, checked here so a bad range is the field's error.
async fn workflow_stats_rows(
    ctx: &Context<'_>,
    workflow_id: Uuid,
    period: ReportPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<Vec<reports::WorkflowBucket>> {
    run(ctx, async { reports::buckets(period.into(), from, to) }).await?;
    let key = StatsOfWorkflow {
        workflow_id,
        period: period.into(),
        from,
        to,
    };
    Ok(load(ctx, key).await?.unwrap_or_default())
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
