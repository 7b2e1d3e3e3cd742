//! Process types: Process, ProcessVersion, ProcessPromotion, CallLog and usage. Every
//! relation goes through the request's dataloader.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use trellis_core::processes::usage::{self, Usage, UsageOf, UsagePeriod};
use trellis_entity::{
    call_log, process, process_promotion, process_version, IdKind, PrefixedId, Role,
};

use crate::context::{load, run, ContextExt};
use crate::identity::types::{contains_pattern, ApiKey, User};
use crate::ids::gid;
use crate::integrations::types::Connection;
use crate::list::{Access, List, Relation};
use crate::loaders::{
    ApiKeyById, ConnectionById, DeploymentsOfProcess, ProcessById, ProcessVersionById, UserById,
    VersionsOfProcess,
};
use crate::pagination::Page;
use crate::payload::Json;

/// Where a process version serves: SANDBOX for trying it, PRODUCTION for real callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::Environment")]
pub enum Environment {
    /// Any version may be called by number; the latest published serves by default.
    Sandbox,
    /// Only versions promoted here; `promoteProcessVersion` picks the one it serves.
    Production,
}

/// Who answers a version's prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ProviderKind")]
pub enum ProcessProvider {
    /// No model: the rendered user prompt is the answer (deterministic; for sandboxes
    /// and demos). Tokens are word counts.
    Template,
    /// A chat-completions API (OpenAI, vLLM, Ollama, LiteLLM …) through a connection of
    /// the `http` app: its `baseUrl` (e.g. `https://api.openai.com/v1`) and its
    /// `authorization` secret (`Bearer sk-…`).
    OpenaiCompatible,
}

/// What a version's answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ResponseFormat")]
pub enum ProcessResponseFormat {
    /// Free text: the output is a JSON string.
    Text,
    /// JSON, checked against the process's output schema (sent to the provider as its
    /// structured-output schema when the schema is not empty).
    Json,
}

/// How one invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::CallStatus")]
pub enum CallStatus {
    /// Answered, from the cache or the provider.
    Succeeded,
    /// The provider failed (see `errorCode`), or its answer broke the output schema.
    Failed,
    /// Refused by a rate limit or quota; nothing else happened.
    RateLimited,
    /// The input broke the input schema or the prompt's placeholders.
    InvalidInput,
}

/// How an invocation uses the response cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, Default)]
#[graphql(remote = "trellis_core::processes::invoke::CacheMode")]
pub enum CacheMode {
    /// Answer from the cache when it holds a fresh answer; fill it otherwise.
    #[default]
    Default,
    /// Neither read nor write the cache.
    Bypass,
    /// Call the provider and replace the cached answer.
    Refresh,
}

/// The length of a usage bucket (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(
    remote = "trellis_core::processes::usage::UsagePeriod",
    name = "UsagePeriod"
)]
pub enum UsagePeriodInput {
    /// An hour.
    Hour,
    /// A day, from 00:00 UTC.
    Day,
    /// A calendar month, from the 1st at 00:00 UTC.
    Month,
}

/// Narrows a tenant's processes.
#[derive(InputObject, Default)]
pub struct ProcessFilter {
    /// Matches key, name or description (case-insensitive).
    pub search: Option<String>,
    /// Only deleted processes (true), or only live ones (false, the default).
    #[graphql(default)]
    pub deleted: bool,
}

/// Narrows call logs; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct CallFilter {
    /// Only calls of this process (its ID or key).
    pub process: Option<String>,
    /// Any of these statuses.
    pub status: Option<Vec<CallStatus>>,
    /// Only cache hits (true) or only misses (false).
    pub cache_hit: Option<bool>,
    /// Only calls in this environment.
    pub environment: Option<Environment>,
    /// Calls logged at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls logged before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Prompt logic called as an API: `invokeProcess` or `POST /v1/processes/{key}/invoke`.
pub struct Process(pub process::Model);

impl From<process::Model> for Process {
    fn from(m: process::Model) -> Self {
        Self(m)
    }
}

async fn version_by_id(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<ProcessVersion>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, ProcessVersionById(id)).await?.map(ProcessVersion))
}

