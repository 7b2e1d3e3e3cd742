//! Reports on runs: a workflow's per-period figures (total, succeeded, failed,
//! cancelled, average and p95 duration), a tenant-wide runs-by-status series for the
//! dashboard, and the job that rolls closed periods up into `workflow_reports`.
//!
//! Periods are UTC days, ISO weeks (Monday to Monday) and calendar months: a run
//! belongs to the period that `date_trunc` gives for its `created_at` in UTC. `from` is
//! rounded down to the start of its period, so every bucket covers a whole period;
//! buckets run from there up to (not including) `to`, at most [`MAX_BUCKETS`] of them,
//! every one present (an empty period has zero counts and null durations). A run's
//! duration is `finished_at - started_at` of a finished run that started (a run
//! cancelled while pending has none); p95 is `percentile_cont(0.95)` over them.
//! Simulations are dry runs and are left out of every report.
//!
//! Seed 003's report objects are views of these figures, not a second copy: a
//! workflow's DAILY, WEEKLY and MONTHLY reports are its buckets with their figures as
//! a metrics object ([`WorkflowBucket::metrics`]), and a run's EXECUTION report is
//! computed from the run and its step runs ([`run_metrics`]).
//!
//! Rollups: [`write_reports`] writes one `workflow_reports` row per workflow and closed
//! period (its end at or before `now`) once every run created in it has finished, so a
//! rollup is final: runs never move back and are never created in the past. Workflow
//! stats read closed periods from those rows and compute from raw runs only the open
//! period and closed periods that have no rollup yet, so a long range costs one small
//! index read per period instead of a scan of its runs. The runs-by-status series counts
//! pending and running runs, which no rollup holds; it reads raw runs through the
//! `(tenant_id, created_at)` index and is bounded by the bucket limit.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, QueryResult, Value};
use serde_json::{json, Value as Json};
use trellis_entity::{step_run, workflow_run, Role, StepRunStatus};
use uuid::Uuid;

use crate::scope::{stmt, RequestScope};
use crate::{AppDb, Error, Result};

/// The most buckets one report returns.
pub const MAX_BUCKETS: usize = 400;

/// Earlier than any run: where the rollup job starts without `since`, and its keyset
/// cursor before the first batch (inside PostgreSQL's range, unlike `DateTime::MIN_UTC`).
fn floor() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// The length of a report's buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    /// The name in `workflow_reports.period`, which is also the `date_trunc` unit.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    fn interval(self) -> &'static str {
        match self {
            Period::Day => "1 day",
            Period::Week => "7 days",
            Period::Month => "1 month",
        }
    }

    /// The start of the period `at` falls in (UTC).
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let date = at.date_naive();
        let first = match self {
            Period::Day => date,
            Period::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            Period::Month => NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date),
        };
        first.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Period::Day => start.checked_add_days(Days::new(1)),
            Period::Week => start.checked_add_days(Days::new(7)),
            Period::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// One period of a workflow's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowBucket {
    pub period_start: DateTime<Utc>,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Null when no run of the period finished after starting.
    pub average_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
}

impl WorkflowBucket {
    fn empty(period_start: DateTime<Utc>) -> Self {
        Self {
            period_start,
            total: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            average_duration_ms: None,
            p95_duration_ms: None,
        }
    }

    /// The bucket as seed 003's report metrics: `totalExecutions`,
    /// `completedExecutions` (succeeded), `failedExecutions`, `cancelledExecutions`,
    /// and `averageExecutionTime` and `p95ExecutionTime` in milliseconds (null when no
    /// run of the period finished after starting).
    pub fn metrics(&self) -> Json {
        json!({
            "totalExecutions": self.total,
            "completedExecutions": self.succeeded,
            "failedExecutions": self.failed,
            "cancelledExecutions": self.cancelled,
            "averageExecutionTime": self.average_duration_ms,
            "p95ExecutionTime": self.p95_duration_ms,
        })
    }

    fn from_row(row: &QueryResult) -> Result<Self> {
        Ok(Self {
            period_start: row.try_get("", "period_start")?,
            total: row.try_get("", "total")?,
            succeeded: row.try_get("", "succeeded")?,
            failed: row.try_get("", "failed")?,
            cancelled: row.try_get("", "cancelled")?,
            average_duration_ms: row.try_get("", "avg_duration_ms")?,
            p95_duration_ms: row.try_get("", "p95_duration_ms")?,
        })
    }
}

