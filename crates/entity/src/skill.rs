use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;

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

impl Model {
    /// Decodes a whole row of this entity whose columns start at `first`, in
    /// [`Column`] order, by position (see [`crate::columns`]).
    pub fn from_columns_at(row: &QueryResult, first: usize) -> Result<Self, DbErr> {
        let mut c = crate::columns::Columns::starting_at(row, ColumnSet::ALL, first)?;
        Ok(Self {
            id: c.read()?,
            tenant_id: c.read()?,
            key: c.read()?,
            name: c.read()?,
            description: c.read()?,
            category: c.read_enum()?,
            version: c.read()?,
            compatible_roles: c.read()?,
            permissions: c.read()?,
            capabilities: c.read()?,
            config_schema: c.read()?,
            rating: c.read()?,
            install_count: c.read()?,
            status: c.read_enum()?,
            created_by: c.read()?,
            created_at: c.read()?,
            updated_at: c.read()?,
        })
    }
}
