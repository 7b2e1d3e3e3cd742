//! Invoking a process: the one path GraphQL's `invokeProcess` and the REST route
//! share.
//!
//! A call works in its own short transactions under the caller's tenant, never holding
//! one open while a provider answers:
//!
//! 1. One statement resolves the process (by key or ID), the version the environment
//!    serves (or the one asked for), the caller's key restrictions, the cache entry and,
//!    unless the entry answers, the provider's connection with its sealed secrets.
//!    The input is checked against the input schema; a cache hit is logged and
//!    committed at once (one transaction, start to end).
//! 2. On a miss of a published version, the caller claims the cache entry (a PENDING
//!    row, committed): an identical miss elsewhere, on any replica, finds the claim and
//!    waits for its answer instead of calling the provider again (single flight).
//! 3. The provider is called with retries (no transaction open); then the answer is
//!    cached, the call logged and the usage rolled up in one transaction. It carries
//!    on in the tenant step 1 was granted, without checking the caller again
//!    ([`RequestScope::continuation`]).
//!
//! The statement of step 1 also asks `app.admit_process_call` whether the rate limits
//! and quotas that count the call admit it ([`super::limits`]).
//!
//! A call's transactions commit without waiting for the WAL to reach the disk
//! (`synchronous_commit = off`, transaction-locally): what they write is a call log,
//! usage counts, cache entries and rate-limit counters, of which a crash of PostgreSQL
//! may lose the last fraction of a second, never consistency, while waiting for the
//! flush would cost every call a disk round trip (milliseconds) for that.
//!
//! Refusals (bad input, a rate limit) are logged and committed too, then returned as
//! errors: the caller's own request rolls back, the log does not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ActiveEnum, ConnectionTrait, FromQueryResult, Value};
use serde_json::Value as Json;
use trellis_entity::{CallStatus, Environment, ProviderKind, ResponseFormat};
use uuid::Uuid;

use super::calls::{self, CallRecord};
use super::prompt;
use super::providers::{self, ChatRole, Message, ModelSettings, OpenAiCompatible, Provider};
use crate::egress::Egress;
use crate::integrations::connections::{connection_rows_sql, open_connection, SealedConnection};
use crate::integrations::manifest::CompiledSchema;
use crate::integrations::secrets::Vault;
use crate::runs::start::input_hash;
use crate::scope::{stmt, Principal, RequestMeta, RequestScope};
use crate::{AppDb, Error, Result};

/// The most bytes of JSON an invocation's input may have.
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// How often a caller waiting on another's identical miss looks for its answer.
const FLIGHT_POLL: Duration = Duration::from_millis(20);

/// Which process to call: its key or its ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessRef {
    Key(String),
    Id(Uuid),
}

/// How a call uses the response cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Answer from the cache when it can, fill it when it cannot.
    #[default]
    Default,
    /// Neither read nor write it.
    Bypass,
    /// Call the provider and replace the entry.
    Refresh,
}

/// One call of a process.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub process: ProcessRef,
    pub environment: Environment,
    pub input: Json,
    /// A version number; the version the environment serves when `None`. In
    /// PRODUCTION only versions promoted there may be named.
    pub version: Option<i32>,
    pub cache: CacheMode,
    /// When a call answered by the provider is logged.
    pub logging: Logging,
}

/// When a call that reached the provider writes its log (and fills the cache): before
/// or right after the caller gets the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Logging {
    /// Before answering: the caller's next read finds the call (GraphQL; the
    /// dashboard reads `calls` next).
    #[default]
    BeforeAnswer,
    /// Right after answering, as LLM gateways log (the REST route): a miss then waits
    /// for one transaction instead of two. The log row, the hour's usage, the token
    /// charge and the cache entry land milliseconds after the answer; a caller that
    /// repeats the input at once waits on the pending cache entry (single flight), and
    /// a call sent before the charge lands is admitted against the count without it,
    /// as concurrent calls already are.
    AfterAnswer,
}

/// What is left of a call the provider answered (or failed): the cache entry filled
/// (or the claim released), the call logged, its usage rolled up and its tokens
/// charged, in one transaction of the caller's tenant.
#[must_use = "the call is logged only when its write runs"]
pub struct CallWrite {
    scope: Arc<RequestScope>,
    tenant_settings: Json,
    record: CallRecord,
    /// The claimed entry and the answer to fill it with; `None` releases the claim.
    cache: Option<(CacheKey, Option<Json>)>,
}

