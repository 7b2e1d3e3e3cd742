use async_graphql::{Context, Object};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use trellis_entity::{workflow, Role};
use uuid::Uuid;

use super::types::{Client, ClientFilter, Trigger, TriggerFilter, Workflow, WorkflowFilter};
use crate::context::{load_error, run, ContextExt};
use crate::list;
use crate::loaders::{
    prefetch, ClientById, LatestRunsOfWorkflow, StatsOfWorkflow, StepCountOfVersion, StepRunsOfRun,
    StepsOfVersion, TransitionsOfVersion, TriggersOfWorkflow, VersionsOfWorkflow,
    WorkflowVersionById,
};
use crate::pagination::{node_selection, node_selects, CreatedOrderBy, Page};
use crate::runs::types::{run_columns, step_run_columns};

#[derive(Default)]
pub struct WorkflowsQuery;

#[Object]
impl WorkflowsQuery {
    /// The active tenant's clients (any member may list them; builders change them).
    async fn clients(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many clients to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the clients after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            ClientFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Client>> {
        list::page::<Client>(ctx, None, first, after, filter, order_by).await
    }

    /// The active tenant's workflows (any member; deleted ones only with
    /// `filter.deleted`). The relations a page selects (client, versions with their
    /// step counts or graphs, active version, triggers) cost one statement each,
    /// whatever the page size.
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many workflows to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the workflows after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            WorkflowFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Workflow>> {
        let page = list::page::<Workflow>(ctx, None, first, after, filter, order_by).await?;
        let rows: Vec<&workflow::Model> = page.edges.iter().map(|e| &e.node.0).collect();
        prefetch_workflow_relations(ctx, &rows).await?;
        Ok(page)
    }

    /// A workflow of the active tenant by key (any member); null when no workflow that
    /// is not deleted has it.
    async fn workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's key; a deleted workflow is not found (null).")]
        key: String,
    ) -> async_graphql::Result<Option<Workflow>> {
        let scope = ctx.scope()?;
        run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            let found = workflow::Entity::find()
                .filter(workflow::Column::TenantId.eq(tenant.tenant_id))
                .filter(workflow::Column::Key.eq(key))
                .filter(workflow::Column::DeletedAt.is_null())
                .one(scope.tx().await?)
                .await?;
            Ok(found.map(Workflow))
        })
        .await
    }

    /// The active tenant's triggers (any member may list them; builders change them).
    async fn triggers(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many triggers to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the triggers after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            TriggerFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Trigger>> {
        list::page::<Trigger>(ctx, None, first, after, filter, order_by).await
    }
}

/// Loads, one statement each, the relations the selected workflows' page asks for.
async fn prefetch_workflow_relations(
    ctx: &Context<'_>,
    rows: &[&workflow::Model],
) -> async_graphql::Result<()> {
    let loader = ctx.loader()?;
    let fail = |e: std::sync::Arc<trellis_core::Error>| load_error(ctx, &e);
    if node_selects(ctx, "client") {
        prefetch(
            loader,
            rows.iter().filter_map(|w| w.client_id).map(ClientById),
        )
        .await
        .map_err(fail)?;
    }
    if node_selects(ctx, "triggers") {
        prefetch(loader, rows.iter().map(|w| TriggersOfWorkflow(w.id)))
            .await
            .map_err(fail)?;
    }
    prefetch_latest_runs(ctx, rows).await?;
    prefetch_stats(ctx, rows).await;
    let mut version_ids: Vec<Uuid> = vec![];
    if node_selects(ctx, "activeVersion") {
        let active: Vec<Uuid> = rows.iter().filter_map(|w| w.active_version_id).collect();
        prefetch(loader, active.iter().copied().map(WorkflowVersionById))
            .await
            .map_err(fail)?;
        version_ids.extend(active);
    }
    if node_selects(ctx, "versions") {
        prefetch(loader, rows.iter().map(|w| VersionsOfWorkflow(w.id)))
            .await
            .map_err(fail)?;
        for w in rows {
            let versions = loader
                .load_one(VersionsOfWorkflow(w.id))
                .await
                .map_err(fail)?;
            version_ids.extend(versions.unwrap_or_default().iter().map(|v| v.id));
        }
    }
    let selects_below = |field: &str| {
        ["versions", "activeVersion"]
            .iter()
            .any(|version| node_selection(ctx).field(version).field(field).exists())
    };
    if selects_below("stepCount") {
        prefetch(loader, version_ids.iter().copied().map(StepCountOfVersion))
            .await
            .map_err(fail)?;
    }
    if selects_below("steps") {
        prefetch(loader, version_ids.iter().copied().map(StepsOfVersion))
            .await
            .map_err(fail)?;
    }
    if selects_below("transitions") || selects_below("steps") {
        prefetch(
            loader,
            version_ids.iter().copied().map(TransitionsOfVersion),
        )
        .await
        .map_err(fail)?;
    }
    Ok(())
}

