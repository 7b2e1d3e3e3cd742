use sea_orm::entity::prelude::*;

use crate::{ActorType, Severity};

/// One entry of the append-only, hash-chained audit log. `seq`, `prev_hash` and `hash`
/// are written by a database trigger.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub seq: i64,
    pub actor_type: ActorType,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<Uuid>,
    pub severity: Severity,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Json,
    pub created_at: DateTimeUtc,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
