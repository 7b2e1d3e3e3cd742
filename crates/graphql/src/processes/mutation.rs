use async_graphql::{Context, InputObject, MaybeUndefined, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use trellis_core::processes::invoke::{Invocation, Invoker, Logging, ProcessRef};
use trellis_core::processes::{process, versions};
use trellis_entity::{IdKind, PrefixedId};

use super::types::{
    CacheMode, Environment, Process, ProcessProvider, ProcessResponseFormat, ProcessVersion,
};
use crate::context::{mutate, run, ContextExt};
use crate::identity::types::{input_id, maybe_id, optional_id};
use crate::identity::IdInput;
use crate::ids::gid;
use crate::payload::Json;

payload!(
    /// The process a mutation created or changed, or the input's problems.
    ProcessPayload {
        /// The process as it is now; null when `userErrors` is not empty.
        process: Process,
    }
);
payload!(
    /// The process version a mutation created or changed, or the input's problems.
    ProcessVersionPayload {
        /// The version as it is now; null when `userErrors` is not empty.
        version: ProcessVersion,
    }
);

/// A new process of the active tenant.
#[derive(InputObject)]
pub struct CreateProcessInput {
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique among live processes.
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters.
    pub description: Option<String>,
    /// A JSON Schema object every input must satisfy; `{}` (anything) when omitted.
    pub input_schema: Option<Json<serde_json::Value>>,
    /// A JSON Schema object JSON answers must satisfy; `{}` when omitted.
    pub output_schema: Option<Json<serde_json::Value>>,
    /// A JSON object templates read as `{{ config.… }}`; `{}` when omitted.
    pub config: Option<Json<serde_json::Value>>,
}

/// Changes to a process; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProcessInput {
    /// The process (`proc_…`).
    pub id: ID,
    /// A new key: 2 to 63 lowercase letters, digits, '_' or '-'.
    pub key: Option<String>,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new description, at most 4000 characters.
    pub description: Option<String>,
    /// A new input JSON Schema object; it holds from the next call on.
    pub input_schema: Option<Json<serde_json::Value>>,
    /// A new output JSON Schema object.
    pub output_schema: Option<Json<serde_json::Value>>,
    /// A new config object (it changes the cache key of every version).
    pub config: Option<Json<serde_json::Value>>,
}

/// A new draft version of a process.
#[derive(InputObject)]
pub struct CreateProcessVersionInput {
    /// The process (`proc_…`).
    pub process_id: ID,
    /// Copy this version's settings (then apply the fields given); omitted, the draft
    /// starts from the defaults and `userPrompt` is required.
    pub from_version_id: Option<ID>,
    /// The system message's template; empty sends none.
    pub system_prompt: Option<String>,
    /// The user message's template, 1 to 100,000 characters: `{{ input.… }}` and
    /// `{{ config.… }}` placeholders, strict (a missing one fails the call).
    pub user_prompt: Option<String>,
    /// TEMPLATE when omitted.
    pub provider: Option<ProcessProvider>,
    /// OPENAI_COMPATIBLE: a connection of the `http` app.
    pub connection_id: Option<ID>,
    /// OPENAI_COMPATIBLE: the model's name.
    pub model: Option<String>,
    /// 0 to 2.
    pub temperature: Option<f64>,
    /// 1 to 1,000,000.
    pub max_tokens: Option<i32>,
    /// TEXT when omitted.
    pub response_format: Option<ProcessResponseFormat>,
    /// 100 to 300,000; 30,000 when omitted.
    pub timeout_ms: Option<i32>,
    /// 1 to 5; 2 when omitted.
    pub max_attempts: Option<i32>,
    /// 0 to 60,000; 500 when omitted.
    pub retry_backoff_ms: Option<i32>,
    /// 0 (no caching) to 2,592,000 (30 days); 86,400 when omitted.
    pub cache_ttl_seconds: Option<i32>,
    /// USD per million input tokens.
    #[graphql(name = "inputPricePerMTok")]
    pub input_price_per_mtok: Option<f64>,
    /// USD per million output tokens.
    #[graphql(name = "outputPricePerMTok")]
    pub output_price_per_mtok: Option<f64>,
    /// At most 4000 characters.
    pub notes: Option<String>,
}