impl CallWrite {
    /// Writes and commits.
    pub async fn run(self) -> Result<()> {
        let Self {
            scope,
            tenant_settings,
            record,
            cache,
        } = self;
        let written = async {
            match &cache {
                Some((key, Some(output))) => fill(&scope, key, output, &record).await?,
                Some((key, None)) => release(&scope, key).await?,
                None => {}
            }
            calls::record(&scope, &tenant_settings, record).await
        }
        .await;
        let succeeded = written.is_ok();
        RequestScope::finish_shared(scope, succeeded).await?;
        written.map(|_| ())
    }

    /// Whether `self` and `other` may be written in one transaction by
    /// [`Self::run_together`]: the same granted tenant and caller, the same tenant
    /// settings, and calls that share a rollup row ([`calls::share_a_rollup`]).
    pub fn joins(&self, other: &CallWrite) -> bool {
        self.scope.granted_tenant().is_some()
            && self.scope.granted_tenant() == other.scope.granted_tenant()
            && calls::share_a_rollup(&self.record, &other.record)
            && self.tenant_settings == other.tenant_settings
    }

    /// Writes calls that [`Self::joins`] each other in one transaction: their cache
    /// entries one by one, then their logs, rollup and charge in one statement. When
    /// that transaction fails, each is written on its own, so one bad write loses
    /// only itself. Returns each write's outcome, in order.
    pub async fn run_together(writes: Vec<CallWrite>) -> Vec<Result<()>> {
        if writes.len() <= 1 {
            let mut outcomes = Vec::with_capacity(1);
            for write in writes {
                outcomes.push(write.run().await);
            }
            return outcomes;
        }
        let first = &writes[0];
        let scope = first.scope.continuation();
        let tenant_settings = first.tenant_settings.clone();
        let written = async {
            for write in &writes {
                match &write.cache {
                    Some((key, Some(output))) => fill(&scope, key, output, &write.record).await?,
                    Some((key, None)) => release(&scope, key).await?,
                    None => {}
                }
            }
            let records = writes.iter().map(|write| write.record.clone()).collect();
            calls::record_all(&scope, &tenant_settings, records).await
        }
        .await;
        let succeeded = written.is_ok();
        let finished = RequestScope::finish_shared(scope, succeeded).await;
        match written.and(finished) {
            Ok(_) => writes.iter().map(|_| Ok(())).collect(),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    calls = writes.len(),
                    "logging calls together failed; logging them one by one"
                );
                let mut outcomes = Vec::with_capacity(writes.len());
                for write in writes {
                    outcomes.push(write.run().await);
                }
                outcomes
            }
        }
    }
}

/// A call's answer and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Invoked {
    pub call_id: Uuid,
    pub process_id: Uuid,
    pub version_id: Uuid,
    pub version_number: i32,
    pub environment: Environment,
    pub output: Json,
    pub cache_hit: bool,
    pub latency_ms: i32,
    pub provider_latency_ms: Option<i32>,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cost_nanos: i64,
    pub created_at: DateTime<Utc>,
}

/// What invoking needs from the server: the pool, the vault (a provider connection's
/// secret) and the one egress guard.
#[derive(Clone)]
pub struct Invoker {
    pub db: AppDb,
    pub vault: Vault,
    pub egress: Egress,
}

/// The process, version and cache entry one statement resolves.
#[derive(Debug, FromQueryResult)]
struct Resolved {
    process_id: Uuid,
    process_key: String,
    process_updated_at: DateTime<Utc>,
    input_schema: Json,
    output_schema: Json,
    config: Json,
    version_id: Option<Uuid>,
    number: Option<i32>,
    version_environment: Option<Environment>,
    published: Option<bool>,
    system_prompt: Option<String>,
    user_prompt: Option<String>,
    provider: Option<ProviderKind>,
    connection_id: Option<Uuid>,
    model: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<i32>,
    response_format: Option<ResponseFormat>,
    timeout_ms: Option<i32>,
    max_attempts: Option<i32>,
    retry_backoff_ms: Option<i32>,
    cache_ttl_seconds: Option<i32>,
    input_price_per_mtok: Option<f64>,
    output_price_per_mtok: Option<f64>,
    settings_hash: Option<Vec<u8>>,
    cache_state: Option<String>,
    cached_output: Option<Json>,
    cache_fresh: Option<bool>,
    key_environment: Option<Environment>,
    key_processes: Option<Vec<String>>,
    tenant_settings: Json,
    /// Seconds until a rate limit or quota admits the call; `None`: admitted.
    retry_after: Option<i32>,
}

/// A provider's answer to a miss: its completion and the output, or the error, and
/// what getting it took.
struct Completed {
    attempts: u32,
    provider_latency: Duration,
    result: Result<(providers::Completion, Json)>,
}

