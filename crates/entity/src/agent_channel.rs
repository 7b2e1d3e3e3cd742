use sea_orm::entity::prelude::*;

use crate::ChannelType;

/// A channel an agent speaks through (Slack, email, a webhook). Its credentials live in
/// the connection it references, never in `config`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Uuid,
    #[sea_orm(column_name = "type")]
    pub channel_type: ChannelType,
    pub config: Json,
    pub connection_id: Option<Uuid>,
    pub is_active: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
