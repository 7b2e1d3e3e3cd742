use sea_orm::entity::prelude::*;

use crate::Environment;

/// One move of a version into an environment (append-only history; a rollback is a
/// promotion of an older version).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "process_promotions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub process_id: Uuid,
    pub environment: Environment,
    pub from_version_id: Option<Uuid>,
    pub to_version_id: Uuid,
    pub promoted_by: Option<Uuid>,
    pub promoted_by_key: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
