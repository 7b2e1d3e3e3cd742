//! Dataloaders: one per request, reading through that request's transaction, so RLS
//! applies and nothing outlives the request. A relation costs one statement per
//! request however many rows ask for it.
//!
//! The loader batches the keys that arrive within its delay, which a busy runtime can
//! split when a long list resolves in several polls. List resolvers therefore
//! [`prefetch`] the relations their page selects in one call; the per-request cache
//! then answers every row's own `load_one`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use sea_orm::sea_query::{Expr, PgFunc, SimpleExpr};
use sea_orm::QueryOrder;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IdenStatic, Iterable, QueryFilter};
use trellis_core::RequestScope;
use trellis_entity::columns::ColumnSet;
use trellis_entity::{
    action, agent, agent_activity, agent_channel, agent_label, agent_label_move, agent_template,
    agent_version, alert, alert_rule, api_key, app, app_version, approval_decision, audit_event,
    call_log, client, connection, connection_secret, container_health, invitation, membership,
    plan, process, process_deployment, process_version, secret, skill, skill_installation,
    step_attempt, step_run, tenant, trigger, user, workflow, workflow_run, workflow_step,
    workflow_transition, workflow_version, Role,
};
use uuid::Uuid;

use crate::together::{load_alone, At, Branch, Together};

/// The per-request loader; each key type below is one batched look-up.
pub struct Loader {
    scope: Arc<RequestScope>,
}

/// A request's dataloader with its per-request cache.
pub type RequestLoader = DataLoader<Loader, HashMapCache>;

impl Loader {
    /// A cached dataloader for one request. With traces on, each batch is a span under
    /// the request's (the current span when the loader is made).
    pub fn for_request(scope: Arc<RequestScope>) -> RequestLoader {
        if !crate::telemetry::tracing_enabled() {
            return DataLoader::with_cache(Self { scope }, tokio::spawn, HashMapCache::default());
        }
        let request = tracing::Span::current();
        let spawn = move |batch| {
            let span = tracing::info_span!(target: "trellis::graphql", parent: &request, "dataloader batch");
            tokio::spawn(tracing::Instrument::instrument(batch, span))
        };
        DataLoader::with_cache(Self { scope }, spawn, HashMapCache::default())
    }

    /// The request the loader reads for.
    pub(crate) fn scope(&self) -> &RequestScope {
        &self.scope
    }
}

/// Loads `keys` with one statement, now, and puts the rows in the request's cache, so
/// that the rows of a page resolving their relation one by one cost nothing more. It
/// bypasses the batch window on purpose: a page's relation costs exactly one statement
/// whatever the runtime's scheduling or the sibling fields do.
pub async fn prefetch<K>(
    loader: &RequestLoader,
    keys: impl IntoIterator<Item = K>,
) -> Result<(), Arc<trellis_core::Error>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    Loader: async_graphql::dataloader::Loader<K, Error = Arc<trellis_core::Error>>,
{
    let keys: Vec<K> = keys
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let load = async_graphql::dataloader::Loader::load(loader.loader(), &keys);
    let rows = if crate::telemetry::tracing_enabled() {
        let span = tracing::info_span!(
            target: "trellis::graphql",
            "dataloader batch",
            loader = std::any::type_name::<K>().rsplit("::").next().unwrap_or_default(),
            keys = keys.len(),
        );
        tracing::Instrument::instrument(load, span).await?
    } else {
        load.await?
    };
    loader.feed_many(rows).await;
    Ok(())
}

/// `column = ANY($1)` with the ids as one array parameter. Unlike `IN ($1, …, $n)` its
/// text is the same for any number of keys, so each connection prepares it once.
fn any_of(column: impl ColumnTrait, ids: impl IntoIterator<Item = Uuid>) -> SimpleExpr {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    Expr::col((column.entity_name(), column)).eq(PgFunc::any(Expr::val(ids)))
}

/// The dataloader of a [`Together`] key: its look-up alone, a statement per branch.
macro_rules! loads_together {
    ($key:ty) => {
        impl async_graphql::dataloader::Loader<$key> for Loader {
            type Value = <$key as Together>::Value;
            type Error = Arc<trellis_core::Error>;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let tx = self.scope.tx().await.map_err(Arc::new)?;
                load_alone(tx, keys).await
            }
        }
    };
}

/// The names of an entity's columns, in `Column` order (a whole-row select's).
fn column_names<E: EntityTrait>() -> impl Iterator<Item = String> {
    E::Column::iter().map(|c| c.as_str().to_owned())
}

