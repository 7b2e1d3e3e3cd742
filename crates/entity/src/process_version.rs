use sea_orm::entity::prelude::*;

use crate::{Environment, ProviderKind, ResponseFormat};

/// One numbered version of a process: its prompt templates and model settings. Drafts
/// change; a published version never does, but for `environment` moving to PRODUCTION
/// when it is first promoted there (the database enforces both).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "process_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub process_id: Uuid,
    pub number: i32,
    pub environment: Environment,
    pub system_prompt: String,
    pub user_prompt: String,
    pub provider: ProviderKind,
    pub connection_id: Option<Uuid>,
    pub model: String,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i32>,
    pub response_format: ResponseFormat,
    pub timeout_ms: i32,
    pub max_attempts: i32,
    pub retry_backoff_ms: i32,
    pub cache_ttl_seconds: i32,
    pub input_price_per_mtok: f64,
    pub output_price_per_mtok: f64,
    pub notes: String,
    pub published_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
