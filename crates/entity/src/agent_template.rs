use sea_orm::entity::prelude::*;

use crate::{AgentRole, ModelTier, TemplateCategory, ThinkingMode};

/// An agent template: a snapshot of an agent version that instantiating copies into a
/// tenant as a new agent. Public (no tenant) or a tenant's private one.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category: TemplateCategory,
    pub author: String,
    pub version: i32,
    pub source_agent_id: Option<Uuid>,
    pub source_version_id: Option<Uuid>,
    pub source_version_number: Option<i32>,
    pub role: AgentRole,
    pub model_tier: ModelTier,
    pub thinking_mode: ThinkingMode,
    pub tool_policy: Json,
    pub spec_markdown: String,
    pub spec: Json,
    /// The source's flow graph by step key (`{"steps", "transitions"}`); null when none.
    pub flow: Option<Json>,
    /// `[{"skillKey", "public", "version", "config"}]`: the source's installations.
    pub skills: Json,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
