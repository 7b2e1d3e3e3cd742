//! Process versions: drafts change, published versions never do (the database refuses),
//! and each environment of a process serves one published version. Publishing a draft
//! makes it the SANDBOX version; [`promote_version`] moves a published version into an
//! environment (PRODUCTION, usually), keeping every move as history. A rollback is a
//! promotion of an older version.

use chrono::Utc;
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use trellis_entity::{
    process, process_deployment, process_promotion, process_version, Environment, IdKind,
    ProviderKind, ResponseFormat, Role,
};
use uuid::Uuid;

use super::process::find_process;
use super::prompt::check_template;
use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The app whose connections OPENAI_COMPATIBLE versions call through: its `baseUrl`
/// and `authorization` secret.
pub const PROVIDER_APP: &str = "http";

/// A version's editable fields. `None` leaves a field as it is (or at its default, or
/// as the version it is copied from, on create); `Some(None)` clears a nullable one.
#[derive(Clone, Debug, Default)]
pub struct VersionFields {
    pub system_prompt: Option<String>,
    pub user_prompt: Option<String>,
    pub provider: Option<ProviderKind>,
    pub connection_id: Option<Option<Uuid>>,
    pub model: Option<String>,
    pub temperature: Option<Option<f64>>,
    pub max_tokens: Option<Option<i32>>,
    pub response_format: Option<ResponseFormat>,
    pub timeout_ms: Option<i32>,
    pub max_attempts: Option<i32>,
    pub retry_backoff_ms: Option<i32>,
    pub cache_ttl_seconds: Option<i32>,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
    pub notes: Option<String>,
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T> {
    if value < min || value > max {
        return Err(Error::bad_input(
            field,
            format!("{field} must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

/// Applies `fields` to `row`, checking each given field.
fn apply(row: &mut process_version::ActiveModel, fields: VersionFields) -> Result<()> {
    if let Some(text) = fields.system_prompt {
        if text.chars().count() > 100_000 {
            return Err(Error::bad_input(
                "systemPrompt",
                "systemPrompt is at most 100,000 characters",
            ));
        }
        check_template("systemPrompt", &text)?;
        row.system_prompt = Set(text);
    }
    if let Some(text) = fields.user_prompt {
        if text.trim().is_empty() || text.chars().count() > 100_000 {
            return Err(Error::bad_input(
                "userPrompt",
                "userPrompt must be 1 to 100,000 characters",
            ));
        }
        check_template("userPrompt", &text)?;
        row.user_prompt = Set(text);
    }
    if let Some(provider) = fields.provider {
        row.provider = Set(provider);
    }
    if let Some(connection_id) = fields.connection_id {
        row.connection_id = Set(connection_id);
    }
    if let Some(model) = fields.model {
        let model = model.trim().to_owned();
        if model.chars().count() > 200 {
            return Err(Error::bad_input("model", "model is at most 200 characters"));
        }
        row.model = Set(model);
    }
    if let Some(temperature) = fields.temperature {
        row.temperature = Set(temperature
            .map(|t| in_range("temperature", t, 0.0, 2.0))
            .transpose()?);
    }
    if let Some(max_tokens) = fields.max_tokens {
        row.max_tokens = Set(max_tokens
            .map(|t| in_range("maxTokens", t, 1, 1_000_000))
            .transpose()?);
    }
    if let Some(format) = fields.response_format {
        row.response_format = Set(format);
    }
    if let Some(ms) = fields.timeout_ms {
        row.timeout_ms = Set(in_range("timeoutMs", ms, 100, 300_000)?);
    }
    if let Some(n) = fields.max_attempts {
        row.max_attempts = Set(in_range("maxAttempts", n, 1, 5)?);
    }
    if let Some(ms) = fields.retry_backoff_ms {
        row.retry_backoff_ms = Set(in_range("retryBackoffMs", ms, 0, 60_000)?);
    }
    if let Some(seconds) = fields.cache_ttl_seconds {
        row.cache_ttl_seconds = Set(in_range("cacheTtlSeconds", seconds, 0, 30 * 86_400)?);
    }
    if let Some(price) = fields.input_price_per_mtok {
        row.input_price_per_mtok = Set(in_range("inputPricePerMTok", price, 0.0, 100_000.0)?);
    }
    if let Some(price) = fields.output_price_per_mtok {
        row.output_price_per_mtok = Set(in_range("outputPricePerMTok", price, 0.0, 100_000.0)?);
    }
    if let Some(notes) = fields.notes {
        if notes.chars().count() > 4000 {
            return Err(Error::bad_input(
                "notes",
                "notes is at most 4000 characters",
            ));
        }
        row.notes = Set(notes);
    }
    Ok(())
}

/// The version as `row` will be: a model and a connection of the provider app when the
/// provider is a model, and neither needed for TEMPLATE.
async fn check_model_settings(
    scope: &RequestScope,
    row: &process_version::ActiveModel,
) -> Result<()> {
    let provider = *row.provider.as_ref();
    let connection_id = *row.connection_id.as_ref();
    if provider == ProviderKind::Template {
        return Ok(());
    }
    if row.model.as_ref().is_empty() {
        return Err(Error::bad_input(
            "model",
            "name the model this provider should run",
        ));
    }
    let Some(connection_id) = connection_id else {
        return Err(Error::bad_input(
            "connectionId",
            "an OPENAI_COMPATIBLE version calls through a connection of the http app",
        ));
    };
    let app = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT a.key FROM connections c JOIN apps a ON a.id = c.app_id \
             WHERE c.id = $1 AND c.deleted_at IS NULL",
            [connection_id.into()],
        ))
        .await?
        .map(|row| row.try_get::<String>("", "key"))
        .transpose()?;
    match app.as_deref() {
        None => Err(Error::bad_input("connectionId", "no such connection")),
        Some(PROVIDER_APP) => Ok(()),
        Some(_) => Err(Error::bad_input(
            "connectionId",
            "a provider connection is one of the http app (its baseUrl and authorization secret)",
        )),
    }
}

/// A version of a process that is not deleted, locked for the rest of the request.
async fn lock_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(process::Model, process_version::Model)> {
    let version = process_version::Entity::find_by_id(id)
        .lock_exclusive()
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    let process = find_process(scope, version.process_id, false).await?;
    Ok((process, version))
}

/// Adds a draft version numbered after the newest (builders): a copy of `from` with
/// `fields` applied, or from `fields` alone (a user prompt is then required).
pub async fn create_version(
    scope: &RequestScope,
    process_id: Uuid,
    from: Option<Uuid>,
    fields: VersionFields,
) -> Result<process_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    // The process's lock orders concurrent drafts: each gets the next number.
    let process = find_process(scope, process_id, true).await?;
    let tx = scope.tx().await?;
    let newest = process_version::Entity::find()
        .filter(process_version::Column::ProcessId.eq(process_id))
        .order_by_desc(process_version::Column::Number)
        .one(tx)
        .await?
        .map_or(0, |v| v.number);
    let mut row = match from {
        Some(from) => {
            let base = process_version::Entity::find_by_id(from)
                .filter(process_version::Column::ProcessId.eq(process_id))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    Error::bad_input("fromVersionId", "no such version of this process")
                })?;
            let mut row = process_version::ActiveModel::from(base).reset_all();
            row.environment = Set(Environment::Sandbox);
            row.published_at = Set(None);
            row.created_at = sea_orm::ActiveValue::NotSet;
            row.updated_at = sea_orm::ActiveValue::NotSet;
            row
        }
        None => {
            if fields.user_prompt.is_none() {
                return Err(Error::bad_input(
                    "userPrompt",
                    "a new version needs a userPrompt",
                ));
            }
            // The table's defaults for the rest; the model settings are checked below.
            process_version::ActiveModel {
                provider: Set(ProviderKind::Template),
                connection_id: Set(None),
                model: Set(String::new()),
                ..Default::default()
            }
        }
    };
    row.id = Set(Uuid::now_v7());
    row.tenant_id = Set(ctx.tenant_id);
    row.process_id = Set(process.id);
    row.number = Set(newest + 1);
    row.environment = Set(Environment::Sandbox);
    row.published_at = Set(None);
    row.created_by = Set(scope.user_id().ok());
    apply(&mut row, fields)?;
    check_model_settings(scope, &row).await?;
    let row = row.insert(tx).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.version.create")
            .target(IdKind::ProcessVersion, row.id)
            .details(json!({ "process": process.key, "number": row.number, "from": from })),
    )
    .await?;
    Ok(row)
}