/// Changes to a draft version; omitted fields stay, null clears a nullable one.
#[derive(InputObject)]
pub struct UpdateProcessVersionInput {
    /// A draft version (`prv_…`); a published one is CONFLICT.
    pub id: ID,
    /// The system message's template; empty sends none.
    pub system_prompt: Option<String>,
    /// The user message's template, 1 to 100,000 characters.
    pub user_prompt: Option<String>,
    /// Who answers.
    pub provider: Option<ProcessProvider>,
    /// A connection of the `http` app; null clears it (TEMPLATE needs none).
    pub connection_id: MaybeUndefined<ID>,
    /// The model's name.
    pub model: Option<String>,
    /// 0 to 2; null: the provider's default.
    pub temperature: MaybeUndefined<f64>,
    /// 1 to 1,000,000; null: the provider's default.
    pub max_tokens: MaybeUndefined<i32>,
    /// TEXT or JSON.
    pub response_format: Option<ProcessResponseFormat>,
    /// 100 to 300,000.
    pub timeout_ms: Option<i32>,
    /// 1 to 5.
    pub max_attempts: Option<i32>,
    /// 0 to 60,000.
    pub retry_backoff_ms: Option<i32>,
    /// 0 (no caching) to 2,592,000.
    pub cache_ttl_seconds: Option<i32>,
    /// USD per million input tokens.
    #[graphql(name = "inputPricePerMTok")]
    pub input_price_per_mtok: Option<f64>,
    /// USD per million output tokens.
    #[graphql(name = "outputPricePerMTok")]
    pub output_price_per_mtok: Option<f64>,
    /// At most 4000 characters.
    pub notes: Option<String>,
}

/// A published version to serve in an environment.
#[derive(InputObject)]
pub struct PromoteProcessVersionInput {
    /// A published version (`prv_…`); a draft is CONFLICT.
    pub version_id: ID,
    /// PRODUCTION when omitted or null. Promoting an older version is a rollback.
    pub environment: Option<Environment>,
}

/// One call of a process.
#[derive(InputObject)]
pub struct InvokeProcessInput {
    /// The process's key or ID (`proc_…`).
    pub process: String,
    /// PRODUCTION when omitted or null.
    pub environment: Option<Environment>,
    /// The input, checked against the process's input schema.
    pub input: Json<serde_json::Value>,
    /// A version number; the version the environment serves when omitted (in
    /// PRODUCTION only versions promoted there).
    pub version: Option<i32>,
    /// DEFAULT when omitted or null.
    pub cache: Option<CacheMode>,
}

/// A process's answer.
#[derive(SimpleObject)]
pub struct InvokeProcessPayload {
    /// The answer: a string for TEXT versions, JSON for JSON ones.
    pub output: Json<serde_json::Value>,
    /// The call's log entry (`call_…`).
    pub call_id: ID,
    /// The version that answered (`prv_…`).
    pub version_id: ID,
    /// Its number.
    pub version_number: i32,
    /// The environment called.
    pub environment: Environment,
    /// Whether the cache answered.
    pub cache_hit: bool,
    /// From receiving the call to its answer (ms).
    pub latency_ms: i32,
    /// Time in the provider's attempts (ms); null for a cache hit.
    pub provider_latency_ms: Option<i32>,
    /// Prompt tokens the provider counted (0 for a cache hit).
    pub input_tokens: i32,
    /// Answer tokens the provider counted (0 for a cache hit).
    pub output_tokens: i32,
    /// USD, at the version's prices.
    pub cost: f64,
    /// When it was logged.
    pub created_at: DateTime<Utc>,
}

fn json(value: Option<Json<serde_json::Value>>) -> Option<serde_json::Value> {
    value.map(|j| j.0)
}

fn maybe<T, U>(
    value: MaybeUndefined<T>,
    f: impl FnOnce(T) -> async_graphql::Result<U>,
) -> async_graphql::Result<Option<Option<U>>> {
    Ok(match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(f(v)?)),
    })
}

#[derive(Default)]
pub struct ProcessesMutation;

