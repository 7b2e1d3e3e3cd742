//! Agent usage: `reportUsage` (runner keys and operators), `Agent.metrics` (hourly and
//! daily rollups) and `Agent.budgetStatus`. A page of agents reads each in one
//! statement, whatever its size (the metrics with the page's other relations).

use async_graphql::{Context, Enum, InputObject, Object, SelectionField, SimpleObject, ID};
use chrono::{DateTime, Utc};
use trellis_core::agents::budget::BudgetStatus;
use trellis_core::agents::usage::{self, MetricsBucket, UsageReport};
use trellis_entity::IdKind;
use uuid::Uuid;

use super::types::Agent;
use crate::context::{load, mutate, run, ContextExt};
use crate::identity::types::input_id;
use crate::ids::gid;
use crate::list::Arguments;
use crate::loaders::{AgentById, MetricsOfAgent};

/// The length of a metrics bucket (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_core::agents::usage::MetricsPeriod")]
pub enum MetricsPeriod {
    /// An hour, from :00 UTC.
    Hour,
    /// A day, from 00:00 UTC.
    Day,
}

/// One bucket of an agent's usage: every bucket of the range is there, an empty one
/// with zero counts and null percentiles.
#[derive(SimpleObject)]
pub struct AgentMetricsBucket {
    /// Where the bucket begins (UTC).
    pub period_start: DateTime<Utc>,
    /// Usage reports in the bucket (one per run).
    pub runs: i64,
    /// Of those, the reports of failed runs.
    pub errors: i64,
    /// Input tokens reported.
    pub input_tokens: i64,
    /// Output tokens reported.
    pub output_tokens: i64,
    /// Cost reported, in USD.
    pub cost: f64,
    /// Cost reported, in millionths of a USD (exact).
    pub cost_micros: i64,
    /// Mean latency of the reports; null without any.
    pub average_latency_ms: Option<f64>,
    /// Median latency (nearest rank: a latency some report had); null without reports.
    pub p50_latency_ms: Option<i32>,
    /// 95th percentile latency (nearest rank); null without reports.
    pub p95_latency_ms: Option<i32>,
}

impl From<MetricsBucket> for AgentMetricsBucket {
    fn from(b: MetricsBucket) -> Self {
        Self {
            period_start: b.period_start,
            runs: b.runs,
            errors: b.errors,
            input_tokens: b.input_tokens,
            output_tokens: b.output_tokens,
            cost: b.cost_micros as f64 / 1_000_000.0,
            cost_micros: b.cost_micros,
            average_latency_ms: (b.runs > 0).then(|| b.latency_ms_sum as f64 / b.runs as f64),
            p50_latency_ms: b.p50_latency_ms,
            p95_latency_ms: b.p95_latency_ms,
        }
    }
}

/// An agent's spending this calendar month (UTC) against its budget.
#[derive(SimpleObject)]
pub struct AgentBudgetStatus {
    /// Cost reported this month, in USD.
    pub monthly_cost: f64,
    /// Input plus output tokens reported this month.
    pub monthly_tokens: i64,
    /// The cost limit (USD); null: none.
    pub monthly_cost_limit: Option<f64>,
    /// The token limit; null: none.
    pub monthly_token_limit: Option<i64>,
    /// Whether a limit is reached: the agent's runs are refused (RATE_LIMITED) until
    /// the next month.
    pub exceeded: bool,
}

impl From<BudgetStatus> for AgentBudgetStatus {
    fn from(s: BudgetStatus) -> Self {
        Self {
            monthly_cost: s.monthly_cost(),
            monthly_tokens: s.monthly_tokens,
            monthly_cost_limit: s.limits.monthly_cost_limit,
            monthly_token_limit: s.limits.monthly_token_limit,
            exceeded: s.exceeded(),
        }
    }
}

