use sea_orm::entity::prelude::*;

/// Limits on a tenant's process calls: of the whole tenant (no key, no process), of one
/// API key, of one process, or of one key on one process. Requests and tokens per
/// window are token buckets; the monthly quotas count calendar months (UTC). The row
/// also holds the buckets' state and the month's counts.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rate_limits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub process_id: Option<Uuid>,
    pub requests_per_window: Option<i32>,
    pub tokens_per_window: Option<i64>,
    pub window_seconds: i32,
    pub monthly_calls: Option<i64>,
    pub monthly_tokens: Option<i64>,
    pub monthly_cost_nanos: Option<i64>,
    pub request_allowance: f64,
    pub token_allowance: f64,
    pub refilled_at: DateTimeUtc,
    pub month_start: DateTimeUtc,
    pub month_calls: i64,
    pub month_tokens: i64,
    pub month_cost_nanos: i64,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
