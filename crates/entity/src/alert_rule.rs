use sea_orm::entity::prelude::*;

use crate::{AlertRuleKind, Severity};

/// A tenant's condition on its agents' metrics or health, evaluated by the maintenance
/// loop; while it holds for an agent, one alert (source `rule`) is open for the rule
/// and that agent.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `None`: every live agent of the tenant.
    pub agent_id: Option<Uuid>,
    pub name: String,
    pub kind: AlertRuleKind,
    /// ERROR_RATE: a fraction (0 ≤ x < 1); COST_TODAY: micro-USD; UNHEALTHY_FOR: none.
    pub threshold: Option<f64>,
    /// ERROR_RATE and UNHEALTHY_FOR: the window, 1 to 1440 minutes.
    pub window_minutes: Option<i32>,
    /// ERROR_RATE: the fewest runs in the window that count.
    pub min_runs: Option<i32>,
    pub severity: Severity,
    pub is_active: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_evaluated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