/// The cache key of a call of a published version.
#[derive(Clone, Debug)]
struct CacheKey {
    tenant_id: Uuid,
    version_id: Uuid,
    input_hash: Vec<u8>,
    settings_hash: Vec<u8>,
    ttl_seconds: i32,
}

/// The statement that resolves a call, in four variants (by key or ID, the served
/// version or a numbered one), so each plans as the plain equalities it is.
/// Parameters: $1 key, $2 ID, $3 environment, $4 version number, $5 input hash, $6 API
/// key, $7 whether to read the cache, $8 tenant.
///
/// When the call will not be answered from the cache and the version's provider needs
/// a connection, the statement also reads that connection with its sealed secrets
/// ([`connection_rows_sql`], one row per secret), so that a miss opens it without a
/// statement of its own. The lateral read is gated on the miss: a cache hit never
/// executes it (`OFFSET 0` keeps it a subquery whose conditions on the outer row are
/// checked before it runs).
fn resolve_sql(by_id: bool, numbered: bool) -> String {
    let process = if by_id { "p.id = $2" } else { "p.key = $1" };
    let version = if numbered {
        "v.number = $4::int"
    } else {
        "v.id = d.version_id"
    };
    format!(
        "SELECT p.id AS process_id, p.key AS process_key, p.updated_at AS process_updated_at, \
           p.input_schema, p.output_schema, p.config, \
           v.id AS version_id, v.number, v.environment AS version_environment, \
           v.published_at IS NOT NULL AS published, v.system_prompt, v.user_prompt, v.provider, \
           v.connection_id, v.model, v.temperature, v.max_tokens, v.response_format, v.timeout_ms, \
           v.max_attempts, v.retry_backoff_ms, v.cache_ttl_seconds, v.input_price_per_mtok, \
           v.output_price_per_mtok, s.settings_hash, c.state AS cache_state, \
           c.output AS cached_output, c.expires_at > now() AS cache_fresh, \
           k.process_environment AS key_environment, k.process_keys AS key_processes, \
           t.settings AS tenant_settings, \
           CASE WHEN (k.process_environment IS NULL OR k.process_environment = $3) \
                 AND (k.process_keys IS NULL OR p.key = ANY (k.process_keys)) \
             THEN app.admit_process_call($6, p.id) END AS retry_after, \
           set_config('synchronous_commit', 'off', true) AS durability, o.* \
         FROM processes p \
         JOIN tenants t ON t.id = p.tenant_id \
         LEFT JOIN process_deployments d \
           ON d.tenant_id = p.tenant_id AND d.process_id = p.id AND d.environment = $3 \
         LEFT JOIN process_versions v ON v.tenant_id = p.tenant_id AND v.process_id = p.id \
           AND {version} \
         LEFT JOIN LATERAL (SELECT sha256(convert_to(jsonb_build_array(v.provider, \
           v.connection_id, v.model, v.temperature, v.max_tokens, v.response_format, \
           v.system_prompt, v.user_prompt, p.output_schema, p.config)::text, 'UTF8')) \
           AS settings_hash) s ON v.id IS NOT NULL \
         LEFT JOIN response_cache c ON $7 AND v.published_at IS NOT NULL \
           AND c.tenant_id = p.tenant_id AND c.version_id = v.id AND c.input_hash = $5 \
           AND c.settings_hash = s.settings_hash \
         LEFT JOIN api_keys k ON k.tenant_id = p.tenant_id AND k.id = $6 \
         LEFT JOIN LATERAL ({connection} \
           AND v.provider = 'openai_compatible' \
           AND NOT coalesce(c.state = 'ready' AND c.expires_at > now(), false) \
           OFFSET 0) o ON true \
         WHERE p.tenant_id = $8 AND p.deleted_at IS NULL AND {process}",
        connection = connection_rows_sql("v.connection_id"),
    )
}

/// [`resolve_sql`]'s four texts, built once.
static RESOLVE: std::sync::LazyLock<[[String; 2]; 2]> = std::sync::LazyLock::new(|| {
    [
        [resolve_sql(false, false), resolve_sql(false, true)],
        [resolve_sql(true, false), resolve_sql(true, true)],
    ]
});

impl Invoker {
    /// Calls a process for `principal`: users need the operator role, API keys the
    /// `invoke` scope (and the environment and processes they are held to). The call is
    /// logged before this returns.
    pub async fn invoke(
        &self,
        principal: &Principal,
        meta: &RequestMeta,
        mut call: Invocation,
    ) -> Result<Invoked> {
        call.logging = Logging::BeforeAnswer;
        Ok(self.invoke_answer_first(principal, meta, call).await?.0)
    }

