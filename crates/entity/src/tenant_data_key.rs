use sea_orm::entity::prelude::*;

/// A tenant's data key, wrapped (AES-256-GCM) by the master key `master_key_id`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_data_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub generation: i32,
    pub master_key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub rewrapped_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
