//! Connections: a tenant's configured use of a published app version. The config is
//! checked against the version's manifest schema; each secret field points at a secret
//! of the same tenant (a composite foreign key), never at a value.

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic,
    Iterable, QueryFilter, Set,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value as Json};
use trellis_entity::{
    app, app_version, connection, connection_secret, secret, tenant_data_key, IdKind, Role,
    Severity,
};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::egress::Egress;
use crate::identity::required_text;
use crate::integrations::manifest::{parse_manifest, validate_instance, Manifest};
use crate::integrations::secrets::Vault;
use crate::scope::RequestScope;
use crate::soft_delete;
use crate::{Error, Result};

/// Which secret fills one secret field.
#[derive(Clone, Debug)]
pub struct SecretRef {
    pub field: String,
    pub secret_id: Uuid,
}

/// A new connection.
pub struct NewConnection {
    pub app_version_id: Uuid,
    pub name: String,
    pub config: Json,
    pub secrets: Vec<SecretRef>,
    pub is_active: bool,
}

/// Changes to a connection; `None` leaves a field alone. `secrets` replaces them all.
#[derive(Default)]
pub struct ConnectionChanges {
    pub app_version_id: Option<Uuid>,
    pub name: Option<String>,
    pub config: Option<Json>,
    pub secrets: Option<Vec<SecretRef>>,
    pub is_active: Option<bool>,
}

/// The published version a connection uses, with its app and parsed manifest.
async fn usable_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(app::Model, app_version::Model, Manifest)> {
    let tx = scope.tx().await?;
    let version = app_version::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    if version.published_at.is_none() {
        return Err(Error::bad_input(
            "appVersionId",
            "connections use published app versions only",
        ));
    }
    let app = app::Entity::find_by_id(version.app_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let manifest = parse_manifest("manifest", &version.manifest)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored manifest invalid: {e}")))?;
    Ok((app, version, manifest))
}

/// Checks secret references against the manifest and that each secret is the tenant's.
async fn check_secrets(
    scope: &RequestScope,
    manifest: &Manifest,
    refs: &[SecretRef],
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, r) in refs.iter().enumerate() {
        if !manifest.secret_fields.contains(&r.field) {
            return Err(Error::bad_input(
                format!("secrets[{i}].field"),
                format!(
                    "this app has no secret field {:?}; it has {}",
                    r.field,
                    if manifest.secret_fields.is_empty() {
                        "none".to_owned()
                    } else {
                        manifest.secret_fields.join(", ")
                    }
                ),
            ));
        }
        if !seen.insert(r.field.as_str()) {
            return Err(Error::bad_input(
                format!("secrets[{i}].field"),
                "this field is given twice",
            ));
        }
    }
    if let Some(missing) = manifest
        .secret_fields
        .iter()
        .find(|f| !seen.contains(f.as_str()) && !manifest.optional_secret_fields.contains(f))
    {
        return Err(Error::bad_input(
            "secrets",
            format!("the secret field {missing:?} needs a secret"),
        ));
    }
    let ids: Vec<Uuid> = refs.iter().map(|r| r.secret_id).collect();
    let visible = secret::Entity::find()
        .filter(secret::Column::Id.is_in(ids.iter().copied()))
        .all(scope.tx().await?)
        .await?;
    if ids.iter().any(|id| !visible.iter().any(|s| s.id == *id)) {
        return Err(Error::NotFound);
    }
    Ok(())
}

async fn replace_secrets(
    scope: &RequestScope,
    tenant_id: Uuid,
    connection_id: Uuid,
    refs: Vec<SecretRef>,
) -> Result<()> {
    let tx = scope.tx().await?;
    connection_secret::Entity::delete_many()
        .filter(connection_secret::Column::ConnectionId.eq(connection_id))
        .exec(tx)
        .await?;
    if refs.is_empty() {
        return Ok(());
    }
    connection_secret::Entity::insert_many(refs.into_iter().map(|r| {
        connection_secret::ActiveModel {
            tenant_id: Set(tenant_id),
            connection_id: Set(connection_id),
            field: Set(r.field),
            secret_id: Set(r.secret_id),
            ..Default::default()
        }
    }))
    .exec(tx)
    .await?;
    Ok(())
}

