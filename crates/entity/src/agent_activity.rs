use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;
use crate::ActivityType;

/// One entry of an agent's activity feed (append-only).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_activities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent_id: Uuid,
    #[sea_orm(column_name = "type")]
    pub activity_type: ActivityType,
    pub summary: String,
    pub details: Json,
    pub run_id: Option<Uuid>,
    pub recorded_by: Option<Uuid>,
    pub recorded_by_key: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Decodes a row holding this entity's columns of `set`, in [`Column`] order, by
    /// position; the fields outside `set` keep their defaults (see [`crate::columns`]).
    pub fn from_columns(row: &QueryResult, set: ColumnSet) -> Result<Self, DbErr> {
        Self::from_columns_at(row, set, 0)
    }

    /// [`Self::from_columns`] for a row whose columns of this entity start at `first`.
    pub fn from_columns_at(row: &QueryResult, set: ColumnSet, first: usize) -> Result<Self, DbErr> {
        let mut c = crate::columns::Columns::starting_at(row, set, first)?;
        Ok(Self {
            id: c.read()?,
            tenant_id: c.read()?,
            agent_id: c.read()?,
            activity_type: c.read_enum()?,
            summary: c.read()?,
            details: c.read()?,
            run_id: c.read()?,
            recorded_by: c.read()?,
            recorded_by_key: c.read()?,
            created_at: c.read()?,
        })
    }
}
