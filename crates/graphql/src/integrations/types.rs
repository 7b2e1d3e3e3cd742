//! Integration types: App, AppVersion, Action, Secret, Connection.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_entity::{
    action, app, app_version, connection, connection_secret, secret, IdKind, Role,
};

use crate::context::{load_error, present, ContextExt};
use crate::identity::types::{contains_pattern, User};
use crate::ids::gid;
use crate::list::{Access, List, Relation};
use crate::loaders::{
    ActionsOfVersion, AppById, AppVersionById, ConnectionById, SecretById, SecretRefsOfConnection,
    UserById, UsesOfSecret, VersionsOfApp,
};
use crate::payload::Json;

/// The shelf of the catalog an app sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::AppCategory")]
pub enum AppCategory {
    /// Trellis's own building blocks, such as Webhook and Schedule.
    Core,
    /// Chat and messaging, such as Slack and Discord.
    Communication,
    /// Developer tools and plain HTTP, such as GitHub and HTTP Request.
    Developer,
    /// Productivity and office tools.
    Productivity,
    /// Sending and reading email, such as Email (SMTP) and Gmail.
    Email,
}

/// Whether a catalog action starts runs (TRIGGER) or is a step of one (ACTION).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_entity::ActionKind")]
pub enum ActionKind {
    /// Starts runs; a step cannot use it.
    Trigger,
    /// Does one thing in a run: what an ACTION step's `actionId` names.
    Action,
}

/// Narrows the catalog; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct AppFilter {
    /// Matches key, name or description (case-insensitive).
    pub search: Option<String>,
    /// Only public apps (true) or only the tenant's own (false).
    pub public: Option<bool>,
    /// Only apps on one of these shelves.
    pub categories: Option<Vec<AppCategory>>,
    /// Only deleted apps (true), or only live ones (false, the default).
    #[graphql(default)]
    pub deleted: bool,
}

/// Narrows a tenant's secrets; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct SecretFilter {
    /// Matches the name (case-insensitive).
    pub search: Option<String>,
}

/// Narrows a tenant's connections; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct ConnectionFilter {
    /// Only connections of this app (its ID).
    pub app: Option<ID>,
    /// Only active (true) or only inactive (false) connections.
    pub active: Option<bool>,
    /// Matches the name (case-insensitive).
    pub search: Option<String>,
    /// Only deleted connections (true), or only live ones (false, the default).
    #[graphql(default)]
    pub deleted: bool,
}

/// A connector in the catalog: public (every tenant sees it) or a tenant's own.
pub struct App(pub app::Model);

impl From<app::Model> for App {
    fn from(m: app::Model) -> Self {
        Self(m)
    }
}

/// A connector in the catalog: public (every tenant sees it) or a tenant's own.
#[Object]
impl App {
    /// Its global ID (`app_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::App, self.0.id)
    }
    /// Unique within the public catalog and within a tenant; a tenant's app never
    /// shadows a public one.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it connects to, at most 4000 characters; empty when not given.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Its shelf in the catalog.
    async fn category(&self) -> AppCategory {
        self.0.category.into()
    }
    /// An http(s) URL of its icon; null when it has none.
    async fn icon_url(&self) -> Option<&str> {
        self.0.icon_url.as_deref()
    }
    /// True for the public catalog, false for the tenant's own apps.
    async fn is_public(&self) -> bool {
        self.0.tenant_id.is_none()
    }
    /// When it was added to the catalog.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it was deleted; null while it is live. `restoreApp` clears it.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// Every version, oldest first (drafts included).
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AppVersion>> {
        Ok(versions_of(ctx, self.0.id)
            .await?
            .into_iter()
            .map(AppVersion)
            .collect())
    }
    /// The newest published version: what a new connection uses.
    async fn latest_version(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AppVersion>> {
        Ok(versions_of(ctx, self.0.id)
            .await?
            .into_iter()
            .filter(|v| v.published_at.is_some())
            .max_by_key(|v| v.published_at)
            .map(AppVersion))
    }
}