/// A run's EXECUTION report metrics, from the run and its step runs (which need only
/// their status and attempt): `executionTime` (milliseconds from start to finish, null
/// until it finishes and for a run cancelled before it started), `totalSteps`,
/// `completedSteps` (succeeded), `failedSteps`, `skippedSteps`, `cancelledSteps`,
/// `pendingSteps` (not finished: pending, running or waiting on people), `attempts`
/// (step attempts, retries included) and `simulation`. While the run has not finished
/// the figures are those of now.
pub fn run_metrics<S: std::borrow::Borrow<step_run::Model>>(
    run: &workflow_run::Model,
    steps: &[S],
) -> Json {
    let count = |wanted: &[StepRunStatus]| {
        steps
            .iter()
            .filter(|s| wanted.contains(&s.borrow().status))
            .count()
    };
    let execution_time = match (run.started_at, run.finished_at) {
        (Some(start), Some(finish)) => Some((finish - start).num_milliseconds()),
        _ => None,
    };
    json!({
        "executionTime": execution_time,
        "totalSteps": steps.len(),
        "completedSteps": count(&[StepRunStatus::Succeeded]),
        "failedSteps": count(&[StepRunStatus::Failed]),
        "skippedSteps": count(&[StepRunStatus::Skipped]),
        "cancelledSteps": count(&[StepRunStatus::Cancelled]),
        "pendingSteps": count(&[
            StepRunStatus::Pending,
            StepRunStatus::Running,
            StepRunStatus::Waiting,
        ]),
        "attempts": steps.iter().map(|s| i64::from(s.borrow().attempt)).sum::<i64>(),
        "simulation": run.is_simulation,
    })
}

/// One period of a tenant's runs by their current status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusBucket {
    pub period_start: DateTime<Utc>,
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// A run's duration in milliseconds, or NULL when it has none; over `r`.
const DURATION_MS: &str = "CASE WHEN r.status IN ('succeeded', 'failed', 'cancelled') \
     AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL \
     THEN extract(epoch FROM r.finished_at - r.started_at)::float8 * 1000 END";

/// The figures of a group of runs `r`, as `workflow_reports` holds them.
fn aggregates() -> String {
    format!(
        "count(*) AS total, \
         count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded, \
         count(*) FILTER (WHERE r.status = 'failed') AS failed, \
         count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled, \
         avg({DURATION_MS}) AS avg_duration_ms, \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY {DURATION_MS}) AS p95_duration_ms"
    )
}

/// The periods from the one holding `from` up to `to`: (start, end) pairs.
pub fn buckets(
    period: Period,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    if to <= from {
        return Err(Error::bad_input("to", "to must be after from"));
    }
    let too_long = || {
        Error::bad_input(
            "from",
            format!(
                "a report covers at most {MAX_BUCKETS} {}s: narrow the range or use a longer period",
                period.name()
            ),
        )
    };
    let mut out = Vec::new();
    let mut start = period.start_of(from);
    while start < to {
        if out.len() == MAX_BUCKETS {
            return Err(too_long());
        }
        let end = period.next(start).ok_or_else(too_long)?;
        out.push((start, end));
        start = end;
    }
    Ok(out)
}

