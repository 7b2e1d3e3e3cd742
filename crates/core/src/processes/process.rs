//! Processes: a key callers name, input and output JSON Schemas and a config object
//! the prompt templates read. Deleting is soft: the key is free while a process is
//! deleted, and restoring it takes the key back (CONFLICT when another took it).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{process, IdKind, Role, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::input::json_has_nul;
use crate::integrations::manifest::check_schema;
use crate::scope::RequestScope;
use crate::soft_delete;
use crate::workflows::check_key;
use crate::{Error, Result};

/// The most bytes a process's schemas or config may take as JSON.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A process's editable fields; `None` leaves a field as it is (or empty, on create).
#[derive(Default)]
pub struct ProcessFields {
    pub key: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub input_schema: Option<Json>,
    pub output_schema: Option<Json>,
    pub config: Option<Json>,
}

fn check_description(description: &str) -> Result<String> {
    let description = description.trim();
    if description.chars().count() > 4000 {
        return Err(Error::bad_input(
            "description",
            "description is at most 4000 characters",
        ));
    }
    Ok(description.to_owned())
}

/// A JSON Schema for `field`: an object (not `true`), a valid schema, not too large.
fn check_process_schema(field: &str, schema: Json) -> Result<Json> {
    if !schema.is_object() {
        return Err(Error::bad_input(
            field,
            "a JSON Schema object, e.g. {\"type\": \"object\"}",
        ));
    }
    check_document(field, &schema)?;
    check_schema(field, &schema)?;
    Ok(schema)
}

fn check_document(field: &str, value: &Json) -> Result<()> {
    if json_has_nul(value) {
        return Err(Error::bad_input(field, "must not contain NUL characters"));
    }
    if value.to_string().len() > MAX_DOCUMENT_BYTES {
        return Err(Error::bad_input(
            field,
            format!("at most {MAX_DOCUMENT_BYTES} bytes of JSON"),
        ));
    }
    Ok(())
}

fn check_config(config: Json) -> Result<Json> {
    if !config.is_object() {
        return Err(Error::bad_input("config", "config must be a JSON object"));
    }
    check_document("config", &config)?;
    Ok(config)
}

/// Creates a process (builders). Its schemas default to `{}` (anything goes).
pub async fn create_process(scope: &RequestScope, fields: ProcessFields) -> Result<process::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let key = check_key(fields.key.as_deref().unwrap_or_default())?;
    let row = process::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        key: Set(key),
        name: Set(required_text(
            fields.name.as_deref().unwrap_or_default(),
            "name",
            200,
        )?),
        description: Set(check_description(
            fields.description.as_deref().unwrap_or_default(),
        )?),
        input_schema: Set(check_process_schema(
            "inputSchema",
            fields.input_schema.unwrap_or_else(|| json!({})),
        )?),
        output_schema: Set(check_process_schema(
            "outputSchema",
            fields.output_schema.unwrap_or_else(|| json!({})),
        )?),
        config: Set(check_config(fields.config.unwrap_or_else(|| json!({})))?),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.create")
            .target(IdKind::Process, row.id)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok(row)
}

/// A process that is not deleted, locked for the rest of the request when `lock`.
pub(crate) async fn find_process(
    scope: &RequestScope,
    id: Uuid,
    lock: bool,
) -> Result<process::Model> {
    let mut select = process::Entity::find_by_id(id).filter(process::Column::DeletedAt.is_null());
    if lock {
        select = select.lock_exclusive();
    }
    select.one(scope.tx().await?).await?.ok_or(Error::NotFound)
}

/// Changes a process (builders). Versions read the schemas when they are invoked, so a
/// new input schema holds for every version from the next call on.
pub async fn update_process(
    scope: &RequestScope,
    id: Uuid,
    fields: ProcessFields,
) -> Result<process::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_process(scope, id, true).await?;
    let mut row = process::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(key) = fields.key {
        row.key = Set(check_key(&key)?);
    }
    if let Some(name) = fields.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(description) = fields.description {
        row.description = Set(check_description(&description)?);
    }
    if let Some(schema) = fields.input_schema {
        row.input_schema = Set(check_process_schema("inputSchema", schema)?);
    }
    if let Some(schema) = fields.output_schema {
        row.output_schema = Set(check_process_schema("outputSchema", schema)?);
    }
    if let Some(config) = fields.config {
        row.config = Set(check_config(config)?);
    }
    if !row.is_changed() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.update").target(IdKind::Process, id),
    )
    .await?;
    Ok(row)
}

/// Deletes a process (builders, soft): it leaves every list, callers get NOT_FOUND, its
/// key is free, and [`restore_process`] brings it back with its versions and logs.
pub async fn delete_process(scope: &RequestScope, id: Uuid) -> Result<process::Model> {
    let ctx = scope.require(Role::Builder).await?;
    find_process(scope, id, true).await?;
    let row = process::ActiveModel {
        id: Set(id),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.delete")
            .target(IdKind::Process, id)
            .severity(Severity::Warning)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok(row)
}

/// Restores a deleted process (builders); CONFLICT when another took its key meanwhile.
pub async fn restore_process(scope: &RequestScope, id: Uuid) -> Result<process::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let deleted = process::Column::DeletedAt;
    let current = soft_delete::find_deleted(scope, id, deleted).await?;
    let row = soft_delete::undelete(scope, current, deleted).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "process.restore")
            .target(IdKind::Process, id)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok(row)
}
