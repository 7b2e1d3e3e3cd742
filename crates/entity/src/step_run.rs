use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;
use crate::StepRunStatus;

/// One step of a run: created pending with the run, moved by the runner.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "step_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub run_id: Uuid,
    pub step_id: Option<Uuid>,
    pub step_key: String,
    pub status: StepRunStatus,
    pub attempt: i32,
    pub input: Option<Json>,
    pub output: Option<Json>,
    pub error: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// When a failed attempt is tried again; null unless a retry is due.
    pub next_attempt_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Decodes a row holding this entity's columns of `set`, in [`Column`] order, by
    /// position; the fields outside `set` keep their defaults (see [`crate::columns`]).
    pub fn from_columns(row: &QueryResult, set: ColumnSet) -> Result<Self, DbErr> {
        let mut c = crate::columns::Columns::new(row, set)?;
        Ok(Self {
            id: c.read()?,
            tenant_id: c.read()?,
            run_id: c.read()?,
            step_id: c.read()?,
            step_key: c.read()?,
            status: c.read_enum()?,
            attempt: c.read()?,
            input: c.read()?,
            output: c.read()?,
            error: c.read()?,
            created_at: c.read()?,
            updated_at: c.read()?,
            started_at: c.read()?,
            finished_at: c.read()?,
            next_attempt_at: c.read()?,
        })
    }
}