macro_rules! by_id {
    ($(#[$doc:meta])* $key:ident => $entity:ident :: Model $(, $by_position:ident)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl Together for $key {
            type Value = $entity::Model;

            fn branches(keys: &[Self]) -> Vec<(Vec<Self>, Branch)> {
                // The text never changes (the ids bind as one array): built once.
                static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| {
                    use sea_orm::QueryTrait as _;
                    $entity::Entity::find()
                        .filter(any_of($entity::Column::Id, []))
                        .build(sea_orm::DbBackend::Postgres)
                        .sql
                });
                let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
                let branch = Branch {
                    sql: sql.clone(),
                    values: vec![ids.into()],
                    columns: column_names::<$entity::Entity>().collect(),
                };
                vec![(keys.to_vec(), branch)]
            }

            fn decode(
                _: &[Self],
                rows: &[&sea_orm::QueryResult],
                at: &At,
            ) -> trellis_core::Result<HashMap<Self, Self::Value>> {
                rows.iter()
                    .map(|row| {
                        let model = by_id!(@decode $entity row at $($by_position)?);
                        Ok(($key(model.id), model))
                    })
                    .collect()
            }
        }

        loads_together!($key);
    };
    (@decode $entity:ident $row:ident $at:ident) => {{
        use sea_orm::FromQueryResult as _;
        $entity::Model::from_query_result($row, $at.prefix())?
    }};
    (@decode $entity:ident $row:ident $at:ident by_position) => {
        $entity::Model::from_columns_at($row, $at.offset())?
    };
    ($(#[$doc:meta])* $key:ident => $entity:ident :: $value:ident as $partial:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl async_graphql::dataloader::Loader<$key> for Loader {
            type Value = $entity::$value;
            type Error = Arc<trellis_core::Error>;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids = keys.iter().map(|k| k.0);
                let tx = self.scope.tx().await.map_err(Arc::new)?;
                let rows: Vec<$entity::$value> = $entity::Entity::find()
                    .filter(any_of($entity::Column::Id, ids))
                    .into_partial_model::<$entity::$partial>()
                    .all(tx)
                    .await
                    .map_err(|e| Arc::new(e.into()))?;
                Ok(rows.into_iter().map(|row| ($key(row.id), row)).collect())
            }
        }
    };
}

by_id!(
    /// A tenant by id.
    TenantById => tenant::Model
);
by_id!(
    /// A user's profile by id (never the password hash).
    UserById => user::Profile as Profile
);
by_id!(
    /// A membership by id.
    MembershipById => membership::Model
);
by_id!(
    /// An invitation by id.
    InvitationById => invitation::Model
);
by_id!(
    /// An API key by id.
    ApiKeyById => api_key::Model
);
by_id!(
    /// An audit event by id.
    AuditEventById => audit_event::Model
);

by_id!(
    /// A catalog app by id (public or the tenant's own).
    AppById => app::Model
);
by_id!(
    /// An app version by id.
    AppVersionById => app_version::Model
);
by_id!(
    /// A catalog action by id.
    ActionById => action::Model
);
by_id!(
    /// A secret by id (the row; its value never leaves `trellis-core`).
    SecretById => secret::Model
);
by_id!(
    /// A connection by id.
    ConnectionById => connection::Model
);

by_id!(
    /// A client by id.
    ClientById => client::Model
);
by_id!(
    /// A workflow by id (deleted ones too: `node` shows them for restoring).
    WorkflowById => workflow::Model
);
by_id!(
    /// A workflow version by id.
    WorkflowVersionById => workflow_version::Model
);
by_id!(
    /// A workflow step by id.
    WorkflowStepById => workflow_step::Model
);
by_id!(
    /// A workflow transition by id.
    WorkflowTransitionById => workflow_transition::Model
);
by_id!(
    /// A trigger by id.
    TriggerById => trigger::Model
);

by_id!(
    /// A workflow run by id.
    RunById => workflow_run::Model
);
by_id!(
    /// A step run by id.
    StepRunById => step_run::Model
);

by_id!(
    /// A process by id (deleted ones too: `node` shows them for restoring).
    ProcessById => process::Model
);
by_id!(
    /// A process version by id.
    ProcessVersionById => process_version::Model
);
by_id!(
    /// A call log entry by id.
    CallLogById => call_log::Model
);
by_id!(
    /// An agent by id (deleted ones too: `node` shows them for restoring).
    AgentById => agent::Model
);
by_id!(
    /// An agent version by id.
    AgentVersionById => agent_version::Model, by_position
);
by_id!(
    /// An agent label by id.
    AgentLabelById => agent_label::Model
);
by_id!(
    /// A move of an agent label by id.
    AgentLabelMoveById => agent_label_move::Model
);
by_id!(
    /// A template by id (public ones and the tenant's own; deleted ones too).
    AgentTemplateById => agent_template::Model
);
by_id!(
    /// A skill by id (public ones and the tenant's own).
    SkillById => skill::Model
);
by_id!(
    /// A skill installation by id.
    SkillInstallationById => skill_installation::Model
);

by_id!(
    /// An alert by id (the tenant's; platform alerts only on the platform-admin path).
    AlertById => alert::Model
);
by_id!(
    /// An agent channel by id.
    AgentChannelById => agent_channel::Model
);
by_id!(
    /// An agent activity by id.
    AgentActivityById => agent_activity::Model
);
by_id!(
    /// A container health sample by id.
    ContainerHealthById => container_health::Model
);
by_id!(
    /// An alert rule by id.
    AlertRuleById => alert_rule::Model
);

/// A parent column's value in a row: a foreign key, plain or nullable.
trait ParentId {
    fn parent_id(&self) -> Option<Uuid>;
}

impl ParentId for Uuid {
    fn parent_id(&self) -> Option<Uuid> {
        Some(*self)
    }
}

impl ParentId for Option<Uuid> {
    fn parent_id(&self) -> Option<Uuid> {
        *self
    }
}

macro_rules! by_parent {
    ($(#[$doc:meta])* $key:ident => $entity:ident . $column:ident ($field:ident), ordered by $order:ident $(, $then:ident)*) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl async_graphql::dataloader::Loader<$key> for Loader {
            type Value = Vec<$entity::Model>;
            type Error = Arc<trellis_core::Error>;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let tx = self.scope.tx().await.map_err(Arc::new)?;
                let rows = $entity::Entity::find()
                    .filter(any_of($entity::Column::$column, keys.iter().map(|k| k.0)))
                    .order_by_asc($entity::Column::$order)
                    $(.order_by_asc($entity::Column::$then))*
                    .all(tx)
                    .await
                    .map_err(|e| Arc::new(e.into()))?;
                // Every key gets an entry, empty when it has no rows, so the cache
                // answers for it too.
                let mut grouped: HashMap<$key, Self::Value> =
                    keys.iter().map(|k| (*k, Vec::new())).collect();
                for row in rows {
                    if let Some(parent) = row.$field.parent_id() {
                        grouped.entry($key(parent)).or_default().push(row);
                    }
                }
                Ok(grouped)
            }
        }
    };
}

