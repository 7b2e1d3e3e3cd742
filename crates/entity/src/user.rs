use sea_orm::entity::prelude::*;

use crate::PlatformRole;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub auth_provider: String,
    pub password_hash: Option<String>,
    pub platform_role: PlatformRole,
    /// When the address was confirmed; `None` while a sign-up awaits confirmation.
    pub email_verified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A user without credentials: every read outside the login path selects this.
#[derive(Clone, Debug, PartialEq, DerivePartialModel, sea_orm::FromQueryResult)]
#[sea_orm(entity = "Entity")]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub auth_provider: String,
    pub platform_role: PlatformRole,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl From<Model> for Profile {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            name: m.name,
            auth_provider: m.auth_provider,
            platform_role: m.platform_role,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}
