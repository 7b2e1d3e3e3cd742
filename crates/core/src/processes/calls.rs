//! The call log: one row per invocation, and the hourly rollup `process.usage` reads,
//! written together in one statement. Payloads pass through the tenant's redaction
//! rules and are kept for its payload retention (`settings.payloadRetentionDays`, 30
//! days by default); the rest of the row stays.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveEnum, ConnectionTrait};
use serde_json::Value as Json;
use trellis_entity::{CallStatus, Environment};
use uuid::Uuid;

use crate::logs::redact::Redactor;
use crate::runs::retention::{days_setting, DEFAULT_PAYLOAD_DAYS};
use crate::scope::{stmt, RequestScope};
use crate::Result;

/// Upper bounds (ms, inclusive) of the latency buckets the rollups count calls in; the
/// last bucket holds everything slower.
pub const LATENCY_BOUNDS_MS: [i64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
];
/// How many buckets a rollup row has (the bounds, and one for the rest).
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The 1-based bucket (a PostgreSQL array subscript) a latency falls in.
pub fn latency_bucket(latency_ms: i64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|bound| latency_ms <= *bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
        + 1
}

/// One invocation, as it is logged.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub process_id: Uuid,
    pub version_id: Option<Uuid>,
    pub environment: Environment,
    pub api_key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub input_hash: Vec<u8>,
    pub status: CallStatus,
    pub cache_hit: bool,
    pub latency_ms: i32,
    pub provider_latency_ms: Option<i32>,
    pub attempts: i32,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cost_nanos: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub input: Option<Json>,
    pub output: Option<Json>,
    /// When the call is logged as made; `None`: the logging transaction's time.
    pub created_at: Option<DateTime<Utc>>,
}

/// How many rows one caller's hour of one process is spread over.
const SHARDS: u128 = 8;

/// Logs a call, adds it to its hour's rollup and charges its tokens and cost to the
/// rate limits that count it ([`super::limits`]), in one statement of `scope`'s
/// transaction; returns when it was logged. The charge runs before the rollup row is
/// locked, the order a call's first transaction takes them in (its admission locks the
/// limits): two calls never wait on each other's locks in opposite orders. Like every
/// transaction of a call, it commits without waiting for the WAL flush
/// ([`super::invoke`]).
pub async fn record(
    scope: &RequestScope,
    tenant_settings: &Json,
    call: CallRecord,
) -> Result<DateTime<Utc>> {
    // A tenant whose rules no longer compile keeps no payloads rather than unredacted ones.
    let redactor = Redactor::new(tenant_settings, &[]).ok();
    let redact = |payload: Option<Json>| match (&redactor, payload) {
        (Some(redactor), Some(payload)) => Some(redactor.json(payload)),
        _ => None,
    };
    let error_message = call
        .error_message
        .map(|m| m.chars().take(1000).collect::<String>());
    let status = call.status.to_value();
    let counts = |s: CallStatus| i64::from(call.status == s);
    let bucket = latency_bucket(i64::from(call.latency_ms));
    let mut buckets = vec![0_i64; LATENCY_BUCKETS];
    buckets[bucket - 1] = 1;
    // The id's random bits pick the shard.
    let shard = (call.id.as_u128() % SHARDS) as i16;
    let tokens = i64::from(call.input_tokens) + i64::from(call.output_tokens);
    let sql = format!(
        "WITH logged AS ( \
           INSERT INTO call_logs (id, tenant_id, process_id, version_id, environment, \
             api_key_id, user_id, input_hash, status, cache_hit, latency_ms, \
             provider_latency_ms, attempts, input_tokens, output_tokens, cost_nanos, \
             error_code, error_message, input, output, payload_expires_at, created_at) \
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, \
             now() + make_interval(days => {days}), \
             coalesce($30, now()) \
           RETURNING created_at), \
         charged AS ( \
           SELECT app.charge_process_call($6, $3, $29, $16) WHERE $29 > 0 OR $16 > 0) \
         INSERT INTO process_usage_hourly AS u (tenant_id, process_id, environment, \
           api_key_id, hour, shard, calls, succeeded, failed, rate_limited, invalid_input, \
           cache_hits, input_tokens, output_tokens, cost_nanos, latency_ms_sum, \
           latency_buckets) \
         SELECT $2, $3, $5, $6, date_trunc('hour', created_at, 'UTC'), $28, 1, $21, $22, \
           $23, $24, $25::int, $14, $15, $16, $11, $26 \
         FROM logged CROSS JOIN (SELECT count(*) AS n FROM charged) AS c \
         ON CONFLICT ON CONSTRAINT process_usage_hourly_key DO UPDATE SET \
           calls = u.calls + 1, succeeded = u.succeeded + EXCLUDED.succeeded, \
           failed = u.failed + EXCLUDED.failed, \
           rate_limited = u.rate_limited + EXCLUDED.rate_limited, \
           invalid_input = u.invalid_input + EXCLUDED.invalid_input, \
           cache_hits = u.cache_hits + EXCLUDED.cache_hits, \
           input_tokens = u.input_tokens + EXCLUDED.input_tokens, \
           output_tokens = u.output_tokens + EXCLUDED.output_tokens, \
           cost_nanos = u.cost_nanos + EXCLUDED.cost_nanos, \
           latency_ms_sum = u.latency_ms_sum + EXCLUDED.latency_ms_sum, \
           latency_buckets[$27] = u.latency_buckets[$27] + 1 \
         RETURNING (SELECT created_at FROM logged) AS created_at, \
           set_config('synchronous_commit', 'off', true) AS durability",
        // The settings RESOLVE read: the log need not read the tenant row again.
        days = days_setting(
            "$31",
            "payloadRetentionDays",
            &DEFAULT_PAYLOAD_DAYS.to_string()
        ),
    );
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            &sql,
            [
                call.id.into(),
                call.tenant_id.into(),
                call.process_id.into(),
                call.version_id.into(),
                call.environment.to_value().into(),
                call.api_key_id.into(),
                call.user_id.into(),
                call.input_hash.into(),
                status.into(),
                call.cache_hit.into(),
                call.latency_ms.into(),
                call.provider_latency_ms.into(),
                call.attempts.into(),
                call.input_tokens.into(),
                call.output_tokens.into(),
                call.cost_nanos.into(),
                call.error_code.into(),
                error_message.into(),
                redact(call.input).into(),
                redact(call.output).into(),
                counts(CallStatus::Succeeded).into(),
                counts(CallStatus::Failed).into(),
                counts(CallStatus::RateLimited).into(),
                counts(CallStatus::InvalidInput).into(),
                i32::from(call.cache_hit).into(),
                buckets.into(),
                (bucket as i32).into(),
                shard.into(),
                tokens.into(),
                call.created_at.into(),
                tenant_settings.clone().into(),
            ],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("logging a call returned no row"))?;
    Ok(row.try_get("", "created_at")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        assert_eq!(latency_bucket(0), 1);
        assert_eq!(latency_bucket(1), 1);
        assert_eq!(latency_bucket(2), 2);
        assert_eq!(latency_bucket(3), 3);
        assert_eq!(latency_bucket(60_000), 15);
        assert_eq!(latency_bucket(60_001), 16);
        assert_eq!(LATENCY_BUCKETS, 16);
    }
}