by_parent!(
    /// The versions of an app, oldest first.
    VersionsOfApp => app_version.AppId(app_id), ordered by CreatedAt
);
by_parent!(
    /// The triggers and actions of an app version, by key.
    ActionsOfVersion => action.AppVersionId(app_version_id), ordered by Key
);
by_parent!(
    /// The secret fields of a connection, by field name.
    SecretRefsOfConnection => connection_secret.ConnectionId(connection_id), ordered by Field
);
by_parent!(
    /// Where a secret is used: the connection fields that reference it.
    UsesOfSecret => connection_secret.SecretId(secret_id), ordered by CreatedAt
);

by_parent!(
    /// The versions of a process, by number.
    VersionsOfProcess => process_version.ProcessId(process_id), ordered by Number
);
by_parent!(
    /// The environments of a process and the versions they serve.
    DeploymentsOfProcess => process_deployment.ProcessId(process_id), ordered by Environment
);
by_parent!(
    /// The versions of an agent, by number.
    VersionsOfAgent => agent_version.AgentId(agent_id), ordered by Number
);
by_parent!(
    /// The labels of an agent, by name.
    LabelsOfAgent => agent_label.AgentId(agent_id), ordered by Name
);
by_parent!(
    /// The label moves of an agent, oldest first.
    LabelMovesOfAgent => agent_label_move.AgentId(agent_id), ordered by CreatedAt
);
/// The skills installed on an agent, oldest first, each with its skill (`None` when RLS
/// hides it): one statement, where installations and then [`SkillById`] took two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstallationsOfAgent(pub Uuid);

impl Together for InstallationsOfAgent {
    type Value = Vec<(skill_installation::Model, Option<skill::Model>)>;

    fn branches(keys: &[Self]) -> Vec<(Vec<Self>, Branch)> {
        // The text never changes (the ids bind as one array): built once.
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            use sea_orm::{JoinType, QuerySelect as _, QueryTrait as _};
            let skill_of_installation = skill_installation::Entity::belongs_to(skill::Entity)
                .from(skill_installation::Column::SkillId)
                .to(skill::Column::Id)
                .into();
            skill_installation::Entity::find()
                .join(JoinType::LeftJoin, skill_of_installation)
                .select_also(skill::Entity)
                .filter(any_of(skill_installation::Column::AgentId, []))
                .build(sea_orm::DbBackend::Postgres)
                .sql
        });
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let columns = column_names::<skill_installation::Entity>()
            .map(|c| format!("A_{c}"))
            .chain(column_names::<skill::Entity>().map(|c| format!("B_{c}")))
            .collect();
        let branch = Branch {
            sql: sql.clone(),
            values: vec![ids.into()],
            columns,
        };
        vec![(keys.to_vec(), branch)]
    }

    fn decode(
        keys: &[Self],
        rows: &[&sea_orm::QueryResult],
        at: &At,
    ) -> trellis_core::Result<HashMap<Self, Self::Value>> {
        // The installation's columns, then the skill's (NULL where RLS hides it).
        let skill_at = at.offset() + skill_installation::Column::iter().count();
        // A page's agents share a few skills: each one's wide row (its schemas and
        // lists are JSON) is decoded once, not once per installation.
        let mut skills: HashMap<Uuid, Option<skill::Model>> = HashMap::new();
        let mut grouped: HashMap<InstallationsOfAgent, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            let installation = skill_installation::Model::from_columns_at(row, at.offset())?;
            let skill = match skills.get(&installation.skill_id) {
                Some(skill) => skill.clone(),
                None => {
                    let skill = match row.try_get_by_index::<Option<Uuid>>(skill_at)? {
                        Some(_) => Some(skill::Model::from_columns_at(row, skill_at)?),
                        None => None,
                    };
                    skills.insert(installation.skill_id, skill.clone());
                    skill
                }
            };
            grouped
                .entry(InstallationsOfAgent(installation.agent_id))
                .or_default()
                .push((installation, skill));
        }
        // Oldest first, ordered here and not by the statement: read with others, a
        // statement's order would not be kept.
        for installations in grouped.values_mut() {
            installations.sort_by_key(|(i, _)| (i.created_at, i.id));
        }
        Ok(grouped)
    }
}

loads_together!(InstallationsOfAgent);

by_parent!(
    /// The installations of a skill in the active tenant (RLS shows no other), oldest
    /// first.
    InstallationsOfSkill => skill_installation.SkillId(skill_id), ordered by CreatedAt
);
by_parent!(
    /// The channels of an agent, oldest first.
    ChannelsOfAgent => agent_channel.AgentId(agent_id), ordered by CreatedAt
);
by_parent!(
    /// The versions of a workflow, by number.
    VersionsOfWorkflow => workflow_version.WorkflowId(workflow_id), ordered by Number
);
by_parent!(
    /// The steps of a workflow version, by their place (`order`).
    StepsOfVersion => workflow_step.VersionId(version_id), ordered by SortOrder, Id
);
by_parent!(
    /// The transitions of a workflow version, in the order they were saved.
    TransitionsOfVersion => workflow_transition.VersionId(version_id), ordered by Id
);
by_parent!(
    /// The triggers of a workflow, oldest first.
    TriggersOfWorkflow => trigger.WorkflowId(workflow_id), ordered by CreatedAt
);
by_parent!(
    /// The triggers of an agent, oldest first.
    TriggersOfAgent => trigger.AgentId(agent_id), ordered by CreatedAt
);