/// The figures per period of each of `workflow_ids` (viewers), in one statement for
/// the rollups and one for the rest, however many workflows: a page of workflows asks
/// for all of theirs at once. Closed periods come from their rollups where the job
/// wrote one; the open period and closed periods without a rollup are computed from raw
/// runs. Another tenant's workflow has no runs here (RLS), like one that does not
/// exist. Every workflow asked for gets every bucket of the range.
pub async fn workflows_stats(
    scope: &RequestScope,
    workflow_ids: &[Uuid],
    period: Period,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<WorkflowBucket>>> {
    let ctx = scope.require(Role::Viewer).await?;
    let ranges = buckets(period, from, to)?;
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Ok(workflow_ids.iter().map(|id| (*id, Vec::new())).collect());
    };
    let open_start = period.start_of(Utc::now());
    let tx = scope.tx().await?;
    let mut found: HashMap<(Uuid, DateTime<Utc>), WorkflowBucket> = HashMap::new();
    let closed_end = open_start.min(last.1);
    if first.0 < closed_end {
        let rows = tx
            .query_all(stmt(
                "SELECT workflow_id, period_start, total::int8 AS total, \
                   succeeded::int8 AS succeeded, failed::int8 AS failed, \
                   cancelled::int8 AS cancelled, avg_duration_ms, p95_duration_ms \
                 FROM workflow_reports \
                 WHERE tenant_id = $1 AND workflow_id = ANY($2) AND period = $3 \
                   AND period_start >= $4 AND period_start < $5",
                [
                    ctx.tenant_id.into(),
                    workflow_ids.to_vec().into(),
                    period.name().into(),
                    first.0.into(),
                    closed_end.into(),
                ],
            ))
            .await?;
        for row in rows {
            let workflow_id: Uuid = row.try_get("", "workflow_id")?;
            let bucket = WorkflowBucket::from_row(&row)?;
            found.insert((workflow_id, bucket.period_start), bucket);
        }
    }
    // The (workflow, period) pairs no rollup answered, as three parallel arrays.
    let mut missing: (Vec<Uuid>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) = Default::default();
    for id in workflow_ids {
        for (start, end) in &ranges {
            if !found.contains_key(&(*id, *start)) {
                missing.0.push(*id);
                missing.1.push(*start);
                missing.2.push(*end);
            }
        }
    }
    if !missing.0.is_empty() {
        let rows = tx
            .query_all(stmt(
                &format!(
                    "SELECT b.workflow_id, b.start AS period_start, {} \
                     FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) \
                       AS b (workflow_id, start, finish) \
                     JOIN workflow_runs r ON r.tenant_id = $1 \
                       AND r.workflow_id = b.workflow_id AND NOT r.is_simulation \
                       AND r.created_at >= b.start AND r.created_at < b.finish \
                     GROUP BY b.workflow_id, b.start",
                    aggregates()
                ),
                [
                    ctx.tenant_id.into(),
                    missing.0.into(),
                    missing.1.into(),
                    missing.2.into(),
                ],
            ))
            .await?;
        for row in rows {
            let workflow_id: Uuid = row.try_get("", "workflow_id")?;
            let bucket = WorkflowBucket::from_row(&row)?;
            found.insert((workflow_id, bucket.period_start), bucket);
        }
    }
    Ok(workflow_ids
        .iter()
        .map(|id| {
            let series = ranges
                .iter()
                .map(|(start, _)| {
                    found
                        .remove(&(*id, *start))
                        .unwrap_or_else(|| WorkflowBucket::empty(*start))
                })
                .collect();
            (*id, series)
        })
        .collect())
}

/// The tenant's runs per period by their current status, of one workflow or all
/// (viewers), from raw runs.
pub async fn run_stats(
    scope: &RequestScope,
    workflow_id: Option<Uuid>,
    period: Period,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StatusBucket>> {
    let ctx = scope.require(Role::Viewer).await?;
    let ranges = buckets(period, from, to)?;
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Ok(Vec::new());
    };
    let mut values: Vec<Value> = vec![ctx.tenant_id.into(), first.0.into(), last.1.into()];
    let of_workflow = match workflow_id {
        Some(id) => {
            values.push(id.into());
            "AND r.workflow_id = $4"
        }
        None => "",
    };
    let rows = scope
        .tx()
        .await?
        .query_all(stmt(
            &format!(
                "SELECT date_trunc('{unit}', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
                   AS period_start, \
                   count(*) FILTER (WHERE r.status = 'pending') AS pending, \
                   count(*) FILTER (WHERE r.status = 'running') AS running, \
                   count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded, \
                   count(*) FILTER (WHERE r.status = 'failed') AS failed, \
                   count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled \
                 FROM workflow_runs r \
                 WHERE r.tenant_id = $1 AND r.created_at >= $2 AND r.created_at < $3 \
                   AND NOT r.is_simulation {of_workflow} \
                 GROUP BY 1",
                unit = period.name()
            ),
            values,
        ))
        .await?;
    let mut found = HashMap::new();
    for row in rows {
        let bucket = StatusBucket {
            period_start: row.try_get("", "period_start")?,
            pending: row.try_get("", "pending")?,
            running: row.try_get("", "running")?,
            succeeded: row.try_get("", "succeeded")?,
            failed: row.try_get("", "failed")?,
            cancelled: row.try_get("", "cancelled")?,
        };
        found.insert(bucket.period_start, bucket);
    }
    Ok(ranges
        .iter()
        .map(|(start, _)| {
            found.remove(start).unwrap_or_else(|| StatusBucket {
                period_start: *start,
                ..Default::default()
            })
        })
        .collect())
}

