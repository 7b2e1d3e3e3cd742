//! Workflows and their versions. A workflow moves draft → active ⇄ inactive → archived;
//! its versions are drafts until published, and a published version (with its graph)
//! never changes, which the database enforces. Saving a draft's graph replaces it
//! whole, after [`graph::check_graph`] found nothing wrong.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{json, Value as Json};
use trellis_entity::{
    workflow, workflow_step, workflow_transition, workflow_version, ActionKind, IdKind, Role,
    Severity, VersionStatus, WorkflowStatus,
};
use uuid::Uuid;

use super::check_key;
use super::graph::{self, Bindings, BoundAction, CheckedTransition, StepSpec, TransitionSpec};
use crate::audit::{self, Event};
use crate::identity::required_text;
use crate::scope::{stmt, RequestScope};
use crate::soft_delete;
use crate::tx::RequestTx;
use crate::{Error, Result};

/// Rows per INSERT when a graph is written (well under PostgreSQL's parameter limit).
const INSERT_CHUNK: usize = 500;

/// A new workflow; it starts as a draft with an empty draft version 1.
pub struct NewWorkflow {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub client_id: Option<Uuid>,
}

/// Changes to a workflow; `None` leaves a field alone, `client_id: Some(None)` clears it.
#[derive(Default)]
pub struct WorkflowChanges {
    pub key: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub client_id: Option<Option<Uuid>>,
}

fn check_description(description: Option<String>) -> Result<String> {
    let description = description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > 4000 {
        return Err(Error::bad_input(
            "description",
            "description is at most 4000 characters",
        ));
    }
    Ok(description)
}

/// Whether a workflow may move from `from` to `to`.
pub fn can_move(from: WorkflowStatus, to: WorkflowStatus) -> bool {
    use WorkflowStatus::{Active, Archived, Draft, Inactive};
    matches!(
        (from, to),
        (Draft, Active)
            | (Draft, Archived)
            | (Active, Inactive)
            | (Inactive, Active)
            | (Inactive, Archived)
    )
}

/// Creates a workflow with an empty draft version 1 (builders).
pub async fn create_workflow(
    scope: &RequestScope,
    new: NewWorkflow,
) -> Result<(workflow::Model, workflow_version::Model)> {
    let ctx = scope.require(Role::Builder).await?;
    let tx = scope.tx().await?;
    let row = workflow::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        key: Set(check_key(&new.key)?),
        name: Set(required_text(&new.name, "name", 200)?),
        description: Set(check_description(new.description)?),
        status: Set(WorkflowStatus::Draft),
        client_id: Set(new.client_id),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let version = insert_version(scope, &row, 1, String::new()).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.create")
            .target(IdKind::Workflow, row.id)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok((row, version))
}

async fn insert_version(
    scope: &RequestScope,
    workflow: &workflow::Model,
    number: i32,
    spec: String,
) -> Result<workflow_version::Model> {
    Ok(workflow_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(workflow.tenant_id),
        workflow_id: Set(workflow.id),
        number: Set(number),
        spec: Set(spec),
        status: Set(VersionStatus::Draft),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?)
}

/// A workflow that is not deleted, locked for the rest of the request when `lock`.
async fn find_workflow(scope: &RequestScope, id: Uuid, lock: bool) -> Result<workflow::Model> {
    let mut select = workflow::Entity::find_by_id(id).filter(workflow::Column::DeletedAt.is_null());
    if lock {
        select = select.lock_exclusive();
    }
    select.one(scope.tx().await?).await?.ok_or(Error::NotFound)
}

