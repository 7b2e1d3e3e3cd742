use sea_orm::entity::prelude::*;

use crate::columns::ColumnSet;
use crate::{RunStatus, TriggerType};

/// One execution of a workflow version.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub workflow_id: Uuid,
    pub version_id: Uuid,
    pub trigger_id: Option<Uuid>,
    pub trigger_type: TriggerType,
    pub client_id: Option<Uuid>,
    pub retry_of_id: Option<Uuid>,
    pub status: RunStatus,
    pub trigger_payload: Option<Json>,
    pub input: Option<Json>,
    pub output: Option<Json>,
    pub error: Option<Json>,
    pub is_simulation: bool,
    pub idempotency_key: Option<String>,
    pub lease_token: Option<Uuid>,
    pub lease_owner: Option<Uuid>,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub payloads_purged_at: Option<DateTimeUtc>,
    /// The real run whose step outputs this simulation replays.
    pub replay_of_id: Option<Uuid>,
    /// The agent whose run this is (`runAgent`); null for other runs, and once a purge
    /// deleted the agent.
    pub agent_id: Option<Uuid>,
    /// The agent version that was run; null for runs that are not an agent's.
    pub agent_version_id: Option<Uuid>,
    /// The agent's tool policy as it was when the run started, `{"tools", "default"}`;
    /// null for runs that are not an agent's. The engine enforces it on the run's tool
    /// steps, and it never changes.
    pub tool_policy: Option<Json>,
    /// What the starter attached to the run: a JSON object, `{}` by default.
    pub metadata: Json,
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
            workflow_id: c.read()?,
            version_id: c.read()?,
            trigger_id: c.read()?,
            trigger_type: c.read_enum()?,
            client_id: c.read()?,
            retry_of_id: c.read()?,
            status: c.read_enum()?,
            trigger_payload: c.read()?,
            input: c.read()?,
            output: c.read()?,
            error: c.read()?,
            is_simulation: c.read()?,
            idempotency_key: c.read()?,
            lease_token: c.read()?,
            lease_owner: c.read()?,
            lease_expires_at: c.read()?,
            created_by: c.read()?,
            created_at: c.read()?,
            updated_at: c.read()?,
            started_at: c.read()?,
            finished_at: c.read()?,
            cancelled_at: c.read()?,
            payloads_purged_at: c.read()?,
            replay_of_id: c.read()?,
            agent_id: c.read()?,
            agent_version_id: c.read()?,
            tool_policy: c.read()?,
            metadata: c.read()?,
        })
    }
}
