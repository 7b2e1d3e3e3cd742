use async_graphql::{Context, InputObject, MaybeUndefined, Object, ID};
use trellis_core::agents::agent::{self, AgentFields};
use trellis_core::agents::labels;
use trellis_core::agents::runs;
use trellis_core::agents::versions::{self, VersionFields};
use trellis_entity::IdKind;

use super::types::{
    Agent, AgentBudget, AgentLabel, AgentLabelMove, AgentRole, AgentStatus, AgentVersion,
    ModelTier, ThinkingMode,
};
use crate::context::{mutate, ContextExt};
use crate::identity::types::{input_id, maybe_id, optional_id};
use crate::identity::IdInput;
use crate::payload::{json_or_empty, Json};
use crate::runs::types::WorkflowRun;

payload!(
    /// The agent a mutation created or changed, or the input's problems.
    AgentPayload {
        /// The agent as it is now; null when `userErrors` is not empty.
        agent: Agent,
    }
);
payload!(
    /// The agent version a mutation created or changed, or the input's problems.
    AgentVersionPayload {
        /// The version as it is now; null when `userErrors` is not empty.
        version: AgentVersion,
        /// Its agent as it is now (its `activeVersion` after an activation).
        agent: Agent,
    }
);
payload!(
    /// The label a move changed, or the input's problems.
    AgentLabelPayload {
        /// The label as it is now; null when `userErrors` is not empty.
        label: AgentLabel,
        /// The history row of this move; null when the label already pointed there.
        #[graphql(name = "move")]
        label_move: AgentLabelMove,
    }
);

payload!(
    /// The run `runAgent` started, or the input's problems.
    RunAgentPayload {
        /// The new run (PENDING), or the one an earlier start with the same idempotency
        /// key made; null when `userErrors` is not empty.
        run: WorkflowRun,
        /// True when an earlier start with the same idempotency key and input made the
        /// run, and nothing new was started.
        deduplicated: bool,
    }
);

/// A run of an agent to start: of the version named, else of the version the label
/// names, else of the agent's active version.
#[derive(InputObject)]
pub struct RunAgentInput {
    /// The agent (`agt_…`); a deleted or PAUSED one is a CONFLICT userError.
    pub agent_id: ID,
    /// A version of the agent (`agv_…`): ACTIVE, or one a label points at; a draft is
    /// CONFLICT. Not with `label`.
    pub version_id: Option<ID>,
    /// A label of the agent (`production`): its version runs. Not with `versionId`.
    pub label: Option<String>,
    /// The run's input: any JSON value, at most 1 MiB as JSON text; `{}` when omitted.
    pub input: Option<Json<serde_json::Value>>,
    /// The same key with the same input returns the run it made (for 24 h); with
    /// another input (or for another agent) it is CONFLICT.
    pub idempotency_key: Option<String>,
}

/// A new agent of the active tenant. It starts IDLE, with no version.
#[derive(InputObject)]
pub struct CreateAgentInput {
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique among live agents.
    pub slug: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters.
    pub description: Option<String>,
    /// CUSTOM when omitted.
    pub role: Option<AgentRole>,
    /// IDLE when omitted.
    pub status: Option<AgentStatus>,
    /// SONNET when omitted.
    pub model_tier: Option<ModelTier>,
    /// OFF when omitted.
    pub thinking_mode: Option<ThinkingMode>,
    /// `{"tools": {"<key>": "ALLOW" | "ASK" | "DENY"}, "default": "ASK"}`; every tool
    /// asks when omitted.
    pub tool_policy: Option<Json<serde_json::Value>>,
    /// Monthly limits; none when omitted.
    pub budget: Option<AgentBudget>,
    /// A member of the tenant (`usr_…`) the agent works for.
    pub assisted_user_id: Option<ID>,
}

/// Changes to an agent; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAgentInput {
    /// The agent (`agt_…`).
    pub id: ID,
    /// A new slug.
    pub slug: Option<String>,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new description, at most 4000 characters.
    pub description: Option<String>,
    /// A new role.
    pub role: Option<AgentRole>,
    /// A new status.
    pub status: Option<AgentStatus>,
    /// A new model tier.
    pub model_tier: Option<ModelTier>,
    /// A new thinking mode.
    pub thinking_mode: Option<ThinkingMode>,
    /// A new tool policy (replaces the old one whole).
    pub tool_policy: Option<Json<serde_json::Value>>,
    /// New monthly limits (replace the old ones whole).
    pub budget: Option<AgentBudget>,
    /// A member of the tenant (`usr_…`); null clears it.
    pub assisted_user_id: MaybeUndefined<ID>,
}

