//! The connector catalog: apps, their versions (a manifest each) and the triggers and
//! actions a version offers. Public apps (no tenant) are written only on the
//! platform-admin path; a tenant's private apps by its builders. Published versions
//! are immutable, which the database enforces.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{action, app, app_version, ActionKind, AppCategory, IdKind, Role};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::integrations::manifest::{check_schema, parse_manifest};
use crate::scope::RequestScope;
use crate::soft_delete;
use crate::{Error, Result};

/// The most actions one app version may declare.
pub const MAX_ACTIONS: usize = 200;

/// A new app.
pub struct NewApp {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub category: AppCategory,
    pub icon_url: Option<String>,
    /// In the public catalog (platform admins) rather than the active tenant's.
    pub public: bool,
}

/// Changes to an app; `None` leaves a field alone.
#[derive(Default)]
pub struct AppChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<AppCategory>,
    pub icon_url: Option<Option<String>>,
}

/// A trigger or action of a new or changed app version.
pub struct ActionSpec {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: ActionKind,
    pub input_schema: Json,
    pub output_schema: Json,
}

/// Admits a catalog write: the platform-admin path for public rows, a builder of the
/// row's tenant for private ones. Returns the tenant the row belongs to.
async fn authorize_write(scope: &RequestScope, tenant_id: Option<Uuid>) -> Result<()> {
    match tenant_id {
        None => scope.require_platform_admin().await.map(drop),
        Some(tenant_id) => {
            let ctx = scope.require(Role::Builder).await?;
            if ctx.tenant_id == tenant_id {
                Ok(())
            } else {
                Err(Error::NotFound)
            }
        }
    }
}

fn check_key(key: &str) -> Result<String> {
    let key = key.trim();
    let valid = (2..=63).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !valid {
        return Err(Error::bad_input(
            "key",
            "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter",
        ));
    }
    Ok(key.to_owned())
}

fn check_icon_url(url: Option<String>) -> Result<Option<String>> {
    match url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) {
        Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 2048 => {
            Err(Error::bad_input(
                "iconUrl",
                "iconUrl must be an http(s) URL",
            ))
        }
        other => Ok(other),
    }
}

fn check_description(description: Option<String>) -> Result<String> {
    let description = description.unwrap_or_default();
    if description.chars().count() > 4000 {
        return Err(Error::bad_input(
            "description",
            "description must be at most 4000 characters",
        ));
    }
    Ok(description)
}

/// Creates an app in the active tenant, or in the public catalog.
pub async fn create_app(scope: &RequestScope, new: NewApp) -> Result<app::Model> {
    let tenant_id = if new.public {
        scope.require_platform_admin().await?;
        None
    } else {
        Some(scope.require(Role::Builder).await?.tenant_id)
    };
    let key = check_key(&new.key)?;
    if tenant_id.is_some() {
        refuse_public_key(scope, &key).await?;
    }
    let tx = scope.tx().await?;
    let app = app::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        key: Set(key),
        name: Set(required_text(&new.name, "name", 200)?),
        description: Set(check_description(new.description)?),
        category: Set(new.category),
        icon_url: Set(check_icon_url(new.icon_url)?),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(tenant_id, "app.create")
            .target(IdKind::App, app.id)
            .details(json!({ "key": app.key, "public": tenant_id.is_none() })),
    )
    .await?;
    Ok(app)
}