    /// [`Invoker::invoke`], except that with [`Logging::AfterAnswer`] a call answered
    /// by the provider comes back with its [`CallWrite`] still to run: the caller
    /// answers first, then runs it (the REST route spawns it, tracked by the server's
    /// shutdown). Refusals, cache hits and failures are logged before returning, as
    /// with `invoke`.
    pub async fn invoke_answer_first(
        &self,
        principal: &Principal,
        meta: &RequestMeta,
        call: Invocation,
    ) -> Result<(Invoked, Option<CallWrite>)> {
        let started = Instant::now();
        let scope = RequestScope::new(self.db.clone(), principal.clone(), meta.clone());
        let tenant = scope.require_invoker().await?;
        if call.input.to_string().len() > MAX_INPUT_BYTES {
            return Err(Error::bad_input(
                "input",
                format!("the input is larger than {MAX_INPUT_BYTES} bytes of JSON"),
            ));
        }
        let hash = input_hash(&call.input);
        let (key, id) = match &call.process {
            ProcessRef::Key(key) => (Some(key.clone()), None),
            ProcessRef::Id(id) => (None, Some(*id)),
        };
        let sql = &RESOLVE[usize::from(id.is_some())][usize::from(call.version.is_some())];
        let rows = scope
            .tx()
            .await?
            .query_all(stmt(
                sql,
                [
                    key.into(),
                    id.into(),
                    call.environment.to_value().into(),
                    call.version.into(),
                    hash.clone().into(),
                    scope.api_key_id().into(),
                    (call.cache == CacheMode::Default).into(),
                    tenant.tenant_id.into(),
                ],
            ))
            .await?;
        let resolved = Resolved::from_query_result(rows.first().ok_or(Error::NotFound)?, "")?;
        let connection = SealedConnection::from_rows(&rows)?;
        check_key_restrictions(&resolved, call.environment)?;
        let version_id = match resolved.version_id {
            Some(id) if call.environment == Environment::Sandbox => id,
            Some(id) if resolved.version_environment == Some(Environment::Production) => id,
            Some(_) | None => {
                return Err(match call.version {
                    Some(n) => Error::bad_input(
                        "version",
                        format!(
                            "{} serves no version {n} of this process",
                            env_label(call.environment)
                        ),
                    ),
                    None => Error::conflict(
                        Some("environment"),
                        format!(
                            "{} serves no version of this process yet: publish or promote one",
                            env_label(call.environment)
                        ),
                    ),
                })
            }
        };
        let mut record = CallRecord {
            id: Uuid::now_v7(),
            tenant_id: tenant.tenant_id,
            process_id: resolved.process_id,
            version_id: Some(version_id),
            environment: call.environment,
            api_key_id: scope.api_key_id(),
            user_id: scope.user_id().ok(),
            input_hash: hash.clone(),
            status: CallStatus::Succeeded,
            cache_hit: false,
            latency_ms: 0,
            provider_latency_ms: None,
            attempts: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_nanos: 0,
            error_code: None,
            error_message: None,
            input: Some(call.input.clone()),
            output: None,
            created_at: None,
        };
        let tenant_settings = resolved.tenant_settings.clone();

        // Over a limit: logged, and nothing else happens.
        if let Some(seconds) = resolved.retry_after {
            let err = Error::RateLimited {
                retry_after_seconds: seconds.max(1) as u32,
            };
            return Err(refuse(
                scope,
                &tenant_settings,
                record,
                CallStatus::RateLimited,
                err,
                started,
            )
            .await?);
        }

        // Bad input is refused and logged, in this transaction.
        let checked = input_schema(&resolved)
            .and_then(|schema| schema.check("input", &call.input))
            .and_then(|()| {
                prompt::render(
                    resolved.system_prompt.as_deref().unwrap_or_default(),
                    resolved.user_prompt.as_deref().unwrap_or_default(),
                    &call.input,
                    &resolved.config,
                )
            });
        let rendered = match checked {
            Ok(rendered) => rendered,
            Err(err) => {
                let status = CallStatus::InvalidInput;
                return Err(refuse(scope, &tenant_settings, record, status, err, started).await?);
            }
        };

        let cache_key = match (resolved.published, &resolved.settings_hash) {
            (Some(true), Some(settings_hash))
                if call.cache != CacheMode::Bypass && resolved.cache_ttl_seconds > Some(0) =>
            {
                Some(CacheKey {
                    tenant_id: tenant.tenant_id,
                    version_id,
                    input_hash: hash.clone(),
                    settings_hash: settings_hash.clone(),
                    ttl_seconds: resolved.cache_ttl_seconds.unwrap_or_default(),
                })
            }
            _ => None,
        };

        // A fresh entry answers at once.
        if call.cache == CacheMode::Default && cache_key.is_some() {
            if let (Some("ready"), Some(true), Some(output)) = (
                resolved.cache_state.as_deref(),
                resolved.cache_fresh,
                resolved.cached_output.clone(),
            ) {
                record.cache_hit = true;
                record.output = Some(output.clone());
                record.latency_ms = elapsed_ms(started);
                let created_at = calls::record(&scope, &tenant_settings, record.clone()).await?;
                RequestScope::finish_shared(scope, true).await?;
                return Ok((invoked(&record, &resolved, output, created_at), None));
            }
        }

        // A miss: claim the entry (or find another caller's claim), and open the
        // provider's connection, in this transaction; then commit before calling.
        let claimed = match &cache_key {
            Some(key) => {
                claim(
                    &scope,
                    key,
                    call.cache == CacheMode::Refresh,
                    lease(&resolved),
                )
                .await?
            }
            None => true,
        };
        let provider = if claimed {
            Some(self.provider(&scope, &resolved, connection.as_ref()).await)
        } else {
            None
        };
        // The call's later transactions (its log) carry on as the one just admitted.
        let next = scope.continuation();
        // A claimant commits while the provider answers: nothing it does waits for the
        // commit (a caller after the same entry waits on the claim's row lock until
        // then), and no answer goes out unless the commit (the admission, the claim)
        // succeeded.
        let commit = RequestScope::finish_shared(scope, true);
        let (committed, outcome) = match provider {
            Some(Ok(provider)) => {
                let (committed, outcome) = tokio::join!(
                    commit,
                    self.complete(provider.as_ref(), &resolved, rendered.clone())
                );
                (committed, Some(outcome))
            }
            Some(Err(err)) => (commit.await, Some(Err(err))),
            None => (commit.await, None),
        };
        committed?;

        // Only a cached call can find another caller's claim.
        if let (false, Some(key)) = (claimed, &cache_key) {
            if let Some(output) = self
                .await_flight(&next, key, lease(&resolved), call.cache)
                .await?
            {
                record.cache_hit = true;
                record.output = Some(output.clone());
                record.latency_ms = elapsed_ms(started);
                let created_at = calls::record(&next, &tenant_settings, record.clone()).await?;
                RequestScope::finish_shared(next, true).await?;
                return Ok((invoked(&record, &resolved, output, created_at), None));
            }
        }
        let completed = match outcome {
            Some(completed) => completed,
            None => {
                // The claim we waited on lapsed: answer ourselves, with the connection
                // as it is now (the wait may have outlasted a rotation or a deletion).
                let scope = next.continuation();
                let provider = self.provider(&scope, &resolved, None).await;
                RequestScope::finish_shared(scope, true).await?;
                match provider {
                    Ok(provider) => self.complete(provider.as_ref(), &resolved, rendered).await,
                    Err(err) => Err(err),
                }
            }
        };
        let outcome = match completed {
            Ok(done) => {
                record.attempts = done.attempts as i32;
                record.provider_latency_ms = Some(duration_ms(done.provider_latency));
                done.result
            }
            Err(err) => Err(err),
        };

        let output = match outcome {
            Ok((completion, output)) => {
                record.input_tokens = clamp_tokens(completion.input_tokens);
                record.output_tokens = clamp_tokens(completion.output_tokens);
                record.cost_nanos =
                    cost_nanos(&resolved, completion.input_tokens, completion.output_tokens);
                record.output = Some(output.clone());
                Ok(output)
            }
            Err(err) => {
                record.status = CallStatus::Failed;
                record.error_code = Some(err.code().to_owned());
                record.error_message = Some(err.to_string());
                Err(err)
            }
        };
        record.latency_ms = elapsed_ms(started);
        let created_at = Utc::now();
        record.created_at = Some(created_at);
        let write = CallWrite {
            scope: next,
            tenant_settings,
            cache: cache_key.map(|key| (key, output.as_ref().ok().cloned())),
            record: record.clone(),
        };
        let answer = output.map(|output| invoked(&record, &resolved, output, created_at));
        match call.logging {
            Logging::BeforeAnswer => {
                write.run().await?;
                answer.map(|answer| (answer, None))
            }
            Logging::AfterAnswer => match answer {
                Ok(answer) => Ok((answer, Some(write))),
                // An error is answered after its log, as refusals are: the caller
                // sees the failed call in `calls` as soon as it sees the error.
                Err(err) => {
                    write.run().await?;
                    Err(err)
                }
            },
        }
    }

