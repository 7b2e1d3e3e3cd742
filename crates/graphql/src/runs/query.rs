use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use trellis_entity::{workflow_run, Role};
use uuid::Uuid;

use super::reports::{self, ReportPeriod, RunStatsBucket};
use super::types::{run_columns, step_run_columns, RunFilter, WorkflowRun};
use crate::context::{load_error, run, ContextExt};
use crate::list;
use crate::loaders::{prefetch, LatestRunsOfAgent, LatestRunsOfWorkflow, StepRunsOfRun};
use crate::pagination::{first_page, node_selection, CreatedOrderBy, Page};

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
        if node_selection(ctx).field("report").exists() {
            prefetch(
                loader,
                page.edges
                    .iter()
                    .map(|e| super::reports::report_steps_key(e.node.0.id)),
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

/// A page of runs, of one workflow or of the tenant.
pub(crate) async fn runs_page(
    ctx: &Context<'_>,
    workflow: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    filter: RunFilter,
    order_by: Option<CreatedOrderBy>,
) -> async_graphql::Result<Page<WorkflowRun>> {
    let within = workflow.map(|id| Condition::all().add(workflow_run::Column::WorkflowId.eq(id)));
    list::page::<WorkflowRun>(ctx, within, first, after, Some(filter), order_by).await
}

/// The first page of an agent's newest runs, from the batched loader: a list of agents
/// asking for their latest runs costs one statement.
pub(crate) async fn latest_agent_runs_page(
    ctx: &Context<'_>,
    agent: Uuid,
    first: u64,
) -> async_graphql::Result<Page<WorkflowRun>> {
    let scope = ctx.scope()?;
    let tenant = run(ctx, scope.require(Role::Viewer)).await?;
    let rows = ctx
        .loader()?
        .load_one(LatestRunsOfAgent {
            agent_id: agent,
            limit: first + 1,
            columns: run_columns(&node_selection(ctx))
                .union(run_columns(&ctx.look_ahead().field("nodes"))),
        })
        .await
        .map_err(|e| load_error(ctx, &e))?
        .unwrap_or_default();
    let count = workflow_run::Entity::find()
        .filter(workflow_run::Column::TenantId.eq(tenant.tenant_id))
        .filter(workflow_run::Column::AgentId.eq(agent));
    Ok(first_page(scope, count, rows, first))
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
    let count = workflow_run::Entity::find()
        .filter(workflow_run::Column::TenantId.eq(tenant.tenant_id))
        .filter(workflow_run::Column::WorkflowId.eq(workflow));
    Ok(first_page(scope, count, rows, first))
}
