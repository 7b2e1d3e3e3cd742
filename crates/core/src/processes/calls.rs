//! The call log: one row per invocation, and the hourly rollup `process.usage` reads,
//! written together in one statement. Payloads pass through the tenant's redaction
//! rules and are kept for its payload retention (`settings.payloadRetentionDays`, 30
//! days by default); the rest of the row stays.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveEnum, ConnectionTrait};
use serde::Serialize;
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

/// The columns both log statements ([`record`], [`record_all`]) insert, in order.
const LOG_COLUMNS: &str = "id, tenant_id, process_id, version_id, environment, \
    api_key_id, user_id, input_hash, status, cache_hit, latency_ms, provider_latency_ms, \
    attempts, input_tokens, output_tokens, cost_nanos, error_code, error_message, input, \
    output, payload_expires_at, created_at";
/// The rollup columns both log statements write, in order.
const ROLLUP_COLUMNS: &str = "tenant_id, process_id, environment, api_key_id, hour, \
    shard, calls, succeeded, failed, rate_limited, invalid_input, cache_hits, \
    input_tokens, output_tokens, cost_nanos, latency_ms_sum, latency_buckets";
/// How an existing rollup row adds what is logged, but for the latency histogram,
/// which each statement adds its own way.
const ROLLUP_ADD: &str = "calls = u.calls + EXCLUDED.calls, \
    succeeded = u.succeeded + EXCLUDED.succeeded, failed = u.failed + EXCLUDED.failed, \
    rate_limited = u.rate_limited + EXCLUDED.rate_limited, \
    invalid_input = u.invalid_input + EXCLUDED.invalid_input, \
    cache_hits = u.cache_hits + EXCLUDED.cache_hits, \
    input_tokens = u.input_tokens + EXCLUDED.input_tokens, \
    output_tokens = u.output_tokens + EXCLUDED.output_tokens, \
    cost_nanos = u.cost_nanos + EXCLUDED.cost_nanos, \
    latency_ms_sum = u.latency_ms_sum + EXCLUDED.latency_ms_sum";

/// How a tenant's payloads are kept: through its redaction rules, or not at all when
/// they no longer compile (no payload rather than an unredacted one).
fn payload_redactor(tenant_settings: &Json) -> impl Fn(Option<Json>) -> Option<Json> {
    let redactor = Redactor::new(tenant_settings, &[]).ok();
    move |payload| match (&redactor, payload) {
        (Some(redactor), Some(payload)) => Some(redactor.json(payload)),
        _ => None,
    }
}

/// An error message as the log keeps it: its first 1,000 characters.
fn clipped(message: Option<String>) -> Option<String> {
    message.map(|m| m.chars().take(1000).collect())
}

/// Logs a call, adds it to its hour's rollup and charges its tokens and cost to the
/// rate limits that count it ([`super::limits`]), in one statement of `scope`'s
/// transaction; returns when it was logged.
///
/// [`record_all`] does the same for a batch of calls. Every cache hit runs this one,
/// so it binds the row's values as parameters and adds to one latency bucket: the
/// batch's statement, given one call, costs PostgreSQL about a tenth more (its JSON
/// parameter is parsed and split, and its histogram is added element by element;
/// bench/README.md, "Batched call logs"). Both statements insert the same columns and
/// add to the same rollup.
///
/// The charge runs before the rollup row is locked, the order a call's first
/// transaction takes them in (its admission locks the limits): two calls never wait on
/// each other's locks in opposite orders. Like every transaction of a call, it commits
/// without waiting for the WAL flush ([`super::invoke`]).
pub async fn record(
    scope: &RequestScope,
    tenant_settings: &Json,
    call: CallRecord,
) -> Result<DateTime<Utc>> {
    let redact = payload_redactor(tenant_settings);
    let error_message = clipped(call.error_message);
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
           INSERT INTO call_logs ({LOG_COLUMNS}) \
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, \
             now() + make_interval(days => {days}), \
             coalesce($30, now()) \
           RETURNING created_at), \
         charged AS ( \
           SELECT app.charge_process_call($6, $3, $29, $16) WHERE $29 > 0 OR $16 > 0) \
         INSERT INTO process_usage_hourly AS u ({ROLLUP_COLUMNS}) \
         SELECT $2, $3, $5, $6, date_trunc('hour', created_at, 'UTC'), $28, 1, $21, $22, \
           $23, $24, $25::int, $14, $15, $16, $11, $26 \
         FROM logged CROSS JOIN (SELECT count(*) AS n FROM charged) AS c \
         ON CONFLICT ON CONSTRAINT process_usage_hourly_key DO UPDATE SET {ROLLUP_ADD}, \
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

