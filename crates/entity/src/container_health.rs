use sea_orm::entity::prelude::*;

use crate::HealthStatus;

/// One health sample of a tenant's container (and agent, when known), as its runner
/// reported it. Kept 24 hours; hourly aggregates keep the history.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "container_health")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub status: HealthStatus,
    pub cpu: f64,
    pub memory_bytes: i64,
    pub recorded_at: DateTimeUtc,
    pub reported_by_key: Option<Uuid>,
    pub aggregated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
