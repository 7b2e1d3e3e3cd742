use sea_orm::entity::prelude::*;

use crate::AgentVersionStatus;

/// One numbered version of an agent: a markdown spec, a spec JSON and the workflow
/// version that is its flow. Only drafts change.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Uuid,
    pub number: i32,
    pub spec_markdown: String,
    pub spec: Json,
    pub flow_version_id: Option<Uuid>,
    pub status: AgentVersionStatus,
    pub activated_at: Option<DateTimeUtc>,
    pub archived_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