/// Whether two calls may be logged by one [`record_all`]: the same tenant, process,
/// environment, caller and hour share one rollup row and one charge.
pub fn share_a_rollup(a: &CallRecord, b: &CallRecord) -> bool {
    let hour = |call: &CallRecord| call.created_at.map(|at| at.timestamp().div_euclid(3600));
    (
        a.tenant_id,
        a.process_id,
        a.environment,
        a.api_key_id,
        a.user_id,
        hour(a),
    ) == (
        b.tenant_id,
        b.process_id,
        b.environment,
        b.api_key_id,
        b.user_id,
        hour(b),
    )
}

/// One logged row, as the statement of [`record_all`] reads it from its JSON parameter
/// (`jsonb_to_recordset`): one parameter for any number of calls, so the statement is
/// prepared once whatever the batch.
#[derive(Serialize)]
struct LoggedRow {
    id: Uuid,
    version_id: Option<Uuid>,
    user_id: Option<Uuid>,
    /// Base64 (standard, padded), `decode`d in SQL.
    input_hash: String,
    status: String,
    cache_hit: bool,
    latency_ms: i32,
    provider_latency_ms: Option<i32>,
    attempts: i32,
    input_tokens: i32,
    output_tokens: i32,
    cost_nanos: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    input: Option<Json>,
    output: Option<Json>,
    created_at: Option<DateTime<Utc>>,
}

