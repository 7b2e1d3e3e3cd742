//! Usage of processes, read from the hourly rollups the call log keeps
//! ([`super::calls`]): per process, per API key or for the whole tenant, bucketed by
//! hour, day or month, or in total. Latency percentiles come from the rollups'
//! histograms: each is the upper bound of the bucket the percentile falls in.

use chrono::{DateTime, Utc};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use super::calls::{LATENCY_BOUNDS_MS, LATENCY_BUCKETS};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The most buckets one read returns.
pub const MAX_BUCKETS: i64 = 1000;

/// How long a usage bucket is (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsagePeriod {
    Hour,
    Day,
    Month,
}

impl UsagePeriod {
    fn sql(self) -> &'static str {
        match self {
            UsagePeriod::Hour => "hour",
            UsagePeriod::Day => "day",
            UsagePeriod::Month => "month",
        }
    }

    fn approx_seconds(self) -> i64 {
        match self {
            UsagePeriod::Hour => 3600,
            UsagePeriod::Day => 86_400,
            UsagePeriod::Month => 28 * 86_400,
        }
    }
}

/// Whose usage: a process's, an API key's, or (neither) the tenant's.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsageOf {
    pub process_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
}

/// Counts of calls in a span of time.
#[derive(Clone, Debug, Default, PartialEq, FromQueryResult)]
pub struct Usage {
    pub start: DateTime<Utc>,
    pub calls: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rate_limited: i64,
    pub invalid_input: i64,
    pub cache_hits: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
    pub latency_ms_sum: i64,
    pub latency_buckets: Vec<i64>,
}

impl Usage {
    /// Calls that did not succeed: failed, refused by a limit, or with bad input.
    pub fn errors(&self) -> i64 {
        self.failed + self.rate_limited + self.invalid_input
    }

    /// The share of calls answered from the cache; `None` without calls.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.cache_hits as f64 / self.calls as f64)
    }

    /// The latency (ms) under which a share `q` of the calls finished: the upper bound
    /// of its histogram bucket (the slowest bucket reports its lower bound). `None`
    /// without calls.
    pub fn latency_percentile(&self, q: f64) -> Option<i64> {
        let total: i64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)]);
            }
        }
        LATENCY_BOUNDS_MS.last().copied()
    }
}

/// Usage in `[from, to)`, one entry per `period` that had calls (oldest first), or one
/// entry for the whole span when `period` is `None` (its `start` is `from`). Viewers and
/// above.
pub async fn usage(
    scope: &RequestScope,
    of: UsageOf,
    period: Option<UsagePeriod>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Usage>> {
    let tenant = scope.require(trellis_entity::Role::Viewer).await?;
    if to <= from {
        return Err(Error::bad_input("to", "to must be after from"));
    }
    if let Some(period) = period {
        if (to - from).num_seconds() / period.approx_seconds() > MAX_BUCKETS {
            return Err(Error::bad_input(
                "from",
                format!("at most {MAX_BUCKETS} buckets: narrow the range or widen the period"),
            ));
        }
    }
    let start = match period {
        Some(p) => format!("date_trunc('{}', hour, 'UTC')", p.sql()),
        None => "$2::timestamptz".to_owned(),
    };
    let sql = format!(
        "WITH r AS ( \
           SELECT {start} AS start, * FROM process_usage_hourly \
           WHERE tenant_id = $1 AND hour >= date_trunc('hour', $2::timestamptz, 'UTC') \
             AND hour < $3 \
             AND ($4::uuid IS NULL OR process_id = $4) AND ($5::uuid IS NULL OR api_key_id = $5)), \
         totals AS ( \
           SELECT start, sum(calls)::bigint AS calls, sum(succeeded)::bigint AS succeeded, \
             sum(failed)::bigint AS failed, sum(rate_limited)::bigint AS rate_limited, \
             sum(invalid_input)::bigint AS invalid_input, sum(cache_hits)::bigint AS cache_hits, \
             sum(input_tokens)::bigint AS input_tokens, \
             sum(output_tokens)::bigint AS output_tokens, sum(cost_nanos)::bigint AS cost_nanos, \
             sum(latency_ms_sum)::bigint AS latency_ms_sum \
           FROM r GROUP BY start), \
         histogram AS ( \
           SELECT start, array_agg(n ORDER BY i) AS latency_buckets FROM ( \
             SELECT start, i, sum(v)::bigint AS n \
             FROM r, unnest(r.latency_buckets) WITH ORDINALITY AS u(v, i) \
             GROUP BY start, i) per_bucket \
           GROUP BY start) \
         SELECT * FROM totals JOIN histogram USING (start) ORDER BY start"
    );
    let rows = Usage::find_by_statement(stmt(
        &sql,
        [
            tenant.tenant_id.into(),
            from.into(),
            to.into(),
            of.process_id.into(),
            of.api_key_id.into(),
        ],
    ))
    .all(scope.tx().await?)
    .await?;
    if period.is_none() && rows.is_empty() {
        return Ok(vec![Usage {
            start: from,
            latency_buckets: vec![0; LATENCY_BUCKETS],
            ..Usage::default()
        }]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut usage = Usage {
            latency_buckets: vec![0; LATENCY_BUCKETS],
            ..Usage::default()
        };
        assert_eq!(usage.latency_percentile(0.5), None);
        // 90 calls under 1 ms, 10 between 100 and 200 ms.
        usage.latency_buckets[0] = 90;
        usage.latency_buckets[7] = 10;
        assert_eq!(usage.latency_percentile(0.5), Some(1));
        assert_eq!(usage.latency_percentile(0.9), Some(1));
        assert_eq!(usage.latency_percentile(0.95), Some(200));
        usage.latency_buckets[15] = 1000;
        assert_eq!(usage.latency_percentile(0.99), Some(60_000));
    }
}