fn refuse_unless_draft(version: &process_version::Model) -> Result<()> {
    if version.published_at.is_none() {
        return Ok(());
    }
    Err(Error::conflict(
        Some("id"),
        format!(
            "version {} is published and cannot change; create a draft from it",
            version.number
        ),
    ))
}

/// Changes a draft (builders); a published version is CONFLICT.
pub async fn update_version(
    scope: &RequestScope,
    id: Uuid,
    fields: VersionFields,
) -> Result<process_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (_, version) = lock_version(scope, id).await?;
    refuse_unless_draft(&version)?;
    let mut row: process_version::ActiveModel = version.clone().into();
    apply(&mut row, fields)?;
    if !row.is_changed() {
        return Ok(version);
    }
    check_model_settings(scope, &row).await?;
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.version.update")
            .target(IdKind::ProcessVersion, id),
    )
    .await?;
    Ok(row)
}

/// Publishes a draft (builders): it never changes again, and it becomes the version
/// SANDBOX serves. Of two concurrent publishes one wins, the other is CONFLICT.
pub async fn publish_version(scope: &RequestScope, id: Uuid) -> Result<process_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (process, version) = lock_version(scope, id).await?;
    if version.published_at.is_some() {
        return Err(Error::conflict(
            Some("id"),
            format!("version {} is already published", version.number),
        ));
    }
    let row = process_version::ActiveModel {
        id: Set(id),
        published_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.version.publish")
            .target(IdKind::ProcessVersion, id)
            .details(json!({ "process": process.key, "number": row.number })),
    )
    .await?;
    deploy(scope, &process, &row, Environment::Sandbox).await?;
    Ok(row)
}

