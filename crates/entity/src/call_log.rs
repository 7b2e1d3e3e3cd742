use sea_orm::entity::prelude::*;

use crate::{CallStatus, Environment};

/// One invocation of a process. `input` and `output` are kept until
/// `payload_expires_at`; the rest as long as the tenant keeps call logs.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "call_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub process_id: Uuid,
    pub version_id: Option<Uuid>,
    pub environment: Environment,
    pub api_key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub input_hash: Vec<u8>,
    pub status: CallStatus,
    pub cache_hit: bool,
    pub latency_ms: i32,
    pub provider_latency_ms: Option<i32>,
    pub attempts: i32,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cost_nanos: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub input: Option<Json>,
    pub output: Option<Json>,
    pub payload_expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
