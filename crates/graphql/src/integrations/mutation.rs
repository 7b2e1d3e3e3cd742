use async_graphql::{Context, InputObject, Object, ID};
use secrecy::SecretString;
use trellis_core::integrations::{catalog, connections, secrets};
use trellis_entity::IdKind;

use super::types::{ActionKind, App, AppCategory, AppVersion, Connection, Secret};
use crate::context::{mutate, ContextExt};
use crate::identity::types::input_id;
use crate::identity::IdInput;
use crate::payload::Json;

payload!(
    /// The app a mutation created, changed or deleted, or the input's problems.
    AppPayload {
        /// The app as it is now; null when `userErrors` is not empty.
        app: App,
    }
);
payload!(
    /// The app version a mutation created, changed or published, or the input's problems.
    AppVersionPayload {
        /// The version as it is now; null when `userErrors` is not empty.
        app_version: AppVersion,
    }
);
payload!(
    /// The secret a mutation created, rotated or deleted, or the input's problems.
    SecretPayload {
        /// The secret as it is now (as it was, for `deleteSecret`); null when
        /// `userErrors` is not empty.
        secret: Secret,
    }
);
payload!(
    /// The connection a mutation created, changed or deleted, or the input's problems.
    ConnectionPayload {
        /// The connection as it is now; null when `userErrors` is not empty.
        connection: Connection,
    }
);
payload!(
    /// The tenant's new data-key generation and how many secrets were re-encrypted.
    RotateDataKeyPayload {
        /// The new data key's generation: the previous one plus one.
        generation: i32,
        /// How many of the tenant's secrets were re-encrypted under it.
        secrets_reencrypted: i32,
    }
);
payload!(
    /// What one test request found.
    TestConnectionPayload {
        /// Whether the request got a 2xx response; false when the app has no test.
        ok: bool,
        /// The response's HTTP status; null when no response came or nothing was sent.
        status: i32,
        /// How long the request took, in milliseconds (0 when nothing was sent).
        latency_ms: i32,
        /// What happened, without URL, headers or secrets (`HTTP 200 OK`, `the request
        /// timed out`, or why the app has no test).
        message: String,
        /// The connection tested.
        connection: Connection,
    }
);

/// A new app.
#[derive(InputObject)]
pub struct CreateAppInput {
    /// 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter; unique in
    /// its catalog, and a tenant's app may not take a public app's key (CONFLICT).
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters; empty when omitted.
    pub description: Option<String>,
    /// Its shelf in the catalog.
    pub category: AppCategory,
    /// An http(s) URL of its icon, at most 2048 characters.
    pub icon_url: Option<String>,
    /// In the public catalog (platform admins only) instead of the active tenant.
    #[graphql(default)]
    pub public: bool,
}

/// Changes to an app; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAppInput {
    /// The app (`app_…`).
    pub id: ID,
    /// A new display name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new description, at most 4000 characters.
    pub description: Option<String>,
    /// Another shelf.
    pub category: Option<AppCategory>,
    /// A new http(s) icon URL; an empty string removes the icon.
    pub icon_url: Option<String>,
}

/// A trigger or action of an app version.
#[derive(InputObject)]
pub struct ActionInput {
    /// Unique within the version: 1 to 64 letters, digits or '_', starting with a letter.
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters; empty when omitted.
    pub description: Option<String>,
    /// Whether it starts runs (TRIGGER) or is a step of one (ACTION).
    pub kind: ActionKind,
    /// A JSON Schema (draft 2020-12 unless `$schema` says otherwise).
    pub input_schema: Json<serde_json::Value>,
    /// A JSON Schema of its output, checked like `inputSchema`.
    pub output_schema: Json<serde_json::Value>,
}

impl From<ActionInput> for catalog::ActionSpec {
    fn from(a: ActionInput) -> Self {
        Self {
            key: a.key,
            name: a.name,
            description: a.description,
            kind: a.kind.into(),
            input_schema: a.input_schema.0,
            output_schema: a.output_schema.0,
        }
    }
}

/// A new draft version of an app.
#[derive(InputObject)]
pub struct CreateAppVersionInput {
    /// The app (`app_…`).
    pub app_id: ID,
    /// MAJOR.MINOR.PATCH, unique within the app.
    pub version: String,
    /// `{auth, configSchema, secretFields?, optionalSecretFields?, docsUrl?}`.
    pub manifest: Json<serde_json::Value>,
    /// Its triggers and actions, at most 200; none when omitted.
    #[graphql(default)]
    pub actions: Vec<ActionInput>,
}