/// What the rollup job covers.
#[derive(Clone, Debug)]
pub struct ReportJob {
    /// Only this tenant; every tenant when `None`.
    pub tenant_id: Option<Uuid>,
    /// Only periods from the one holding this instant; all history when `None`. A
    /// scheduler passes a window somewhat longer than a month, since older periods
    /// already have their rollups.
    pub since: Option<DateTime<Utc>>,
    /// Rollups written per statement.
    pub batch: u64,
    /// Rewrite rollups that exist (a repair or a backfill after a change of rules);
    /// otherwise only closed periods without one are written.
    pub recompute: bool,
}

impl Default for ReportJob {
    fn default() -> Self {
        Self {
            tenant_id: None,
            since: None,
            batch: 500,
            recompute: false,
        }
    }
}

/// What a run of the rollup job did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportPass {
    /// Rollup rows inserted or rewritten.
    pub written: u64,
    /// Statements that wrote them.
    pub batches: u64,
    /// Tenants whose rollups failed (logged; retried on the next pass).
    pub failed: u64,
}

/// Writes `workflow_reports` rollups for every closed period (its end at or before
/// `now`) of every workflow whose runs in that period have all finished. Idempotent:
/// rows are upserted on their primary key, and a rollup that exists is left alone
/// unless `job.recompute`. Works tenant by tenant and at most `job.batch` rollups per
/// statement, in keyset order of (period start, workflow).
///
/// The tenants with runs since `job.since` come from `app.tenants_with_runs_since`
/// (ids only); every batch then runs in its tenant's own transaction under RLS as
/// [`crate::Principal::Upkeep`], like the other maintenance jobs. One tenant's failure
/// is logged and counted in [`ReportPass::failed`], and the others go on.
pub async fn write_reports(db: &AppDb, now: DateTime<Utc>, job: &ReportJob) -> Result<ReportPass> {
    // The earliest period any rollup of the job covers starts at or before `since`.
    let since = job
        .since
        .map(|s| {
            Period::ALL
                .map(|p| p.start_of(s))
                .into_iter()
                .min()
                .unwrap_or(s)
        })
        .unwrap_or_else(floor);
    let tenants: Vec<Uuid> = match job.tenant_id {
        Some(id) => vec![id],
        None => db
            .pool()
            .query_all(stmt(
                "SELECT t AS id FROM app.tenants_with_runs_since($1, $2) AS t",
                [since.into(), MAX_TENANTS_PER_PASS.into()],
            ))
            .await?
            .iter()
            .map(|row| row.try_get("", "id"))
            .collect::<std::result::Result<_, _>>()?,
    };
    let mut pass = ReportPass::default();
    for tenant in tenants {
        match tenant_reports(db, tenant, now, job).await {
            Ok(done) => {
                pass.written += done.written;
                pass.batches += done.batches;
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %tenant, error = ?err, "report rollup failed");
            }
        }
    }
    Ok(pass)
}

/// The most tenants one pass of the rollup job visits; the rest wait for the next pass.
const MAX_TENANTS_PER_PASS: i32 = 10_000;

/// Every rollup due in one tenant, one transaction per batch.
async fn tenant_reports(
    db: &AppDb,
    tenant: Uuid,
    now: DateTime<Utc>,
    job: &ReportJob,
) -> Result<ReportPass> {
    let batch = i64::try_from(job.batch.max(1)).unwrap_or(i64::MAX);
    let mut pass = ReportPass::default();
    for period in Period::ALL {
        let closed_before = period.start_of(now);
        let since = job.since.map(|s| period.start_of(s)).unwrap_or_else(floor);
        if since >= closed_before {
            continue;
        }
        let mut after: (DateTime<Utc>, Uuid) = (floor(), Uuid::nil());
        loop {
            let scope = RequestScope::for_upkeep(db.clone(), tenant);
            scope.require(Role::Viewer).await?;
            let rows = scope
                .tx()
                .await?
                .query_all(stmt(
                    &rollup_sql(period),
                    [
                        tenant.into(),
                        since.into(),
                        closed_before.into(),
                        batch.into(),
                        job.recompute.into(),
                        after.0.into(),
                        after.1.into(),
                    ],
                ))
                .await?;
            RequestScope::finish_shared(scope, true).await?;
            if rows.is_empty() {
                break;
            }
            pass.batches += 1;
            pass.written += rows.len() as u64;
            for row in &rows {
                let key = (
                    row.try_get("", "period_start")?,
                    row.try_get("", "workflow_id")?,
                );
                after = after.max(key);
            }
            if (rows.len() as i64) < batch {
                break;
            }
        }
    }
    Ok(pass)
}

