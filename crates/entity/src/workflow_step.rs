use sea_orm::entity::prelude::*;

use crate::StepType;

/// A node of a workflow version's graph.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_steps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version_id: Uuid,
    pub key: String,
    pub name: String,
    #[sea_orm(column_name = "type")]
    pub step_type: StepType,
    pub position: Json,
    pub config: Json,
    pub action_id: Option<Uuid>,
    pub connection_id: Option<Uuid>,
    pub is_required: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// What the step is for, in words; `''` when not given.
    pub description: String,
    /// Its place in the version: 0 for the first step, dense and in order.
    pub sort_order: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// SQL: whether the action `action_id` (an SQL expression) is the built-in `http` app's
/// `request` action, of any version of the app. ACTION steps bound to it run in the
/// engine, as HTTP calls; other actions are left to runner API workers.
pub fn is_http_request_action_sql(action_id: &str) -> String {
    format!(
        // Not correlated: the planner looks the ids up once per statement.
        "{action_id} IN (SELECT a.id FROM public.actions a \
           JOIN public.app_versions v ON v.id = a.app_version_id \
           JOIN public.apps p ON p.id = v.app_id \
           WHERE a.tenant_id IS NULL AND p.tenant_id IS NULL \
             AND p.key = 'http' AND a.key = 'request')"
    )
}

/// SQL: whether the step `s` (a `workflow_steps` row) keeps its run from the engine,
/// given the types the engine runs (`engine_types`, an SQL `text[]` expression): a step
/// of another type, unless it is an ACTION step bound to the http app's `request`
/// action, or any step whose config says `"external": true`.
///
/// The executor's claim and `app.tenants_with_due_runs` both use this one test. The
/// function is SQL in a migration, so when this text changes, add a migration that
/// re-creates the function with it (and keep the old text in the migrations that used
/// it, for their `down`).
pub fn foreign_step_sql(engine_types: &str) -> String {
    format!(
        "(s.type <> ALL ({engine_types}) AND NOT (s.type = 'action' AND {})) \
         OR s.config @> '{{\"external\": true}}'",
        is_http_request_action_sql("s.action_id")
    )
}