/// Creates a connection (admins).
pub async fn create_connection(
    scope: &RequestScope,
    new: NewConnection,
) -> Result<connection::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let name = required_text(&new.name, "name", 200)?;
    let (app, version, manifest) = usable_version(scope, new.app_version_id).await?;
    validate_instance("config", &manifest.config_schema, &new.config)?;
    check_secrets(scope, &manifest, &new.secrets).await?;
    let row = connection::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        app_id: Set(app.id),
        app_version_id: Set(version.id),
        name: Set(name),
        config: Set(new.config),
        is_active: Set(new.is_active),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    replace_secrets(scope, ctx.tenant_id, row.id, new.secrets).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "connection.create")
            .target(IdKind::Connection, row.id)
            .details(json!({ "name": row.name, "app": app.key, "version": version.version })),
    )
    .await?;
    Ok(row)
}

async fn find_connection(scope: &RequestScope, id: Uuid) -> Result<connection::Model> {
    connection::Entity::find_by_id(id)
        .filter(connection::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Changes a connection (admins). New secrets or a new version mark it rotated.
pub async fn update_connection(
    scope: &RequestScope,
    id: Uuid,
    changes: ConnectionChanges,
) -> Result<connection::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let current = find_connection(scope, id).await?;
    let version_id = changes.app_version_id.unwrap_or(current.app_version_id);
    let (app, _, manifest) = usable_version(scope, version_id).await?;
    if app.id != current.app_id {
        return Err(Error::bad_input(
            "appVersionId",
            "a connection can move to another version of its own app only",
        ));
    }
    let config = changes.config.unwrap_or_else(|| current.config.clone());
    validate_instance("config", &manifest.config_schema, &config)?;
    let mut row = connection::ActiveModel {
        id: Set(id),
        app_version_id: Set(version_id),
        config: Set(config),
        ..Default::default()
    };
    if let Some(name) = changes.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(is_active) = changes.is_active {
        row.is_active = Set(is_active);
    }
    let rotated = changes.secrets.is_some() || version_id != current.app_version_id;
    if let Some(refs) = changes.secrets {
        check_secrets(scope, &manifest, &refs).await?;
        replace_secrets(scope, ctx.tenant_id, id, refs).await?;
    } else if version_id != current.app_version_id
        || (changes.is_active == Some(true) && !current.is_active)
    {
        // The new version may name other secret fields, and a restored connection has
        // none: the kept references must fit before it runs again.
        let kept = references(scope, id).await?;
        check_secrets(scope, &manifest, &kept).await?;
    }
    if rotated {
        row.rotated_at = Set(Some(Utc::now()));
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "connection.update")
            .target(IdKind::Connection, id)
            .details(json!({ "name": row.name })),
    )
    .await?;
    Ok(row)
}

async fn references(scope: &RequestScope, connection_id: Uuid) -> Result<Vec<SecretRef>> {
    Ok(connection_secret::Entity::find()
        .filter(connection_secret::Column::ConnectionId.eq(connection_id))
        .all(scope.tx().await?)
        .await?
        .into_iter()
        .map(|r| SecretRef {
            field: r.field,
            secret_id: r.secret_id,
        })
        .collect())
}

/// Deletes a connection (admins, soft): it leaves every list, releases its secrets and
/// frees its name; [`restore_connection`] brings it back, inactive.
pub async fn delete_connection(scope: &RequestScope, id: Uuid) -> Result<connection::Model> {
    let ctx = scope.require(Role::Admin).await?;
    find_connection(scope, id).await?;
    replace_secrets(scope, ctx.tenant_id, id, vec![]).await?;
    let row = connection::ActiveModel {
        id: Set(id),
        is_active: Set(false),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "connection.delete")
            .target(IdKind::Connection, id)
            .severity(Severity::Warning)
            .details(json!({ "name": row.name })),
    )
    .await?;
    Ok(row)
}

/// Restores a deleted connection (admins). It comes back inactive and without secrets,
/// as its deletion left it (the secrets were released and may be gone): attach them
/// and activate it with [`update_connection`]. CONFLICT on `name` when a live
/// connection took the name meanwhile.
pub async fn restore_connection(scope: &RequestScope, id: Uuid) -> Result<connection::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let deleted = connection::Column::DeletedAt;
    let current = soft_delete::find_deleted(scope, id, deleted).await?;
    let row = soft_delete::undelete(scope, current, deleted).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "connection.restore")
            .target(IdKind::Connection, id)
            .details(json!({ "name": row.name })),
    )
    .await?;
    Ok(row)
}

