use sea_orm::entity::prelude::*;

use crate::{AgentRole, AgentStatus, ModelTier, ThinkingMode};

/// An AI agent of a tenant: what it is for, its model settings, its tool policy and
/// budget, and the version it runs. Soft-deleted: its slug is free while `deleted_at`
/// is set.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub role: AgentRole,
    pub status: AgentStatus,
    pub model_tier: ModelTier,
    pub thinking_mode: ThinkingMode,
    /// `{"tools": {<key>: "ALLOW"|"ASK"|"DENY"}, "default": …}`.
    pub tool_policy: Json,
    /// `{"monthlyCostLimit": …, "monthlyTokenLimit": …}`, either absent.
    pub budget: Json,
    pub assisted_user_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub active_version_id: Option<Uuid>,
    pub last_active_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// The template it was made from, and that template's version; null otherwise.
    pub template_id: Option<Uuid>,
    pub template_version: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
