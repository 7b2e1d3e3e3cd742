//! Rate limits and quotas of process calls: `rateLimits`, `setRateLimit`,
//! `deleteRateLimit`.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use trellis_core::processes::limits::{self, LimitSpec};
use trellis_entity::{rate_limit, IdKind, Role};

use super::types::Process;
use crate::context::{load, mutate, run, ContextExt};
use crate::identity::types::{input_id, ApiKey};
use crate::identity::IdInput;
use crate::ids::gid;
use crate::loaders::{ApiKeyById, ProcessById};

payload!(
    /// The rate limit a mutation set or removed, or the input's problems.
    RateLimitPayload {
        /// The limit as it is now (as it was, for `deleteRateLimit`); null when
        /// `userErrors` is not empty.
        rate_limit: RateLimit,
    }
);

/// The limits of one subject: the whole tenant (no key, no process), an API key, a
/// process, or a key on a process. Replaces the subject's limits if it has some.
#[derive(InputObject)]
pub struct SetRateLimitInput {
    /// Limit this key's calls (`key_…`); all callers when omitted.
    pub api_key_id: Option<ID>,
    /// Limit calls of this process (`proc_…`); all processes when omitted.
    pub process_id: Option<ID>,
    /// Calls per window (a token bucket: it refills continuously).
    pub requests_per_window: Option<i32>,
    /// Prompt and answer tokens per window (a token bucket, charged after each call).
    pub tokens_per_window: Option<i64>,
    /// The window, 1 to 86,400 seconds; 60 when omitted.
    pub window_seconds: Option<i32>,
    /// Calls per calendar month (UTC).
    pub monthly_calls: Option<i64>,
    /// Tokens per calendar month (UTC).
    pub monthly_tokens: Option<i64>,
    /// USD per calendar month (UTC), at the versions' prices.
    pub monthly_cost: Option<f64>,
}

/// Limits on a tenant's process calls, with what they have left.
pub struct RateLimit(pub rate_limit::Model);

/// Limits on a tenant's process calls, with what they have left.
#[Object]
impl RateLimit {
    /// Its global ID (`rl_…`).
    async fn id(&self) -> ID {
        gid(IdKind::RateLimit, self.0.id)
    }
    /// The key whose calls it counts; null: every caller.
    async fn api_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ApiKey>> {
        let Some(id) = self.0.api_key_id else {
            return Ok(None);
        };
        Ok(load(ctx, ApiKeyById(id)).await?.map(ApiKey))
    }
    /// The process whose calls it counts; null: every process.
    async fn process(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Process>> {
        let Some(id) = self.0.process_id else {
            return Ok(None);
        };
        Ok(load(ctx, ProcessById(id)).await?.map(Process))
    }
    /// Calls per window.
    async fn requests_per_window(&self) -> Option<i32> {
        self.0.requests_per_window
    }
    /// Tokens per window.
    async fn tokens_per_window(&self) -> Option<i64> {
        self.0.tokens_per_window
    }
    /// The window (seconds).
    async fn window_seconds(&self) -> i32 {
        self.0.window_seconds
    }
    /// Calls per calendar month.
    async fn monthly_calls(&self) -> Option<i64> {
        self.0.monthly_calls
    }
    /// Tokens per calendar month.
    async fn monthly_tokens(&self) -> Option<i64> {
        self.0.monthly_tokens
    }
    /// USD per calendar month.
    async fn monthly_cost(&self) -> Option<f64> {
        self.0.monthly_cost_nanos.map(|n| n as f64 / 1e9)
    }
    /// Calls the request bucket holds now (whole calls); null without a request limit.
    async fn remaining_requests(&self) -> Option<f64> {
        limits::remaining(&self.0, Utc::now()).0
    }
    /// Tokens the token bucket holds now (negative after a large answer); null without
    /// a token limit.
    async fn remaining_tokens(&self) -> Option<f64> {
        limits::remaining(&self.0, Utc::now()).1
    }
    /// Calls counted this calendar month.
    async fn month_calls(&self) -> i64 {
        if limits::counts_this_month(&self.0, Utc::now()) {
            self.0.month_calls
        } else {
            0
        }
    }
    /// Tokens counted this calendar month.
    async fn month_tokens(&self) -> i64 {
        if limits::counts_this_month(&self.0, Utc::now()) {
            self.0.month_tokens
        } else {
            0
        }
    }
    /// USD counted this calendar month.
    async fn month_cost(&self) -> f64 {
        if limits::counts_this_month(&self.0, Utc::now()) {
            self.0.month_cost_nanos as f64 / 1e9
        } else {
            0.0
        }
    }
    /// When it was set.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When its limits last changed or it last counted a call.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct RateLimitsQuery;

#[Object]
impl RateLimitsQuery {
    /// The active tenant's rate limits and quotas, oldest first (any member).
    async fn rate_limits(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RateLimit>> {
        let scope = ctx.scope()?;
        let rows = run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            Ok(rate_limit::Entity::find()
                .filter(rate_limit::Column::TenantId.eq(tenant.tenant_id))
                .order_by_asc(rate_limit::Column::CreatedAt)
                .order_by_asc(rate_limit::Column::Id)
                .all(scope.tx().await?)
                .await?)
        })
        .await?;
        Ok(rows.into_iter().map(RateLimit).collect())
    }
}

#[derive(Default)]
pub struct RateLimitsMutation;

#[Object]
impl RateLimitsMutation {
    /// Sets the limits of a subject (admins), replacing any it had; its buckets start
    /// full and this month's counts stay. Calls over a limit are RATE_LIMITED (HTTP 429
    /// on the REST route) with the seconds to wait.
    async fn set_rate_limit(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The subject and its limits.")] input: SetRateLimitInput,
    ) -> async_graphql::Result<RateLimitPayload> {
        let api_key_id = input
            .api_key_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::ApiKey))
            .transpose()?;
        let process_id = input
            .process_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::Process))
            .transpose()?;
        let spec = LimitSpec {
            api_key_id,
            process_id,
            requests_per_window: input.requests_per_window,
            tokens_per_window: input.tokens_per_window,
            window_seconds: input.window_seconds,
            monthly_calls: input.monthly_calls,
            monthly_tokens: input.monthly_tokens,
            monthly_cost_nanos: input.monthly_cost.map(|usd| (usd * 1e9).round() as i64),
        };
        let (row, user_errors) = mutate(ctx, limits::set_rate_limit(ctx.scope()?, spec)).await?;
        Ok(RateLimitPayload {
            rate_limit: row.map(RateLimit),
            user_errors,
        })
    }

    /// Removes a subject's limits (admins).
    async fn delete_rate_limit(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The rate limit (`rl_…`).")] input: IdInput,
    ) -> async_graphql::Result<RateLimitPayload> {
        let id = input_id(ctx, &input.id, IdKind::RateLimit)?;
        let (row, user_errors) = mutate(ctx, limits::delete_rate_limit(ctx.scope()?, id)).await?;
        Ok(RateLimitPayload {
            rate_limit: row.map(RateLimit),
            user_errors,
        })
    }
}