by_parent!(
    /// The earlier (failed and retried) attempts of a step run, by number.
    AttemptsOfStepRun => step_attempt.StepRunId(step_run_id), ordered by Attempt
);

by_parent!(
    /// The decisions people made on an approval step run, oldest first.
    DecisionsOfStepRun => approval_decision.StepRunId(step_run_id), ordered by CreatedAt
);

/// The columns a list must read for `selection` (the listed objects' fields): `always`
/// and those `fields` names for each selected field. A selected field that `fields`
/// does not name makes it read every column.
pub fn columns_for<C: IdenStatic + Iterable + Copy>(
    selection: &async_graphql::Lookahead<'_>,
    always: impl IntoIterator<Item = C>,
    fields: &[(&str, &[C])],
) -> ColumnSet {
    let mut set = ColumnSet::NONE.with_all(always);
    for object in selection.selection_fields() {
        for field in object.selection_set() {
            match fields.iter().find(|(name, _)| *name == field.name()) {
                Some((_, columns)) => set = set.with_all(columns.iter().copied()),
                None => return ColumnSet::ALL,
            }
        }
    }
    set
}

/// Decodes the rows of a list that read the columns of `set` (see
/// `trellis_entity::columns`).
fn decode_all<M>(
    rows: Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr>,
    set: ColumnSet,
    decode: fn(&sea_orm::QueryResult, ColumnSet) -> Result<M, sea_orm::DbErr>,
) -> Result<Vec<M>, Arc<trellis_core::Error>> {
    rows.and_then(|rows| rows.iter().map(|row| decode(row, set)).collect())
        .map_err(|e| Arc::new(e.into()))
}

/// The step runs of a run, in the version's step order, with the columns of `columns`
/// (see [`columns_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepRunsOfRun {
    pub run_id: Uuid,
    pub columns: ColumnSet,
}

impl async_graphql::dataloader::Loader<StepRunsOfRun> for Loader {
    type Value = Vec<Arc<step_run::Model>>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[StepRunsOfRun],
    ) -> Result<HashMap<StepRunsOfRun, Self::Value>, Self::Error> {
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let mut grouped: HashMap<StepRunsOfRun, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        // One statement per distinct column set (a page asks for one).
        for (columns, ids) in groups(keys, |k| k.columns, |k| k.run_id) {
            let sql = format!(
                "SELECT {} FROM step_runs s \
                 WHERE s.tenant_id = (SELECT app.current_tenant_id()) AND s.run_id = ANY($1) \
                 ORDER BY s.id",
                columns.select_list::<step_run::Entity>("s")
            );
            let rows = decode_all(
                tx.query_all(trellis_core::scope::stmt(&sql, [ids.into()]))
                    .await,
                columns,
                step_run::Model::from_columns,
            )?;
            for row in rows {
                let key = StepRunsOfRun {
                    run_id: row.run_id,
                    columns,
                };
                grouped.entry(key).or_default().push(Arc::new(row));
            }
        }
        Ok(grouped)
    }
}

/// The newest `limit` runs of a workflow (one more than a page, to tell whether there
/// is a next one), for every workflow of a page in one statement, with the columns of
/// `columns` (see [`columns_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatestRunsOfWorkflow {
    pub workflow_id: Uuid,
    pub limit: u64,
    pub columns: ColumnSet,
}

impl async_graphql::dataloader::Loader<LatestRunsOfWorkflow> for Loader {
    type Value = Vec<workflow_run::Model>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[LatestRunsOfWorkflow],
    ) -> Result<HashMap<LatestRunsOfWorkflow, Self::Value>, Self::Error> {
        let mut grouped: HashMap<LatestRunsOfWorkflow, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        // One statement per distinct shape (a page asks for one).
        for ((limit, columns), ids) in groups(keys, |k| (k.limit, k.columns), |k| k.workflow_id) {
            for row in self.latest_runs("workflow_id", ids, limit, columns).await? {
                let key = LatestRunsOfWorkflow {
                    workflow_id: row.workflow_id,
                    limit,
                    columns,
                };
                grouped.entry(key).or_default().push(row);
            }
        }
        Ok(grouped)
    }
}

/// The newest `limit` runs of an agent (one more than a page), for every agent of a
/// page in one statement, with the columns of `columns` (and the agent's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatestRunsOfAgent {
    pub agent_id: Uuid,
    pub limit: u64,
    pub columns: ColumnSet,
}

impl async_graphql::dataloader::Loader<LatestRunsOfAgent> for Loader {
    type Value = Vec<workflow_run::Model>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[LatestRunsOfAgent],
    ) -> Result<HashMap<LatestRunsOfAgent, Self::Value>, Self::Error> {
        let mut grouped: HashMap<LatestRunsOfAgent, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for ((limit, columns), ids) in groups(keys, |k| (k.limit, k.columns), |k| k.agent_id) {
            // The agent column groups the rows, whatever the selection reads.
            let read = columns.with(workflow_run::Column::AgentId);
            for row in self.latest_runs("agent_id", ids, limit, read).await? {
                let Some(agent_id) = row.agent_id else {
                    continue;
                };
                let key = LatestRunsOfAgent {
                    agent_id,
                    limit,
                    columns,
                };
                grouped.entry(key).or_default().push(row);
            }
        }
        Ok(grouped)
    }
}