    /// Asks `provider` for the completion of `rendered` under the version's settings,
    /// with its retries, and checks the answer against the output schema.
    async fn complete(
        &self,
        provider: &dyn Provider,
        resolved: &Resolved,
        rendered: prompt::RenderedPrompt,
    ) -> Result<Completed> {
        let messages = messages(rendered);
        let settings = model_settings(resolved);
        let retried = providers::call_with_retries(provider, &messages, &settings).await;
        let result = retried
            .result
            .map_err(|err| Error::Provider {
                code: err.code(),
                message: err.message(),
            })
            .and_then(|completion| {
                let output = answer(resolved, &completion.content)?;
                Ok((completion, output))
            });
        Ok(Completed {
            attempts: retried.attempts,
            provider_latency: retried.provider_latency,
            result,
        })
    }

    /// The provider of a version, its connection opened in `scope`: the one RESOLVE
    /// read (`sealed`), or read now when it did not. A connection that cannot be opened
    /// or is misconfigured is the version's error, not an internal one.
    async fn provider(
        &self,
        scope: &RequestScope,
        resolved: &Resolved,
        sealed: Option<&SealedConnection>,
    ) -> Result<Box<dyn Provider>> {
        match resolved.provider {
            Some(ProviderKind::OpenaiCompatible) => {
                let Some(connection_id) = resolved.connection_id else {
                    return Err(misconfigured("the version has no connection"));
                };
                let opened = match sealed {
                    Some(sealed) => sealed.open(&self.vault, scope).await,
                    None => open_connection(&self.vault, scope, connection_id).await,
                };
                let connection = match opened {
                    Ok(connection) => connection,
                    Err(Error::NotFound) => {
                        return Err(misconfigured("the version's connection was deleted"))
                    }
                    Err(err) => return Err(err),
                };
                OpenAiCompatible::from_connection(&self.egress, &connection)
                    .map(|p| Box::new(p) as Box<dyn Provider>)
                    .map_err(|err| Error::Provider {
                        code: err.code(),
                        message: err.message(),
                    })
            }
            _ => Ok(Box::new(providers::Template)),
        }
    }