/// Changes a workflow's key, name, description or client (builders).
pub async fn update_workflow(
    scope: &RequestScope,
    id: Uuid,
    changes: WorkflowChanges,
) -> Result<workflow::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_workflow(scope, id, true).await?;
    let mut row = workflow::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(key) = changes.key {
        row.key = Set(check_key(&key)?);
    }
    if let Some(name) = changes.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(description) = changes.description {
        row.description = Set(check_description(Some(description))?);
    }
    if let Some(client_id) = changes.client_id {
        row.client_id = Set(client_id);
    }
    if !row.is_changed() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.update").target(IdKind::Workflow, id),
    )
    .await?;
    Ok(row)
}

/// Moves a workflow along its life cycle (builders). An illegal move is CONFLICT, and
/// so is activating a workflow that has no active version.
pub async fn set_workflow_status(
    scope: &RequestScope,
    id: Uuid,
    status: WorkflowStatus,
) -> Result<workflow::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_workflow(scope, id, true).await?;
    if current.status == status {
        return Ok(current);
    }
    if !can_move(current.status, status) {
        return Err(Error::conflict(
            Some("status"),
            format!(
                "a workflow cannot move from {} to {}",
                status_name(current.status),
                status_name(status)
            ),
        ));
    }
    if status == WorkflowStatus::Active && current.active_version_id.is_none() {
        return Err(Error::conflict(
            Some("status"),
            "publish and activate a version before activating the workflow",
        ));
    }
    let row = workflow::ActiveModel {
        id: Set(id),
        status: Set(status),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.status")
            .target(IdKind::Workflow, id)
            .details(json!({ "from": status_name(current.status), "to": status_name(status) })),
    )
    .await?;
    Ok(row)
}

fn status_name(status: WorkflowStatus) -> &'static str {
    match status {
        WorkflowStatus::Draft => "draft",
        WorkflowStatus::Active => "active",
        WorkflowStatus::Inactive => "inactive",
        WorkflowStatus::Archived => "archived",
    }
}

/// Deletes a workflow (builders, soft): it leaves every list, its key is free again,
/// and [`restore_workflow`] brings it back.
pub async fn delete_workflow(scope: &RequestScope, id: Uuid) -> Result<workflow::Model> {
    let ctx = scope.require(Role::Builder).await?;
    find_workflow(scope, id, true).await?;
    let row = workflow::ActiveModel {
        id: Set(id),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.delete")
            .target(IdKind::Workflow, id)
            .severity(Severity::Warning)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok(row)
}

/// Restores a deleted workflow (builders); CONFLICT when another took its key meanwhile.
pub async fn restore_workflow(scope: &RequestScope, id: Uuid) -> Result<workflow::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let deleted = workflow::Column::DeletedAt;
    let current = soft_delete::find_deleted(scope, id, deleted).await?;
    let row = soft_delete::undelete(scope, current, deleted).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.restore")
            .target(IdKind::Workflow, id)
            .details(json!({ "key": row.key })),
    )
    .await?;
    Ok(row)
}

/// A version of a workflow that is not deleted, locked for the rest of the request.
async fn lock_version(
    scope: &RequestScope,
    id: Uuid,
) -> Result<(workflow::Model, workflow_version::Model)> {
    let tx = scope.tx().await?;
    let version = workflow_version::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let workflow = find_workflow(scope, version.workflow_id, false).await?;
    Ok((workflow, version))
}

fn refuse_unless_draft(version: &workflow_version::Model) -> Result<()> {
    if version.status == VersionStatus::Draft {
        Ok(())
    } else {
        Err(Error::conflict(
            Some("versionId"),
            format!(
                "version {} is published and cannot change; create a draft from it",
                version.number
            ),
        ))
    }
}