impl Loader {
    /// The newest `limit` runs of each of `parents` (ids in the run column `parent`,
    /// `workflow_id` or `agent_id`) of the tenant, with the columns of `columns`: one
    /// statement.
    async fn latest_runs(
        &self,
        parent: &str,
        parents: Vec<Uuid>,
        limit: u64,
        columns: ColumnSet,
    ) -> Result<Vec<workflow_run::Model>, Arc<trellis_core::Error>> {
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let sql = format!(
            "SELECT r.* FROM unnest($1::uuid[]) AS p(id) CROSS JOIN LATERAL ( \
               SELECT {} FROM workflow_runs x \
               WHERE x.{parent} = p.id AND x.tenant_id = (SELECT app.current_tenant_id()) \
               ORDER BY x.created_at DESC, x.id DESC LIMIT $2) r",
            columns.select_list::<workflow_run::Entity>("x")
        );
        decode_all(
            tx.query_all(trellis_core::scope::stmt(
                &sql,
                [parents.into(), (limit as i64).into()],
            ))
            .await,
            columns,
            workflow_run::Model::from_columns,
        )
    }
}

/// Rows by id with only the columns of a selection (see [`columns_for`]): what
/// `node(id:)` and `nodes(ids:)` read of a run or a step run, whose payload columns
/// (input, output, context) are the bulk of a row and seldom selected.
macro_rules! by_id_in_columns {
    ($(#[$doc:meta])* $key:ident => $entity:ident :: $table:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key {
            pub id: Uuid,
            pub columns: ColumnSet,
        }

        impl async_graphql::dataloader::Loader<$key> for Loader {
            type Value = $entity::Model;
            type Error = Arc<trellis_core::Error>;

            async fn load(
                &self,
                keys: &[$key],
            ) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let tx = self.scope.tx().await.map_err(Arc::new)?;
                let mut found = HashMap::with_capacity(keys.len());
                // One statement per distinct column set (a request asks for one).
                for (columns, ids) in groups(keys, |k| k.columns, |k| k.id) {
                    let sql = format!(
                        "SELECT {} FROM {} x WHERE x.id = ANY($1) \
                         AND x.tenant_id = (SELECT app.current_tenant_id())",
                        columns.select_list::<$entity::Entity>("x"),
                        $table,
                    );
                    let rows = decode_all(
                        tx.query_all(trellis_core::scope::stmt(&sql, [ids.into()])).await,
                        columns,
                        $entity::Model::from_columns,
                    )?;
                    for row in rows {
                        found.insert($key { id: row.id, columns }, row);
                    }
                }
                Ok(found)
            }
        }
    };
}

by_id_in_columns!(
    /// A run by id, with the columns its selection reads.
    RunByIdIn => workflow_run::"workflow_runs"
);
by_id_in_columns!(
    /// A step run by id, with the columns its selection reads.
    StepRunByIdIn => step_run::"step_runs"
);

/// The keys grouped by `shape` (what one statement reads for them), in first-seen order,
/// each with the ids of the keys of that shape, in key order.
fn groups<K, S: PartialEq>(
    keys: &[K],
    shape: impl Fn(&K) -> S,
    id: impl Fn(&K) -> Uuid,
) -> Vec<(S, Vec<Uuid>)> {
    let mut out: Vec<(S, Vec<Uuid>)> = Vec::new();
    for key in keys {
        let key_shape = shape(key);
        match out.iter_mut().find(|(s, _)| *s == key_shape) {
            Some((_, ids)) => ids.push(id(key)),
            None => out.push((key_shape, vec![id(key)])),
        }
    }
    out
}

/// A workflow's report buckets over one range (`Workflow.stats`): a page of workflows
/// asking for the same range is read together (see
/// [`workflows_stats`](trellis_core::runs::reports::workflows_stats)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatsOfWorkflow {
    pub workflow_id: Uuid,
    pub period: trellis_core::runs::reports::Period,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

impl async_graphql::dataloader::Loader<StatsOfWorkflow> for Loader {
    type Value = Vec<trellis_core::runs::reports::WorkflowBucket>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[StatsOfWorkflow],
    ) -> Result<HashMap<StatsOfWorkflow, Self::Value>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        for ((period, from, to), ids) in
            groups(keys, |k| (k.period, k.from, k.to), |k| k.workflow_id)
        {
            let stats =
                trellis_core::runs::reports::workflows_stats(&self.scope, &ids, period, from, to)
                    .await
                    .map_err(Arc::new)?;
            out.extend(stats.into_iter().map(|(workflow_id, buckets)| {
                let key = StatsOfWorkflow {
                    workflow_id,
                    period,
                    from,
                    to,
                };
                (key, buckets)
            }));
        }
        Ok(out)
    }
}

/// An agent's metrics buckets over one range (`Agent.metrics`): a page of agents
/// asking for the same range is read together (see
/// [`agents_metrics`](trellis_core::agents::usage::agents_metrics)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MetricsOfAgent {
    pub agent_id: Uuid,
    pub period: trellis_core::agents::usage::MetricsPeriod,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

impl Together for MetricsOfAgent {
    type Value = Vec<trellis_core::agents::usage::MetricsBucket>;

