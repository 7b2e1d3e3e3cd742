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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
