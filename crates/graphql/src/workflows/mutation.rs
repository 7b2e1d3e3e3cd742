use async_graphql::{Context, InputObject, MaybeUndefined, Object, ID};
use secrecy::ExposeSecret;
use trellis_core::workflows::{clients, graph, triggers, workflow};
use trellis_entity::{IdKind, PrefixedId};
use uuid::Uuid;

use super::types::{
    Client, StepType, Trigger, TriggerType, Workflow, WorkflowStatus, WorkflowVersion,
};
use crate::context::{load_error, mutate, ContextExt};
use crate::identity::types::{input_id, maybe_id};
use crate::identity::IdInput;
use crate::payload::{json_or_empty, Json};

payload!(
    /// The client a mutation created or changed, or the input's problems.
    ClientPayload {
        /// The client as it is now; null when `userErrors` is not empty.
        client: Client,
    }
);
payload!(
    /// The workflow a mutation created or changed, or the input's problems.
    WorkflowPayload {
        /// The workflow as it is now; null when `userErrors` is not empty.
        workflow: Workflow,
    }
);
payload!(
    /// The workflow version a mutation created or changed, or the input's problems.
    WorkflowVersionPayload {
        /// The version as it is now; null when `userErrors` is not empty.
        version: WorkflowVersion,
    }
);
payload!(
    /// The trigger and, right after a webhook trigger is created or its secret
    /// rotated, the new signing secret: store it now; it is not shown again.
    TriggerPayload {
        /// The trigger as it is now (as it was, for `deleteTrigger`); null when
        /// `userErrors` is not empty.
        trigger: Trigger,
        /// The new signing secret (`whsec_…`) senders sign deliveries with; null except
        /// right after a WEBHOOK trigger is created or its secret rotated.
        signing_secret: String,
    }
);

/// A new client of the active tenant; optional fields left out or empty stay empty.
#[derive(InputObject)]
pub struct CreateClientInput {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// A valid email address.
    pub email: Option<String>,
    /// At most 64 characters.
    pub phone: Option<String>,
    /// At most 200 characters.
    pub company: Option<String>,
    /// At most 1000 characters.
    pub address: Option<String>,
    /// Free text, at most 10,000 characters.
    pub notes: Option<String>,
}

/// Changes to a client; omitted fields stay, an empty string clears an optional one.
#[derive(InputObject)]
pub struct UpdateClientInput {
    /// The client (`cli_…`).
    pub id: ID,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A valid email address.
    pub email: Option<String>,
    /// At most 64 characters.
    pub phone: Option<String>,
    /// At most 200 characters.
    pub company: Option<String>,
    /// At most 1000 characters.
    pub address: Option<String>,
    /// Free text, at most 10,000 characters.
    pub notes: Option<String>,
    /// False deactivates the client, true reactivates it.
    pub is_active: Option<bool>,
}

/// A new workflow of the active tenant.
#[derive(InputObject)]
pub struct CreateWorkflowInput {
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique in the tenant.
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// At most 4000 characters; empty when omitted.
    pub description: Option<String>,
    /// The client it is run for (`cli_…`); none when omitted.
    pub client_id: Option<ID>,
}

/// Changes to a workflow; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateWorkflowInput {
    /// The workflow (`wf_…`).
    pub id: ID,
    /// A new key: 2 to 63 lowercase letters, digits, '_' or '-'; unique in the tenant.
    pub key: Option<String>,
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// A new description, at most 4000 characters.
    pub description: Option<String>,
    /// A client's ID, or null to clear it.
    pub client_id: MaybeUndefined<ID>,
}

/// A workflow's next status.
#[derive(InputObject)]
pub struct SetWorkflowStatusInput {
    /// The workflow (`wf_…`).
    pub id: ID,
    /// DRAFT → ACTIVE ⇄ INACTIVE → ARCHIVED (and DRAFT → ARCHIVED); other moves are
    /// CONFLICT.
    pub status: WorkflowStatus,
}

/// A new draft version of a workflow.
#[derive(InputObject)]
pub struct CreateDraftVersionInput {
    /// The workflow (`wf_…`).
    pub workflow_id: ID,
    /// Copy this version's spec and graph; omitted, the draft starts empty.
    pub from_version_id: Option<ID>,
}