/// Changes to a draft app version; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAppVersionInput {
    /// A draft version; published ones never change.
    pub id: ID,
    /// Replaces the manifest (checked as in `createAppVersion`).
    pub manifest: Option<Json<serde_json::Value>>,
    /// Replaces every action of the version.
    pub actions: Option<Vec<ActionInput>>,
}

/// A new secret of the active tenant.
#[derive(InputObject)]
pub struct CreateSecretInput {
    /// Unique in the tenant: letters, digits, '_', '.' or '-'.
    pub name: String,
    /// 1 byte to 64 KiB. Write-only: stored encrypted, never returned.
    #[graphql(secret)]
    pub value: String,
}

/// A secret's new value.
#[derive(InputObject)]
pub struct RotateSecretInput {
    /// The secret (`sec_…`).
    pub id: ID,
    /// The new value, 1 byte to 64 KiB; the version goes up by one.
    #[graphql(secret)]
    pub value: String,
}

/// Which secret fills one secret field of a connection.
#[derive(InputObject)]
pub struct ConnectionSecretInput {
    /// A secret field of the app version's manifest.
    pub field: String,
    /// One of the tenant's secrets (`sec_…`).
    pub secret_id: ID,
}

/// A new connection of the active tenant.
#[derive(InputObject)]
pub struct CreateConnectionInput {
    /// A published app version.
    pub app_version_id: ID,
    /// Unique in the tenant.
    pub name: String,
    /// Checked against the version's config schema.
    pub config: Json<serde_json::Value>,
    /// A secret for each secret field the manifest requires (optional ones may be
    /// left out), each field once; none when omitted.
    #[graphql(default)]
    pub secrets: Vec<ConnectionSecretInput>,
    /// Whether it starts switched on.
    #[graphql(default = true)]
    pub is_active: bool,
}

/// Changes to a connection; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateConnectionInput {
    /// The connection (`con_…`).
    pub id: ID,
    /// Another published version of the same app.
    pub app_version_id: Option<ID>,
    /// A new name, 1 to 200 characters, unique in the tenant.
    pub name: Option<String>,
    /// Replaces the config. The config (new or kept) is checked against the version's
    /// config schema.
    pub config: Option<Json<serde_json::Value>>,
    /// Replaces every secret reference.
    pub secrets: Option<Vec<ConnectionSecretInput>>,
    /// Switches it on or off.
    pub is_active: Option<bool>,
}

fn secret_refs(
    ctx: &Context<'_>,
    inputs: Vec<ConnectionSecretInput>,
) -> async_graphql::Result<Vec<connections::SecretRef>> {
    inputs
        .into_iter()
        .map(|s| {
            Ok(connections::SecretRef {
                field: s.field,
                secret_id: input_id(ctx, &s.secret_id, IdKind::Secret)?,
            })
        })
        .collect()
}

fn vault<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a secrets::Vault> {
    Ok(&ctx.services()?.vault)
}

#[derive(Default)]
pub struct IntegrationsMutation;

