//! Rate limits and quotas of process calls, as data (`rate_limits`, migration 000019).
//!
//! A limit counts the calls of a subject: the whole tenant, one API key, one process,
//! or one key on one process. A call must pass every limit that counts it.
//!
//! - Requests and tokens per window are **token buckets**: a bucket holds up to the
//!   limit, refills continuously at limit/window, a request takes one and a call's
//!   tokens are taken after it answers (a bucket may go below zero; calls wait until it
//!   refills above it). Chosen over sliding windows because a bucket is one row with
//!   two numbers, has no burst at window edges, and gives an exact `Retry-After`.
//! - Monthly quotas (calls, tokens, cost) count calendar months in UTC.
//!
//! The counters live in PostgreSQL and one statement decides
//! (`app.admit_process_call`, locking the limits that apply in id order), so limits are
//! exact however many replicas serve calls. A refused call changes no counter.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;
use trellis_entity::{rate_limit, IdKind, Role, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// A subject's limits; `None` leaves a kind of limit off.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSpec {
    pub api_key_id: Option<Uuid>,
    pub process_id: Option<Uuid>,
    pub requests_per_window: Option<i32>,
    pub tokens_per_window: Option<i64>,
    /// 60 when `None`.
    pub window_seconds: Option<i32>,
    pub monthly_calls: Option<i64>,
    pub monthly_tokens: Option<i64>,
    pub monthly_cost_nanos: Option<i64>,
}

fn positive<T: PartialOrd + Default + Copy>(field: &str, value: Option<T>) -> Result<Option<T>> {
    match value {
        Some(v) if v <= T::default() => {
            Err(Error::bad_input(field, format!("{field} must be positive")))
        }
        other => Ok(other),
    }
}

/// Sets the limits of a subject (admins), replacing any it had: its buckets start
/// full, and this month's counts are kept.
pub async fn set_rate_limit(scope: &RequestScope, spec: LimitSpec) -> Result<rate_limit::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let requests = positive("requestsPerWindow", spec.requests_per_window)?;
    let tokens = positive("tokensPerWindow", spec.tokens_per_window)?;
    let window = spec.window_seconds.unwrap_or(60);
    if !(1..=86_400).contains(&window) {
        return Err(Error::bad_input(
            "windowSeconds",
            "windowSeconds must be 1 to 86400",
        ));
    }
    let monthly_calls = positive("monthlyCalls", spec.monthly_calls)?;
    let monthly_tokens = positive("monthlyTokens", spec.monthly_tokens)?;
    let monthly_cost = positive("monthlyCost", spec.monthly_cost_nanos)?;
    if requests.is_none()
        && tokens.is_none()
        && monthly_calls.is_none()
        && monthly_tokens.is_none()
        && monthly_cost.is_none()
    {
        return Err(Error::bad_input(
            "requestsPerWindow",
            "give at least one limit (or delete the rate limit)",
        ));
    }
    let tx = scope.tx().await?;
    // The subject must be the tenant's (a foreign or unknown one is NOT_FOUND, as the
    // composite foreign keys would say too).
    let row = tx
        .query_one(stmt(
            "INSERT INTO rate_limits AS l (id, tenant_id, api_key_id, process_id, \
               requests_per_window, tokens_per_window, window_seconds, monthly_calls, \
               monthly_tokens, monthly_cost_nanos, request_allowance, token_allowance, \
               created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($5, 0), coalesce($6, 0), $11) \
             ON CONFLICT ON CONSTRAINT rate_limits_subject_key DO UPDATE SET \
               requests_per_window = EXCLUDED.requests_per_window, \
               tokens_per_window = EXCLUDED.tokens_per_window, \
               window_seconds = EXCLUDED.window_seconds, \
               monthly_calls = EXCLUDED.monthly_calls, monthly_tokens = EXCLUDED.monthly_tokens, \
               monthly_cost_nanos = EXCLUDED.monthly_cost_nanos, \
               request_allowance = EXCLUDED.request_allowance, \
               token_allowance = EXCLUDED.token_allowance, refilled_at = now() \
             RETURNING id",
            [
                Uuid::now_v7().into(),
                ctx.tenant_id.into(),
                spec.api_key_id.into(),
                spec.process_id.into(),
                requests.into(),
                tokens.into(),
                window.into(),
                monthly_calls.into(),
                monthly_tokens.into(),
                monthly_cost.into(),
                scope.user_id().ok().into(),
            ],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the rate limit upsert returned nothing"))?;
    let id: Uuid = row.try_get("", "id")?;
    let row = rate_limit::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "rate_limit.set")
            .target(IdKind::RateLimit, id)
            .details(json!({
                "apiKey": spec.api_key_id,
                "process": spec.process_id,
                "requestsPerWindow": requests,
                "tokensPerWindow": tokens,
                "windowSeconds": window,
                "monthlyCalls": monthly_calls,
                "monthlyTokens": monthly_tokens,
                "monthlyCostNanos": monthly_cost,
            })),
    )
    .await?;
    Ok(row)
}

/// Removes a subject's limits (admins).
pub async fn delete_rate_limit(scope: &RequestScope, id: Uuid) -> Result<rate_limit::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    let row = rate_limit::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    rate_limit::Entity::delete_many()
        .filter(rate_limit::Column::Id.eq(id))
        .exec(tx)
        .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "rate_limit.delete")
            .target(IdKind::RateLimit, id)
            .severity(Severity::Warning),
    )
    .await?;
    Ok(row)
}

/// What a limit has left right now, from its stored state (refilled to now).
pub fn remaining(
    limit: &rate_limit::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> (Option<f64>, Option<f64>) {
    let elapsed = (now - limit.refilled_at).num_milliseconds().max(0) as f64 / 1000.0;
    let window = f64::from(limit.window_seconds.max(1));
    let refill = |capacity: f64, held: f64| (held + elapsed * capacity / window).min(capacity);
    (
        limit
            .requests_per_window
            .map(|cap| refill(f64::from(cap), limit.request_allowance).floor()),
        limit
            .tokens_per_window
            .map(|cap| refill(cap as f64, limit.token_allowance).floor()),
    )
}

/// Whether a limit's month counts are this month's (else they are zero now).
pub fn counts_this_month(limit: &rate_limit::Model, now: chrono::DateTime<chrono::Utc>) -> bool {
    use chrono::Datelike;
    limit.month_start.year() == now.year() && limit.month_start.month() == now.month()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_up_to_their_limit() {
        let now = chrono::Utc::now();
        let limit = rate_limit::Model {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            api_key_id: None,
            process_id: None,
            requests_per_window: Some(60),
            tokens_per_window: Some(1000),
            window_seconds: 60,
            monthly_calls: None,
            monthly_tokens: None,
            monthly_cost_nanos: None,
            request_allowance: 0.0,
            token_allowance: -500.0,
            refilled_at: now - chrono::Duration::seconds(10),
            month_start: now,
            month_calls: 0,
            month_tokens: 0,
            month_cost_nanos: 0,
            created_by: None,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(remaining(&limit, now), (Some(10.0), Some(-334.0)));
        let later = now + chrono::Duration::hours(1);
        assert_eq!(remaining(&limit, later), (Some(60.0), Some(1000.0)));
    }
}
