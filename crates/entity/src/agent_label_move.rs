use sea_orm::entity::prelude::*;

/// One move of an agent's label from a version to another (append-only history).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_label_moves")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Uuid,
    pub label_id: Uuid,
    pub from_version_id: Option<Uuid>,
    pub to_version_id: Uuid,
    pub moved_by: Option<Uuid>,
    pub moved_by_key: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
