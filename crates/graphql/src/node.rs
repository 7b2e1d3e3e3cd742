//! The `Node` interface and `node(id:)` / `nodes(ids:)`: any object by its global ID.

use async_graphql::{Context, Interface, Object, ID};
use trellis_entity::{IdKind, PrefixedId};

use crate::agents::hosting::{AgentActivity, AgentChannel, ContainerHealth};
use crate::agents::market::{AgentTemplate, Skill, SkillInstallation};
use crate::agents::types::{Agent, AgentLabel, AgentLabelMove, AgentVersion};
use crate::alert_rules::AlertRule;
use crate::alerts::Alert;
use crate::context::{load_error, ContextExt};
use crate::identity::types::{ApiKey, AuditEvent, Invitation, Membership, Tenant, User};
use crate::integrations::types::{Action, App, AppVersion, Connection, Secret};
use crate::loaders::{
    ActionById, AgentActivityById, AgentById, AgentChannelById, AgentLabelById, AgentLabelMoveById,
    AgentTemplateById, AgentVersionById, AlertById, AlertRuleById, ApiKeyById, AppById,
    AppVersionById, AuditEventById, CallLogById, ClientById, ConnectionById, ContainerHealthById,
    InvitationById, MembershipById, ProcessById, ProcessVersionById, RunByIdIn, SecretById,
    SkillById, SkillInstallationById, StepRunByIdIn, TenantById, TriggerById, UserById,
    WorkflowById, WorkflowStepById, WorkflowTransitionById, WorkflowVersionById,
};
use crate::notifications::Notification;
use crate::processes::types::{CallLog, Process, ProcessVersion};
use crate::runs::logs::{log_line, LogLine};
use crate::runs::types::{run_columns, step_run_columns, StepRun, WorkflowRun};
use crate::workflows::types::{
    Client, Trigger, Workflow, WorkflowStep, WorkflowTransition, WorkflowVersion,
};

/// An object with a global, type-tagged ID (`ten_…`, `usr_…`).
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "The global ID: a type prefix and a UUID (`wf_…`), which `node` and `nodes` take."
))]
#[expect(
    clippy::large_enum_variant,
    reason = "a node lives for one response; boxing the run would cost an allocation per node"
)]
pub enum Node {
    Tenant(Tenant),
    User(User),
    Membership(Membership),
    Invitation(Invitation),
    ApiKey(ApiKey),
    AuditEvent(AuditEvent),
    App(App),
    AppVersion(AppVersion),
    Action(Action),
    Secret(Secret),
    Connection(Connection),
    Client(Client),
    Workflow(Workflow),
    WorkflowVersion(WorkflowVersion),
    WorkflowStep(WorkflowStep),
    WorkflowTransition(WorkflowTransition),
    Trigger(Trigger),
    WorkflowRun(WorkflowRun),
    StepRun(StepRun),
    LogLine(LogLine),
    Notification(Notification),
    Process(Process),
    ProcessVersion(ProcessVersion),
    CallLog(CallLog),
    Agent(Agent),
    AgentVersion(AgentVersion),
    AgentLabel(AgentLabel),
    AgentLabelMove(AgentLabelMove),
    AgentTemplate(AgentTemplate),
    Skill(Skill),
    SkillInstallation(SkillInstallation),
    Alert(Alert),
    AgentChannel(AgentChannel),
    AgentActivity(AgentActivity),
    ContainerHealth(ContainerHealth),
    AlertRule(AlertRule),
}

/// The most IDs `nodes(ids:)` takes at once.
pub const MAX_NODES: usize = 100;