#[Object]
impl ProcessesMutation {
    /// Creates a process (builders).
    async fn create_process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new process.")] input: CreateProcessInput,
    ) -> async_graphql::Result<ProcessPayload> {
        let fields = process::ProcessFields {
            key: Some(input.key),
            name: Some(input.name),
            description: input.description,
            input_schema: json(input.input_schema),
            output_schema: json(input.output_schema),
            config: json(input.config),
        };
        let (row, user_errors) = mutate(ctx, process::create_process(ctx.scope()?, fields)).await?;
        Ok(ProcessPayload {
            process: row.map(Process),
            user_errors,
        })
    }

    /// Changes a process (builders); the schemas hold from the next call on.
    async fn update_process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The process and its changes.")] input: UpdateProcessInput,
    ) -> async_graphql::Result<ProcessPayload> {
        let id = input_id(ctx, &input.id, IdKind::Process)?;
        let fields = process::ProcessFields {
            key: input.key,
            name: input.name,
            description: input.description,
            input_schema: json(input.input_schema),
            output_schema: json(input.output_schema),
            config: json(input.config),
        };
        let (row, user_errors) =
            mutate(ctx, process::update_process(ctx.scope()?, id, fields)).await?;
        Ok(ProcessPayload {
            process: row.map(Process),
            user_errors,
        })
    }

    /// Deletes a process (builders, soft): callers get NOT_FOUND and its key is free;
    /// `restoreProcess` brings it back.
    async fn delete_process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The process (`proc_…`).")] input: IdInput,
    ) -> async_graphql::Result<ProcessPayload> {
        let id = input_id(ctx, &input.id, IdKind::Process)?;
        let (row, user_errors) = mutate(ctx, process::delete_process(ctx.scope()?, id)).await?;
        Ok(ProcessPayload {
            process: row.map(Process),
            user_errors,
        })
    }

    /// Restores a deleted process (builders); CONFLICT when its key was taken since.
    async fn restore_process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted process (`proc_…`).")] input: IdInput,
    ) -> async_graphql::Result<ProcessPayload> {
        let id = input_id(ctx, &input.id, IdKind::Process)?;
        let (row, user_errors) = mutate(ctx, process::restore_process(ctx.scope()?, id)).await?;
        Ok(ProcessPayload {
            process: row.map(Process),
            user_errors,
        })
    }

    /// Adds a draft version numbered after the newest (builders).
    async fn create_process_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The process and the draft's settings.")] input: CreateProcessVersionInput,
    ) -> async_graphql::Result<ProcessVersionPayload> {
        let process_id = input_id(ctx, &input.process_id, IdKind::Process)?;
        let from = optional_id(ctx, input.from_version_id.as_ref(), IdKind::ProcessVersion)?;
        let connection_id = optional_id(ctx, input.connection_id.as_ref(), IdKind::Connection)?;
        let fields = versions::VersionFields {
            system_prompt: input.system_prompt,
            user_prompt: input.user_prompt,
            provider: input.provider.map(Into::into),
            connection_id: connection_id.map(Some),
            model: input.model,
            temperature: input.temperature.map(Some),
            max_tokens: input.max_tokens.map(Some),
            response_format: input.response_format.map(Into::into),
            timeout_ms: input.timeout_ms,
            max_attempts: input.max_attempts,
            retry_backoff_ms: input.retry_backoff_ms,
            cache_ttl_seconds: input.cache_ttl_seconds,
            input_price_per_mtok: input.input_price_per_mtok,
            output_price_per_mtok: input.output_price_per_mtok,
            notes: input.notes,
        };
        let (row, user_errors) = mutate(
            ctx,
            versions::create_version(ctx.scope()?, process_id, from, fields),
        )
        .await?;
        Ok(ProcessVersionPayload {
            version: row.map(ProcessVersion),
            user_errors,
        })
    }

    /// Changes a draft version (builders); a published one is CONFLICT.
    async fn update_process_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft and its changes.")] input: UpdateProcessVersionInput,
    ) -> async_graphql::Result<ProcessVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::ProcessVersion)?;
        let fields = versions::VersionFields {
            system_prompt: input.system_prompt,
            user_prompt: input.user_prompt,
            provider: input.provider.map(Into::into),
            connection_id: maybe_id(ctx, input.connection_id, IdKind::Connection)?,
            model: input.model,
            temperature: maybe(input.temperature, Ok)?,
            max_tokens: maybe(input.max_tokens, Ok)?,
            response_format: input.response_format.map(Into::into),
            timeout_ms: input.timeout_ms,
            max_attempts: input.max_attempts,
            retry_backoff_ms: input.retry_backoff_ms,
            cache_ttl_seconds: input.cache_ttl_seconds,
            input_price_per_mtok: input.input_price_per_mtok,
            output_price_per_mtok: input.output_price_per_mtok,
            notes: input.notes,
        };
        let (row, user_errors) =
            mutate(ctx, versions::update_version(ctx.scope()?, id, fields)).await?;
        Ok(ProcessVersionPayload {
            version: row.map(ProcessVersion),
            user_errors,
        })
    }

    /// Publishes a draft (builders): it never changes again and SANDBOX serves it.
    async fn publish_process_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft (`prv_…`).")] input: IdInput,
    ) -> async_graphql::Result<ProcessVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::ProcessVersion)?;
        let (row, user_errors) = mutate(ctx, versions::publish_version(ctx.scope()?, id)).await?;
        Ok(ProcessVersionPayload {
            version: row.map(ProcessVersion),
            user_errors,
        })
    }

    /// Makes a published version the one an environment serves (builders), kept in
    /// `process.promotions`. A rollback is the promotion of an older version.
    async fn promote_process_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version and the environment.")] input: PromoteProcessVersionInput,
    ) -> async_graphql::Result<ProcessVersionPayload> {
        let id = input_id(ctx, &input.version_id, IdKind::ProcessVersion)?;
        let (row, user_errors) = mutate(
            ctx,
            versions::promote_version(
                ctx.scope()?,
                id,
                input
                    .environment
                    .map_or(trellis_entity::Environment::Production, Into::into),
            ),
        )
        .await?;
        Ok(ProcessVersionPayload {
            version: row.map(ProcessVersion),
            user_errors,
        })
    }

    /// Calls a process (operators, or API keys with the INVOKE scope): the input is
    /// checked (BAD_USER_INPUT names its path), answered from the cache or the provider,
    /// and logged in `calls`. Over a limit: RATE_LIMITED with `retryAfterSeconds`.
    /// Provider failures have codes of their own (`PROVIDER_TIMEOUT`,
    /// `PROVIDER_RATE_LIMITED`, `PROVIDER_REJECTED`, `PROVIDER_UNAVAILABLE`,
    /// `PROVIDER_BAD_RESPONSE`, `OUTPUT_INVALID`, `EGRESS_REFUSED`,
    /// `PROVIDER_MISCONFIGURED`).
    async fn invoke_process(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The process, environment and input.")] input: InvokeProcessInput,
    ) -> async_graphql::Result<InvokeProcessPayload> {
        let scope = ctx.scope()?;
        let services = ctx.services()?;
        let invoker = Invoker {
            db: scope.db().clone(),
            vault: services.vault.clone(),
            egress: services.egress.clone(),
        };
        let call = Invocation {
            process: process_ref(&input.process),
            environment: input
                .environment
                .map_or(trellis_entity::Environment::Production, Into::into),
            input: input.input.0,
            version: input.version,
            cache: input.cache.unwrap_or_default().into(),
            logging: Logging::BeforeAnswer,
        };
        let invoked = run(ctx, invoker.invoke(scope.principal(), scope.meta(), call)).await?;
        Ok(InvokeProcessPayload {
            output: Json(invoked.output),
            call_id: gid(IdKind::CallLog, invoked.call_id),
            version_id: gid(IdKind::ProcessVersion, invoked.version_id),
            version_number: invoked.version_number,
            environment: invoked.environment.into(),
            cache_hit: invoked.cache_hit,
            latency_ms: invoked.latency_ms,
            provider_latency_ms: invoked.provider_latency_ms,
            input_tokens: invoked.input_tokens,
            output_tokens: invoked.output_tokens,
            cost: invoked.cost_nanos as f64 / 1e9,
            created_at: invoked.created_at,
        })
    }
}

/// A process named by its ID (`proc_…`) or its key.
pub fn process_ref(named: &str) -> ProcessRef {
    match PrefixedId::parse_as(named, IdKind::Process) {
        Some(id) => ProcessRef::Id(id),
        None => ProcessRef::Key(named.to_owned()),
    }
}
