use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;

/// A skill installed on an agent, pinned to the skill's version of the time.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "skill_installations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Uuid,
    pub skill_id: Uuid,
    pub skill_version: String,
    pub config: Json,
    pub installed_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
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
            skill_id: c.read()?,
            skill_version: c.read()?,
            config: c.read()?,
            installed_by: c.read()?,
            created_at: c.read()?,
        })
    }
}