/// CONFLICT when a live public app has `key`: a private app may not shadow a public
/// one, so `app(key:)` stays unambiguous.
async fn refuse_public_key(scope: &RequestScope, key: &str) -> Result<()> {
    let public = app::Entity::find()
        .filter(app::Column::TenantId.is_null())
        .filter(app::Column::Key.eq(key))
        .filter(app::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?;
    match public {
        Some(_) => Err(Error::conflict(
            Some("key"),
            "a public app already has this key",
        )),
        None => Ok(()),
    }
}

async fn find_app(scope: &RequestScope, id: Uuid) -> Result<app::Model> {
    app::Entity::find_by_id(id)
        .filter(app::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Changes an app's descriptive fields.
pub async fn update_app(scope: &RequestScope, id: Uuid, changes: AppChanges) -> Result<app::Model> {
    let current = find_app(scope, id).await?;
    authorize_write(scope, current.tenant_id).await?;
    let mut app = app::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(name) = changes.name {
        app.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(description) = changes.description {
        app.description = Set(check_description(Some(description))?);
    }
    if let Some(category) = changes.category {
        app.category = Set(category);
    }
    if let Some(icon_url) = changes.icon_url {
        app.icon_url = Set(check_icon_url(icon_url)?);
    }
    if !app.is_changed() {
        return Ok(current);
    }
    let app = app.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(app.tenant_id, "app.update").target(IdKind::App, id),
    )
    .await?;
    Ok(app)
}

/// Removes an app from the catalog (soft delete): its key is free while it is deleted,
/// and [`restore_app`] brings it back. Existing connections keep working.
pub async fn delete_app(scope: &RequestScope, id: Uuid) -> Result<app::Model> {
    let current = find_app(scope, id).await?;
    authorize_write(scope, current.tenant_id).await?;
    let app = app::ActiveModel {
        id: Set(id),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(app.tenant_id, "app.delete")
            .target(IdKind::App, id)
            .details(json!({ "key": app.key })),
    )
    .await?;
    Ok(app)
}

/// Brings a deleted app back into the catalog (whoever may delete it). CONFLICT on
/// `key` when a live app of the same catalog took the key meanwhile, or, for a
/// tenant's app, when a public app has it now (a private app never shadows one).
pub async fn restore_app(scope: &RequestScope, id: Uuid) -> Result<app::Model> {
    let deleted = app::Column::DeletedAt;
    // Every tenant sees public apps, deleted ones too, but cannot lock them: find the
    // row first so that a tenant restoring a public app is FORBIDDEN, as for deleteApp.
    let visible = app::Entity::find_by_id(id)
        .filter(deleted.is_not_null())
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    authorize_write(scope, visible.tenant_id).await?;
    let current = soft_delete::find_deleted(scope, id, deleted).await?;
    if current.tenant_id.is_some() {
        refuse_public_key(scope, &current.key).await?;
    }
    let app = soft_delete::undelete(scope, current, deleted).await?;
    audit::record(
        scope,
        Event::new(app.tenant_id, "app.restore")
            .target(IdKind::App, id)
            .details(json!({ "key": app.key })),
    )
    .await?;
    Ok(app)
}

fn check_version(version: &str) -> Result<String> {
    let version = version.trim();
    let parts: Vec<&str> = version.split('.').collect();
    let valid = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 6
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        });
    if !valid {
        return Err(Error::bad_input(
            "version",
            "version must be MAJOR.MINOR.PATCH, e.g. 1.0.0",
        ));
    }
    Ok(version.to_owned())
}

/// Checks every action of a version; errors name `actions[i].…`.
fn check_actions(actions: &[ActionSpec]) -> Result<()> {
    if actions.len() > MAX_ACTIONS {
        return Err(Error::bad_input(
            "actions",
            format!("an app version has at most {MAX_ACTIONS} actions"),
        ));
    }
    let mut keys = std::collections::HashSet::new();
    for (i, action) in actions.iter().enumerate() {
        let key = action.key.as_str();
        let valid_key = (1..=64).contains(&key.len())
            && key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(Error::bad_input(
                format!("actions[{i}].key"),
                "key must be 1 to 64 letters, digits or '_', starting with a letter",
            ));
        }
        if !keys.insert(key) {
            return Err(Error::bad_input(
                format!("actions[{i}].key"),
                "another action of this version has this key",
            ));
        }
        required_text(&action.name, &format!("actions[{i}].name"), 200)?;
        if action
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 4000)
        {
            return Err(Error::bad_input(
                format!("actions[{i}].description"),
                "description must be at most 4000 characters",
            ));
        }
        check_schema(&format!("actions[{i}].inputSchema"), &action.input_schema)?;
        check_schema(&format!("actions[{i}].outputSchema"), &action.output_schema)?;
    }
    Ok(())
}