/// A new draft version of an agent.
#[derive(InputObject)]
pub struct CreateAgentVersionInput {
    /// The agent (`agt_…`).
    pub agent_id: ID,
    /// Copy this version's spec and flow (then apply the fields given).
    pub from_version_id: Option<ID>,
    /// The spec for people, at most 200,000 bytes of markdown.
    pub spec_markdown: Option<String>,
    /// The spec for machines, valid against `agentSpecSchema`; `{}` when omitted.
    pub spec: Option<Json<serde_json::Value>>,
    /// The flow: a workflow version of this tenant (`wfv_…`), to be published before
    /// this version is activated.
    pub flow_version_id: Option<ID>,
}

/// Changes to a draft version; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAgentVersionInput {
    /// A draft version (`agv_…`); any other is CONFLICT.
    pub id: ID,
    /// The spec for people.
    pub spec_markdown: Option<String>,
    /// The spec for machines (replaces the old one whole).
    pub spec: Option<Json<serde_json::Value>>,
    /// The flow (`wfv_…`); null removes it.
    pub flow_version_id: MaybeUndefined<ID>,
}

/// A label to point at a version.
#[derive(InputObject)]
pub struct MoveAgentLabelInput {
    /// A version that is not a draft (`agv_…`); the label is its agent's.
    pub version_id: ID,
    /// The label's name (`production`, `staging`, …): 1 to 63 lowercase letters,
    /// digits, '_' or '-'. It is created on its first move.
    pub label: String,
}

fn agent_payload(
    (row, user_errors): (
        Option<trellis_entity::agent::Model>,
        Vec<crate::error::UserError>,
    ),
) -> AgentPayload {
    AgentPayload {
        agent: row.map(Agent),
        user_errors,
    }
}

type VersionMoved = (
    trellis_entity::agent::Model,
    trellis_entity::agent_version::Model,
);

fn version_payload(
    (row, user_errors): (Option<VersionMoved>, Vec<crate::error::UserError>),
) -> AgentVersionPayload {
    let (agent, version) = row.map_or((None, None), |(a, v)| {
        (Some(Agent(a)), Some(AgentVersion(v)))
    });
    AgentVersionPayload {
        version,
        agent,
        user_errors,
    }
}

#[derive(Default)]
pub struct AgentsMutation;

