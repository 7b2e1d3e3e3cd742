//! Agent usage and metrics. Runners report what each run of an agent used
//! ([`report_usage`]: tokens, cost, latency, whether it failed); each report is an
//! append-only fact in `agent_usage`, and is rolled into `agent_metrics` in the same
//! transaction, per hour and per day (UTC):
//!
//! 1. the statement that inserts the report adds it to the counters of its hour and
//!    day rows (`INSERT … ON CONFLICT DO UPDATE`), taking their row locks;
//! 2. the next statement recomputes p50 and p95 latency (nearest rank,
//!    `percentile_disc`) of those two buckets from `agent_usage`. It begins after the
//!    locks are held, so it sees every report committed before (READ COMMITTED takes a
//!    new snapshot per statement); a report committing later recomputes after it. The
//!    last writer of a bucket therefore leaves it exact.
//!
//! The dashboard reads the rollup rows only ([`agents_metrics`]): one index range per
//! agent, whatever the number of reports. The price is paid by the reporter: a
//! report re-reads its day's latencies from an index (index-only), fine for thousands
//! of reports per agent and day; a histogram would be cheaper but approximate.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ConnectionTrait, QueryResult};
use serde_json::json;
use trellis_entity::{IdKind, Role};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::scope::{stmt, Principal, RequestScope};
use crate::{Error, Result, TenantCtx};

/// The most buckets one metrics read returns (a month of hours).
pub const MAX_BUCKETS: i64 = 744;

/// The length of a metrics bucket (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricsPeriod {
    Hour,
    Day,
}

impl MetricsPeriod {
    /// The name in `agent_metrics.period`, which is also the `date_trunc` unit.
    pub fn name(self) -> &'static str {
        match self {
            MetricsPeriod::Hour => "hour",
            MetricsPeriod::Day => "day",
        }
    }

    fn length(self) -> Duration {
        match self {
            MetricsPeriod::Hour => Duration::hours(1),
            MetricsPeriod::Day => Duration::days(1),
        }
    }

    /// The start of the bucket `at` falls in.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.length()).unwrap_or(at)
    }
}

/// What one run of an agent used, as its runner reports it.
#[derive(Clone, Debug, Default)]
pub struct UsageReport {
    /// The agent, a live one of the caller's tenant.
    pub agent_id: Uuid,
    /// The run, when the runner names one: a run of the same tenant.
    pub run_id: Option<Uuid>,
    /// Input tokens, not negative.
    pub input_tokens: i64,
    /// Output tokens, not negative.
    pub output_tokens: i64,
    /// Millionths of a USD, not negative.
    pub cost_micros: i64,
    /// How long the run took (ms), not negative.
    pub latency_ms: i64,
    /// Whether the run failed (an error in the metrics).
    pub error: bool,
}

/// A report as it was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The report's id (`agu_…` at the API).
    pub id: Uuid,
    /// When it was recorded (the transaction's time): the buckets it counts in.
    pub at: DateTime<Utc>,
}

/// One bucket of an agent's metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsBucket {
    pub period_start: DateTime<Utc>,
    /// Usage reports (one per run).
    pub runs: i64,
    /// Reports of failed runs.
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms_sum: i64,
    /// Nearest-rank percentiles of the bucket's latencies; `None` without reports.
    pub p50_latency_ms: Option<i32>,
    pub p95_latency_ms: Option<i32>,
}

impl MetricsBucket {
    fn from_row(row: &QueryResult, prefix: &str) -> Result<Self> {
        Ok(Self {
            period_start: row.try_get(prefix, "period_start")?,
            runs: row.try_get(prefix, "runs")?,
            errors: row.try_get(prefix, "errors")?,
            input_tokens: row.try_get(prefix, "input_tokens")?,
            output_tokens: row.try_get(prefix, "output_tokens")?,
            cost_micros: row.try_get(prefix, "cost_micros")?,
            latency_ms_sum: row.try_get(prefix, "latency_ms_sum")?,
            p50_latency_ms: row.try_get(prefix, "p50_latency_ms")?,
            p95_latency_ms: row.try_get(prefix, "p95_latency_ms")?,
        })
    }
}

/// Who may report usage: API keys with the runner scope (and the engine), or members
/// who may run things (operators and above). Any other key is FORBIDDEN.
async fn require_reporter(scope: &RequestScope) -> Result<TenantCtx> {
    match scope.principal() {
        Principal::ApiKey { .. } | Principal::Engine { .. } => scope.require_runner().await,
        _ => scope.require(Role::Operator).await,
    }
}

fn not_negative(value: i64, field: &str) -> Result<()> {
    if value < 0 {
        return Err(Error::bad_input(
            field,
            format!("{field} must not be negative"),
        ));
    }
    Ok(())
}