    /// One select per distinct range (a page asks for one); a range without buckets
    /// has none, and its keys no value.
    fn branches(keys: &[Self]) -> Vec<(Vec<Self>, Branch)> {
        use trellis_core::agents::usage::{bucket_starts, metrics_select, METRICS_COLUMNS};
        let mut out = Vec::new();
        for ((period, from, to), ids) in groups(keys, |k| (k.period, k.from, k.to), |k| k.agent_id)
        {
            let starts = bucket_starts(period, from, to).unwrap_or_default();
            let Some((sql, values)) = metrics_select(&ids, period, &starts) else {
                continue;
            };
            let keys = ids
                .into_iter()
                .map(|agent_id| MetricsOfAgent {
                    agent_id,
                    period,
                    from,
                    to,
                })
                .collect();
            let columns = METRICS_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            out.push((
                keys,
                Branch {
                    sql,
                    values,
                    columns,
                },
            ));
        }
        out
    }

    fn decode(
        keys: &[Self],
        rows: &[&sea_orm::QueryResult],
        at: &At,
    ) -> trellis_core::Result<HashMap<Self, Self::Value>> {
        use trellis_core::agents::usage::{bucket_starts, metrics_of_rows};
        let Some(&MetricsOfAgent {
            period, from, to, ..
        }) = keys.first()
        else {
            return Ok(HashMap::new());
        };
        let ids: Vec<Uuid> = keys.iter().map(|k| k.agent_id).collect();
        let starts = bucket_starts(period, from, to)?;
        let metrics = metrics_of_rows(rows, at.prefix(), &ids, &starts)?;
        Ok(metrics
            .into_iter()
            .map(|(agent_id, buckets)| {
                let key = MetricsOfAgent {
                    agent_id,
                    period,
                    from,
                    to,
                };
                (key, buckets)
            })
            .collect())
    }
}

impl async_graphql::dataloader::Loader<MetricsOfAgent> for Loader {
    type Value = Vec<trellis_core::agents::usage::MetricsBucket>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[MetricsOfAgent],
    ) -> Result<HashMap<MetricsOfAgent, Self::Value>, Self::Error> {
        self.scope.require(Role::Viewer).await.map_err(Arc::new)?;
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        load_alone(tx, keys).await
    }
}

/// An agent's spending this month against its budget (`Agent.budgetStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BudgetOfAgent(pub Uuid);

impl async_graphql::dataloader::Loader<BudgetOfAgent> for Loader {
    type Value = trellis_core::agents::budget::BudgetStatus;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[BudgetOfAgent],
    ) -> Result<HashMap<BudgetOfAgent, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let statuses = trellis_core::agents::budget::statuses(&self.scope, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(statuses
            .into_iter()
            .map(|(id, status)| (BudgetOfAgent(id), status))
            .collect())
    }
}

/// The newest `limit` alerts of an agent (one more than a page, to tell whether there
/// is a next one), open ones only or closed ones only when `open` says, for every
/// agent of a page in one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatestAlertsOfAgent {
    pub agent_id: Uuid,
    pub limit: u64,
    pub open: Option<bool>,
}

impl async_graphql::dataloader::Loader<LatestAlertsOfAgent> for Loader {
    type Value = Vec<alert::Model>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[LatestAlertsOfAgent],
    ) -> Result<HashMap<LatestAlertsOfAgent, Self::Value>, Self::Error> {
        use sea_orm::FromQueryResult;
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let mut grouped: HashMap<LatestAlertsOfAgent, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        // One statement per distinct shape (a page asks for one).
        for ((limit, open), ids) in groups(keys, |k| (k.limit, k.open), |k| k.agent_id) {
            let rows = alert::Model::find_by_statement(trellis_core::scope::stmt(
                "SELECT x.* FROM unnest($1::uuid[]) AS a(id) CROSS JOIN LATERAL ( \
                   SELECT * FROM alerts x \
                   WHERE x.tenant_id = (SELECT app.current_tenant_id()) AND x.agent_id = a.id \
                     AND ($3::boolean IS NULL OR (x.resolved_at IS NULL) = $3) \
                   ORDER BY x.raised_at DESC, x.id DESC LIMIT $2) x",
                [ids.into(), (limit as i64).into(), open.into()],
            ))
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
            for row in rows {
                if let Some(agent_id) = row.agent_id {
                    grouped
                        .entry(LatestAlertsOfAgent {
                            agent_id,
                            limit,
                            open,
                        })
                        .or_default()
                        .push(row);
                }
            }
        }
        Ok(grouped)
    }
}

/// The workflows (not deleted) of a client, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowsOfClient(pub Uuid);

impl async_graphql::dataloader::Loader<WorkflowsOfClient> for Loader {
    type Value = Vec<workflow::Model>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[WorkflowsOfClient],
    ) -> Result<HashMap<WorkflowsOfClient, Self::Value>, Self::Error> {
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let rows = workflow::Entity::find()
            .filter(any_of(workflow::Column::ClientId, keys.iter().map(|k| k.0)))
            .filter(workflow::Column::DeletedAt.is_null())
            .order_by_asc(workflow::Column::CreatedAt)
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        let mut grouped: HashMap<WorkflowsOfClient, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            if let Some(client_id) = row.client_id {
                grouped
                    .entry(WorkflowsOfClient(client_id))
                    .or_default()
                    .push(row);
            }
        }
        Ok(grouped)
    }
}

/// How many steps a workflow version has, counted in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepCountOfVersion(pub Uuid);