/// What a connection test found.
#[derive(Clone, Debug)]
pub struct ConnectionTest {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub message: String,
}

/// The longest a connection test waits, whatever the connection's own timeout says.
const TEST_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// Tests a connection (builders): for the http app, one GET to its `baseUrl` with its
/// default headers and authorization secret. Other apps report that they have no test.
pub async fn test_connection(
    vault: &Vault,
    egress: &Egress,
    scope: &RequestScope,
    id: Uuid,
) -> Result<ConnectionTest> {
    let ctx = scope.require(Role::Builder).await?;
    let row = find_connection(scope, id).await?;
    let (app, _, _) = usable_version(scope, row.app_version_id).await?;
    if app.key != "http" || app.tenant_id.is_some() {
        return Ok(ConnectionTest {
            ok: false,
            status: None,
            latency_ms: 0,
            message: format!("the {} app has no connection test", app.key),
        });
    }
    let Some(url) = row.config.get("baseUrl").and_then(Json::as_str) else {
        return Err(Error::bad_input(
            "config/baseUrl",
            "this connection has no baseUrl to test",
        ));
    };
    let timeout = row
        .config
        .get("timeoutMs")
        .and_then(Json::as_u64)
        .map_or(TEST_TIMEOUT_CAP, Duration::from_millis)
        .min(TEST_TIMEOUT_CAP);
    if let Err(refused) = egress.check_url(url) {
        return refused_test(scope, ctx.tenant_id, id, &refused).await;
    }
    let mut request = egress.client().get(url).timeout(timeout);
    if let Some(headers) = row.config.get("defaultHeaders").and_then(Json::as_object) {
        for (name, value) in headers {
            if let Some(value) = value.as_str() {
                request = request.header(name, value);
            }
        }
    }
    let authorization = references(scope, id)
        .await?
        .into_iter()
        .find(|r| r.field == "authorization");
    if let Some(reference) = authorization {
        let secret = secret::Entity::find_by_id(reference.secret_id)
            .one(scope.tx().await?)
            .await?
            .ok_or(Error::NotFound)?;
        let value = vault.reveal(scope, &secret).await?;
        let mut header =
            reqwest::header::HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                Error::bad_input(
                    "secrets",
                    "the authorization secret is not a valid header value",
                )
            })?;
        header.set_sensitive(true);
        request = request.header(reqwest::header::AUTHORIZATION, header);
    }
    let started = Instant::now();
    let outcome = request.send().await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let result = match outcome {
        Ok(response) => {
            let status = response.status();
            ConnectionTest {
                ok: status.is_success(),
                status: Some(status.as_u16()),
                latency_ms,
                message: format!("HTTP {status}"),
            }
        }
        Err(err) => {
            if let Some(refused) = crate::egress::refusal_in(&err) {
                return refused_test(scope, ctx.tenant_id, id, refused).await;
            }
            ConnectionTest {
                ok: false,
                status: None,
                latency_ms,
                message: describe_failure(&err),
            }
        }
    };
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "connection.test")
            .target(IdKind::Connection, id)
            .details(json!({ "ok": result.ok, "status": result.status })),
    )
    .await?;
    Ok(result)
}

/// The answer when the egress guard refuses the connection's address; audited, as a
/// probe of the server's network may be.
async fn refused_test(
    scope: &RequestScope,
    tenant_id: Uuid,
    id: Uuid,
    refused: &crate::egress::Refused,
) -> Result<ConnectionTest> {
    audit::record(
        scope,
        Event::new(Some(tenant_id), "connection.test")
            .target(IdKind::Connection, id)
            .severity(trellis_entity::Severity::Warning)
            .details(json!({ "ok": false, "refusedByEgressGuard": true })),
    )
    .await?;
    Ok(ConnectionTest {
        ok: false,
        status: None,
        latency_ms: 0,
        message: refused.to_string(),
    })
}

/// A failure in words that carry no URL, header or secret.
fn describe_failure(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "the request timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else if err.is_builder() {
        "the URL or a header is not valid".into()
    } else {
        "the request failed".into()
    }
}

/// A connection opened for a run's step: its app, its config and its secrets, in memory
/// only. Never log, store or return the secrets (their `Debug` is redacted).
#[derive(Clone, Debug)]
pub struct OpenConnection {
    pub app_key: String,
    pub config: Json,
    pub secrets: std::collections::HashMap<String, secrecy::SecretString>,
}

