//! Identity and tenancy types: Tenant, User, Membership, Invitation, ApiKey, AuditEvent.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, Select};
use trellis_entity::{api_key, audit_event, invitation, membership, tenant, user, IdKind};

use super::query::TenantFilter;
use crate::context::{load, load_error, run, ContextExt};
use crate::ids::{self, gid};
use crate::list::{self, Access, List, Relation};
use crate::loaders::{TenantById, UserById};
use crate::pagination::{CreatedOrderBy, Page};
use crate::payload::Json;

macro_rules! remote_enum {
    ($(#[$doc:meta])* $name:ident = $remote:literal {
        $($(#[$variant_doc:meta])* $variant:ident),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
        #[graphql(remote = $remote)]
        pub enum $name { $($(#[$variant_doc])* $variant),+ }
    };
}

remote_enum!(
    /// A member's role: owners also delete the tenant; admins manage members, keys,
    /// connections and secrets; builders edit; operators run; viewers read.
    Role = "trellis_entity::Role" {
        /// Everything an admin may do, and deleting the tenant; only owners make or
        /// change owners, and the last owner stays.
        Owner,
        /// Manages members, invitations, API keys, connections and secrets, and reads
        /// the audit log; everything a builder may do.
        Admin,
        /// Edits workflows, versions, triggers, clients and the tenant's own apps;
        /// everything an operator may do.
        Builder,
        /// Starts, cancels and retries runs; everything a viewer may do.
        Operator,
        /// Reads the tenant's workflows, runs, connections, clients and members.
        Viewer,
    }
);
remote_enum!(
    /// Whether a tenant is in service.
    TenantStatus = "trellis_entity::TenantStatus" {
        /// In service.
        Active,
        /// Refused to its users and API keys (FORBIDDEN) until a platform admin
        /// reactivates it.
        Suspended,
        /// A tenant created `hosted`, until its runner first reports health
        /// (`reportHealth`): members use it; runs wait until it is ACTIVE.
        Provisioning,
        /// A hosted tenant whose runner first reported UNHEALTHY; a HEALTHY report
        /// makes it ACTIVE.
        Failed,
    }
);
remote_enum!(
    /// Where an invitation stands.
    InvitationStatus = "trellis_entity::InvitationStatus" {
        /// Waiting for the invitee; `acceptInvitation` takes it until `expiresAt`.
        Pending,
        /// The invitee joined the tenant.
        Accepted,
        /// An admin revoked it; its token no longer works.
        Revoked,
        /// `expiresAt` passed before it was accepted.
        Expired,
    }
);
remote_enum!(
    /// Who performed an audited action.
    ActorType = "trellis_entity::ActorType" {
        /// A signed-in user (`actorId` is a `usr_…` ID).
        User,
        /// An API key (`actorId` is a `key_…` ID).
        ApiKey,
        /// The server, acting for no user or key (a webhook delivery, for instance).
        System,
    }
);
remote_enum!(
    /// How much an audit event matters.
    Severity = "trellis_entity::Severity" {
        /// Routine: most changes.
        Info,
        /// Destructive or security-relevant: deletions, revocations, rotations,
        /// suspensions, removed members.
        Warning,
        /// A sign of compromise, such as a refresh token used twice.
        Critical,
    }
);
remote_enum!(
    /// What an API key may do: READ as a viewer, WRITE as a builder, ADMIN as an admin,
    /// RUNNER as an operator that may also claim and execute runs (a worker), INVOKE
    /// calls processes.
    ApiKeyScope = "trellis_core::auth::Scope" {
        /// Acts as a viewer.
        Read,
        /// Acts as a builder.
        Write,
        /// Acts as an admin.
        Admin,
        /// Acts as an operator and may use the runner mutations (`claimRuns` and the
        /// calls on a leased run, `reportUsage`).
        Runner,
        /// May invoke processes (`invokeProcess`, `POST /v1/processes/{key}/invoke`),
        /// within the key's `processEnvironment` and `processKeys`; a key with only this
        /// scope can do nothing else.
        Invoke,
    }
);

/// `%text%` for ILIKE, with the wildcards in `text` escaped.
pub(crate) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A tenant: one customer's isolated workspace.
pub struct Tenant(pub tenant::Model);

impl From<tenant::Model> for Tenant {
    fn from(m: tenant::Model) -> Self {
        Self(m)
    }
}

/// Narrows a tenant's members; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct MembershipFilter {
    /// Only members with one of these roles.
    pub roles: Option<Vec<Role>>,
    /// Matches the member's email or name, case-insensitively.
    pub search: Option<String>,
}

/// Narrows a tenant's invitations; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct InvitationFilter {
    /// Only invitations in one of these states.
    pub statuses: Option<Vec<InvitationStatus>>,
    /// Matches the invited email, case-insensitively.
    pub search: Option<String>,
}

/// Narrows a tenant's API keys; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct ApiKeyFilter {
    /// True: keys neither revoked nor expired. False: the others.
    pub active: Option<bool>,
    /// Matches the key's name, case-insensitively.
    pub search: Option<String>,
}

/// Narrows the audit log; given conditions must all hold.
#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    /// An exact action (`tenant.update`) or a prefix ending with a dot (`invitation.`).
    pub action: Option<String>,
    /// Only events of one of these severities.
    pub severities: Option<Vec<Severity>>,
    /// Only events by this kind of actor.
    pub actor_type: Option<ActorType>,
    /// Only events recorded strictly after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Only events recorded strictly before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

impl Tenant {
    /// The tenant's lists are visible only while it is the active tenant: its rows are
    /// in the transaction's RLS scope then, and one list costs one statement.
    async fn active(
        &self,
        ctx: &Context<'_>,
        required: trellis_entity::Role,
    ) -> async_graphql::Result<()> {
        let scope = ctx.scope()?;
        run(ctx, async {
            let active = scope.require(required).await?;
            if active.tenant_id == self.0.id {
                Ok(())
            } else {
                Err(trellis_core::Error::Forbidden(
                    "switch to this tenant to list its contents",
                ))
            }
        })
        .await
    }

    /// Whether this is the request's active tenant: the fields that answer null for
    /// any other tenant ask this.
    async fn is_active(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let active = ctx.scope()?.active_tenant().await.ok().flatten();
        Ok(active.is_some_and(|t| t.tenant_id == self.0.id))
    }
}

/// A tenant: one customer's isolated workspace. Its lists (`runs`, `members`,
/// `invitations`, `apiKeys`, `auditEvents`) are readable only while it is the caller's
/// active tenant, FORBIDDEN otherwise.
#[Object]
impl Tenant {
    /// Its global ID (`ten_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Tenant, self.0.id)
    }
    /// Unique short name: 3 to 64 lowercase letters, digits or dashes.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// Display name, 1 to 200 characters.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Its plan and the limits it sets (agents, default log retention and run
    /// concurrency, …).
    async fn plan(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::plans::Plan>> {
        Ok(load(ctx, crate::loaders::PlanByKey(self.0.plan.clone()))
            .await?
            .map(super::plans::Plan))
    }
    /// How many live agents it has; null unless it is the active tenant.
    async fn agent_count(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
        if !self.is_active(ctx).await? {
            return Ok(None);
        }
        load(ctx, crate::loaders::AgentCountOfTenant(self.0.id)).await
    }
    /// How many runs (not simulations) it has started this calendar month (UTC), which
    /// its plan's `monthlyRuns` limits; null when the plan sets no such limit (nothing
    /// is counted then), and unless it is the active tenant.
    async fn runs_this_month(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
        if !self.is_active(ctx).await? {
            return Ok(None);
        }
        run(
            ctx,
            trellis_core::plans::runs_this_month(ctx.scope()?, self.0.id),
        )
        .await
    }
    /// Its containers' health per hour, from the hour holding `from` up to `to` (at
    /// most 31 days), of one agent when `agentId` is given; hours without samples are
    /// left out. Only while it is the active tenant (FORBIDDEN otherwise).
    async fn health(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The start: the first hour is the one holding it.")] from: DateTime<Utc>,
        #[graphql(desc = "The end, exclusive; after `from`, at most 31 days later.")] to: DateTime<
            Utc,
        >,
        #[graphql(desc = "Only this agent's containers (`agt_…`).")] agent_id: Option<ID>,
    ) -> async_graphql::Result<Vec<crate::agents::hosting::HealthHour>> {
        self.active(ctx, trellis_entity::Role::Viewer).await?;
        crate::agents::hosting::tenant_health(ctx, from, to, agent_id).await
    }
    /// Whether it is in service; a SUSPENDED tenant refuses its users and keys.
    async fn status(&self) -> TenantStatus {
        self.0.status.into()
    }
    /// A JSON object: `auditRetentionDays` (days audit events stay before they are
    /// archived; the plan's, else the server's, default when absent), `logRetentionDays`,
    /// `payloadRetentionDays`, `runRetentionDays`, `maxConcurrentRuns` (the executor's
    /// cap; the plan's default when absent), the log `redaction` rules (`patterns`,
    /// `jsonPaths`, `maskEmails`), `allowedSkillPermissions`, `modelDefaults` (`tier`,
    /// `thinking`, `temperature`, `maxOutputTokens`: new agents take the tier and
    /// thinking mode) and `resourceLimits` (`maxAgents`, lowering the plan's agent
    /// limit; `cpu` cores and `memoryMb` per container).
    async fn settings(&self) -> Json<&serde_json::Value> {
        Json(&self.0.settings)
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The tenant's process calls in `[from, to)` (`to`: now when omitted), from the
    /// hourly rollups; null unless it is the active tenant.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The start of the range (rounded down to the hour).")] from: DateTime<Utc>,
        #[graphql(desc = "The end of the range, exclusive; now when omitted.")] to: Option<
            DateTime<Utc>,
        >,
    ) -> async_graphql::Result<Option<crate::processes::types::UsageBucket>> {
        if !self.is_active(ctx).await? {
            return Ok(None);
        }
        let of = trellis_core::processes::usage::UsageOf::default();
        crate::processes::types::usage_total(ctx, of, from, to).await
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When an owner deleted it (soft); null while it is not deleted.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }

    /// The tenant's runs (any role may list them), newest first by default; the same
    /// list as the root `runs`.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many runs to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the runs after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            crate::runs::types::RunFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<crate::runs::types::WorkflowRun>> {
        self.active(ctx, trellis_entity::Role::Viewer).await?;
        crate::runs::runs_page(
            ctx,
            None,
            first,
            after,
            filter.unwrap_or_default(),
            order_by,
        )
        .await
    }

    /// The tenant's members (any role may list them).
    async fn members(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many members to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the members after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            MembershipFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Membership>> {
        self.active(ctx, trellis_entity::Role::Viewer).await?;
        list::page::<Membership>(ctx, None, first, after, filter, order_by).await
    }

    /// Invitations (admins).
    async fn invitations(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many invitations to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the invitations after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            InvitationFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Invitation>> {
        self.active(ctx, trellis_entity::Role::Admin).await?;
        list::page::<Invitation>(ctx, None, first, after, filter, order_by).await
    }

    /// API keys (admins). The secret is never shown again after creation.
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many keys to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the keys after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            ApiKeyFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<ApiKey>> {
        self.active(ctx, trellis_entity::Role::Admin).await?;
        list::page::<ApiKey>(ctx, None, first, after, filter, order_by).await
    }

    /// The audit log (admins), newest first by default.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many events to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the events after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            AuditEventFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<AuditEvent>> {
        self.active(ctx, trellis_entity::Role::Admin).await?;
        list::page::<AuditEvent>(ctx, None, first, after, filter, order_by).await
    }

    /// Verifies the tenant's audit hash chain (admins): the first broken sequence
    /// number, or null when every event verifies.
    async fn audit_chain_broken_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
        self.active(ctx, trellis_entity::Role::Admin).await?;
        let scope = ctx.scope()?;
        run(ctx, async {
            trellis_core::audit::verify_chain(scope.tx().await?, Some(self.0.id)).await
        })
        .await
    }
}

/// How a user signs in.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthProvider {
    /// Email and password.
    Password,
    /// An OpenID Connect identity provider (single sign-on).
    Oidc,
}

/// A person who can sign in. Visible to themselves and to members of the active tenant.
pub struct User(pub user::Profile);

impl From<user::Profile> for User {
    fn from(p: user::Profile) -> Self {
        Self(p)
    }
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        Self(m.into())
    }
}