#[Object]
impl IntegrationsMutation {
    /// Adds an app to the active tenant's catalog (builders), or to the public catalog
    /// (`public: true`, platform admins).
    async fn create_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new app.")] input: CreateAppInput,
    ) -> async_graphql::Result<AppPayload> {
        let scope = ctx.scope()?;
        let new = catalog::NewApp {
            key: input.key,
            name: input.name,
            description: input.description,
            category: input.category.into(),
            icon_url: input.icon_url,
            public: input.public,
        };
        let (app, user_errors) = mutate(ctx, catalog::create_app(scope, new)).await?;
        Ok(AppPayload {
            app: app.map(App),
            user_errors,
        })
    }

    /// Changes an app's name, description, category or icon (builders of its tenant;
    /// platform admins for a public app).
    async fn update_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app and its changes.")] input: UpdateAppInput,
    ) -> async_graphql::Result<AppPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::App)?;
        let changes = catalog::AppChanges {
            name: input.name,
            description: input.description,
            category: input.category.map(Into::into),
            icon_url: input.icon_url.map(Some),
        };
        let (app, user_errors) = mutate(ctx, catalog::update_app(scope, id, changes)).await?;
        Ok(AppPayload {
            app: app.map(App),
            user_errors,
        })
    }

    /// Removes an app from the catalog (soft; builders of its tenant, platform admins for
    /// a public app); its key is free while deleted, `restoreApp` brings it back, and
    /// its connections keep working.
    async fn delete_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app (`app_…`).")] input: IdInput,
    ) -> async_graphql::Result<AppPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::App)?;
        let (app, user_errors) = mutate(ctx, catalog::delete_app(scope, id)).await?;
        Ok(AppPayload {
            app: app.map(App),
            user_errors,
        })
    }

    /// Brings a deleted app back into the catalog (builders of its tenant, platform admins
    /// for a public app); CONFLICT on `key` when a live app took its key since (for a
    /// tenant's app, a public one included).
    async fn restore_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted app (`app_…`).")] input: IdInput,
    ) -> async_graphql::Result<AppPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::App)?;
        let (app, user_errors) = mutate(ctx, catalog::restore_app(scope, id)).await?;
        Ok(AppPayload {
            app: app.map(App),
            user_errors,
        })
    }

    /// Adds a draft version with its manifest and actions; schemas are checked (builders
    /// of the app's tenant; platform admins for a public app).
    async fn create_app_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app, the version number, its manifest and actions.")]
        input: CreateAppVersionInput,
    ) -> async_graphql::Result<AppVersionPayload> {
        let scope = ctx.scope()?;
        let app_id = input_id(ctx, &input.app_id, IdKind::App)?;
        let actions = input.actions.into_iter().map(Into::into).collect();
        let (version, user_errors) = mutate(
            ctx,
            catalog::create_app_version(scope, app_id, &input.version, input.manifest.0, actions),
        )
        .await?;
        Ok(AppVersionPayload {
            app_version: version.map(AppVersion),
            user_errors,
        })
    }

    /// Changes a draft version (builders of the app's tenant; platform admins for a
    /// public app). A published version is a CONFLICT userError.
    async fn update_app_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft version and its changes.")] input: UpdateAppVersionInput,
    ) -> async_graphql::Result<AppVersionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::AppVersion)?;
        let actions = input
            .actions
            .map(|actions| actions.into_iter().map(Into::into).collect());
        let (version, user_errors) = mutate(
            ctx,
            catalog::update_app_version(scope, id, input.manifest.map(|m| m.0), actions),
        )
        .await?;
        Ok(AppVersionPayload {
            app_version: version.map(AppVersion),
            user_errors,
        })
    }

    /// Publishes a draft version after checking its manifest again (builders of the
    /// app's tenant; platform admins for a public app): immutable from now on, usable
    /// by connections.
    async fn publish_app_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft version (`apv_…`).")] input: IdInput,
    ) -> async_graphql::Result<AppVersionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::AppVersion)?;
        let (version, user_errors) = mutate(ctx, catalog::publish_app_version(scope, id)).await?;
        Ok(AppVersionPayload {
            app_version: version.map(AppVersion),
            user_errors,
        })
    }

    /// Stores a secret (admins). The value is encrypted and never shown again.
    async fn create_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The name and value of the new secret.")] input: CreateSecretInput,
    ) -> async_graphql::Result<SecretPayload> {
        let scope = ctx.scope()?;
        let value = SecretString::from(input.value);
        let (secret, user_errors) = mutate(
            ctx,
            secrets::create_secret(vault(ctx)?, scope, &input.name, &value),
        )
        .await?;
        Ok(SecretPayload {
            secret: secret.map(Secret),
            user_errors,
        })
    }

    /// Replaces a secret's value (admins); its version goes up by one.
    async fn rotate_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The secret and its new value.")] input: RotateSecretInput,
    ) -> async_graphql::Result<SecretPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Secret)?;
        let value = SecretString::from(input.value);
        let (secret, user_errors) =
            mutate(ctx, secrets::rotate_secret(vault(ctx)?, scope, id, &value)).await?;
        Ok(SecretPayload {
            secret: secret.map(Secret),
            user_errors,
        })
    }

    /// Deletes a secret (admins); a CONFLICT while a connection uses it.
    async fn delete_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The secret (`sec_…`).")] input: IdInput,
    ) -> async_graphql::Result<SecretPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Secret)?;
        let (secret, user_errors) = mutate(ctx, secrets::delete_secret(scope, id)).await?;
        Ok(SecretPayload {
            secret: secret.map(Secret),
            user_errors,
        })
    }

    /// Replaces the active tenant's data key and re-encrypts all its secrets in one
    /// transaction (admins).
    async fn rotate_data_key(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<RotateDataKeyPayload> {
        let scope = ctx.scope()?;
        let (rotated, user_errors) =
            mutate(ctx, secrets::rotate_data_key(vault(ctx)?, scope)).await?;
        Ok(match rotated {
            Some((generation, count)) => RotateDataKeyPayload {
                generation: Some(generation),
                secrets_reencrypted: Some(i32::try_from(count).unwrap_or(i32::MAX)),
                user_errors,
            },
            None => RotateDataKeyPayload {
                user_errors,
                ..Default::default()
            },
        })
    }

    /// Connects an app (admins): config checked against the version's schema, each
    /// secret field pointing at one of the tenant's secrets.
    async fn create_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new connection.")] input: CreateConnectionInput,
    ) -> async_graphql::Result<ConnectionPayload> {
        let scope = ctx.scope()?;
        let new = connections::NewConnection {
            app_version_id: input_id(ctx, &input.app_version_id, IdKind::AppVersion)?,
            name: input.name,
            config: input.config.0,
            secrets: secret_refs(ctx, input.secrets)?,
            is_active: input.is_active,
        };
        let (connection, user_errors) =
            mutate(ctx, connections::create_connection(scope, new)).await?;
        Ok(ConnectionPayload {
            connection: connection.map(Connection),
            user_errors,
        })
    }

    /// Changes a connection (admins). New secrets or another version set `rotatedAt`.
    async fn update_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The connection and its changes.")] input: UpdateConnectionInput,
    ) -> async_graphql::Result<ConnectionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Connection)?;
        let changes = connections::ConnectionChanges {
            app_version_id: input
                .app_version_id
                .map(|v| input_id(ctx, &v, IdKind::AppVersion))
                .transpose()?,
            name: input.name,
            config: input.config.map(|c| c.0),
            secrets: input.secrets.map(|s| secret_refs(ctx, s)).transpose()?,
            is_active: input.is_active,
        };
        let (connection, user_errors) =
            mutate(ctx, connections::update_connection(scope, id, changes)).await?;
        Ok(ConnectionPayload {
            connection: connection.map(Connection),
            user_errors,
        })
    }

    /// Deletes a connection (admins, soft) and releases the secrets it used; its name is
    /// free while deleted, and `restoreConnection` brings it back.
    async fn delete_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The connection (`con_…`).")] input: IdInput,
    ) -> async_graphql::Result<ConnectionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Connection)?;
        let (connection, user_errors) =
            mutate(ctx, connections::delete_connection(scope, id)).await?;
        Ok(ConnectionPayload {
            connection: connection.map(Connection),
            user_errors,
        })
    }

    /// Restores a deleted connection (admins). It comes back inactive and without
    /// secrets: attach them and set `isActive` with `updateConnection`. CONFLICT on
    /// `name` when a live connection took its name since.
    async fn restore_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted connection (`con_…`).")] input: IdInput,
    ) -> async_graphql::Result<ConnectionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Connection)?;
        let (connection, user_errors) =
            mutate(ctx, connections::restore_connection(scope, id)).await?;
        Ok(ConnectionPayload {
            connection: connection.map(Connection),
            user_errors,
        })
    }

    /// Makes one request with a connection (builders; the http app) and reports the
    /// outcome. Nothing of the secret or the response body is returned.
    async fn test_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The connection (`con_…`).")] input: IdInput,
    ) -> async_graphql::Result<TestConnectionPayload> {
        let scope = ctx.scope()?;
        let id = input_id(ctx, &input.id, IdKind::Connection)?;
        let (tested, user_errors) = mutate(
            ctx,
            connections::test_connection(vault(ctx)?, &ctx.services()?.egress, scope, id),
        )
        .await?;
        let connection = ctx
            .loader()?
            .load_one(crate::loaders::ConnectionById(id))
            .await
            .ok()
            .flatten()
            .map(Connection);
        Ok(match tested {
            Some(t) => TestConnectionPayload {
                ok: Some(t.ok),
                status: t.status.map(i32::from),
                latency_ms: Some(i32::try_from(t.latency_ms).unwrap_or(i32::MAX)),
                message: Some(t.message),
                connection,
                user_errors,
            },
            None => TestConnectionPayload {
                user_errors,
                ..Default::default()
            },
        })
    }
}