/// Records what one run of an agent used and rolls it into the agent's hourly and
/// daily metrics (see the module). The agent must be a live agent of the caller's
/// tenant, and the run, when given, a run of the tenant: anything else is NOT_FOUND,
/// another tenant's exactly like one that does not exist. Crossing a budget limit
/// raises the agent's budget alert. Audited (`agent.usage.report`).
pub async fn report_usage(scope: &RequestScope, report: UsageReport) -> Result<Reported> {
    let ctx = require_reporter(scope).await?;
    not_negative(report.input_tokens, "inputTokens")?;
    not_negative(report.output_tokens, "outputTokens")?;
    not_negative(report.cost_micros, "costMicros")?;
    not_negative(report.latency_ms, "latencyMs")?;
    let latency_ms = i32::try_from(report.latency_ms)
        .map_err(|_| Error::bad_input("latencyMs", "latencyMs is at most 2147483647"))?;
    let tx = scope.tx().await?;
    let id = Uuid::now_v7();
    // The report and its counters in one statement (which takes the buckets' locks).
    let row = tx
        .query_one(stmt(
            "WITH u AS ( \
               INSERT INTO agent_usage (id, tenant_id, agent_id, run_id, input_tokens, \
                 output_tokens, cost_micros, latency_ms, error, reported_by, reported_by_key) \
               SELECT $1, a.tenant_id, a.id, $4, $5, $6, $7, $8, $9, $10, $11 FROM agents a \
               WHERE a.tenant_id = $2 AND a.id = $3 AND a.deleted_at IS NULL \
                 AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM workflow_runs r \
                   WHERE r.tenant_id = a.tenant_id AND r.id = $4 AND r.agent_id = a.id)) \
               RETURNING tenant_id, agent_id, input_tokens, output_tokens, cost_micros, \
                 latency_ms, error, at), \
             m AS ( \
               INSERT INTO agent_metrics AS m (tenant_id, agent_id, period, period_start, \
                 runs, errors, input_tokens, output_tokens, cost_micros, latency_ms_sum) \
               SELECT u.tenant_id, u.agent_id, p.period, date_trunc(p.period, u.at, 'UTC'), \
                 1, u.error::int, u.input_tokens, u.output_tokens, u.cost_micros, u.latency_ms \
               FROM u CROSS JOIN (VALUES ('hour'), ('day')) AS p(period) \
               ON CONFLICT (tenant_id, agent_id, period, period_start) DO UPDATE SET \
                 runs = m.runs + 1, errors = m.errors + EXCLUDED.errors, \
                 input_tokens = m.input_tokens + EXCLUDED.input_tokens, \
                 output_tokens = m.output_tokens + EXCLUDED.output_tokens, \
                 cost_micros = m.cost_micros + EXCLUDED.cost_micros, \
                 latency_ms_sum = m.latency_ms_sum + EXCLUDED.latency_ms_sum, \
                 updated_at = now() \
               RETURNING 1) \
             SELECT u.at, (SELECT count(*) FROM m) AS buckets FROM u",
            [
                id.into(),
                ctx.tenant_id.into(),
                report.agent_id.into(),
                report.run_id.into(),
                report.input_tokens.into(),
                report.output_tokens.into(),
                report.cost_micros.into(),
                latency_ms.into(),
                report.error.into(),
                scope.user_id().ok().into(),
                scope.api_key_id().into(),
            ],
        ))
        .await?;
    let Some(row) = row else {
        // Nothing written: no live agent of the tenant, no such run (another tenant's
        // reads as one never issued), or a run of the tenant that is not the agent's.
        let other_agents_run = match report.run_id {
            Some(run_id) => tx
                .query_one(stmt(
                    "SELECT 1 FROM agents a JOIN workflow_runs r ON r.tenant_id = a.tenant_id \
                     WHERE a.tenant_id = $1 AND a.id = $2 AND a.deleted_at IS NULL \
                       AND r.id = $3",
                    [ctx.tenant_id.into(), report.agent_id.into(), run_id.into()],
                ))
                .await?
                .is_some(),
            None => false,
        };
        return Err(if other_agents_run {
            Error::bad_input("runId", "runId is not a run of this agent")
        } else {
            Error::NotFound
        });
    };
    let at: DateTime<Utc> = row.try_get("", "at")?;
    // Now that this transaction holds the buckets, their percentiles from every report.
    tx.execute(stmt(
        "UPDATE agent_metrics m SET p50_latency_ms = s.p50, p95_latency_ms = s.p95 \
         FROM ( \
           SELECT p.period, p.start, \
             percentile_disc(0.5) WITHIN GROUP (ORDER BY u.latency_ms) AS p50, \
             percentile_disc(0.95) WITHIN GROUP (ORDER BY u.latency_ms) AS p95 \
           FROM (VALUES ('hour', date_trunc('hour', $3::timestamptz, 'UTC'), \
                         date_trunc('hour', $3::timestamptz, 'UTC') + interval '1 hour'), \
                        ('day', date_trunc('day', $3::timestamptz, 'UTC'), \
                         date_trunc('day', $3::timestamptz, 'UTC') + interval '1 day')) \
             AS p(period, start, finish) \
           JOIN agent_usage u ON u.tenant_id = $1 AND u.agent_id = $2 \
             AND u.at >= p.start AND u.at < p.finish \
           GROUP BY p.period, p.start) s \
         WHERE m.tenant_id = $1 AND m.agent_id = $2 AND m.period = s.period \
           AND m.period_start = s.start",
        [ctx.tenant_id.into(), report.agent_id.into(), at.into()],
    ))
    .await?;
    super::budget::alert_if_exceeded(scope, ctx.tenant_id, report.agent_id).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.usage.report")
            .target(IdKind::Agent, report.agent_id)
            .details(json!({
                "usageId": id,
                "runId": report.run_id,
                "inputTokens": report.input_tokens,
                "outputTokens": report.output_tokens,
                "costMicros": report.cost_micros,
                "latencyMs": report.latency_ms,
                "error": report.error,
            })),
    )
    .await?;
    Ok(Reported { id, at })
}