async fn insert_actions(
    scope: &RequestScope,
    version: &app_version::Model,
    actions: Vec<ActionSpec>,
) -> Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    let rows = actions.into_iter().map(|a| action::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(version.tenant_id),
        app_version_id: Set(version.id),
        key: Set(a.key),
        name: Set(a.name.trim().to_owned()),
        description: Set(a.description.unwrap_or_default()),
        kind: Set(a.kind),
        input_schema: Set(a.input_schema),
        output_schema: Set(a.output_schema),
        ..Default::default()
    });
    action::Entity::insert_many(rows)
        .exec(scope.tx().await?)
        .await?;
    Ok(())
}

/// Adds a draft version to an app, with its manifest and actions.
pub async fn create_app_version(
    scope: &RequestScope,
    app_id: Uuid,
    version: &str,
    manifest: Json,
    actions: Vec<ActionSpec>,
) -> Result<app_version::Model> {
    let app = find_app(scope, app_id).await?;
    authorize_write(scope, app.tenant_id).await?;
    let version = check_version(version)?;
    parse_manifest("manifest", &manifest)?;
    check_actions(&actions)?;
    let row = app_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(app.tenant_id),
        app_id: Set(app.id),
        version: Set(version),
        manifest: Set(manifest),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    insert_actions(scope, &row, actions).await?;
    audit::record(
        scope,
        Event::new(app.tenant_id, "app_version.create")
            .target(IdKind::AppVersion, row.id)
            .details(json!({ "app": app.key, "version": row.version })),
    )
    .await?;
    Ok(row)
}

async fn find_version(scope: &RequestScope, id: Uuid) -> Result<app_version::Model> {
    app_version::Entity::find_by_id(id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

fn refuse_published(version: &app_version::Model) -> Result<()> {
    if version.published_at.is_some() {
        return Err(Error::conflict(
            Some("id"),
            "this version is published and cannot change; create a new version",
        ));
    }
    Ok(())
}

/// Replaces a draft version's manifest and/or actions.
pub async fn update_app_version(
    scope: &RequestScope,
    id: Uuid,
    manifest: Option<Json>,
    actions: Option<Vec<ActionSpec>>,
) -> Result<app_version::Model> {
    let current = find_version(scope, id).await?;
    authorize_write(scope, current.tenant_id).await?;
    refuse_published(&current)?;
    let tx = scope.tx().await?;
    let mut row = current.clone();
    if let Some(manifest) = manifest {
        parse_manifest("manifest", &manifest)?;
        row = app_version::ActiveModel {
            id: Set(id),
            manifest: Set(manifest),
            ..Default::default()
        }
        .update(tx)
        .await?;
    }
    if let Some(actions) = actions {
        check_actions(&actions)?;
        action::Entity::delete_many()
            .filter(action::Column::AppVersionId.eq(id))
            .exec(tx)
            .await?;
        insert_actions(scope, &row, actions).await?;
    }
    audit::record(
        scope,
        Event::new(row.tenant_id, "app_version.update").target(IdKind::AppVersion, id),
    )
    .await?;
    Ok(row)
}

/// Publishes a draft version: from now on it is immutable and connections may use it.
pub async fn publish_app_version(scope: &RequestScope, id: Uuid) -> Result<app_version::Model> {
    let current = find_version(scope, id).await?;
    authorize_write(scope, current.tenant_id).await?;
    refuse_published(&current)?;
    // Checked again at publication: a manifest saved before a rule tightened.
    parse_manifest("manifest", &current.manifest)?;
    let row = app_version::ActiveModel {
        id: Set(id),
        published_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(row.tenant_id, "app_version.publish")
            .target(IdKind::AppVersion, id)
            .details(json!({ "version": row.version })),
    )
    .await?;
    Ok(row)
}