    /// Waits for another caller's answer to the same miss: the output once it is
    /// cached, or `None` when the claim lapsed (its caller died or failed) and this
    /// caller took it over.
    async fn await_flight(
        &self,
        next: &RequestScope,
        key: &CacheKey,
        lease: Duration,
        mode: CacheMode,
    ) -> Result<Option<Json>> {
        let deadline = Instant::now() + lease + Duration::from_secs(1);
        loop {
            tokio::time::sleep(FLIGHT_POLL).await;
            let scope = next.continuation();
            let row = scope
                .tx()
                .await?
                .query_one(stmt(
                    "SELECT state, output, expires_at > now() AS fresh FROM response_cache \
                     WHERE tenant_id = $1 AND version_id = $2 AND input_hash = $3 \
                       AND settings_hash = $4",
                    cache_values(key),
                ))
                .await?;
            let ready = match &row {
                Some(row) => {
                    let state: String = row.try_get("", "state")?;
                    let fresh: bool = row.try_get("", "fresh")?;
                    if state == "ready" && fresh {
                        row.try_get::<Option<Json>>("", "output")?
                    } else {
                        None
                    }
                }
                None => None,
            };
            if ready.is_some() {
                RequestScope::finish_shared(scope, true).await?;
                return Ok(ready);
            }
            // Gone (its caller failed) or lapsed: take it over if nobody else has.
            let lapsed = row.is_none() || Instant::now() >= deadline;
            if lapsed && claim(&scope, key, mode == CacheMode::Refresh, lease).await? {
                RequestScope::finish_shared(scope, true).await?;
                return Ok(None);
            }
            RequestScope::finish_shared(scope, true).await?;
            if Instant::now() >= deadline + lease {
                return Err(Error::Provider {
                    code: "PROVIDER_TIMEOUT",
                    message: "an identical call is still waiting for the provider".into(),
                });
            }
        }
    }
}

/// Compiled input schemas, by process and the time its row last changed (any change
/// to a schema changes it): compiling a schema costs more than checking an input.
static INPUT_SCHEMAS: std::sync::LazyLock<std::sync::Mutex<SchemaCache>> =
    std::sync::LazyLock::new(Default::default);
type SchemaCache = HashMap<(Uuid, DateTime<Utc>), Arc<CompiledSchema>>;
/// The most compiled schemas kept; past it the cache starts over.
const MAX_CACHED_SCHEMAS: usize = 4096;

fn input_schema(resolved: &Resolved) -> Result<Arc<CompiledSchema>> {
    let key = (resolved.process_id, resolved.process_updated_at);
    let cached = INPUT_SCHEMAS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(schema) = cached {
        return Ok(schema);
    }
    let schema = Arc::new(CompiledSchema::new(&resolved.input_schema)?);
    let mut cache = INPUT_SCHEMAS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= MAX_CACHED_SCHEMAS {
        cache.clear();
    }
    cache.insert(key, schema.clone());
    Ok(schema)
}

