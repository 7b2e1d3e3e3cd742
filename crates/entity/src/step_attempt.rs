use sea_orm::entity::prelude::*;

/// An earlier attempt of a step run that failed and was tried again. The step run
/// itself holds the current (or last) attempt.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "step_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub step_run_id: Uuid,
    pub attempt: i32,
    pub error: Option<Json>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
