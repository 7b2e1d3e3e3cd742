use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;

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

impl Model {
    /// Decodes a whole row of this entity whose columns start at `first`, in
    /// [`Column`] order, by position (see [`crate::columns`]).
    pub fn from_columns_at(row: &QueryResult, first: usize) -> Result<Self, DbErr> {
        let mut c = crate::columns::Columns::starting_at(row, ColumnSet::ALL, first)?;
        Ok(Self {
            id: c.read()?,
            tenant_id: c.read()?,
            agent_id: c.read()?,
            number: c.read()?,
            spec_markdown: c.read()?,
            spec: c.read()?,
            flow_version_id: c.read()?,
            status: c.read_enum()?,
            activated_at: c.read()?,
            archived_at: c.read()?,
            created_by: c.read()?,
            created_at: c.read()?,
            updated_at: c.read()?,
        })
    }
}