/// Prompt logic called as an API: `invokeProcess` or `POST /v1/processes/{key}/invoke`.
#[Object]
impl Process {
    /// Its global ID (`proc_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Process, self.0.id)
    }
    /// What callers name it by: unique among the tenant's live processes.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text; empty when none.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// The JSON Schema every input must satisfy (`{}`: anything).
    async fn input_schema(&self) -> Json<serde_json::Value> {
        Json(self.0.input_schema.clone())
    }
    /// The JSON Schema JSON answers must satisfy (`{}`: anything).
    async fn output_schema(&self) -> Json<serde_json::Value> {
        Json(self.0.output_schema.clone())
    }
    /// A JSON object the prompt templates read as `{{ config.… }}`.
    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it was deleted; null while it is live.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// Every version, newest first.
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProcessVersion>> {
        let mut rows = load(ctx, VersionsOfProcess(self.0.id))
            .await?
            .unwrap_or_default();
        rows.reverse();
        Ok(rows.into_iter().map(ProcessVersion).collect())
    }
    /// The version SANDBOX serves (the latest published unless another was promoted
    /// there); null before the first publish.
    async fn sandbox_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ProcessVersion>> {
        self.deployed(ctx, trellis_entity::Environment::Sandbox)
            .await
    }
    /// The version PRODUCTION serves; null before the first promotion.
    async fn production_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ProcessVersion>> {
        self.deployed(ctx, trellis_entity::Environment::Production)
            .await
    }
    /// Every move of a version into an environment, newest first (at most `first`).
    async fn promotions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many, 1 to 100; 20 when omitted.", default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<ProcessPromotion>> {
        let scope = ctx.scope()?;
        let id = self.0.id;
        let rows = run(ctx, async {
            let tx = scope.tx().await?;
            Ok(process_promotion::Entity::find()
                .filter(process_promotion::Column::ProcessId.eq(id))
                .order_by_desc(process_promotion::Column::CreatedAt)
                .order_by_desc(process_promotion::Column::Id)
                .limit(first.clamp(1, 100) as u64)
                .all(tx)
                .await?)
        })
        .await?;
        Ok(rows.into_iter().map(ProcessPromotion).collect())
    }
    /// Its calls, newest first.
    async fn calls(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many calls to return: 0 to 100, 20 when omitted.")] first: Option<
            i32,
        >,
        #[graphql(desc = "Return the calls after this cursor.")] after: Option<String>,
        #[graphql(desc = "Narrows the list; its `process` is ignored here.")] filter: Option<
            CallFilter,
        >,
    ) -> async_graphql::Result<Page<CallLog>> {
        let mut filter = filter.unwrap_or_default();
        filter.process = None;
        super::query::calls_page(ctx, Some(self.0.id), first, after, filter).await
    }
    /// Its usage from the hourly rollups: one bucket per `period` with calls in
    /// `[from, to)`, oldest first; `to` defaults to now.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The length of a bucket.")] period: UsagePeriodInput,
        #[graphql(desc = "The start of the range (rounded down to the hour).")] from: DateTime<Utc>,
        #[graphql(desc = "The end of the range, exclusive; now when omitted.")] to: Option<
            DateTime<Utc>,
        >,
    ) -> async_graphql::Result<Vec<UsageBucket>> {
        usage_buckets(
            ctx,
            UsageOf {
                process_id: Some(self.0.id),
                api_key_id: None,
            },
            Some(period.into()),
            from,
            to,
        )
        .await
    }
}

impl Process {
    async fn deployed(
        &self,
        ctx: &Context<'_>,
        environment: trellis_entity::Environment,
    ) -> async_graphql::Result<Option<ProcessVersion>> {
        let deployments = load(ctx, DeploymentsOfProcess(self.0.id))
            .await?
            .unwrap_or_default();
        let id = deployments
            .iter()
            .find(|d| d.environment == environment)
            .map(|d| d.version_id);
        version_by_id(ctx, id).await
    }
}

