use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Select};
use trellis_entity::{workflow_run, IdKind, Role};
use uuid::Uuid;

use super::reports::{self, ReportPeriod, RunStatsBucket};
use super::types::{run_columns, step_run_columns, RunFilter, WorkflowRun};
use crate::context::{load_error, run, ContextExt};
use crate::ids;
use crate::loaders::{prefetch, LatestRunsOfWorkflow, StepRunsOfRun, WorkflowById};
use crate::pagination::{
    first_page, load_page, node_selection, node_selects, CreatedOrderBy, Page, PageArgs,
};

#[derive(Default)]
pub struct RunsQuery;

#[Object]
impl RunsQuery {
    /// The active tenant's runs (any member may list them), newest first by default.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many runs to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the runs after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            RunFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<WorkflowRun>> {
        let page = runs_page(
            ctx,
            None,
            first,
            after,
            filter.unwrap_or_default(),
            order_by,
        )
        .await?;
        let loader = ctx.loader()?;
        if node_selects(ctx, "workflow") {
            prefetch(
                loader,
                page.edges
                    .iter()
                    .map(|e| WorkflowById(e.node.0.workflow_id)),
            )
            .await
            .map_err(|e| load_error(ctx, &e))?;
        }
        let step_runs = node_selection(ctx).field("stepRuns");
        if step_runs.exists() {
            let columns = step_run_columns(&step_runs);
            prefetch(
                loader,
                page.edges.iter().map(|e| StepRunsOfRun {
                    run_id: e.node.0.id,
                    columns,
                }),
            )
            .await
            .map_err(|e| load_error(ctx, &e))?;
        }
        Ok(page)
    }

    /// The active tenant's runs per period by current status, for the dashboard (any
    /// member): every period from the one holding `from` up to `to` (at most 400),
    /// counted by `createdAt` in UTC. Simulations are left out. `workflow` narrows to
    /// one workflow; another tenant's counts as one with no runs.
    async fn run_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The length of each bucket.")] period: ReportPeriod,
        #[graphql(desc = "The range's start: the first bucket is the period holding it.")]
        from: DateTime<Utc>,
        #[graphql(
            desc = "The range's end, after `from`: buckets begin before it. More than 400 buckets is BAD_USER_INPUT."
        )]
        to: DateTime<Utc>,
        #[graphql(desc = "Only this workflow's runs (`wf_…`); the whole tenant's when omitted.")]
        workflow: Option<ID>,
    ) -> async_graphql::Result<Vec<RunStatsBucket>> {
        reports::run_stats(ctx, period, from, to, workflow).await
    }
}

fn filtered(
    tenant_id: Uuid,
    workflow: Option<Uuid>,
    filter: RunFilter,
) -> trellis_core::Result<Select<workflow_run::Entity>> {
    let mut select =
        workflow_run::Entity::find().filter(workflow_run::Column::TenantId.eq(tenant_id));
    if let Some(workflow) = workflow {
        select = select.filter(workflow_run::Column::WorkflowId.eq(workflow));
    }
    if let Some(workflow) = filter.workflow {
        select = select
            .filter(workflow_run::Column::WorkflowId.eq(ids::parse(&workflow, IdKind::Workflow)?));
    }
    if let Some(statuses) = filter.status {
        select = select.filter(
            workflow_run::Column::Status
                .is_in(statuses.into_iter().map(trellis_entity::RunStatus::from)),
        );
    }
    if let Some(trigger_type) = filter.trigger_type {
        select = select.filter(
            workflow_run::Column::TriggerType.eq(trellis_entity::TriggerType::from(trigger_type)),
        );
    }
    if let Some(simulation) = filter.simulation {
        select = select.filter(workflow_run::Column::IsSimulation.eq(simulation));
    }
    if let Some(after) = filter.created_after {
        select = select.filter(workflow_run::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        select = select.filter(workflow_run::Column::CreatedAt.lt(before));
    }
    Ok(select)
}

/// A page of runs, of one workflow or of the tenant.
pub(crate) async fn runs_page(
    ctx: &Context<'_>,
    workflow: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    filter: RunFilter,
    order_by: Option<CreatedOrderBy>,
) -> async_graphql::Result<Page<WorkflowRun>> {
    let scope = ctx.scope()?;
    run(ctx, async {
        let tenant = scope.require(Role::Viewer).await?;
        let args = PageArgs::new(first, after, order_by)?;
        let select = filtered(tenant.tenant_id, workflow, filter)?;
        load_page(
            scope,
            select,
            workflow_run::Column::CreatedAt,
            workflow_run::Column::Id,
            args,
        )
        .await
    })
    .await
}

/// The first page of a workflow's newest runs, from the batched loader: a list of
/// workflows asking for their latest runs costs one statement.
pub(crate) async fn latest_runs_page(
    ctx: &Context<'_>,
    workflow: Uuid,
    first: u64,
) -> async_graphql::Result<Page<WorkflowRun>> {
    let scope = ctx.scope()?;
    let tenant = run(ctx, scope.require(Role::Viewer)).await?;
    let rows = ctx
        .loader()?
        .load_one(LatestRunsOfWorkflow {
            workflow_id: workflow,
            limit: first + 1,
            // `edges { node }` and the `nodes` shortcut may both select fields.
            columns: run_columns(&node_selection(ctx))
                .union(run_columns(&ctx.look_ahead().field("nodes"))),
        })
        .await
        .map_err(|e| load_error(ctx, &e))?
        .unwrap_or_default();
    let count = filtered(tenant.tenant_id, Some(workflow), RunFilter::default())
        .map_err(|e| load_error(ctx, &e))?;
    Ok(first_page(scope, count, rows, first))
}