/// `Agent.metrics`. The range is checked here, so a bad one is this field's error; the
/// buckets come through the request's loader, one read for a whole page.
pub(crate) async fn metrics_of_agent(
    ctx: &Context<'_>,
    agent_id: Uuid,
    period: MetricsPeriod,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<Vec<AgentMetricsBucket>> {
    run(ctx, async { usage::bucket_starts(period.into(), from, to) }).await?;
    let key = MetricsOfAgent {
        agent_id,
        period: period.into(),
        from,
        to,
    };
    let rows = load(ctx, key).await?.unwrap_or_default();
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The range `field` (an agent's `metrics`) asks for, for a page of agents to read
/// together; `None` when it does not parse or holds no bucket, left to the field
/// itself, which reports the error where it belongs.
pub(crate) fn metrics_range(
    field: &SelectionField<'_>,
) -> Option<(usage::MetricsPeriod, DateTime<Utc>, DateTime<Utc>)> {
    let arguments = Arguments::of(field)?;
    let period: MetricsPeriod = arguments.get("period")?;
    let from: DateTime<Utc> = arguments.get("from")?;
    let to: DateTime<Utc> = arguments.get("to")?;
    usage::bucket_starts(period.into(), from, to).ok()?;
    Some((period.into(), from, to))
}

/// What one run of an agent used.
#[derive(InputObject)]
pub struct ReportUsageInput {
    /// The agent (`agt_…`), a live one of the caller's tenant.
    pub agent_id: ID,
    /// The run (`run_…`) of the caller's tenant, when there is one.
    pub run_id: Option<ID>,
    /// Input tokens, 0 or more.
    pub input_tokens: i64,
    /// Output tokens, 0 or more.
    pub output_tokens: i64,
    /// Cost in millionths of a USD, 0 or more.
    pub cost_micros: i64,
    /// How long the run took, in milliseconds, 0 or more.
    pub latency_ms: i64,
    /// Whether the run failed (counted in the metrics' `errors`); false when omitted
    /// or null.
    pub error: Option<bool>,
}

/// A stored usage report.
#[derive(SimpleObject)]
pub struct AgentUsage {
    /// Its global ID (`agu_…`).
    pub id: ID,
    /// When it was recorded: the bucket it counts in.
    pub at: DateTime<Utc>,
}

payload!(
    /// The usage a runner reported.
    ReportUsagePayload {
        /// The stored report; null when `userErrors` is not empty.
        usage: AgentUsage,
        /// Its agent as it is now (its `metrics` and `budgetStatus` include the report).
        agent: Agent,
    }
);

#[derive(Default)]
pub struct UsageMutation;

#[Object]
impl UsageMutation {
    /// Records what one run of an agent used (API keys with the RUNNER scope, or
    /// operators and above; other keys are FORBIDDEN) and rolls it into the agent's
    /// hourly and daily metrics. Another tenant's agent or run is NOT_FOUND. A report
    /// that brings the month's spending to a budget limit raises the agent's budget
    /// alert.
    async fn report_usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent, the run and what it used.")] input: ReportUsageInput,
    ) -> async_graphql::Result<ReportUsagePayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let run_id = input
            .run_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::WorkflowRun))
            .transpose()?;
        let report = UsageReport {
            agent_id,
            run_id,
            input_tokens: input.input_tokens,
            output_tokens: input.output_tokens,
            cost_micros: input.cost_micros,
            latency_ms: input.latency_ms,
            error: input.error.unwrap_or(false),
        };
        let (reported, user_errors) =
            mutate(ctx, usage::report_usage(ctx.scope()?, report)).await?;
        let agent = match reported {
            Some(_) => load(ctx, AgentById(agent_id)).await?.map(Agent),
            None => None,
        };
        Ok(ReportUsagePayload {
            usage: reported.map(|r| AgentUsage {
                id: gid(IdKind::AgentUsage, r.id),
                at: r.at,
            }),
            agent,
            user_errors,
        })
    }
}