/// Logs a refused call (`status`, with `err`'s code and message) and commits it:
/// the error to return.
async fn refuse(
    scope: Arc<RequestScope>,
    tenant_settings: &Json,
    mut record: CallRecord,
    status: CallStatus,
    err: Error,
    started: Instant,
) -> Result<Error> {
    record.status = status;
    record.error_code = Some(err.code().to_owned());
    record.error_message = Some(err.to_string());
    record.latency_ms = elapsed_ms(started);
    calls::record(&scope, tenant_settings, record).await?;
    RequestScope::finish_shared(scope, true).await?;
    Ok(err)
}

fn misconfigured(why: &str) -> Error {
    Error::Provider {
        code: "PROVIDER_MISCONFIGURED",
        message: why.to_owned(),
    }
}

fn env_label(environment: Environment) -> &'static str {
    match environment {
        Environment::Sandbox => "SANDBOX",
        Environment::Production => "PRODUCTION",
    }
}

/// An API key held to one environment or a list of processes may call nothing else.
fn check_key_restrictions(resolved: &Resolved, environment: Environment) -> Result<()> {
    if resolved
        .key_environment
        .is_some_and(|allowed| allowed != environment)
    {
        return Err(Error::Forbidden(
            "this API key may not call processes in this environment",
        ));
    }
    if resolved
        .key_processes
        .as_ref()
        .is_some_and(|keys| !keys.contains(&resolved.process_key))
    {
        return Err(Error::Forbidden("this API key may not call this process"));
    }
    Ok(())
}

/// How long a claim on a miss stands: every attempt's timeout and backoff, and a margin.
fn lease(resolved: &Resolved) -> Duration {
    let attempts = resolved.max_attempts.unwrap_or(1).max(1) as u64;
    let timeout = resolved.timeout_ms.unwrap_or(30_000).max(0) as u64;
    let backoff = providers::MAX_BACKOFF.as_millis() as u64;
    Duration::from_millis(attempts * timeout + (attempts - 1) * backoff + 5_000)
}

fn cache_values(key: &CacheKey) -> [Value; 4] {
    [
        key.tenant_id.into(),
        key.version_id.into(),
        key.input_hash.clone().into(),
        key.settings_hash.clone().into(),
    ]
}

/// Claims a cache entry for answering a miss: true when this caller now holds it (no
/// entry, an expired one, a lapsed claim, or `refresh`), false when another caller's
/// claim or a fresh answer stands. The claim is seen by others once committed.
async fn claim(
    scope: &RequestScope,
    key: &CacheKey,
    refresh: bool,
    lease: Duration,
) -> Result<bool> {
    let [tenant, version, input, settings] = cache_values(key);
    let claimed = scope
        .tx()
        .await?
        .query_one(stmt(
            "INSERT INTO response_cache AS c (tenant_id, version_id, input_hash, settings_hash, \
               state, lease_until, expires_at) \
             VALUES ($1, $2, $3, $4, 'pending', now() + make_interval(secs => $5), \
               now() + make_interval(secs => $5)) \
             ON CONFLICT (tenant_id, version_id, input_hash, settings_hash) DO UPDATE \
               SET state = 'pending', output = NULL, input_tokens = 0, output_tokens = 0, \
                 lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at, \
                 created_at = now() \
               WHERE (c.state = 'ready' AND (c.expires_at <= now() OR $6)) \
                  OR (c.state = 'pending' AND c.lease_until <= now()) \
             RETURNING true AS claimed",
            [
                tenant,
                version,
                input,
                settings,
                lease.as_secs_f64().into(),
                refresh.into(),
            ],
        ))
        .await?;
    Ok(claimed.is_some())
}

/// Stores the answer of a claimed miss for the version's TTL.
async fn fill(
    scope: &RequestScope,
    key: &CacheKey,
    output: &Json,
    record: &CallRecord,
) -> Result<()> {
    let [tenant, version, input, settings] = cache_values(key);
    scope
        .tx()
        .await?
        .execute(stmt(
            "INSERT INTO response_cache AS c (tenant_id, version_id, input_hash, settings_hash, \
               state, output, input_tokens, output_tokens, expires_at) \
             VALUES ($1, $2, $3, $4, 'ready', $5, $6, $7, now() + make_interval(secs => $8)) \
             ON CONFLICT (tenant_id, version_id, input_hash, settings_hash) DO UPDATE \
               SET state = 'ready', output = EXCLUDED.output, lease_until = NULL, \
                 input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens, \
                 expires_at = EXCLUDED.expires_at, created_at = now()",
            [
                tenant,
                version,
                input,
                settings,
                output.clone().into(),
                record.input_tokens.into(),
                record.output_tokens.into(),
                f64::from(key.ttl_seconds).into(),
            ],
        ))
        .await?;
    Ok(())
}