/// A person who can sign in. Visible to themselves and to members of the active tenant.
#[Object]
impl User {
    /// Their global ID (`usr_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::User, self.0.id)
    }
    /// The address they sign in with, unique among users.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// How they sign in: PASSWORD today; single sign-on providers later.
    async fn auth_provider(&self) -> AuthProvider {
        match self.0.auth_provider.as_str() {
            "oidc" => AuthProvider::Oidc,
            _ => AuthProvider::Password,
        }
    }
    /// Whether they may use the platform-administration fields (`tenants`,
    /// `suspendTenant`, `reactivateTenant`, public apps).
    async fn is_platform_admin(&self) -> bool {
        self.0.platform_role == trellis_entity::PlatformRole::PlatformAdmin
    }
    /// When they signed up.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A user's place in a tenant.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Membership {
    #[graphql(skip)]
    pub model: membership::Model,
    /// What the member may do in the tenant.
    pub role: Role,
    /// When they joined.
    pub created_at: DateTime<Utc>,
    /// When their role last changed (or when they joined).
    pub updated_at: DateTime<Utc>,
}

impl From<membership::Model> for Membership {
    fn from(model: membership::Model) -> Self {
        Self {
            role: model.role.into(),
            created_at: model.created_at,
            updated_at: model.updated_at,
            model,
        }
    }
}