/// Loads the `stats` and `reports` the page's workflows select (both read the same
/// figures), one read per distinct range. Best effort: a range that does not parse or
/// fails to load is left to each workflow's own field, which reports the error where it
/// belongs.
async fn prefetch_stats(ctx: &Context<'_>, rows: &[&workflow::Model]) {
    use async_graphql::InputType;
    let selection = node_selection(ctx);
    let fields = selection
        .field("stats")
        .selection_fields()
        .into_iter()
        .chain(selection.field("reports").selection_fields());
    for field in fields {
        let Ok(arguments) = field.arguments() else {
            continue;
        };
        let argument = |name: &str| {
            arguments
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.clone())
        };
        let (Ok(period), Ok(from), Ok(to)) = (
            crate::runs::reports::ReportPeriod::parse(argument("period")),
            chrono::DateTime::<chrono::Utc>::parse(argument("from")),
            chrono::DateTime::<chrono::Utc>::parse(argument("to")),
        ) else {
            continue;
        };
        if trellis_core::runs::reports::buckets(period.into(), from, to).is_err() {
            continue;
        }
        let keys = rows.iter().map(|w| StatsOfWorkflow {
            workflow_id: w.id,
            period: period.into(),
            from,
            to,
        });
        if let Ok(loader) = ctx.loader() {
            let _ = prefetch(loader, keys).await;
        }
    }
}

/// When the page's workflows ask for their first runs (`runs(first: N)` without
/// `after`, `filter` or `orderBy`), loads them for every workflow in one statement,
/// and their step runs in one more when selected.
async fn prefetch_latest_runs(
    ctx: &Context<'_>,
    rows: &[&workflow::Model],
) -> async_graphql::Result<()> {
    let Some(runs) = node_selection(ctx)
        .field("runs")
        .selection_fields()
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    let mut first = None;
    for (name, value) in runs.arguments()? {
        match (name.as_str(), value) {
            ("first", async_graphql::Value::Number(n)) => first = n.as_i64(),
            ("first", async_graphql::Value::Null) => {}
            // Another shape of list: each workflow loads its own page.
            _ => return Ok(()),
        }
    }
    let first = match first {
        None => crate::pagination::DEFAULT_PAGE_SIZE as u64,
        Some(n) if (0..=i64::from(crate::pagination::MAX_PAGE_SIZE)).contains(&n) => n as u64,
        Some(_) => return Ok(()),
    };
    let loader = ctx.loader()?;
    let fail = |e: std::sync::Arc<trellis_core::Error>| load_error(ctx, &e);
    let run = node_selection(ctx)
        .field("runs")
        .field("edges")
        .field("node");
    // `edges { node }` and the `nodes` shortcut may both select fields.
    let columns = run_columns(&run).union(run_columns(
        &node_selection(ctx).field("runs").field("nodes"),
    ));
    let keys: Vec<LatestRunsOfWorkflow> = rows
        .iter()
        .map(|w| LatestRunsOfWorkflow {
            workflow_id: w.id,
            limit: first + 1,
            columns,
        })
        .collect();
    prefetch(loader, keys.iter().copied()).await.map_err(fail)?;
    let step_runs = run.field("stepRuns");
    if step_runs.exists() {
        let columns = step_run_columns(&step_runs);
        let mut run_ids = vec![];
        for key in keys {
            let runs = loader.load_one(key).await.map_err(fail)?;
            run_ids.extend(
                runs.unwrap_or_default()
                    .iter()
                    .take(first as usize)
                    .map(|r| StepRunsOfRun {
                        run_id: r.id,
                        columns,
                    }),
            );
        }
        prefetch(loader, run_ids).await.map_err(fail)?;
    }
    Ok(())
}