impl async_graphql::dataloader::Loader<StepCountOfVersion> for Loader {
    type Value = i64;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[StepCountOfVersion],
    ) -> Result<HashMap<StepCountOfVersion, Self::Value>, Self::Error> {
        use sea_orm::QuerySelect;
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let rows: Vec<(Uuid, i64)> = workflow_step::Entity::find()
            .select_only()
            .column(workflow_step::Column::VersionId)
            .column_as(workflow_step::Column::Id.count(), "steps")
            .filter(any_of(
                workflow_step::Column::VersionId,
                keys.iter().map(|k| k.0),
            ))
            .group_by(workflow_step::Column::VersionId)
            .into_tuple()
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        let mut counts: HashMap<StepCountOfVersion, i64> = keys.iter().map(|k| (*k, 0)).collect();
        counts.extend(rows.into_iter().map(|(v, n)| (StepCountOfVersion(v), n)));
        Ok(counts)
    }
}

/// The newest `limit` activities of an agent (one more than a page, to tell whether
/// there is a next one), of the types in `types` (a bit per `ActivityType`, see
/// [`activity_type_bits`]), for every agent of a page in one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatestActivitiesOfAgent {
    pub agent_id: Uuid,
    pub limit: u64,
    pub types: u8,
    /// The columns read (see [`columns_for`]).
    pub columns: ColumnSet,
}

/// The bit of each activity type in [`LatestActivitiesOfAgent::types`].
pub fn activity_type_bits(types: &[trellis_entity::ActivityType]) -> u8 {
    use trellis_entity::ActivityType;
    types.iter().fold(0, |bits, t| {
        bits | match t {
            ActivityType::Message => 1,
            ActivityType::Task => 2,
            ActivityType::Alert => 4,
        }
    })
}

fn activity_types_of(bits: u8) -> Vec<String> {
    [(1, "message"), (2, "task"), (4, "alert")]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| name.to_owned())
        .collect()
}

impl Together for LatestActivitiesOfAgent {
    type Value = Vec<agent_activity::Model>;

    /// One select per distinct shape (a page asks for one).
    fn branches(keys: &[Self]) -> Vec<(Vec<Self>, Branch)> {
        groups(keys, |k| (k.limit, k.types, k.columns), |k| k.agent_id)
            .into_iter()
            .map(|((limit, types, columns), ids)| {
                let sql = format!(
                    "SELECT {} FROM unnest($1::uuid[]) AS a(id) CROSS JOIN LATERAL ( \
                       SELECT * FROM agent_activities y \
                       WHERE y.agent_id = a.id AND y.tenant_id = (SELECT app.current_tenant_id()) \
                         AND y.type = ANY($3::text[]) \
                       ORDER BY y.created_at DESC, y.id DESC LIMIT $2) x",
                    columns.select_list::<agent_activity::Entity>("x")
                );
                let keys = ids
                    .iter()
                    .map(|&agent_id| LatestActivitiesOfAgent {
                        agent_id,
                        limit,
                        types,
                        columns,
                    })
                    .collect();
                let branch = Branch {
                    sql,
                    values: vec![
                        ids.into(),
                        (limit as i64).into(),
                        activity_types_of(types).into(),
                    ],
                    columns: columns.names::<agent_activity::Entity>().collect(),
                };
                (keys, branch)
            })
            .collect()
    }

    fn decode(
        keys: &[Self],
        rows: &[&sea_orm::QueryResult],
        at: &At,
    ) -> trellis_core::Result<HashMap<Self, Self::Value>> {
        let mut grouped: HashMap<LatestActivitiesOfAgent, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        let Some(&LatestActivitiesOfAgent {
            limit,
            types,
            columns,
            ..
        }) = keys.first()
        else {
            return Ok(grouped);
        };
        for row in rows {
            let activity = agent_activity::Model::from_columns_at(row, columns, at.offset())?;
            let key = LatestActivitiesOfAgent {
                agent_id: activity.agent_id,
                limit,
                types,
                columns,
            };
            grouped.entry(key).or_default().push(activity);
        }
        // Newest first: read with others, the statement's order is not kept.
        for activities in grouped.values_mut() {
            activities.sort_by_key(|a| std::cmp::Reverse((a.created_at, a.id)));
        }
        Ok(grouped)
    }
}

loads_together!(LatestActivitiesOfAgent);

/// The latest health sample of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatestHealthOfAgent(pub Uuid);

impl async_graphql::dataloader::Loader<LatestHealthOfAgent> for Loader {
    type Value = container_health::Model;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[LatestHealthOfAgent],
    ) -> Result<HashMap<LatestHealthOfAgent, Self::Value>, Self::Error> {
        use sea_orm::FromQueryResult;
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = container_health::Model::find_by_statement(trellis_core::scope::stmt(
            "SELECT x.* FROM unnest($1::uuid[]) AS a(id) CROSS JOIN LATERAL ( \
               SELECT * FROM container_health h \
               WHERE h.agent_id = a.id AND h.tenant_id = (SELECT app.current_tenant_id()) \
               ORDER BY h.recorded_at DESC, h.id DESC LIMIT 1) x",
            [ids.into()],
        ))
        .all(tx)
        .await
        .map_err(|e| Arc::new(e.into()))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| row.agent_id.map(|id| (LatestHealthOfAgent(id), row)))
            .collect())
    }
}

/// The alert rules that watch an agent: those naming it and those of its whole
/// tenant (no agent), oldest first. One statement for any number of agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlertRulesOfAgent(pub Uuid);

