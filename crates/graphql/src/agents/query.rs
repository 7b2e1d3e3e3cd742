use async_graphql::{Context, Object};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use trellis_entity::{agent, Role};

use super::types::{Agent, AgentFilter};
use crate::context::{run, ContextExt};
use crate::list;
use crate::pagination::{CreatedOrderBy, Page};
use crate::payload::Json;

#[derive(Default)]
pub struct AgentsQuery;

#[Object]
impl AgentsQuery {
    /// The active tenant's agents (any member). Versions, labels, label moves, users,
    /// budget status and alerts cost one statement each per page; the active version,
    /// skills, template, first activities and metrics one statement together.
    async fn agents(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many agents to return: 0 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Return the agents after this cursor (an edge's `cursor`, usually `pageInfo.endCursor` of the previous page); from the start when omitted."
        )]
        after: Option<String>,
        #[graphql(desc = "Narrows the list; every condition given must hold.")] filter: Option<
            AgentFilter,
        >,
        #[graphql(desc = "Order by creation time; CREATED_AT_DESC (newest first) when omitted.")]
        order_by: Option<CreatedOrderBy>,
    ) -> async_graphql::Result<Page<Agent>> {
        let page = list::page::<Agent>(ctx, None, first, after, filter, order_by).await?;
        let rows: Vec<&agent::Model> = page.edges.iter().map(|e| &e.node.0).collect();
        crate::alerts::prefetch_agent_alerts(ctx, &rows).await?;
        Ok(page)
    }

    /// An agent of the active tenant by slug (any member); null when no live agent has
    /// it.
    async fn agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent's slug; a deleted agent is not found (null).")] slug: String,
    ) -> async_graphql::Result<Option<Agent>> {
        let scope = ctx.scope()?;
        run(ctx, async {
            let tenant = scope.require(Role::Viewer).await?;
            let found = agent::Entity::find()
                .filter(agent::Column::TenantId.eq(tenant.tenant_id))
                .filter(agent::Column::Slug.eq(slug))
                .filter(agent::Column::DeletedAt.is_null())
                .one(scope.tx().await?)
                .await?;
            Ok(found.map(Agent))
        })
        .await
    }

    /// The JSON Schema (2020-12) every agent version's `spec` satisfies, as
    /// docs/agents.md publishes it.
    async fn agent_spec_schema(&self) -> Json<serde_json::Value> {
        Json(trellis_core::agents::spec::spec_schema())
    }
}