/// Adds a draft version numbered after the newest (builders), copying the spec and
/// graph of `from_version` when given, else empty.
pub async fn create_draft_version(
    scope: &RequestScope,
    workflow_id: Uuid,
    from_version: Option<Uuid>,
) -> Result<workflow_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    // Serialises version numbering per workflow.
    let workflow = find_workflow(scope, workflow_id, true).await?;
    let tx = scope.tx().await?;
    let source = match from_version {
        Some(id) => Some(
            workflow_version::Entity::find_by_id(id)
                .filter(workflow_version::Column::WorkflowId.eq(workflow_id))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    Error::bad_input("fromVersionId", "no such version of this workflow")
                })?,
        ),
        None => None,
    };
    let newest: Option<i32> = workflow_version::Entity::find()
        .select_only()
        .column_as(workflow_version::Column::Number.max(), "newest")
        .filter(workflow_version::Column::WorkflowId.eq(workflow_id))
        .into_tuple()
        .one(tx)
        .await?
        .flatten();
    let spec = source.as_ref().map(|s| s.spec.clone()).unwrap_or_default();
    let version = insert_version(scope, &workflow, newest.unwrap_or(0) + 1, spec).await?;
    if let Some(source) = &source {
        let (steps, transitions) = load_graph(tx, source.id).await?;
        let checked = resolve(&steps, &transitions);
        write_graph(tx, &version, &steps, &transitions, &checked).await?;
    }
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.version.create")
            .target(IdKind::WorkflowVersion, version.id)
            .details(json!({ "number": version.number, "from": source.map(|s| s.number) })),
    )
    .await?;
    Ok(version)
}

/// Changes a draft version's markdown spec (builders).
pub async fn update_version_spec(
    scope: &RequestScope,
    id: Uuid,
    spec: String,
) -> Result<workflow_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (_, version) = lock_version(scope, id).await?;
    refuse_unless_draft(&version)?;
    if spec.len() > 200_000 {
        return Err(Error::bad_input("spec", "spec is at most 200000 bytes"));
    }
    let row = workflow_version::ActiveModel {
        id: Set(id),
        spec: Set(spec),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.version.update")
            .target(IdKind::WorkflowVersion, id),
    )
    .await?;
    Ok(row)
}

#[derive(FromQueryResult)]
struct ActionRow {
    id: Uuid,
    kind: ActionKind,
    input_schema: Json,
    app_id: Uuid,
}

#[derive(FromQueryResult)]
struct ConnectionRow {
    id: Uuid,
    app_id: Uuid,
    app_key: String,
}

/// The actions and connections `steps` bind, as the tenant sees them.
async fn load_bindings(tx: &RequestTx, steps: &[StepSpec]) -> Result<Bindings> {
    let mut action_ids: Vec<Uuid> = steps.iter().filter_map(|s| s.action_id).collect();
    action_ids.sort_unstable();
    action_ids.dedup();
    let mut connection_ids: Vec<Uuid> = steps.iter().filter_map(|s| s.connection_id).collect();
    connection_ids.sort_unstable();
    connection_ids.dedup();
    let mut bindings = Bindings::default();
    if !action_ids.is_empty() {
        let rows = ActionRow::find_by_statement(stmt(
            "SELECT a.id, a.kind, a.input_schema, v.app_id FROM actions a \
             JOIN app_versions v ON v.id = a.app_version_id WHERE a.id = ANY($1)",
            [action_ids.into()],
        ))
        .all(tx)
        .await?;
        bindings.actions = rows
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    BoundAction {
                        app_id: r.app_id,
                        kind: r.kind,
                        input_schema: r.input_schema,
                    },
                )
            })
            .collect();
    }
    if !connection_ids.is_empty() {
        let rows = ConnectionRow::find_by_statement(stmt(
            "SELECT c.id, c.app_id, a.key AS app_key FROM connections c \
             JOIN apps a ON a.id = c.app_id WHERE c.id = ANY($1) AND c.deleted_at IS NULL",
            [connection_ids.into()],
        ))
        .all(tx)
        .await?;
        bindings.connection_apps = rows.iter().map(|r| (r.id, r.app_key.clone())).collect();
        bindings.connections = rows.into_iter().map(|r| (r.id, r.app_id)).collect();
    }
    Ok(bindings)
}