/// The statement that reads a connection for use: the connection (if live), its app's
/// key, and per secret field the secret and its data key; one row per field (one row
/// with NULL secret columns when it has none), none when the connection is gone.
/// `id` is the SQL expression of its ID (`$1`, or a column of an enclosing statement
/// that reads it as a lateral subquery, as a process call's RESOLVE does; the aliases
/// all start with `conn` so they hide none of its own, and the text ends with its
/// WHERE clause, so it may add conditions). Columns:
/// `connection_app_key`, `connection_config`, `secret_field`, `s_*` (the secret) and
/// `k_*` (its data key), as [`SealedConnection::from_rows`] reads them.
pub(crate) fn connection_rows_sql(id: &str) -> String {
    let prefixed = |table: &str, prefix: &str, columns: Vec<String>| {
        columns
            .into_iter()
            .map(|c| format!("{table}.{c} AS {prefix}{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT conn_app.key AS connection_app_key, conn.config AS connection_config, \
           conn_field.field AS secret_field, {secret}, {key} \
         FROM connections conn JOIN apps conn_app ON conn_app.id = conn.app_id \
         LEFT JOIN connection_secrets conn_field ON conn_field.connection_id = conn.id \
         LEFT JOIN secrets conn_secret ON conn_secret.id = conn_field.secret_id \
         LEFT JOIN tenant_data_keys conn_key ON conn_key.tenant_id = conn_secret.tenant_id \
           AND conn_key.generation = conn_secret.data_key_generation \
         WHERE conn.id = {id} AND conn.deleted_at IS NULL",
        secret = prefixed(
            "conn_secret",
            "s_",
            secret::Column::iter()
                .map(|c| c.as_str().to_owned())
                .collect()
        ),
        key = prefixed(
            "conn_key",
            "k_",
            tenant_data_key::Column::iter()
                .map(|c| c.as_str().to_owned())
                .collect()
        ),
    )
}

/// [`connection_rows_sql`] for a bound ID, built once.
static CONNECTION_ROWS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| connection_rows_sql("$1"));

/// A connection read for use with its secrets still sealed: what
/// [`connection_rows_sql`] returns, before [`SealedConnection::open`] reveals them.
#[derive(Clone, Debug)]
pub struct SealedConnection {
    app_key: String,
    config: Json,
    secrets: Vec<(String, secret::Model, tenant_data_key::Model)>,
}

impl SealedConnection {
    /// The connection in rows of [`connection_rows_sql`]'s columns; `None` when there
    /// are none (the connection is gone, or the statement did not read it).
    pub(crate) fn from_rows(rows: &[sea_orm::QueryResult]) -> Result<Option<Self>> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let Some(app_key) = first.try_get::<Option<String>>("", "connection_app_key")? else {
            return Ok(None);
        };
        let config: Json = first.try_get("", "connection_config")?;
        let mut secrets = Vec::new();
        for row in rows {
            let Some(field) = row.try_get::<Option<String>>("", "secret_field")? else {
                continue;
            };
            let secret = secret::Model::from_query_result(row, "s_")?;
            let data_key = tenant_data_key::Model::from_query_result(row, "k_")?;
            secrets.push((field, secret, data_key));
        }
        Ok(Some(Self {
            app_key,
            config,
            secrets,
        }))
    }

    /// Reveals the secrets (recording their use in `scope`).
    pub async fn open(&self, vault: &Vault, scope: &RequestScope) -> Result<OpenConnection> {
        let mut secrets = std::collections::HashMap::new();
        for (field, secret, data_key) in &self.secrets {
            let value = vault.reveal_with(scope, secret, data_key).await?;
            secrets.insert(field.clone(), value);
        }
        Ok(OpenConnection {
            app_key: self.app_key.clone(),
            config: self.config.clone(),
            secrets,
        })
    }
}

/// Opens a connection of the scope's tenant for a run: reads it, its app's key, its
/// secrets and their data keys in one statement, and reveals the secrets (recording
/// their use).
pub async fn open_connection(
    vault: &Vault,
    scope: &RequestScope,
    id: Uuid,
) -> Result<OpenConnection> {
    let rows = scope
        .tx()
        .await?
        .query_all(crate::scope::stmt(&CONNECTION_ROWS, [id.into()]))
        .await?;
    SealedConnection::from_rows(&rows)?
        .ok_or(Error::NotFound)?
        .open(vault, scope)
        .await
}