#[ComplexObject]
impl Membership {
    /// Its global ID (`mem_…`), which `updateMemberRole` and `removeMember` take.
    pub async fn id(&self) -> ID {
        gid(IdKind::Membership, self.model.id)
    }
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let user = ctx
            .loader()?
            .load_one(UserById(self.model.user_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        Ok(user.map(User))
    }
    /// The tenant; null when the caller may not see it.
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        let tenant = ctx
            .loader()?
            .load_one(TenantById(self.model.tenant_id))
            .await
            .map_err(|e| load_error(ctx, &e))?;
        Ok(tenant.map(Tenant))
    }
}

/// An invitation to join a tenant. Its token is shown only when it is created.
pub struct Invitation(pub invitation::Model);

impl From<invitation::Model> for Invitation {
    fn from(m: invitation::Model) -> Self {
        Self(m)
    }
}

pub(crate) async fn load_user(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    let user = ctx
        .loader()?
        .load_one(UserById(id))
        .await
        .map_err(|e| load_error(ctx, &e))?;
    Ok(user.map(User))
}

/// An invitation to join a tenant (admins see them). Its token is shown only when it
/// is created.
#[Object]
impl Invitation {
    /// Its global ID (`inv_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Invitation, self.0.id)
    }
    /// The invitee's address; only a user signed in with it can accept.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// The role the invitee gets on joining.
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    /// Where it stands; a pending invitation past `expiresAt` reads EXPIRED.
    async fn status(&self) -> InvitationStatus {
        if self.0.status == trellis_entity::InvitationStatus::Pending
            && self.0.expires_at <= Utc::now()
        {
            InvitationStatus::Expired
        } else {
            self.0.status.into()
        }
    }
    /// Until when it can be accepted.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    /// When the invitee joined; null unless ACCEPTED.
    async fn accepted_at(&self) -> Option<DateTime<Utc>> {
        self.0.accepted_at
    }
    /// The user who invited; null when an API key did, or the user is not visible.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.created_by).await
    }
    /// When it was sent.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A tenant's API key. Only its prefix is ever shown after creation.