/// Replaces a draft's whole graph (builders). Every problem comes back at once as
/// userErrors naming the step or transition key, and then nothing is written.
pub async fn save_graph(
    scope: &RequestScope,
    version_id: Uuid,
    steps: Vec<StepSpec>,
    transitions: Vec<TransitionSpec>,
) -> Result<workflow_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (_, version) = lock_version(scope, version_id).await?;
    refuse_unless_draft(&version)?;
    let tx = scope.tx().await?;
    let bindings = load_bindings(tx, &steps).await?;
    let checked = graph::check_graph(&steps, &transitions, &bindings, false)?;
    write_graph(tx, &version, &steps, &transitions, &checked).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.version.save_graph")
            .target(IdKind::WorkflowVersion, version_id)
            .details(json!({ "steps": steps.len(), "transitions": transitions.len() })),
    )
    .await?;
    Ok(version)
}

/// Deletes a version's graph and inserts `steps` and `checked` transitions in bulk.
/// Steps are stored in [`graph::save_order`], numbered 0, 1, 2, … (`sort_order`), and
/// their time-ordered ids are drawn in that order too, so reading them by id or by
/// position gives the same sequence.
async fn write_graph(
    tx: &RequestTx,
    version: &workflow_version::Model,
    steps: &[StepSpec],
    transitions: &[TransitionSpec],
    checked: &[CheckedTransition],
) -> Result<()> {
    tx.execute(stmt(
        "DELETE FROM workflow_transitions WHERE version_id = $1",
        [version.id.into()],
    ))
    .await?;
    tx.execute(stmt(
        "DELETE FROM workflow_steps WHERE version_id = $1",
        [version.id.into()],
    ))
    .await?;
    let order = graph::save_order(steps);
    // Ids by input position (transitions name steps by it), drawn in stored order.
    let mut ids: Vec<Uuid> = vec![Uuid::nil(); steps.len()];
    for &i in &order {
        ids[i] = Uuid::now_v7();
    }
    // (stored position, input position); a version holds at most MAX_STEPS steps.
    let placed: Vec<(i32, usize)> = (0..).zip(order).collect();
    for chunk in placed.chunks(INSERT_CHUNK) {
        let rows = chunk
            .iter()
            .map(|&(place, i)| (&steps[i], ids[i], place))
            .map(|(s, id, place)| workflow_step::ActiveModel {
                id: Set(id),
                tenant_id: Set(version.tenant_id),
                version_id: Set(version.id),
                key: Set(s.key.clone()),
                name: Set(s.name.trim().to_owned()),
                step_type: Set(s.step_type),
                position: Set(s.position.clone()),
                config: Set(s.config.clone()),
                action_id: Set(s.action_id),
                connection_id: Set(s.connection_id),
                is_required: Set(s.is_required),
                description: Set(s.description.trim().to_owned()),
                sort_order: Set(place),
                ..Default::default()
            });
        workflow_step::Entity::insert_many(rows).exec(tx).await?;
    }
    for chunk in checked.chunks(INSERT_CHUNK) {
        let rows = chunk.iter().map(|t| {
            let spec = &transitions[t.spec];
            workflow_transition::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(version.tenant_id),
                version_id: Set(version.id),
                key: Set(t.key.clone()),
                from_step_id: Set(ids[t.from]),
                to_step_id: Set(ids[t.to]),
                condition: Set(spec.condition.clone()),
                is_default: Set(spec.is_default),
                ..Default::default()
            }
        });
        workflow_transition::Entity::insert_many(rows)
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// A stored graph as specs, steps in their stored order: what the editor would send to
/// save it again.
pub(crate) async fn load_graph(
    tx: &RequestTx,
    version_id: Uuid,
) -> Result<(Vec<StepSpec>, Vec<TransitionSpec>)> {
    let steps = workflow_step::Entity::find()
        .filter(workflow_step::Column::VersionId.eq(version_id))
        .order_by_asc(workflow_step::Column::SortOrder)
        .order_by_asc(workflow_step::Column::Id)
        .all(tx)
        .await?;
    let transitions = workflow_transition::Entity::find()
        .filter(workflow_transition::Column::VersionId.eq(version_id))
        .order_by_asc(workflow_transition::Column::Id)
        .all(tx)
        .await?;
    let keys: HashMap<Uuid, &str> = steps.iter().map(|s| (s.id, s.key.as_str())).collect();
    let transitions = transitions
        .into_iter()
        .map(|t| TransitionSpec {
            key: Some(t.key),
            from: keys
                .get(&t.from_step_id)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            to: keys
                .get(&t.to_step_id)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            condition: t.condition,
            is_default: t.is_default,
        })
        .collect();
    let steps = steps
        .into_iter()
        .map(|s| StepSpec {
            key: s.key,
            name: s.name,
            step_type: s.step_type,
            position: s.position,
            config: s.config,
            action_id: s.action_id,
            connection_id: s.connection_id,
            is_required: s.is_required,
            description: s.description,
            order: Some(s.sort_order),
        })
        .collect();
    Ok((steps, transitions))
}

/// Resolves the transitions of a stored (so already valid) graph to step positions.
fn resolve(steps: &[StepSpec], transitions: &[TransitionSpec]) -> Vec<CheckedTransition> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.as_str(), i))
        .collect();
    transitions
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            Some(CheckedTransition {
                spec: i,
                key: t.key(),
                from: *index.get(t.from.as_str())?,
                to: *index.get(t.to.as_str())?,
            })
        })
        .collect()
}