/// Usage in buckets, for `process.usage` and [`usage_total`].
async fn usage_buckets(
    ctx: &Context<'_>,
    of: UsageOf,
    period: Option<UsagePeriod>,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> async_graphql::Result<Vec<UsageBucket>> {
    let scope = ctx.scope()?;
    let to = to.unwrap_or_else(Utc::now);
    let rows = run(ctx, usage::usage(scope, of, period, from, to)).await?;
    Ok(rows.into_iter().map(UsageBucket::from).collect())
}

/// Usage in `[from, to)` as one bucket, for `tenant.usage` and `apiKey.usage`.
pub(crate) async fn usage_total(
    ctx: &Context<'_>,
    of: UsageOf,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> async_graphql::Result<Option<UsageBucket>> {
    Ok(usage_buckets(ctx, of, None, from, to).await?.pop())
}

/// One version of a process: prompt templates and model settings. Drafts change;
/// published versions never do.
pub struct ProcessVersion(pub process_version::Model);

impl From<process_version::Model> for ProcessVersion {
    fn from(m: process_version::Model) -> Self {
        Self(m)
    }
}

/// One version of a process: prompt templates and model settings. Drafts change;
/// published versions never do.
#[Object]
impl ProcessVersion {
    /// Its global ID (`prv_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::ProcessVersion, self.0.id)
    }
    /// 1, 2, 3 … in its process.
    async fn number(&self) -> i32 {
        self.0.number
    }
    /// The furthest environment it reached: PRODUCTION once promoted there.
    async fn environment(&self) -> Environment {
        self.0.environment.into()
    }
    /// The system message's template (empty: none is sent).
    async fn system_prompt(&self) -> &str {
        &self.0.system_prompt
    }
    /// The user message's template: `{{ input.… }}` and `{{ config.… }}` placeholders.
    async fn user_prompt(&self) -> &str {
        &self.0.user_prompt
    }
    /// Who answers.
    async fn provider(&self) -> ProcessProvider {
        self.0.provider.into()
    }
    /// The provider's connection (OPENAI_COMPATIBLE); null for TEMPLATE.
    async fn connection(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Connection>> {
        let Some(id) = self.0.connection_id else {
            return Ok(None);
        };
        Ok(load(ctx, ConnectionById(id)).await?.map(Connection))
    }
    /// The provider's model name; empty for TEMPLATE.
    async fn model(&self) -> &str {
        &self.0.model
    }
    /// Sampling temperature, 0 to 2; null: the provider's default.
    async fn temperature(&self) -> Option<f64> {
        self.0.temperature
    }
    /// Most tokens of an answer; null: the provider's default.
    async fn max_tokens(&self) -> Option<i32> {
        self.0.max_tokens
    }
    /// What the answer is.
    async fn response_format(&self) -> ProcessResponseFormat {
        self.0.response_format.into()
    }
    /// How long one attempt may take (ms).
    async fn timeout_ms(&self) -> i32 {
        self.0.timeout_ms
    }
    /// Attempts in all when the provider fails transiently (timeouts, 429, 5xx).
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    /// The wait before the first retry (ms); it doubles for each later one.
    async fn retry_backoff_ms(&self) -> i32 {
        self.0.retry_backoff_ms
    }
    /// How long an answer stays cached (seconds); 0: not cached. Only published
    /// versions are cached.
    async fn cache_ttl_seconds(&self) -> i32 {
        self.0.cache_ttl_seconds
    }
    /// USD per million input tokens, for the cost of a call.
    #[graphql(name = "inputPricePerMTok")]
    async fn input_price_per_mtok(&self) -> f64 {
        self.0.input_price_per_mtok
    }
    /// USD per million output tokens, for the cost of a call.
    #[graphql(name = "outputPricePerMTok")]
    async fn output_price_per_mtok(&self) -> f64 {
        self.0.output_price_per_mtok
    }
    /// Free text about the version.
    async fn notes(&self) -> &str {
        &self.0.notes
    }
    /// True once published: it never changes again.
    async fn is_published(&self) -> bool {
        self.0.published_at.is_some()
    }
    /// When it was published; null for a draft.
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.0.published_at
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Its process.
    async fn process(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Process>> {
        Ok(load(ctx, ProcessById(self.0.process_id))
            .await?
            .map(Process))
    }
}

/// One move of a version into an environment.
pub struct ProcessPromotion(pub process_promotion::Model);

/// One move of a version into an environment.
#[Object]
impl ProcessPromotion {
    /// Its global ID (`prm_…`).
    async fn id(&self) -> ID {
        gid(IdKind::ProcessPromotion, self.0.id)
    }
    /// The environment it changed.
    async fn environment(&self) -> Environment {
        self.0.environment.into()
    }
    /// The version served before; null for the environment's first.
    #[graphql(name = "fromVersion")]
    async fn version_before(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ProcessVersion>> {
        version_by_id(ctx, self.0.from_version_id).await
    }
    /// The version served since.
    #[graphql(name = "toVersion")]
    async fn version_after(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ProcessVersion>> {
        version_by_id(ctx, Some(self.0.to_version_id)).await
    }
    /// Who promoted it (a person); null for an API key or a deleted user.
    async fn promoted_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.promoted_by else {
            return Ok(None);
        };
        Ok(load(ctx, UserById(id)).await?.map(User))
    }
    /// The API key that promoted it; null when a person did.
    async fn promoted_by_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ApiKey>> {
        let Some(id) = self.0.promoted_by_key else {
            return Ok(None);
        };
        Ok(load(ctx, ApiKeyById(id)).await?.map(ApiKey))
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One invocation of a process.
pub struct CallLog(pub call_log::Model);

impl From<call_log::Model> for CallLog {
    fn from(m: call_log::Model) -> Self {
        Self(m)
    }
}

/// One invocation of a process.
#[Object]
impl CallLog {
    /// Its global ID (`call_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::CallLog, self.0.id)
    }
    /// The process called.
    async fn process(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Process>> {
        Ok(load(ctx, ProcessById(self.0.process_id))
            .await?
            .map(Process))
    }
    /// The version that answered (or would have).
    async fn version(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProcessVersion>> {
        version_by_id(ctx, self.0.version_id).await
    }
    /// The environment called.
    async fn environment(&self) -> Environment {
        self.0.environment.into()
    }
    /// The API key that called; null when a person did.
    async fn api_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ApiKey>> {
        let Some(id) = self.0.api_key_id else {
            return Ok(None);
        };
        Ok(load(ctx, ApiKeyById(id)).await?.map(ApiKey))
    }
    /// The person who called; null for an API key.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.user_id else {
            return Ok(None);
        };
        Ok(load(ctx, UserById(id)).await?.map(User))
    }
    /// SHA-256 (hex) of the canonical JSON input: equal inputs hash alike.
    async fn input_hash(&self) -> String {
        self.0
            .input_hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    /// How it ended.
    async fn status(&self) -> CallStatus {
        self.0.status.into()
    }
    /// Whether the cache answered it.
    async fn cache_hit(&self) -> bool {
        self.0.cache_hit
    }
    /// From receiving the call to its answer (ms).
    async fn latency_ms(&self) -> i32 {
        self.0.latency_ms
    }
    /// Time spent in the provider's attempts (ms); null when it was not called.
    async fn provider_latency_ms(&self) -> Option<i32> {
        self.0.provider_latency_ms
    }
    /// Provider attempts made (0 for a cache hit or a refusal).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// Prompt tokens the provider counted.
    async fn input_tokens(&self) -> i32 {
        self.0.input_tokens
    }
    /// Answer tokens the provider counted.
    async fn output_tokens(&self) -> i32 {
        self.0.output_tokens
    }
    /// What it cost, in USD, at the version's prices.
    async fn cost(&self) -> f64 {
        self.0.cost_nanos as f64 / 1e9
    }
    /// Why it did not succeed (`BAD_USER_INPUT`, `RATE_LIMITED`, `PROVIDER_TIMEOUT` …).
    async fn error_code(&self) -> Option<&str> {
        self.0.error_code.as_deref()
    }
    /// What went wrong, for people.
    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }
    /// The input, redacted by the tenant's rules; null after the payload retention.
    async fn input(&self) -> Option<Json<serde_json::Value>> {
        self.payload(self.0.input.as_ref())
    }
    /// The answer, redacted by the tenant's rules; null after the payload retention or
    /// when there is none.
    async fn output(&self) -> Option<Json<serde_json::Value>> {
        self.payload(self.0.output.as_ref())
    }
    /// Until when its input and output are kept.
    async fn payload_expires_at(&self) -> DateTime<Utc> {
        self.0.payload_expires_at
    }
    /// When it was logged.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

impl CallLog {
    fn payload(&self, value: Option<&serde_json::Value>) -> Option<Json<serde_json::Value>> {
        (self.0.payload_expires_at > Utc::now())
            .then(|| value.cloned().map(Json))
            .flatten()
    }
}

/// Calls in one span of time, from the hourly rollups.
#[derive(SimpleObject)]
pub struct UsageBucket {
    /// Where the span begins (UTC).
    pub start: DateTime<Utc>,
    /// Calls, whatever their status.
    pub calls: i64,
    /// Calls that did not succeed (failed, rate limited or with bad input).
    pub errors: i64,
    /// Calls refused by a rate limit or quota.
    pub rate_limited: i64,
    /// Calls the cache answered.
    pub cache_hits: i64,
    /// `cacheHits / calls`; null without calls.
    pub cache_hit_rate: Option<f64>,
    /// Prompt tokens providers counted.
    pub input_tokens: i64,
    /// Answer tokens providers counted.
    pub output_tokens: i64,
    /// USD, at the versions' prices.
    pub cost: f64,
    /// Half the calls took at most this long (ms; the upper bound of a histogram
    /// bucket); null without calls.
    pub p50_latency_ms: Option<i64>,
    /// 95% of the calls took at most this long (ms, as `p50LatencyMs`).
    pub p95_latency_ms: Option<i64>,
}

impl From<Usage> for UsageBucket {
    fn from(u: Usage) -> Self {
        Self {
            start: u.start,
            calls: u.calls,
            errors: u.errors(),
            rate_limited: u.rate_limited,
            cache_hits: u.cache_hits,
            cache_hit_rate: u.cache_hit_rate(),
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost: u.cost_nanos as f64 / 1e9,
            p50_latency_ms: u.latency_percentile(0.5),
            p95_latency_ms: u.latency_percentile(0.95),
        }
    }
}

impl List for Process {
    type Entity = process::Entity;
    type Node = Self;
    type Filter = ProcessFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<process::Column> = Some(process::Column::TenantId);
    const CREATED_AT: process::Column = process::Column::CreatedAt;
    const ID: process::Column = process::Column::Id;

    fn narrow(
        select: Select<process::Entity>,
        filter: ProcessFilter,
    ) -> trellis_core::Result<Select<process::Entity>> {
        let mut select = if filter.deleted {
            select.filter(process::Column::DeletedAt.is_not_null())
        } else {
            select.filter(process::Column::DeletedAt.is_null())
        };
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<process::Model>> {
        vec![
            Relation::by(&["versions"], |p| Some(VersionsOfProcess(p.id))),
            Relation::by(&["sandboxVersion", "productionVersion"], |p| {
                Some(DeploymentsOfProcess(p.id))
            }),
        ]
    }
}

impl List for CallLog {
    type Entity = call_log::Entity;
    type Node = Self;
    type Filter = CallFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<call_log::Column> = Some(call_log::Column::TenantId);
    const CREATED_AT: call_log::Column = call_log::Column::CreatedAt;
    const ID: call_log::Column = call_log::Column::Id;

    fn narrow(
        mut select: Select<call_log::Entity>,
        filter: CallFilter,
    ) -> trellis_core::Result<Select<call_log::Entity>> {
        if let Some(named) = filter.process {
            select = match PrefixedId::parse_as(&named, IdKind::Process) {
                Some(id) => select.filter(call_log::Column::ProcessId.eq(id)),
                None => select.filter(Expr::cust_with_values(
                    "process_id IN (SELECT id FROM processes WHERE key = $1 AND deleted_at IS NULL)",
                    [named],
                )),
            };
        }
        if let Some(statuses) = filter.status {
            select = select.filter(
                call_log::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::CallStatus::from)),
            );
        }
        if let Some(hit) = filter.cache_hit {
            select = select.filter(call_log::Column::CacheHit.eq(hit));
        }
        if let Some(environment) = filter.environment {
            select = select.filter(
                call_log::Column::Environment.eq(trellis_entity::Environment::from(environment)),
            );
        }
        if let Some(from) = filter.from {
            select = select.filter(call_log::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            select = select.filter(call_log::Column::CreatedAt.lt(to));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<call_log::Model>> {
        vec![
            Relation::together(&["process"], |c| Some(ProcessById(c.process_id))),
            Relation::together(&["version"], |c| c.version_id.map(ProcessVersionById)),
        ]
    }
}