/// Loads the object an ID names, if the caller may see it.
async fn fetch(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<Option<Node>> {
    let Some(id) = PrefixedId::parse(id) else {
        return Ok(None);
    };
    // Nothing here for a key that may only invoke processes.
    if ctx.scope()?.is_invoke_only() {
        return Err(load_error(
            ctx,
            &trellis_core::Error::Forbidden("this API key may only invoke processes"),
        ));
    }
    // Keys, invitations and the audit log are for admins, here as in their lists.
    if matches!(
        id.kind,
        IdKind::ApiKey | IdKind::Invitation | IdKind::AuditEvent | IdKind::Secret
    ) {
        let scope = ctx.scope()?;
        crate::context::run(ctx, scope.require(trellis_entity::Role::Admin)).await?;
    }
    let loader = ctx.loader()?;
    let uuid = id.uuid;
    let node = match id.kind {
        IdKind::Tenant => loader
            .load_one(TenantById(uuid))
            .await
            .map(|m| m.map(|m| Node::Tenant(m.into()))),
        IdKind::User => loader
            .load_one(UserById(uuid))
            .await
            .map(|m| m.map(|m| Node::User(m.into()))),
        IdKind::Membership => loader
            .load_one(MembershipById(uuid))
            .await
            .map(|m| m.map(|m| Node::Membership(m.into()))),
        IdKind::Invitation => loader
            .load_one(InvitationById(uuid))
            .await
            .map(|m| m.map(|m| Node::Invitation(m.into()))),
        IdKind::ApiKey => loader
            .load_one(ApiKeyById(uuid))
            .await
            .map(|m| m.map(|m| Node::ApiKey(m.into()))),
        IdKind::AuditEvent => loader
            .load_one(AuditEventById(uuid))
            .await
            .map(|m| m.map(|m| Node::AuditEvent(m.into()))),
        IdKind::App => loader
            .load_one(AppById(uuid))
            .await
            .map(|m| m.map(|m| Node::App(m.into()))),
        IdKind::AppVersion => loader
            .load_one(AppVersionById(uuid))
            .await
            .map(|m| m.map(|m| Node::AppVersion(m.into()))),
        IdKind::Action => loader
            .load_one(ActionById(uuid))
            .await
            .map(|m| m.map(|m| Node::Action(m.into()))),
        IdKind::Secret => loader
            .load_one(SecretById(uuid))
            .await
            .map(|m| m.map(|m| Node::Secret(m.into()))),
        IdKind::Connection => loader
            .load_one(ConnectionById(uuid))
            .await
            .map(|m| m.map(|m| Node::Connection(m.into()))),
        IdKind::Client => loader
            .load_one(ClientById(uuid))
            .await
            .map(|m| m.map(|m| Node::Client(m.into()))),
        IdKind::Workflow => loader
            .load_one(WorkflowById(uuid))
            .await
            .map(|m| m.map(|m| Node::Workflow(m.into()))),
        IdKind::WorkflowVersion => loader
            .load_one(WorkflowVersionById(uuid))
            .await
            .map(|m| m.map(|m| Node::WorkflowVersion(m.into()))),
        IdKind::WorkflowStep => loader
            .load_one(WorkflowStepById(uuid))
            .await
            .map(|m| m.map(|m| Node::WorkflowStep(m.into()))),
        IdKind::WorkflowTransition => loader
            .load_one(WorkflowTransitionById(uuid))
            .await
            .map(|m| m.map(|m| Node::WorkflowTransition(m.into()))),
        IdKind::Trigger => loader
            .load_one(TriggerById(uuid))
            .await
            .map(|m| m.map(|m| Node::Trigger(m.into()))),
        // The bulk of a run's row is payloads a page seldom selects: read what it does.
        IdKind::WorkflowRun => loader
            .load_one(RunByIdIn {
                id: uuid,
                columns: run_columns(&ctx.look_ahead()),
            })
            .await
            .map(|m| m.map(|m| Node::WorkflowRun(m.into()))),
        IdKind::StepRun => loader
            .load_one(StepRunByIdIn {
                id: uuid,
                columns: step_run_columns(&ctx.look_ahead()),
            })
            .await
            .map(|m| m.map(|m| Node::StepRun(m.into()))),
        IdKind::Process => loader
            .load_one(ProcessById(uuid))
            .await
            .map(|m| m.map(|m| Node::Process(m.into()))),
        IdKind::ProcessVersion => loader
            .load_one(ProcessVersionById(uuid))
            .await
            .map(|m| m.map(|m| Node::ProcessVersion(m.into()))),
        IdKind::CallLog => loader
            .load_one(CallLogById(uuid))
            .await
            .map(|m| m.map(|m| Node::CallLog(m.into()))),
        IdKind::Agent => loader
            .load_one(AgentById(uuid))
            .await
            .map(|m| m.map(|m| Node::Agent(m.into()))),
        IdKind::AgentVersion => loader
            .load_one(AgentVersionById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentVersion(m.into()))),
        IdKind::AgentLabel => loader
            .load_one(AgentLabelById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentLabel(m.into()))),
        IdKind::AgentLabelMove => loader
            .load_one(AgentLabelMoveById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentLabelMove(m.into()))),
        IdKind::AgentTemplate => loader
            .load_one(AgentTemplateById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentTemplate(m.into()))),
        IdKind::Skill => loader
            .load_one(SkillById(uuid))
            .await
            .map(|m| m.map(|m| Node::Skill(m.into()))),
        IdKind::SkillInstallation => loader
            .load_one(SkillInstallationById(uuid))
            .await
            .map(|m| m.map(|m| Node::SkillInstallation(SkillInstallation(m)))),
        // RLS shows a tenant's alerts to its members, platform alerts to nobody here.
        IdKind::Alert => loader
            .load_one(AlertById(uuid))
            .await
            .map(|m| m.map(|m| Node::Alert(m.into()))),
        IdKind::AgentChannel => loader
            .load_one(AgentChannelById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentChannel(m.into()))),
        IdKind::AgentActivity => loader
            .load_one(AgentActivityById(uuid))
            .await
            .map(|m| m.map(|m| Node::AgentActivity(m.into()))),
        IdKind::ContainerHealth => loader
            .load_one(ContainerHealthById(uuid))
            .await
            .map(|m| m.map(|m| Node::ContainerHealth(m.into()))),
        IdKind::AlertRule => loader
            .load_one(AlertRuleById(uuid))
            .await
            .map(|m| m.map(|m| Node::AlertRule(m.into()))),
        // Promotions are read through their process, limits through `rateLimits`.
        // Sessions are listed by `viewer.sessions`, to their user only. Usage reports
        // are read as their agent's metrics.
        IdKind::ProcessPromotion | IdKind::RateLimit | IdKind::Session | IdKind::AgentUsage => {
            return Ok(None)
        }
        // Log lines live in the log store (MongoDB or PostgreSQL), not behind a loader.
        IdKind::LogLine => return Ok(log_line(ctx, uuid).await?.map(Node::LogLine)),
        // A notification is its recipient's alone.
        IdKind::Notification => {
            let mine = crate::context::run(
                ctx,
                trellis_core::notifications::own_notification(ctx.scope()?, uuid),
            )
            .await?;
            return Ok(mine.map(|n| Node::Notification(Notification(n))));
        }
    };
    node.map_err(|e| load_error(ctx, &e))
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this ID. NOT_FOUND when it does not exist or is not visible to
    /// the caller (the two are indistinguishable on purpose); API keys, invitations,
    /// audit events and secrets need an admin (FORBIDDEN otherwise).
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A global ID of any type (`wf_…`, `run_…`).")] id: ID,
    ) -> async_graphql::Result<Node> {
        fetch(ctx, &id)
            .await?
            .ok_or_else(|| load_error(ctx, &trellis_core::Error::NotFound))
    }

    /// The objects with these IDs, in order; null where one is not found or not visible.
    /// IDs of API keys, invitations, audit events and secrets need an admin (FORBIDDEN
    /// otherwise).
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100 global IDs, of any types; more is BAD_USER_INPUT.")] ids: Vec<
            ID,
        >,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(load_error(
                ctx,
                &trellis_core::Error::bad_input("ids", format!("at most {MAX_NODES} ids")),
            ));
        }
        futures::future::try_join_all(ids.iter().map(|id| fetch(ctx, id))).await
    }
}
