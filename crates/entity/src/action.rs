use sea_orm::entity::prelude::*;

use crate::ActionKind;

/// A trigger or action an app version offers, with its input and output JSON Schemas.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "actions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub app_version_id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub kind: ActionKind,
    pub input_schema: Json,
    pub output_schema: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