/// Gives up a claim after the provider failed, so a waiting caller tries itself.
async fn release(scope: &RequestScope, key: &CacheKey) -> Result<()> {
    scope
        .tx()
        .await?
        .execute(stmt(
            "DELETE FROM response_cache WHERE tenant_id = $1 AND version_id = $2 \
               AND input_hash = $3 AND settings_hash = $4 AND state = 'pending'",
            cache_values(key),
        ))
        .await?;
    Ok(())
}

fn messages(rendered: prompt::RenderedPrompt) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if !rendered.system.is_empty() {
        messages.push(Message::new(ChatRole::System, rendered.system));
    }
    messages.push(Message::new(ChatRole::User, rendered.user));
    messages
}

fn model_settings(resolved: &Resolved) -> ModelSettings {
    let response_format = match resolved.response_format {
        Some(ResponseFormat::Json) if is_constraining(&resolved.output_schema) => {
            providers::ResponseFormat::JsonSchema {
                name: resolved.process_key.replace('-', "_"),
                schema: resolved.output_schema.clone(),
            }
        }
        Some(ResponseFormat::Json) => providers::ResponseFormat::Json,
        _ => providers::ResponseFormat::Text,
    };
    ModelSettings {
        model: resolved.model.clone().unwrap_or_default(),
        temperature: resolved.temperature,
        max_tokens: resolved.max_tokens.map(|t| t.max(1) as u32),
        response_format,
        timeout: Duration::from_millis(resolved.timeout_ms.unwrap_or(30_000).max(1) as u64),
        max_attempts: resolved.max_attempts.unwrap_or(1).max(1) as u32,
        initial_backoff: Duration::from_millis(resolved.retry_backoff_ms.unwrap_or(0).max(0) as u64),
    }
}

/// Whether an output schema says anything (`{}` admits every value).
fn is_constraining(schema: &Json) -> bool {
    schema.as_object().is_some_and(|o| !o.is_empty())
}

/// The call's output from the provider's content: text as a JSON string, or for a JSON
/// version the parsed value, checked against the output schema.
fn answer(resolved: &Resolved, content: &str) -> Result<Json> {
    if resolved.response_format != Some(ResponseFormat::Json) {
        return Ok(Json::String(content.to_owned()));
    }
    let output: Json = serde_json::from_str(content).map_err(|_| Error::Provider {
        code: "PROVIDER_BAD_RESPONSE",
        message: "the model's answer is not JSON".into(),
    })?;
    if let Err(Error::BadInput { field, message }) =
        CompiledSchema::new(&resolved.output_schema).and_then(|s| s.check("output", &output))
    {
        return Err(Error::Provider {
            code: "OUTPUT_INVALID",
            message: format!(
                "the model's answer does not match the output schema at {field}: {message}"
            ),
        });
    }
    Ok(output)
}

fn cost_nanos(resolved: &Resolved, input_tokens: i64, output_tokens: i64) -> i64 {
    // USD per million tokens is nano-USD per thousand tokens... per token: price × 1000.
    let input = input_tokens.max(0) as f64 * resolved.input_price_per_mtok.unwrap_or(0.0);
    let output = output_tokens.max(0) as f64 * resolved.output_price_per_mtok.unwrap_or(0.0);
    ((input + output) * 1000.0).round() as i64
}

fn clamp_tokens(tokens: i64) -> i32 {
    tokens.clamp(0, i64::from(i32::MAX)) as i32
}

fn duration_ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

fn elapsed_ms(started: Instant) -> i32 {
    duration_ms(started.elapsed())
}

fn invoked(
    record: &CallRecord,
    resolved: &Resolved,
    output: Json,
    created_at: DateTime<Utc>,
) -> Invoked {
    Invoked {
        call_id: record.id,
        process_id: record.process_id,
        version_id: record.version_id.unwrap_or_default(),
        version_number: resolved.number.unwrap_or_default(),
        environment: record.environment,
        output,
        cache_hit: record.cache_hit,
        latency_ms: record.latency_ms,
        provider_latency_ms: record.provider_latency_ms,
        input_tokens: record.input_tokens,
        output_tokens: record.output_tokens,
        cost_nanos: record.cost_nanos,
        created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_schema_constrains_nothing() {
        assert!(!is_constraining(&serde_json::json!({})));
        assert!(is_constraining(&serde_json::json!({"type": "object"})));
    }
}
