use sea_orm::entity::prelude::*;

use crate::TriggerType;

/// What starts runs of a workflow or of an agent (exactly one of the two): by hand, on
/// a schedule, by a signed webhook or on a named event.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "triggers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
    pub workflow_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    #[sea_orm(column_name = "type")]
    pub trigger_type: TriggerType,
    pub config: Json,
    pub is_active: bool,
    pub webhook_path: Option<String>,
    pub signing_secret_id: Option<Uuid>,
    pub previous_signing_secret_id: Option<Uuid>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    /// SCHEDULE, when active: the next firing the scheduler has not yet made.
    pub next_fire_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