/// A draft version's new spec.
#[derive(InputObject)]
pub struct UpdateWorkflowVersionInput {
    /// A draft version.
    pub id: ID,
    /// Markdown, at most 200,000 bytes; replaces the spec.
    pub spec: String,
}

/// One step of a graph being saved.
#[derive(InputObject)]
pub struct WorkflowStepInput {
    /// Unique in the version: a letter, then letters, digits, '_' or '-'.
    pub key: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// What the step does.
    #[graphql(name = "type")]
    pub step_type: StepType,
    /// Where an editor draws it: a JSON object such as `{x, y}`; `{}` when omitted.
    pub position: Option<Json<serde_json::Value>>,
    /// Its settings: a JSON object checked for its type (an ACTION step's against its
    /// action's input schema); `{}` when omitted.
    pub config: Option<Json<serde_json::Value>>,
    /// ACTION steps: the catalog action to run.
    pub action_id: Option<ID>,
    /// The connection the step calls through: ACTION steps, one of the action's app;
    /// HTTP steps, optionally one of the `http` app; email notifications, one of the
    /// `email` app; Slack and webhook notifications, one of the `http` app.
    pub connection_id: Option<ID>,
    /// Whether a run fails when this step fails (false: the run goes on).
    #[graphql(default = true)]
    pub is_required: bool,
    /// What the step is for, in words: at most 4000 characters; `''` when omitted.
    pub description: Option<String>,
    /// Where the step goes among the version's steps (0 or more). Steps are stored by
    /// it (a step without one counts as its index in `steps`; ties keep their input
    /// order) and renumbered 0, 1, 2, …: the saved `order` is always dense.
    pub order: Option<i32>,
}

/// One transition of a graph being saved; endpoints are step keys.
#[derive(InputObject)]
pub struct WorkflowTransitionInput {
    /// Defaults to `from->to`.
    pub key: Option<String>,
    /// The key of the step it leaves.
    pub from: String,
    /// The key of the step it leads to; not `from`.
    pub to: String,
    /// `{field, operator, value}` (operators eq, ne, gt, gte, lt, lte, in, contains,
    /// exists, matches), or `{all: […]}`, `{any: […]}`, `{not: {…}}`.
    pub condition: Option<Json<serde_json::Value>>,
    /// Taken when no other transition of its step matches: at most one per step, and
    /// without a condition.
    #[graphql(default)]
    pub is_default: bool,
}

/// A draft version's whole new graph.
#[derive(InputObject)]
pub struct SaveWorkflowGraphInput {
    /// A draft version; its whole graph is replaced.
    pub version_id: ID,
    /// Every step, at most 2000, keys unique. Exactly one step has no incoming
    /// transition (the entry), and the transitions form no cycle. They are stored in
    /// their `order` (their order here when not given).
    pub steps: Vec<WorkflowStepInput>,
    /// Every transition, at most 8000.
    #[graphql(default)]
    pub transitions: Vec<WorkflowTransitionInput>,
}

/// A new trigger of a workflow or of an agent: give exactly one of `workflowId` and
/// `agentId`.
#[derive(InputObject)]
pub struct CreateTriggerInput {
    /// The workflow whose runs it starts (`wf_…`), of its active version.
    pub workflow_id: Option<ID>,
    /// The agent whose runs it starts (`agt_…`), of its active version, recorded with
    /// the trigger's type and payload.
    pub agent_id: Option<ID>,
    /// 2 to 63 lowercase letters, digits, '_' or '-'; unique in the tenant.
    pub key: String,
    /// What kind of trigger; it never changes.
    #[graphql(name = "type")]
    pub trigger_type: TriggerType,
    /// SCHEDULE: `{cron, timezone}`; EVENT: `{event}`; others: anything; `{}` when
    /// omitted.
    pub config: Option<Json<serde_json::Value>>,
    /// Whether it starts switched on.
    #[graphql(default = true)]
    pub is_active: bool,
}

/// Changes to a trigger; omitted fields stay as they are. Its type never changes.
#[derive(InputObject)]
pub struct UpdateTriggerInput {
    /// The trigger (`trg_…`).
    pub id: ID,
    /// A new key: 2 to 63 lowercase letters, digits, '_' or '-'; unique in the tenant.
    pub key: Option<String>,
    /// Replaces the config, checked for the trigger's type.
    pub config: Option<Json<serde_json::Value>>,
    /// Switches it on or off.
    pub is_active: Option<bool>,
}