/// The bucket starts from the one holding `from` up to `to`.
pub fn bucket_starts(
    period: MetricsPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    if to <= from {
        return Err(Error::bad_input("to", "to must be after from"));
    }
    let first = period.start_of(from);
    let count = (to - first)
        .num_seconds()
        .div_euclid(period.length().num_seconds())
        + 1;
    if count > MAX_BUCKETS {
        return Err(Error::bad_input(
            "from",
            format!(
                "at most {MAX_BUCKETS} {}s: narrow the range or use DAY",
                period.name()
            ),
        ));
    }
    let mut starts = vec![];
    let mut start = first;
    while start < to {
        starts.push(start);
        start += period.length();
    }
    Ok(starts)
}

/// The metrics of each of `agent_ids` (viewers) per `period`, every bucket from the one
/// holding `from` up to `to` (an empty one has zero counts and no percentiles), in one
/// statement however many agents: a page of agents asks for all of theirs at once.
/// Another tenant's agent has none, like one that does not exist.
pub async fn agents_metrics(
    scope: &RequestScope,
    agent_ids: &[Uuid],
    period: MetricsPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<MetricsBucket>>> {
    scope.require(Role::Viewer).await?;
    let starts = bucket_starts(period, from, to)?;
    let Some((sql, values)) = metrics_select(agent_ids, period, &starts) else {
        return Ok(HashMap::new());
    };
    let rows = scope.tx().await?.query_all(stmt(&sql, values)).await?;
    let rows: Vec<&QueryResult> = rows.iter().collect();
    metrics_of_rows(&rows, "", agent_ids, &starts)
}

/// The columns [`metrics_select`] reads, in order.
pub const METRICS_COLUMNS: [&str; 10] = [
    "agent_id",
    "period_start",
    "runs",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_micros",
    "latency_ms_sum",
    "p50_latency_ms",
    "p95_latency_ms",
];

/// The select of the rollup rows of `agent_ids` in the buckets `starts` (of
/// [`bucket_starts`]), in the transaction's tenant; `None` without buckets.
pub fn metrics_select(
    agent_ids: &[Uuid],
    period: MetricsPeriod,
    starts: &[DateTime<Utc>],
) -> Option<(String, Vec<sea_orm::Value>)> {
    let (first, last) = (starts.first()?, starts.last()?);
    let sql = format!(
        "SELECT {} FROM agent_metrics \
         WHERE tenant_id = (SELECT app.current_tenant_id()) AND agent_id = ANY($1) \
           AND period = $2 AND period_start >= $3 AND period_start <= $4",
        METRICS_COLUMNS.join(", ")
    );
    let values = vec![
        agent_ids.to_vec().into(),
        period.name().into(),
        (*first).into(),
        (*last).into(),
    ];
    Some((sql, values))
}

/// Every agent's buckets `starts` from the rows of [`metrics_select`] (their column
/// names prefixed with `prefix`), zero where no row is.
pub fn metrics_of_rows(
    rows: &[&QueryResult],
    prefix: &str,
    agent_ids: &[Uuid],
    starts: &[DateTime<Utc>],
) -> Result<HashMap<Uuid, Vec<MetricsBucket>>> {
    let mut found: HashMap<(Uuid, DateTime<Utc>), MetricsBucket> = HashMap::new();
    for row in rows {
        let agent: Uuid = row.try_get(prefix, "agent_id")?;
        let bucket = MetricsBucket::from_row(row, prefix)?;
        found.insert((agent, bucket.period_start), bucket);
    }
    Ok(agent_ids
        .iter()
        .map(|agent| {
            let buckets = starts
                .iter()
                .map(|start| {
                    found.remove(&(*agent, *start)).unwrap_or(MetricsBucket {
                        period_start: *start,
                        ..MetricsBucket::default()
                    })
                })
                .collect();
            (*agent, buckets)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_at_the_period_holding_from_and_stop_before_to() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let starts = bucket_starts(
            MetricsPeriod::Hour,
            at("2026-12-07T10:30:00Z"),
            at("2026-12-07T13:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            starts,
            [
                at("2026-12-07T10:00:00Z"),
                at("2026-12-07T11:00:00Z"),
                at("2026-12-07T12:00:00Z")
            ]
        );
        assert!(bucket_starts(
            MetricsPeriod::Hour,
            at("2026-01-01T00:00:00Z"),
            at("2026-03-01T00:00:00Z")
        )
        .is_err());
        assert!(bucket_starts(
            MetricsPeriod::Day,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z")
        )
        .is_err());
    }
}
