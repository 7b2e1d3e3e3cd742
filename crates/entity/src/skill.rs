use sea_orm::entity::prelude::*;

use crate::{SkillCategory, SkillStatus};

/// A skill of the marketplace: public (no tenant, platform-curated) or a tenant's
/// private one. `install_count` is kept by the database, never written by the app.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "skills")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub key: String,
    pub name: String,
    pub description: String,
    pub category: SkillCategory,
    pub version: String,
    /// Agent roles (`pm`, `engineering`, …) that may install it.
    pub compatible_roles: Vec<String>,
    pub permissions: Vec<String>,
    pub capabilities: Json,
    pub config_schema: Json,
    pub rating: Option<f64>,
    pub install_count: i64,
    pub status: SkillStatus,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