async fn versions_of(
    ctx: &Context<'_>,
    app_id: uuid::Uuid,
) -> async_graphql::Result<Vec<app_version::Model>> {
    Ok(ctx
        .loader()?
        .load_one(VersionsOfApp(app_id))
        .await
        .map_err(|e| load_error(ctx, &e))?
        .unwrap_or_default())
}

/// One version of an app: its manifest (the connection config schema and secret
/// fields) and its triggers and actions. Immutable once published.
pub struct AppVersion(pub app_version::Model);

impl From<app_version::Model> for AppVersion {
    fn from(m: app_version::Model) -> Self {
        Self(m)
    }
}

/// One version of an app: its manifest (the connection config schema and secret
/// fields) and its triggers and actions. Immutable once published.
#[Object]
impl AppVersion {
    /// Its global ID (`apv_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AppVersion, self.0.id)
    }
    /// MAJOR.MINOR.PATCH.
    async fn version(&self) -> &str {
        &self.0.version
    }
    /// The whole manifest: `auth`, `configSchema`, `secretFields`,
    /// `optionalSecretFields`, `docsUrl`.
    async fn manifest(&self) -> Json<&serde_json::Value> {
        Json(&self.0.manifest)
    }
    /// The JSON Schema a connection's config must satisfy.
    async fn config_schema(&self) -> Json<serde_json::Value> {
        Json(
            self.0
                .manifest
                .get("configSchema")
                .cloned()
                .unwrap_or_default(),
        )
    }
    /// The names of the secrets a connection references.
    async fn secret_fields(&self) -> Vec<String> {
        self.0
            .manifest
            .get("secretFields")
            .and_then(serde_json::Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Whether it is published: immutable, and usable by connections. False for a
    /// draft, which may still change.
    async fn is_published(&self) -> bool {
        self.0.published_at.is_some()
    }
    /// When it was published; null while it is a draft.
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
    /// The app it is a version of.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<App> {
        let app = ctx
            .loader()?
            .load_one(AppById(self.0.app_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        present(app, "an app").map(App)
    }
    /// Triggers and actions, by key; `kind` narrows to one of the two.
    async fn actions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only triggers (TRIGGER) or only actions (ACTION); both when omitted.")]
        kind: Option<ActionKind>,
    ) -> async_graphql::Result<Vec<Action>> {
        let actions = ctx
            .loader()?
            .load_one(ActionsOfVersion(self.0.id))
            .await
            .map_err(|e| load_error(ctx, &e))?
            .unwrap_or_default();
        Ok(actions
            .into_iter()
            .filter(|a| kind.is_none_or(|k| trellis_entity::ActionKind::from(k) == a.kind))
            .map(Action)
            .collect())
    }
}

/// A trigger or action of an app version, with its input and output JSON Schemas.
pub struct Action(pub action::Model);

impl From<action::Model> for Action {
    fn from(m: action::Model) -> Self {
        Self(m)
    }
}

/// A trigger or action of an app version, with its input and output JSON Schemas.
#[Object]
impl Action {
    /// Its global ID (`act_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Action, self.0.id)
    }
    /// Unique within its version: 1 to 64 letters, digits or '_', starting with a letter.
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What it does; empty when not given.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Whether it starts runs or is a step of one.
    async fn kind(&self) -> ActionKind {
        self.0.kind.into()
    }
    /// A JSON Schema of its input: an ACTION step's `config` must satisfy it.
    async fn input_schema(&self) -> Json<&serde_json::Value> {
        Json(&self.0.input_schema)
    }
    /// A JSON Schema of what it outputs.
    async fn output_schema(&self) -> Json<&serde_json::Value> {
        Json(&self.0.output_schema)
    }
    /// The app version that declares it.
    async fn app_version(&self, ctx: &Context<'_>) -> async_graphql::Result<AppVersion> {
        let version = ctx
            .loader()?
            .load_one(AppVersionById(self.0.app_version_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        present(version, "an app version").map(AppVersion)
    }
}

/// A named secret. Its value is write-only: no field, error or log ever shows it.
pub struct Secret(pub secret::Model);

impl From<secret::Model> for Secret {
    fn from(m: secret::Model) -> Self {
        Self(m)
    }
}

/// One place a secret is used.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SecretUse {
    /// The secret field of the connection's app it fills.
    pub field: String,
    #[graphql(skip)]
    pub connection_id: uuid::Uuid,
}

#[async_graphql::ComplexObject]
impl SecretUse {
    /// The connection that uses the secret.
    async fn connection(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Connection>> {
        let connection = ctx
            .loader()?
            .load_one(ConnectionById(self.connection_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        Ok(connection.map(Connection))
    }
}

/// A named secret (admins see them). Its value is write-only: no field, error or log
/// ever shows it.
#[Object]
impl Secret {
    /// Its global ID (`sec_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Secret, self.0.id)
    }
    /// Unique in the tenant: 1 to 128 letters, digits, '_', '.' or '-', starting with a
    /// letter. Webhook triggers' signing secrets are named `webhook.<trigger>.<time>`.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Starts at 1; every rotation adds one.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When its value was last replaced (`rotateSecret`); null if never.
    async fn rotated_at(&self) -> Option<DateTime<Utc>> {
        self.0.rotated_at
    }
    /// When the server last decrypted it for use, to the minute (a use within a minute
    /// of the last one is not recorded again).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// The user who created it; null when an API key did, or the user is not visible.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        let user = ctx
            .loader()?
            .load_one(UserById(id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        Ok(user.map(User))
    }
    /// The connection fields that reference it; while any does, it cannot be deleted.
    async fn used_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SecretUse>> {
        let uses = ctx
            .loader()?
            .load_one(UsesOfSecret(self.0.id))
            .await
            .map_err(|e| load_error(ctx, &e))?
            .unwrap_or_default();
        Ok(uses
            .into_iter()
            .map(|u| SecretUse {
                field: u.field,
                connection_id: u.connection_id,
            })
            .collect())
    }
}

/// A tenant's configured use of a published app version.
pub struct Connection(pub connection::Model);

impl From<connection::Model> for Connection {
    fn from(m: connection::Model) -> Self {
        Self(m)
    }
}

/// Which secret fills one secret field of a connection.
pub struct ConnectionSecret(pub connection_secret::Model);

/// Which secret fills one secret field of a connection.
#[Object]
impl ConnectionSecret {
    /// A secret field of the connection's app version (its manifest's `secretFields`).
    async fn field(&self) -> &str {
        &self.0.field
    }
    /// The secret (its name and version; never its value).
    async fn secret(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Secret>> {
        let secret = ctx
            .loader()?
            .load_one(SecretById(self.0.secret_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        Ok(secret.map(Secret))
    }
}

/// A tenant's configured use of a published app version: its config and the secrets
/// it uses.
#[Object]
impl Connection {
    /// Its global ID (`con_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Connection, self.0.id)
    }
    /// Unique in the tenant, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The non-secret configuration, valid against the version's config schema.
    async fn config(&self) -> Json<&serde_json::Value> {
        Json(&self.0.config)
    }
    /// Whether it is switched on.
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    /// When its secrets or version last changed; null if never.
    async fn rotated_at(&self) -> Option<DateTime<Utc>> {
        self.0.rotated_at
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it was deleted; null while it is live. `restoreConnection` clears it.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// The app it connects.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<App> {
        let app = ctx
            .loader()?
            .load_one(AppById(self.0.app_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        present(app, "an app").map(App)
    }
    /// The published app version it uses.
    async fn app_version(&self, ctx: &Context<'_>) -> async_graphql::Result<AppVersion> {
        let version = ctx
            .loader()?
            .load_one(AppVersionById(self.0.app_version_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        present(version, "an app version").map(AppVersion)
    }
    /// The secrets it uses, by field (names and versions only).
    async fn secrets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ConnectionSecret>> {
        let refs = ctx
            .loader()?
            .load_one(SecretRefsOfConnection(self.0.id))
            .await
            .map_err(|e| load_error(ctx, &e))?
            .unwrap_or_default();
        Ok(refs.into_iter().map(ConnectionSecret).collect())
    }
}

impl List for App {
    type Entity = app::Entity;
    type Node = Self;
    type Filter = AppFilter;
    // Row-level security admits the public rows and the active tenant's.
    const ACCESS: Access = Access::Anyone;
    const TENANT: Option<app::Column> = None;
    const CREATED_AT: app::Column = app::Column::CreatedAt;
    const ID: app::Column = app::Column::Id;

    fn narrow(
        select: Select<app::Entity>,
        filter: AppFilter,
    ) -> trellis_core::Result<Select<app::Entity>> {
        let mut select = if filter.deleted {
            select.filter(app::Column::DeletedAt.is_not_null())
        } else {
            select.filter(app::Column::DeletedAt.is_null())
        };
        match filter.public {
            Some(true) => select = select.filter(app::Column::TenantId.is_null()),
            Some(false) => select = select.filter(app::Column::TenantId.is_not_null()),
            None => {}
        }
        if let Some(categories) = filter.categories {
            select = select.filter(
                app::Column::Category.is_in(
                    categories
                        .into_iter()
                        .map(trellis_entity::AppCategory::from),
                ),
            );
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(key ILIKE $1 OR name ILIKE $1 OR description ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<app::Model>> {
        vec![Relation::by(&["versions", "latestVersion"], |a| {
            Some(VersionsOfApp(a.id))
        })]
    }
}

impl List for Secret {
    type Entity = secret::Entity;
    type Node = Self;
    type Filter = SecretFilter;
    const ACCESS: Access = Access::Tenant(Role::Admin);
    const TENANT: Option<secret::Column> = Some(secret::Column::TenantId);
    const CREATED_AT: secret::Column = secret::Column::CreatedAt;
    const ID: secret::Column = secret::Column::Id;

    fn narrow(
        mut select: Select<secret::Entity>,
        filter: SecretFilter,
    ) -> trellis_core::Result<Select<secret::Entity>> {
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "name ILIKE $1",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<secret::Model>> {
        vec![Relation::by(&["usedBy"], |s| Some(UsesOfSecret(s.id)))]
    }
}

/// Each reference's secret (`secrets { secret }`) is a relation of a relation: the
/// connections list prefetches it itself.
impl List for Connection {
    type Entity = connection::Entity;
    type Node = Self;
    type Filter = ConnectionFilter;
    const ACCESS: Access = Access::Tenant(Role::Viewer);
    const TENANT: Option<connection::Column> = Some(connection::Column::TenantId);
    const CREATED_AT: connection::Column = connection::Column::CreatedAt;
    const ID: connection::Column = connection::Column::Id;

    fn narrow(
        select: Select<connection::Entity>,
        filter: ConnectionFilter,
    ) -> trellis_core::Result<Select<connection::Entity>> {
        let mut select = if filter.deleted {
            select.filter(connection::Column::DeletedAt.is_not_null())
        } else {
            select.filter(connection::Column::DeletedAt.is_null())
        };
        if let Some(app) = filter.app {
            select =
                select.filter(connection::Column::AppId.eq(crate::ids::parse(&app, IdKind::App)?));
        }
        if let Some(active) = filter.active {
            select = select.filter(connection::Column::IsActive.eq(active));
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "name ILIKE $1",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<connection::Model>> {
        vec![
            Relation::together(&["app"], |c| Some(AppById(c.app_id))),
            Relation::together(&["appVersion"], |c| Some(AppVersionById(c.app_version_id))),
            Relation::by(&["secrets"], |c| Some(SecretRefsOfConnection(c.id))),
        ]
    }
}
