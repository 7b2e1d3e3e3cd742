use sea_orm::entity::prelude::*;

/// An edge of a workflow version's graph, taken when its condition holds (or, for the
/// default edge, when no other edge of its step does).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_transitions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version_id: Uuid,
    pub key: String,
    pub from_step_id: Uuid,
    pub to_step_id: Uuid,
    pub condition: Option<Json>,
    pub is_default: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