/// Logs calls that [`share_a_rollup`], adds them to their hour's rollup and charges
/// their tokens and cost to the rate limits that count them ([`super::limits`]), in one
/// statement of `scope`'s transaction; returns when the first was logged.
///
/// The charge runs before the rollup row is locked, the order a call's first
/// transaction takes them in (its admission locks the limits): two calls never wait on
/// each other's locks in opposite orders. One charge and one rollup row serve the
/// whole batch, which is why its calls must share them. Like every transaction of a
/// call, it commits without waiting for the WAL flush ([`super::invoke`]).
pub async fn record_all(
    scope: &RequestScope,
    tenant_settings: &Json,
    mut calls: Vec<CallRecord>,
) -> Result<DateTime<Utc>> {
    if calls.len() == 1 {
        if let Some(call) = calls.pop() {
            return record(scope, tenant_settings, call).await;
        }
    }
    let Some(first) = calls.first().cloned() else {
        return Err(anyhow::anyhow!("no calls to log").into());
    };
    if !calls.iter().all(|call| share_a_rollup(&first, call)) {
        return Err(anyhow::anyhow!("calls logged together must share a rollup").into());
    }
    let redact = payload_redactor(tenant_settings);
    let mut counts = [0_i64; 4];
    let mut buckets = vec![0_i64; LATENCY_BUCKETS];
    let (mut input_tokens, mut output_tokens, mut cost_nanos) = (0_i64, 0_i64, 0_i64);
    let (mut cache_hits, mut latency_ms_sum) = (0_i64, 0_i64);
    let rows: Vec<LoggedRow> = calls
        .into_iter()
        .map(|call| {
            let status = match call.status {
                CallStatus::Succeeded => 0,
                CallStatus::Failed => 1,
                CallStatus::RateLimited => 2,
                CallStatus::InvalidInput => 3,
            };
            counts[status] += 1;
            buckets[latency_bucket(i64::from(call.latency_ms)) - 1] += 1;
            input_tokens += i64::from(call.input_tokens);
            output_tokens += i64::from(call.output_tokens);
            cost_nanos += call.cost_nanos;
            cache_hits += i64::from(call.cache_hit);
            latency_ms_sum += i64::from(call.latency_ms);
            LoggedRow {
                id: call.id,
                version_id: call.version_id,
                user_id: call.user_id,
                input_hash: BASE64.encode(&call.input_hash),
                status: call.status.to_value(),
                cache_hit: call.cache_hit,
                latency_ms: call.latency_ms,
                provider_latency_ms: call.provider_latency_ms,
                attempts: call.attempts,
                input_tokens: call.input_tokens,
                output_tokens: call.output_tokens,
                cost_nanos: call.cost_nanos,
                error_code: call.error_code,
                error_message: clipped(call.error_message),
                input: redact(call.input),
                output: redact(call.output),
                created_at: call.created_at,
            }
        })
        .collect();
    let rows = serde_json::to_value(rows).map_err(anyhow::Error::from)?;
    // The first call's random bits pick the shard.
    let shard = (first.id.as_u128() % SHARDS) as i16;
    let sql = format!(
        "WITH logged AS ( \
           INSERT INTO call_logs ({LOG_COLUMNS}) \
           SELECT c.id, $2, $3, c.version_id, $4, $5, c.user_id, \
             decode(c.input_hash, 'base64'), c.status, c.cache_hit, c.latency_ms, \
             c.provider_latency_ms, c.attempts, c.input_tokens, c.output_tokens, \
             c.cost_nanos, c.error_code, c.error_message, c.input, c.output, \
             now() + make_interval(days => {days}), coalesce(c.created_at, now()) \
           FROM jsonb_to_recordset($1) AS c (id uuid, version_id uuid, user_id uuid, \
             input_hash text, status text, cache_hit boolean, latency_ms integer, \
             provider_latency_ms integer, attempts integer, input_tokens integer, \
             output_tokens integer, cost_nanos bigint, error_code text, \
             error_message text, input jsonb, output jsonb, created_at timestamptz) \
           RETURNING created_at), \
         charged AS ( \
           SELECT app.charge_process_call($5, $3, $6, $7) WHERE $6 > 0 OR $7 > 0) \
         INSERT INTO process_usage_hourly AS u ({ROLLUP_COLUMNS}) \
         SELECT $2, $3, $4, $5, date_trunc('hour', l.first, 'UTC'), $8, $9, $10, $11, \
           $12, $13, $14, $15, $16, $7, $17, $18 \
         FROM (SELECT min(created_at) AS first FROM logged) AS l \
           CROSS JOIN (SELECT count(*) AS n FROM charged) AS c \
         ON CONFLICT ON CONSTRAINT process_usage_hourly_key DO UPDATE SET {ROLLUP_ADD}, \
           latency_buckets = ARRAY(SELECT a + b FROM unnest(u.latency_buckets, \
             EXCLUDED.latency_buckets) WITH ORDINALITY AS x (a, b, n) ORDER BY n) \
         RETURNING (SELECT min(created_at) FROM logged) AS created_at, \
           set_config('synchronous_commit', 'off', true) AS durability",
        // The settings RESOLVE read: the log need not read the tenant row again.
        days = days_setting(
            "$19",
            "payloadRetentionDays",
            &DEFAULT_PAYLOAD_DAYS.to_string()
        ),
    );
    let [succeeded, failed, rate_limited, invalid_input] = counts;
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            &sql,
            [
                rows.into(),
                first.tenant_id.into(),
                first.process_id.into(),
                first.environment.to_value().into(),
                first.api_key_id.into(),
                (input_tokens + output_tokens).into(),
                cost_nanos.into(),
                shard.into(),
                (succeeded + failed + rate_limited + invalid_input).into(),
                succeeded.into(),
                failed.into(),
                rate_limited.into(),
                invalid_input.into(),
                cache_hits.into(),
                input_tokens.into(),
                output_tokens.into(),
                latency_ms_sum.into(),
                buckets.into(),
                tenant_settings.clone().into(),
            ],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("logging calls returned no row"))?;
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