impl async_graphql::dataloader::Loader<AlertRulesOfAgent> for Loader {
    type Value = Vec<alert_rule::Model>;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[AlertRulesOfAgent],
    ) -> Result<HashMap<AlertRulesOfAgent, Self::Value>, Self::Error> {
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let rows = alert_rule::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(any_of(
                        alert_rule::Column::AgentId,
                        keys.iter().map(|k| k.0),
                    ))
                    .add(alert_rule::Column::AgentId.is_null()),
            )
            .order_by_asc(alert_rule::Column::CreatedAt)
            .order_by_asc(alert_rule::Column::Id)
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        Ok(keys
            .iter()
            .map(|key| {
                let rules = rows
                    .iter()
                    .filter(|r| r.agent_id.is_none_or(|a| a == key.0))
                    .cloned()
                    .collect();
                (*key, rules)
            })
            .collect())
    }
}

/// A plan by its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlanByKey(pub String);

impl async_graphql::dataloader::Loader<PlanByKey> for Loader {
    type Value = plan::Model;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[PlanByKey],
    ) -> Result<HashMap<PlanByKey, Self::Value>, Self::Error> {
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let wanted: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = plan::Entity::find()
            .filter(Expr::col(plan::Column::Key).eq(PgFunc::any(Expr::val(wanted))))
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        Ok(rows
            .into_iter()
            .map(|row| (PlanByKey(row.key.clone()), row))
            .collect())
    }
}

/// How many live agents a tenant has, counted in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AgentCountOfTenant(pub Uuid);

impl async_graphql::dataloader::Loader<AgentCountOfTenant> for Loader {
    type Value = i64;
    type Error = Arc<trellis_core::Error>;

    async fn load(
        &self,
        keys: &[AgentCountOfTenant],
    ) -> Result<HashMap<AgentCountOfTenant, Self::Value>, Self::Error> {
        use sea_orm::QuerySelect;
        let tx = self.scope.tx().await.map_err(Arc::new)?;
        let rows: Vec<(Uuid, i64)> = agent::Entity::find()
            .select_only()
            .column(agent::Column::TenantId)
            .column_as(agent::Column::Id.count(), "agents")
            .filter(any_of(agent::Column::TenantId, keys.iter().map(|k| k.0)))
            .filter(agent::Column::DeletedAt.is_null())
            .group_by(agent::Column::TenantId)
            .into_tuple()
            .all(tx)
            .await
            .map_err(|e| Arc::new(e.into()))?;
        let mut counts: HashMap<AgentCountOfTenant, i64> = keys.iter().map(|k| (*k, 0)).collect();
        counts.extend(rows.into_iter().map(|(t, n)| (AgentCountOfTenant(t), n)));
        Ok(counts)
    }
}

/// Forgets everything the request's loader cached, so a mutation's payload reads what
/// the mutation wrote.
pub fn forget_all(loader: &RequestLoader) {
    loader.clear::<TenantById>();
    loader.clear::<UserById>();
    loader.clear::<MembershipById>();
    loader.clear::<InvitationById>();
    loader.clear::<ApiKeyById>();
    loader.clear::<AuditEventById>();
    loader.clear::<AppById>();
    loader.clear::<AppVersionById>();
    loader.clear::<ActionById>();
    loader.clear::<SecretById>();
    loader.clear::<ConnectionById>();
    loader.clear::<VersionsOfApp>();
    loader.clear::<ActionsOfVersion>();
    loader.clear::<SecretRefsOfConnection>();
    loader.clear::<UsesOfSecret>();
    loader.clear::<ClientById>();
    loader.clear::<WorkflowById>();
    loader.clear::<WorkflowVersionById>();
    loader.clear::<WorkflowStepById>();
    loader.clear::<WorkflowTransitionById>();
    loader.clear::<TriggerById>();
    loader.clear::<VersionsOfWorkflow>();
    loader.clear::<StepsOfVersion>();
    loader.clear::<TransitionsOfVersion>();
    loader.clear::<TriggersOfWorkflow>();
    loader.clear::<TriggersOfAgent>();
    loader.clear::<WorkflowsOfClient>();
    loader.clear::<StepCountOfVersion>();
    loader.clear::<RunById>();
    loader.clear::<StepRunById>();
    loader.clear::<StepRunsOfRun>();
    loader.clear::<RunByIdIn>();
    loader.clear::<StepRunByIdIn>();
    loader.clear::<LatestRunsOfWorkflow>();
    loader.clear::<LatestRunsOfAgent>();
    loader.clear::<ProcessById>();
    loader.clear::<ProcessVersionById>();
    loader.clear::<CallLogById>();
    loader.clear::<VersionsOfProcess>();
    loader.clear::<DeploymentsOfProcess>();
    loader.clear::<AgentById>();
    loader.clear::<AgentVersionById>();
    loader.clear::<AgentLabelById>();
    loader.clear::<AgentLabelMoveById>();
    loader.clear::<VersionsOfAgent>();
    loader.clear::<LabelsOfAgent>();
    loader.clear::<LabelMovesOfAgent>();
    loader.clear::<AgentTemplateById>();
    loader.clear::<SkillById>();
    loader.clear::<SkillInstallationById>();
    loader.clear::<InstallationsOfAgent>();
    loader.clear::<InstallationsOfSkill>();
    loader.clear::<AlertById>();
    loader.clear::<MetricsOfAgent>();
    loader.clear::<BudgetOfAgent>();
    loader.clear::<LatestAlertsOfAgent>();
    loader.clear::<AgentChannelById>();
    loader.clear::<AgentActivityById>();
    loader.clear::<ContainerHealthById>();
    loader.clear::<AlertRuleById>();
    loader.clear::<AlertRulesOfAgent>();
    loader.clear::<ChannelsOfAgent>();
    loader.clear::<LatestActivitiesOfAgent>();
    loader.clear::<LatestHealthOfAgent>();
    loader.clear::<PlanByKey>();
    loader.clear::<AgentCountOfTenant>();
}