pub struct ApiKey(pub api_key::Model);

impl From<api_key::Model> for ApiKey {
    fn from(m: api_key::Model) -> Self {
        Self(m)
    }
}

/// A tenant's API key (admins see them). Only its prefix is ever shown after creation.
#[Object]
impl ApiKey {
    /// Its global ID (`key_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::ApiKey, self.0.id)
    }
    /// A label, unique among the tenant's keys that are not revoked.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The public part of the key (`trl_<prefix>…`), to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// What it may do: the strongest scope sets its role, and RUNNER also allows the
    /// runner mutations.
    async fn scopes(&self) -> Vec<ApiKeyScope> {
        self.0
            .scopes
            .iter()
            .filter_map(|s| trellis_core::auth::Scope::parse(s))
            .map(Into::into)
            .collect()
    }
    /// INVOKE keys: the one environment whose processes it may call; null: any.
    async fn process_environment(&self) -> Option<crate::processes::types::Environment> {
        self.0.process_environment.map(Into::into)
    }
    /// INVOKE keys: the keys of the processes it may call; null: any.
    async fn process_keys(&self) -> Option<&[String]> {
        self.0.process_keys.as_deref()
    }
    /// When a request last used it, to the minute; null if never.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// From when it is refused; null when it does not expire.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When an admin revoked it; null while it is not revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// The user who created it; null when another key did, or the user is not visible.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.created_by).await
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The key's process calls in `[from, to)` (`to`: now when omitted), from the
    /// hourly rollups.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The start of the range (rounded down to the hour).")] from: DateTime<Utc>,
        #[graphql(desc = "The end of the range, exclusive; now when omitted.")] to: Option<
            DateTime<Utc>,
        >,
    ) -> async_graphql::Result<Option<crate::processes::types::UsageBucket>> {
        let of = trellis_core::processes::usage::UsageOf {
            process_id: None,
            api_key_id: Some(self.0.id),
        };
        crate::processes::types::usage_total(ctx, of, from, to).await
    }
}

