use sea_orm::entity::prelude::*;

use crate::Severity;

/// Something a tenant (or, without a tenant, the platform) should look at: raised once
/// per dedupe key while open, then acknowledged and resolved by people.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `None`: a platform alert, for platform admins only.
    pub tenant_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub severity: Severity,
    pub source: String,
    pub message: String,
    pub details: Json,
    pub dedupe_key: String,
    pub raised_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<Uuid>,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<Uuid>,
    /// The rule that raised it (source `rule`); null otherwise, or once the rule is
    /// deleted.
    pub rule_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