/// Publishes a draft (builders) after checking its graph again: from now on the
/// version and its graph never change. Of two concurrent publishes one wins; the other
/// waits for the version's lock, then finds it published: CONFLICT.
pub async fn publish_version(scope: &RequestScope, id: Uuid) -> Result<workflow_version::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (_, version) = lock_version(scope, id).await?;
    if version.status != VersionStatus::Draft {
        return Err(Error::conflict(
            Some("versionId"),
            format!("version {} is already published", version.number),
        ));
    }
    let tx = scope.tx().await?;
    let (steps, transitions) = load_graph(tx, id).await?;
    let bindings = load_bindings(tx, &steps).await?;
    graph::check_graph(&steps, &transitions, &bindings, true)?;
    let row = workflow_version::ActiveModel {
        id: Set(id),
        status: Set(VersionStatus::Published),
        published_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.version.publish")
            .target(IdKind::WorkflowVersion, id)
            .details(json!({ "number": row.number, "steps": steps.len() })),
    )
    .await?;
    Ok(row)
}

/// Makes a published version the one its workflow runs (builders). A draft workflow
/// becomes active with it.
pub async fn activate_version(scope: &RequestScope, id: Uuid) -> Result<workflow::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let (workflow, version) = lock_version(scope, id).await?;
    if version.status != VersionStatus::Published {
        return Err(Error::conflict(
            Some("versionId"),
            "only a published version can be activated",
        ));
    }
    let mut row = workflow::ActiveModel {
        id: Set(workflow.id),
        active_version_id: Set(Some(id)),
        ..Default::default()
    };
    if workflow.status == WorkflowStatus::Draft {
        row.status = Set(WorkflowStatus::Active);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "workflow.version.activate")
            .target(IdKind::Workflow, workflow.id)
            .details(json!({ "version": version.number })),
    )
    .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn life_cycle_moves() {
        use WorkflowStatus::{Active, Archived, Draft, Inactive};
        assert!(can_move(Draft, Active));
        assert!(can_move(Active, Inactive));
        assert!(can_move(Inactive, Active));
        assert!(can_move(Inactive, Archived));
        assert!(!can_move(Active, Draft));
        assert!(!can_move(Archived, Active));
        assert!(!can_move(Active, Archived));
        assert!(!can_move(Inactive, Draft));
    }
}