/// One entry of the append-only, hash-chained audit log.
pub struct AuditEvent(pub audit_event::Model);

impl From<audit_event::Model> for AuditEvent {
    fn from(m: audit_event::Model) -> Self {
        Self(m)
    }
}

/// One entry of the append-only, hash-chained audit log (admins see it).
#[Object]
impl AuditEvent {
    /// Its global ID (`aud_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::AuditEvent, self.0.id)
    }
    /// Position in the tenant's chain.
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    /// What happened, as `object.verb` (`workflow.create`, `api_key.revoke`).
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// Who acted: a user, an API key or the server.
    async fn actor_type(&self) -> ActorType {
        self.0.actor_type.into()
    }
    /// The acting user or API key.
    async fn actor_id(&self) -> Option<ID> {
        let kind = match self.0.actor_type {
            trellis_entity::ActorType::User => IdKind::User,
            trellis_entity::ActorType::ApiKey => IdKind::ApiKey,
            trellis_entity::ActorType::System => return None,
        };
        self.0.actor_id.map(|id| gid(kind, id))
    }
    /// The acting user, when a user acted and is visible.
    async fn actor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        if self.0.actor_type != trellis_entity::ActorType::User {
            return Ok(None);
        }
        load_user(ctx, self.0.actor_id).await
    }
    /// The global ID of the object acted on; null when the action has none.
    async fn target_id(&self) -> Option<ID> {
        let kind = trellis_entity::IdKind::ALL
            .into_iter()
            .find(|k| Some(k.prefix()) == self.0.target_type.as_deref())?;
        self.0.target_id.map(|id| gid(kind, id))
    }
    /// How much it matters.
    async fn severity(&self) -> Severity {
        self.0.severity.into()
    }
    /// The client address of the request; null when unknown.
    async fn ip(&self) -> Option<&str> {
        self.0.ip.as_deref()
    }
    /// The request's User-Agent header; null when absent.
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }
    /// A JSON object with the action's particulars (`{}` when there are none).
    async fn details(&self) -> Json<&serde_json::Value> {
        Json(&self.0.details)
    }
    /// SHA-256 of this event chained to the previous one, hex.
    async fn hash(&self) -> String {
        self.0.hash.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// When it was recorded.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Converts an input ID into a UUID, NOT_FOUND when it names another kind.
pub(crate) fn input_id(
    ctx: &Context<'_>,
    id: &ID,
    kind: IdKind,
) -> async_graphql::Result<uuid::Uuid> {
    ids::parse(id, kind).map_err(|e| {
        if let Ok(scope) = ctx.scope() {
            scope.mark_failed();
        }
        load_error(ctx, &e)
    })
}

/// [`input_id`] of an optional ID.
pub(crate) fn optional_id(
    ctx: &Context<'_>,
    id: Option<&ID>,
    kind: IdKind,
) -> async_graphql::Result<Option<uuid::Uuid>> {
    id.map(|id| input_id(ctx, id, kind)).transpose()
}

/// [`input_id`] of an ID an update may set, clear (null) or leave as it is (absent).
pub(crate) fn maybe_id(
    ctx: &Context<'_>,
    id: async_graphql::MaybeUndefined<ID>,
    kind: IdKind,
) -> async_graphql::Result<Option<Option<uuid::Uuid>>> {
    Ok(match id {
        async_graphql::MaybeUndefined::Undefined => None,
        async_graphql::MaybeUndefined::Null => Some(None),
        async_graphql::MaybeUndefined::Value(id) => Some(Some(input_id(ctx, &id, kind)?)),
    })
}

impl List for Membership {
    type Entity = membership::Entity;
    type Node = Self;
    type Filter = MembershipFilter;
    const ACCESS: Access = Access::Tenant(trellis_entity::Role::Viewer);
    const TENANT: Option<membership::Column> = Some(membership::Column::TenantId);
    const CREATED_AT: membership::Column = membership::Column::CreatedAt;
    const ID: membership::Column = membership::Column::Id;

    fn narrow(
        mut select: Select<membership::Entity>,
        filter: MembershipFilter,
    ) -> trellis_core::Result<Select<membership::Entity>> {
        if let Some(roles) = filter.roles {
            select = select.filter(
                membership::Column::Role.is_in(roles.into_iter().map(trellis_entity::Role::from)),
            );
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "user_id IN (SELECT u.id FROM users u WHERE u.email ILIKE $1 OR u.name ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<membership::Model>> {
        vec![
            Relation::by(&["user"], |m| Some(UserById(m.user_id))),
            Relation::together(&["tenant"], |m| Some(TenantById(m.tenant_id))),
        ]
    }
}

impl List for Invitation {
    type Entity = invitation::Entity;
    type Node = Self;
    type Filter = InvitationFilter;
    const ACCESS: Access = Access::Tenant(trellis_entity::Role::Admin);
    const TENANT: Option<invitation::Column> = Some(invitation::Column::TenantId);
    const CREATED_AT: invitation::Column = invitation::Column::CreatedAt;
    const ID: invitation::Column = invitation::Column::Id;

    fn narrow(
        mut select: Select<invitation::Entity>,
        filter: InvitationFilter,
    ) -> trellis_core::Result<Select<invitation::Entity>> {
        if let Some(statuses) = filter.statuses {
            select = select.filter(
                invitation::Column::Status.is_in(
                    statuses
                        .into_iter()
                        .map(trellis_entity::InvitationStatus::from),
                ),
            );
        }
        if let Some(search) = filter.search {
            select = select
                .filter(invitation::Column::Email.like(contains_pattern(&search.to_lowercase())));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<invitation::Model>> {
        vec![Relation::by(&["createdBy"], |i| i.created_by.map(UserById))]
    }
}

impl List for ApiKey {
    type Entity = api_key::Entity;
    type Node = Self;
    type Filter = ApiKeyFilter;
    const ACCESS: Access = Access::Tenant(trellis_entity::Role::Admin);
    const TENANT: Option<api_key::Column> = Some(api_key::Column::TenantId);
    const CREATED_AT: api_key::Column = api_key::Column::CreatedAt;
    const ID: api_key::Column = api_key::Column::Id;

    fn narrow(
        mut select: Select<api_key::Entity>,
        filter: ApiKeyFilter,
    ) -> trellis_core::Result<Select<api_key::Entity>> {
        match filter.active {
            Some(true) => {
                select = select.filter(Expr::cust(
                    "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                ))
            }
            Some(false) => {
                select = select.filter(Expr::cust(
                    "(revoked_at IS NOT NULL OR expires_at <= now())",
                ))
            }
            None => {}
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "name ILIKE $1",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<api_key::Model>> {
        vec![Relation::by(&["createdBy"], |k| k.created_by.map(UserById))]
    }
}

impl List for AuditEvent {
    type Entity = audit_event::Entity;
    type Node = Self;
    type Filter = AuditEventFilter;
    const ACCESS: Access = Access::Tenant(trellis_entity::Role::Admin);
    const TENANT: Option<audit_event::Column> = Some(audit_event::Column::TenantId);
    const CREATED_AT: audit_event::Column = audit_event::Column::CreatedAt;
    const ID: audit_event::Column = audit_event::Column::Id;

    fn narrow(
        mut select: Select<audit_event::Entity>,
        filter: AuditEventFilter,
    ) -> trellis_core::Result<Select<audit_event::Entity>> {
        if let Some(action) = filter.action {
            select = if action.ends_with('.') {
                select.filter(audit_event::Column::Action.starts_with(&action))
            } else {
                select.filter(audit_event::Column::Action.eq(action))
            };
        }
        if let Some(severities) = filter.severities {
            select = select.filter(
                audit_event::Column::Severity
                    .is_in(severities.into_iter().map(trellis_entity::Severity::from)),
            );
        }
        if let Some(actor_type) = filter.actor_type {
            select = select.filter(
                audit_event::Column::ActorType.eq(trellis_entity::ActorType::from(actor_type)),
            );
        }
        if let Some(after) = filter.created_after {
            select = select.filter(audit_event::Column::CreatedAt.gt(after));
        }
        if let Some(before) = filter.created_before {
            select = select.filter(audit_event::Column::CreatedAt.lt(before));
        }
        Ok(select)
    }

    fn relations() -> Vec<Relation<audit_event::Model>> {
        vec![Relation::by(&["actor"], |e| {
            (e.actor_type == trellis_entity::ActorType::User)
                .then_some(e.actor_id)
                .flatten()
                .map(UserById)
        })]
    }
}

impl List for Tenant {
    type Entity = tenant::Entity;
    type Node = Self;
    type Filter = TenantFilter;
    const ACCESS: Access = Access::PlatformAdmin;
    const TENANT: Option<tenant::Column> = None;
    const CREATED_AT: tenant::Column = tenant::Column::CreatedAt;
    const ID: tenant::Column = tenant::Column::Id;

    fn narrow(
        mut select: Select<tenant::Entity>,
        filter: TenantFilter,
    ) -> trellis_core::Result<Select<tenant::Entity>> {
        if filter.deleted {
            select = select.filter(tenant::Column::DeletedAt.is_not_null());
        } else if !filter.include_deleted.unwrap_or(false) {
            select = select.filter(tenant::Column::DeletedAt.is_null());
        }
        if let Some(statuses) = filter.statuses {
            select = select.filter(
                tenant::Column::Status
                    .is_in(statuses.into_iter().map(trellis_entity::TenantStatus::from)),
            );
        }
        if let Some(search) = filter.search {
            select = select.filter(Expr::cust_with_values(
                "(slug ILIKE $1 OR name ILIKE $1)",
                [contains_pattern(&search)],
            ));
        }
        Ok(select)
    }
}