#[Object]
impl AgentsMutation {
    /// Creates an agent (builders).
    async fn create_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new agent.")] input: CreateAgentInput,
    ) -> async_graphql::Result<AgentPayload> {
        let fields = AgentFields {
            slug: Some(input.slug),
            name: Some(input.name),
            description: input.description,
            role: input.role.map(Into::into),
            status: input.status.map(Into::into),
            model_tier: input.model_tier.map(Into::into),
            thinking_mode: input.thinking_mode.map(Into::into),
            tool_policy: input.tool_policy.map(|j| j.0),
            budget: input.budget.map(Into::into),
            assisted_user_id: optional_id(ctx, input.assisted_user_id.as_ref(), IdKind::User)?
                .map(Some),
        };
        Ok(agent_payload(
            mutate(ctx, agent::create_agent(ctx.scope()?, fields)).await?,
        ))
    }

    /// Changes an agent (builders).
    async fn update_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent and its changes.")] input: UpdateAgentInput,
    ) -> async_graphql::Result<AgentPayload> {
        let id = input_id(ctx, &input.id, IdKind::Agent)?;
        let fields = AgentFields {
            slug: input.slug,
            name: input.name,
            description: input.description,
            role: input.role.map(Into::into),
            status: input.status.map(Into::into),
            model_tier: input.model_tier.map(Into::into),
            thinking_mode: input.thinking_mode.map(Into::into),
            tool_policy: input.tool_policy.map(|j| j.0),
            budget: input.budget.map(Into::into),
            assisted_user_id: maybe_id(ctx, input.assisted_user_id, IdKind::User)?,
        };
        Ok(agent_payload(
            mutate(ctx, agent::update_agent(ctx.scope()?, id, fields)).await?,
        ))
    }

    /// Deletes an agent (builders, soft): it leaves every list and its slug is free;
    /// `restoreAgent` brings it back.
    async fn delete_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent (`agt_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentPayload> {
        let id = input_id(ctx, &input.id, IdKind::Agent)?;
        Ok(agent_payload(
            mutate(ctx, agent::delete_agent(ctx.scope()?, id)).await?,
        ))
    }

    /// Restores a deleted agent (builders); CONFLICT when its slug was taken since.
    async fn restore_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted agent (`agt_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentPayload> {
        let id = input_id(ctx, &input.id, IdKind::Agent)?;
        Ok(agent_payload(
            mutate(ctx, agent::restore_agent(ctx.scope()?, id)).await?,
        ))
    }

    /// Starts a run of an agent (operators): a run of the picked version's flow, which
    /// the engine executes, under the agent's tool policy as it is now (docs/agents.md,
    /// "Runs").
    async fn run_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent, the version to run and the input.")] input: RunAgentInput,
    ) -> async_graphql::Result<RunAgentPayload> {
        let request = runs::RunAgent {
            agent_id: input_id(ctx, &input.agent_id, IdKind::Agent)?,
            version_id: optional_id(ctx, input.version_id.as_ref(), IdKind::AgentVersion)?,
            label: input.label,
            input: json_or_empty(input.input),
            idempotency_key: input.idempotency_key,
        };
        let settings = &ctx.services()?.runs;
        let (started, user_errors) =
            mutate(ctx, runs::run_agent(ctx.scope()?, settings, request)).await?;
        let (run, deduplicated) = match started {
            Some(s) => (Some(WorkflowRun(s.run)), Some(s.deduplicated)),
            None => (None, None),
        };
        Ok(RunAgentPayload {
            run,
            deduplicated,
            user_errors,
        })
    }

    /// Adds a draft version numbered after the newest (builders).
    async fn create_agent_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent and the draft's content.")] input: CreateAgentVersionInput,
    ) -> async_graphql::Result<AgentVersionPayload> {
        let agent_id = input_id(ctx, &input.agent_id, IdKind::Agent)?;
        let from = optional_id(ctx, input.from_version_id.as_ref(), IdKind::AgentVersion)?;
        let fields = VersionFields {
            spec_markdown: input.spec_markdown,
            spec: input.spec.map(|j| j.0),
            flow_version_id: optional_id(
                ctx,
                input.flow_version_id.as_ref(),
                IdKind::WorkflowVersion,
            )?
            .map(Some),
        };
        let scope = ctx.scope()?;
        let (row, user_errors) = mutate(ctx, async {
            let version = versions::create_version(scope, agent_id, from, fields).await?;
            let agent = trellis_core::agents::agent::find_agent_row(scope, agent_id).await?;
            Ok((agent, version))
        })
        .await?;
        Ok(version_payload((row, user_errors)))
    }

    /// Changes a draft version (builders); any other is CONFLICT.
    async fn update_agent_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft and its changes.")] input: UpdateAgentVersionInput,
    ) -> async_graphql::Result<AgentVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentVersion)?;
        let fields = VersionFields {
            spec_markdown: input.spec_markdown,
            spec: input.spec.map(|j| j.0),
            flow_version_id: maybe_id(ctx, input.flow_version_id, IdKind::WorkflowVersion)?,
        };
        let scope = ctx.scope()?;
        let (row, user_errors) = mutate(ctx, async {
            let version = versions::update_version(scope, id, fields).await?;
            let agent =
                trellis_core::agents::agent::find_agent_row(scope, version.agent_id).await?;
            Ok((agent, version))
        })
        .await?;
        Ok(version_payload((row, user_errors)))
    }

    /// Makes a version the one its agent runs (builders): it becomes ACTIVE and never
    /// changes again; the version active before is ARCHIVED. An archived version can be
    /// activated again (a rollback). Its flow must be a published workflow version.
    async fn activate_agent_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version (`agv_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentVersion)?;
        Ok(version_payload(
            mutate(ctx, versions::activate_version(ctx.scope()?, id)).await?,
        ))
    }

    /// Archives a version (builders): a draft is set aside, the active version stops
    /// being its agent's (which then runs none).
    async fn archive_agent_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version (`agv_…`).")] input: IdInput,
    ) -> async_graphql::Result<AgentVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::AgentVersion)?;
        Ok(version_payload(
            mutate(ctx, versions::archive_version(ctx.scope()?, id)).await?,
        ))
    }

    /// Points a label of the version's agent at the version (builders), creating the
    /// label on its first move; the move is kept in `agent.labelMoves`. A draft is
    /// CONFLICT.
    async fn move_agent_label(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version and the label.")] input: MoveAgentLabelInput,
    ) -> async_graphql::Result<AgentLabelPayload> {
        let id = input_id(ctx, &input.version_id, IdKind::AgentVersion)?;
        let (moved, user_errors) =
            mutate(ctx, labels::move_label(ctx.scope()?, id, &input.label)).await?;
        let (label, label_move) = moved.map_or((None, None), |m| {
            (Some(AgentLabel(m.label)), m.history.map(AgentLabelMove))
        });
        Ok(AgentLabelPayload {
            label,
            label_move,
            user_errors,
        })
    }
}