/// Makes a published version the one `environment` of its process serves (builders),
/// and records the move. Promoting the version already served changes nothing.
/// Concurrent promotions of one process queue on its lock: each history row's `from`
/// is the version the one before it left.
pub async fn promote_version(
    scope: &RequestScope,
    id: Uuid,
    environment: Environment,
) -> Result<process_version::Model> {
    scope.require(Role::Builder).await?;
    let version = process_version::Entity::find_by_id(id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    let process = find_process(scope, version.process_id, true).await?;
    if version.published_at.is_none() {
        return Err(Error::conflict(
            Some("versionId"),
            format!("version {} is a draft: publish it first", version.number),
        ));
    }
    let mut version = version;
    if environment == Environment::Production && version.environment != Environment::Production {
        version = process_version::ActiveModel {
            id: Set(id),
            environment: Set(Environment::Production),
            ..Default::default()
        }
        .update(scope.tx().await?)
        .await?;
    }
    deploy(scope, &process, &version, environment).await?;
    Ok(version)
}

/// Points `environment` of `process` (locked by the caller) at `version`, with a
/// history row and an audit event; nothing when it already serves it.
async fn deploy(
    scope: &RequestScope,
    process: &process::Model,
    version: &process_version::Model,
    environment: Environment,
) -> Result<()> {
    let tx = scope.tx().await?;
    let env_name = environment.to_value();
    let previous =
        process_deployment::Entity::find_by_id((process.tenant_id, process.id, environment))
            .one(tx)
            .await?
            .map(|d| d.version_id);
    if previous == Some(version.id) {
        return Ok(());
    }
    tx.execute(stmt(
        "INSERT INTO process_deployments (tenant_id, process_id, environment, version_id) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, process_id, environment) \
         DO UPDATE SET version_id = EXCLUDED.version_id, updated_at = now()",
        [
            process.tenant_id.into(),
            process.id.into(),
            env_name.clone().into(),
            version.id.into(),
        ],
    ))
    .await?;
    let promoted_by_key = scope.api_key_id();
    process_promotion::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(process.tenant_id),
        process_id: Set(process.id),
        environment: Set(environment),
        from_version_id: Set(previous),
        to_version_id: Set(version.id),
        promoted_by: Set(scope.user_id().ok()),
        promoted_by_key: Set(promoted_by_key),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(process.tenant_id), "process.version.promote")
            .target(IdKind::ProcessVersion, version.id)
            .details(json!({
                "process": process.key,
                "environment": env_name,
                "number": version.number,
                "from": previous,
            })),
    )
    .await?;
    Ok(())
}
