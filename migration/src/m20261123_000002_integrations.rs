//! Integrations: the connector catalog (public rows have no tenant), tenant data keys,
//! secrets and connections, and the built-in public catalog.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::Deserialize;

use crate::rls::{grant_to_app, Policies, PLATFORM_ADMIN, TENANT_MATCH};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_integrations"
    }
}

/// The catalog's rule: every tenant reads the public rows, only platform admins write
/// them; a tenant reads and writes its own.
fn catalog(table: &'static str) -> Policies<'static> {
    Policies::custom(table, TENANT_MATCH)
        .also_readable_when("tenant_id IS NULL")
        .writable_when(&format!(
            "{TENANT_MATCH} OR (tenant_id IS NULL AND {PLATFORM_ADMIN})"
        ))
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![
        catalog("apps").only(&["SELECT", "INSERT", "UPDATE"]),
        catalog("app_versions"),
        catalog("actions"),
        Policies::tenant("tenant_data_keys"),
        Policies::tenant("secrets"),
        Policies::tenant("connections").only(&["SELECT", "INSERT", "UPDATE"]),
        Policies::tenant("connection_secrets").only(&["SELECT", "INSERT", "DELETE"]),
    ]
}

fn grants() -> String {
    [
        grant_to_app(
            "EXECUTE",
            "FUNCTION app.check_catalog_parent(), app.app_versions_immutable(), app.actions_immutable(), app.check_connection_app()",
        ),
        grant_to_app("SELECT, INSERT", "apps"),
        grant_to_app("UPDATE (name, description, category, icon_url, deleted_at)", "apps"),
        grant_to_app("SELECT, INSERT, DELETE, UPDATE (manifest, published_at)", "app_versions"),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (name, description, kind, input_schema, output_schema)",
            "actions",
        ),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (master_key_id, wrapped, rewrapped_at)",
            "tenant_data_keys",
        ),
        grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (version, data_key_generation, ciphertext, rotated_at, last_used_at)",
            "secrets",
        ),
        grant_to_app(
            "SELECT, INSERT, UPDATE (name, config, is_active, rotated_at, deleted_at, app_version_id)",
            "connections",
        ),
        grant_to_app("SELECT, INSERT, DELETE", "connection_secrets"),
    ]
    .concat()
}

/// One app of `catalog/builtin.json`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinApp {
    key: String,
    name: String,
    description: String,
    category: String,
    icon_url: Option<String>,
    version: String,
    manifest: serde_json::Value,
    actions: Vec<BuiltinAction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinAction {
    key: String,
    name: String,
    description: String,
    kind: String,
    input_schema: serde_json::Value,
    output_schema: serde_json::Value,
}

/// Inserts the built-in public catalog, every version published.
async fn seed_builtin_catalog(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let apps: Vec<BuiltinApp> = serde_json::from_str(include_str!("catalog/builtin.json"))
        .map_err(|e| DbErr::Custom(format!("catalog/builtin.json: {e}")))?;
    let db = manager.get_connection();
    let run = |sql: &str, values: Vec<sea_orm_migration::sea_orm::Value>| {
        db.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
    };
    for app in apps {
        let app_id = uuid::Uuid::now_v7().to_string();
        let version_id = uuid::Uuid::now_v7().to_string();
        run(
            "INSERT INTO apps (id, key, name, description, category, icon_url) VALUES ($1::uuid, $2, $3, $4, $5, $6)",
            vec![
                app_id.clone().into(),
                app.key.into(),
                app.name.into(),
                app.description.into(),
                app.category.into(),
                app.icon_url.into(),
            ],
        )
        .await?;
        run(
            "INSERT INTO app_versions (id, app_id, version, manifest) VALUES ($1::uuid, $2::uuid, $3, $4::jsonb)",
            vec![
                version_id.clone().into(),
                app_id.clone().into(),
                app.version.into(),
                app.manifest.to_string().into(),
            ],
        )
        .await?;
        for action in app.actions {
            run(
                "INSERT INTO actions (id, app_version_id, key, name, description, kind, input_schema, output_schema) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7::jsonb, $8::jsonb)",
                vec![
                    uuid::Uuid::now_v7().to_string().into(),
                    version_id.clone().into(),
                    action.key.into(),
                    action.name.into(),
                    action.description.into(),
                    action.kind.into(),
                    action.input_schema.to_string().into(),
                    action.output_schema.to_string().into(),
                ],
            )
            .await?;
        }
        run(
            "UPDATE app_versions SET published_at = now() WHERE id = $1::uuid",
            vec![version_id.into()],
        )
        .await?;
    }
    Ok(())
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/integrations_up.sql").to_owned();
        for table in policies() {
            sql.push_str(&table.sql());
        }
        sql.push_str(&grants());
        run_script(manager, &sql).await?;
        seed_builtin_catalog(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/integrations_down.sql")).await
    }
}