/// A webhook trigger whose signing secret to replace.
#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    /// The trigger (`trg_…`); a userError unless it is a WEBHOOK trigger.
    pub id: ID,
    /// How long the current secret stays valid beside the new one: 0 to 168 hours,
    /// 24 by default.
    pub grace_hours: Option<i32>,
}

/// An optional ID of `kind` in a graph: a malformed one becomes an ID nothing has, so
/// the graph check reports it as "no such …" on the step's field.
fn graph_id(id: Option<&ID>, kind: IdKind) -> Option<Uuid> {
    id.map(|id| PrefixedId::parse_as(id, kind).unwrap_or(Uuid::nil()))
}

impl From<WorkflowStepInput> for graph::StepSpec {
    fn from(s: WorkflowStepInput) -> Self {
        Self {
            action_id: graph_id(s.action_id.as_ref(), IdKind::Action),
            connection_id: graph_id(s.connection_id.as_ref(), IdKind::Connection),
            key: s.key,
            name: s.name,
            step_type: s.step_type.into(),
            position: json_or_empty(s.position),
            config: json_or_empty(s.config),
            is_required: s.is_required,
            description: s.description.unwrap_or_default(),
            order: s.order,
        }
    }
}

impl From<WorkflowTransitionInput> for graph::TransitionSpec {
    fn from(t: WorkflowTransitionInput) -> Self {
        Self {
            key: t.key,
            from: t.from,
            to: t.to,
            condition: t.condition.map(|c| c.0),
            is_default: t.is_default,
        }
    }
}

fn trigger_payload(
    (result, user_errors): (
        Option<triggers::TriggerWithSecret>,
        Vec<crate::error::UserError>,
    ),
) -> TriggerPayload {
    let (trigger, signing_secret) = match result {
        Some(t) => (
            Some(Trigger(t.trigger)),
            t.signing_secret.map(|s| s.expose_secret().to_owned()),
        ),
        None => (None, None),
    };
    TriggerPayload {
        trigger,
        signing_secret,
        user_errors,
    }
}

#[derive(Default)]
pub struct WorkflowsMutation;

#[Object]
impl WorkflowsMutation {
    /// Adds a client (builders).
    async fn create_client(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new client.")] input: CreateClientInput,
    ) -> async_graphql::Result<ClientPayload> {
        let fields = clients::ClientFields {
            name: Some(input.name),
            email: input.email,
            phone: input.phone,
            company: input.company,
            address: input.address,
            notes: input.notes,
            is_active: None,
        };
        let (client, user_errors) =
            mutate(ctx, clients::create_client(ctx.scope()?, fields)).await?;
        Ok(ClientPayload {
            client: client.map(Client),
            user_errors,
        })
    }

    /// Changes a client (builders).
    async fn update_client(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The client and its changes.")] input: UpdateClientInput,
    ) -> async_graphql::Result<ClientPayload> {
        let id = input_id(ctx, &input.id, IdKind::Client)?;
        let fields = clients::ClientFields {
            name: input.name,
            email: input.email,
            phone: input.phone,
            company: input.company,
            address: input.address,
            notes: input.notes,
            is_active: input.is_active,
        };
        let (client, user_errors) =
            mutate(ctx, clients::update_client(ctx.scope()?, id, fields)).await?;
        Ok(ClientPayload {
            client: client.map(Client),
            user_errors,
        })
    }

    /// Deactivates a client (builders); its workflows keep it.
    async fn deactivate_client(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The client (`cli_…`).")] input: IdInput,
    ) -> async_graphql::Result<ClientPayload> {
        let id = input_id(ctx, &input.id, IdKind::Client)?;
        let fields = clients::ClientFields {
            is_active: Some(false),
            ..Default::default()
        };
        let (client, user_errors) =
            mutate(ctx, clients::update_client(ctx.scope()?, id, fields)).await?;
        Ok(ClientPayload {
            client: client.map(Client),
            user_errors,
        })
    }