/// One batch of rollups of a tenant for `period`: $1 tenant, $2 since, $3 the start of
/// the open period, $4 batch size, $5 recompute, ($6, $7) the keyset cursor.
fn rollup_sql(period: Period) -> String {
    format!(
        "WITH groups AS ( \
           SELECT r.workflow_id, date_trunc('{unit}', r.created_at AT TIME ZONE 'UTC') AS utc_start, \
             bool_and(r.status IN ('succeeded', 'failed', 'cancelled')) AS settled \
           FROM workflow_runs r \
           WHERE r.tenant_id = $1 AND NOT r.is_simulation \
             AND r.created_at >= $2 AND r.created_at < $3 \
           GROUP BY 1, 2), \
         keys AS ( \
           SELECT g.workflow_id, g.utc_start, g.utc_start AT TIME ZONE 'UTC' AS period_start \
           FROM groups g \
           WHERE g.settled \
             AND (g.utc_start AT TIME ZONE 'UTC', g.workflow_id) > ($6, $7) \
             AND ($5 OR NOT EXISTS ( \
               SELECT 1 FROM workflow_reports w WHERE w.tenant_id = $1 \
                 AND w.workflow_id = g.workflow_id AND w.period = '{unit}' \
                 AND w.period_start = g.utc_start AT TIME ZONE 'UTC')) \
           ORDER BY 3, 1 LIMIT $4) \
         INSERT INTO workflow_reports AS w (tenant_id, workflow_id, period, period_start, total, \
           succeeded, failed, cancelled, avg_duration_ms, p95_duration_ms, computed_at) \
         SELECT $1, k.workflow_id, '{unit}', k.period_start, {aggregates}, now() \
         FROM keys k JOIN workflow_runs r ON r.tenant_id = $1 AND r.workflow_id = k.workflow_id \
           AND NOT r.is_simulation AND r.created_at >= k.period_start \
           AND r.created_at < (k.utc_start + interval '{interval}') AT TIME ZONE 'UTC' \
         GROUP BY k.workflow_id, k.period_start \
         ON CONFLICT (tenant_id, workflow_id, period, period_start) DO UPDATE SET \
           total = EXCLUDED.total, succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, \
           cancelled = EXCLUDED.cancelled, avg_duration_ms = EXCLUDED.avg_duration_ms, \
           p95_duration_ms = EXCLUDED.p95_duration_ms, computed_at = EXCLUDED.computed_at \
         RETURNING w.workflow_id, w.period_start",
        unit = period.name(),
        interval = period.interval(),
        aggregates = aggregates(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_start_on_utc_days_iso_weeks_and_months() {
        let t = at("2025-03-05T17:30:00+05:00"); // Wednesday 12:30 UTC
        assert_eq!(Period::Day.start_of(t), at("2025-03-05T00:00:00Z"));
        assert_eq!(Period::Week.start_of(t), at("2025-03-03T00:00:00Z"));
        assert_eq!(Period::Month.start_of(t), at("2025-03-01T00:00:00Z"));
        assert_eq!(
            Period::Month.next(at("2025-01-01T00:00:00Z")),
            Some(at("2025-02-01T00:00:00Z"))
        );
        // A Sunday belongs to the week that began on the Monday before.
        assert_eq!(
            Period::Week.start_of(at("2025-03-09T23:59:59Z")),
            at("2025-03-03T00:00:00Z")
        );
    }

    #[test]
    fn ranges_are_whole_periods_and_bounded() {
        let got = buckets(
            Period::Day,
            at("2025-03-01T12:00:00Z"),
            at("2025-03-03T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                (at("2025-03-01T00:00:00Z"), at("2025-03-02T00:00:00Z")),
                (at("2025-03-02T00:00:00Z"), at("2025-03-03T00:00:00Z")),
            ]
        );
        let same = at("2025-03-01T00:00:00Z");
        assert!(matches!(
            buckets(Period::Day, same, same),
            Err(Error::BadInput { field, .. }) if field == "to"
        ));
        let from = at("2024-01-01T00:00:00Z");
        assert_eq!(
            buckets(Period::Day, from, from + chrono::Duration::days(400))
                .unwrap()
                .len(),
            400
        );
        assert!(matches!(
            buckets(Period::Day, from, from + chrono::Duration::days(401)),
            Err(Error::BadInput { field, .. }) if field == "from"
        ));
    }
}