    /// Creates a workflow (builders) with an empty draft version 1.
    async fn create_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new workflow.")] input: CreateWorkflowInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let client_id = input
            .client_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::Client))
            .transpose()?;
        let new = workflow::NewWorkflow {
            key: input.key,
            name: input.name,
            description: input.description,
            client_id,
        };
        let (created, user_errors) =
            mutate(ctx, workflow::create_workflow(ctx.scope()?, new)).await?;
        Ok(WorkflowPayload {
            workflow: created.map(|(w, _)| Workflow(w)),
            user_errors,
        })
    }

    /// Changes a workflow's key, name, description or client (builders).
    async fn update_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow and its changes.")] input: UpdateWorkflowInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let id = input_id(ctx, &input.id, IdKind::Workflow)?;
        let client_id = maybe_id(ctx, input.client_id, IdKind::Client)?;
        let changes = workflow::WorkflowChanges {
            key: input.key,
            name: input.name,
            description: input.description,
            client_id,
        };
        let (row, user_errors) =
            mutate(ctx, workflow::update_workflow(ctx.scope()?, id, changes)).await?;
        Ok(WorkflowPayload {
            workflow: row.map(Workflow),
            user_errors,
        })
    }

    /// Moves a workflow along its life cycle (builders).
    async fn set_workflow_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow and its next status.")] input: SetWorkflowStatusInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let id = input_id(ctx, &input.id, IdKind::Workflow)?;
        let (row, user_errors) = mutate(
            ctx,
            workflow::set_workflow_status(ctx.scope()?, id, input.status.into()),
        )
        .await?;
        Ok(WorkflowPayload {
            workflow: row.map(Workflow),
            user_errors,
        })
    }

    /// Deletes a workflow (builders, soft; `restoreWorkflow` brings it back).
    async fn delete_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow (`wf_…`).")] input: IdInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let id = input_id(ctx, &input.id, IdKind::Workflow)?;
        let (row, user_errors) = mutate(ctx, workflow::delete_workflow(ctx.scope()?, id)).await?;
        Ok(WorkflowPayload {
            workflow: row.map(Workflow),
            user_errors,
        })
    }

    /// Restores a deleted workflow (builders).
    async fn restore_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deleted workflow (`wf_…`).")] input: IdInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let id = input_id(ctx, &input.id, IdKind::Workflow)?;
        let (row, user_errors) = mutate(ctx, workflow::restore_workflow(ctx.scope()?, id)).await?;
        Ok(WorkflowPayload {
            workflow: row.map(Workflow),
            user_errors,
        })
    }

    /// Adds a draft version (builders), empty or copied from another version.
    async fn create_draft_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow, and optionally a version to copy.")]
        input: CreateDraftVersionInput,
    ) -> async_graphql::Result<WorkflowVersionPayload> {
        let workflow_id = input_id(ctx, &input.workflow_id, IdKind::Workflow)?;
        let from = input
            .from_version_id
            .as_ref()
            .map(|id| input_id(ctx, id, IdKind::WorkflowVersion))
            .transpose()?;
        let (version, user_errors) = mutate(
            ctx,
            workflow::create_draft_version(ctx.scope()?, workflow_id, from),
        )
        .await?;
        Ok(WorkflowVersionPayload {
            version: version.map(WorkflowVersion),
            user_errors,
        })
    }

    /// Changes a draft version's spec (builders).
    async fn update_workflow_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft version and its new spec.")] input: UpdateWorkflowVersionInput,
    ) -> async_graphql::Result<WorkflowVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::WorkflowVersion)?;
        let (version, user_errors) = mutate(
            ctx,
            workflow::update_version_spec(ctx.scope()?, id, input.spec),
        )
        .await?;
        Ok(WorkflowVersionPayload {
            version: version.map(WorkflowVersion),
            user_errors,
        })
    }

    /// Replaces a draft's whole graph at once (builders). Every problem is returned as
    /// a userError whose field names the step or transition key; then nothing changes.
    async fn save_workflow_graph(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft version and its new graph.")] input: SaveWorkflowGraphInput,
    ) -> async_graphql::Result<WorkflowVersionPayload> {
        let id = input_id(ctx, &input.version_id, IdKind::WorkflowVersion)?;
        let steps = input.steps.into_iter().map(Into::into).collect();
        let transitions = input.transitions.into_iter().map(Into::into).collect();
        let (version, user_errors) = mutate(
            ctx,
            workflow::save_graph(ctx.scope()?, id, steps, transitions),
        )
        .await?;
        Ok(WorkflowVersionPayload {
            version: version.map(WorkflowVersion),
            user_errors,
        })
    }

    /// Publishes a draft after checking its graph again (builders): immutable from now
    /// on. Of two concurrent publishes one wins; the other is CONFLICT.
    async fn publish_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft version (`wfv_…`).")] input: IdInput,
    ) -> async_graphql::Result<WorkflowVersionPayload> {
        let id = input_id(ctx, &input.id, IdKind::WorkflowVersion)?;
        let (version, user_errors) =
            mutate(ctx, workflow::publish_version(ctx.scope()?, id)).await?;
        Ok(WorkflowVersionPayload {
            version: version.map(WorkflowVersion),
            user_errors,
        })
    }

    /// Points the workflow at a published version (builders); a draft workflow becomes
    /// active.
    async fn activate_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The published version (`wfv_…`).")] input: IdInput,
    ) -> async_graphql::Result<WorkflowPayload> {
        let id = input_id(ctx, &input.id, IdKind::WorkflowVersion)?;
        let (row, user_errors) = mutate(ctx, workflow::activate_version(ctx.scope()?, id)).await?;
        Ok(WorkflowPayload {
            workflow: row.map(Workflow),
            user_errors,
        })
    }

    /// Adds a trigger (builders). A WEBHOOK trigger's payload carries its signing
    /// secret, once.
    async fn create_trigger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new trigger.")] input: CreateTriggerInput,
    ) -> async_graphql::Result<TriggerPayload> {
        let target = match (&input.workflow_id, &input.agent_id) {
            (Some(workflow), None) => {
                triggers::Target::Workflow(input_id(ctx, workflow, IdKind::Workflow)?)
            }
            (None, Some(agent)) => triggers::Target::Agent(input_id(ctx, agent, IdKind::Agent)?),
            _ => {
                return Err(load_error(
                    ctx,
                    &trellis_core::Error::bad_input(
                        "workflowId",
                        "give a workflowId or an agentId, not both",
                    ),
                ))
            }
        };
        let new = triggers::NewTrigger {
            target,
            key: input.key,
            trigger_type: input.trigger_type.into(),
            config: json_or_empty(input.config),
            is_active: input.is_active,
        };
        let vault = &ctx.services()?.vault;
        Ok(trigger_payload(
            mutate(ctx, triggers::create_trigger(vault, ctx.scope()?, new)).await?,
        ))
    }

    /// Changes a trigger's key, config or whether it is active (builders).
    async fn update_trigger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The trigger and its changes.")] input: UpdateTriggerInput,
    ) -> async_graphql::Result<TriggerPayload> {
        let id = input_id(ctx, &input.id, IdKind::Trigger)?;
        let changes = triggers::TriggerChanges {
            key: input.key,
            config: input.config.map(|c| c.0),
            is_active: input.is_active,
        };
        let (row, user_errors) =
            mutate(ctx, triggers::update_trigger(ctx.scope()?, id, changes)).await?;
        Ok(TriggerPayload {
            trigger: row.map(Trigger),
            signing_secret: None,
            user_errors,
        })
    }

    /// Deletes a trigger and its signing secrets (builders).
    async fn delete_trigger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The trigger (`trg_…`).")] input: IdInput,
    ) -> async_graphql::Result<TriggerPayload> {
        let id = input_id(ctx, &input.id, IdKind::Trigger)?;
        let (row, user_errors) = mutate(ctx, triggers::delete_trigger(ctx.scope()?, id)).await?;
        Ok(TriggerPayload {
            trigger: row.map(Trigger),
            signing_secret: None,
            user_errors,
        })
    }

    /// Issues a new signing secret for a WEBHOOK trigger (builders); the previous one
    /// stays valid for the grace window. The payload carries the new secret, once.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The WEBHOOK trigger, and how long the current secret stays valid.")]
        input: RotateWebhookSecretInput,
    ) -> async_graphql::Result<TriggerPayload> {
        let id = input_id(ctx, &input.id, IdKind::Trigger)?;
        let grace = input
            .grace_hours
            .map(|h| chrono::Duration::hours(i64::from(h)));
        let vault = &ctx.services()?.vault;
        Ok(trigger_payload(
            mutate(
                ctx,
                triggers::rotate_webhook_secret(vault, ctx.scope()?, id, grace),
            )
            .await?,
        ))
    }
}
