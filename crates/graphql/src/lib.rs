#![doc = include_str!("../README.md")]
// The merged root objects' futures are deep: proving them `Send` needs more than the
// default 128 levels once the schema grows (async-graphql's advice for large schemas).
#![recursion_limit = "256"]

#[macro_use]
mod payload;
pub mod agents;
pub mod alert_rules;
pub mod alerts;
pub mod context;
pub mod error;
pub mod identity;
pub mod ids;
pub mod in_place;
pub mod integrations;
pub mod limits;
mod list;
pub mod live;
pub mod loaders;
pub mod node;
pub mod notifications;
mod nulls;
pub mod order;
pub mod pagination;
pub mod processes;
pub mod runs;
pub mod telemetry;
mod together;
pub mod trusted;
pub mod workflows;

use async_graphql::{MergedObject, MergedSubscription, SDLExportOptions, Schema};

pub use context::{request_data, RequestData, Services};
pub use limits::Limits;
pub use live::LiveSession;

/// Every query field.
#[derive(MergedObject, Default)]
pub struct Query(
    node::NodeQuery,
    identity::IdentityQuery,
    identity::PlansQuery,
    integrations::IntegrationsQuery,
    workflows::WorkflowsQuery,
    runs::RunsQuery,
    runs::ApprovalsQuery,
    notifications::NotificationsQuery,
    processes::ProcessesQuery,
    processes::RateLimitsQuery,
    agents::AgentsQuery,
    agents::MarketQuery,
    alerts::AlertsQuery,
    alert_rules::AlertRulesQuery,
);

/// Every mutation field.
#[derive(MergedObject, Default)]
pub struct Mutation(
    identity::IdentityMutation,
    identity::AccountMutation,
    identity::PlansMutation,
    integrations::IntegrationsMutation,
    workflows::WorkflowsMutation,
    runs::RunsMutation,
    runs::ApprovalsMutation,
    notifications::NotificationsMutation,
    processes::ProcessesMutation,
    processes::RateLimitsMutation,
    agents::AgentsMutation,
    agents::MarketMutation,
    agents::UsageMutation,
    alerts::AlertsMutation,
    alert_rules::AlertRulesMutation,
    agents::HostingMutation,
);

/// Every subscription field (over graphql-ws only).
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    runs::RunsSubscription,
    alerts::AlertsSubscription,
    agents::HostingSubscription,
);

/// The Trellis schema.
pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema. `services` holds start-up configuration shared by all requests.
pub fn build_schema(services: Option<Services>, limits: &Limits) -> ApiSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_complexity(limits.complexity)
    .limit_recursive_depth(limits.recursive_depth)
    .override_output_type_description::<chrono::DateTime<chrono::Utc>>(
        "An instant, as an RFC 3339 date-time string. Inputs may use any offset \
         (`2025-03-01T09:00:00Z`, `2025-03-01T10:00:00+01:00`); outputs are in UTC, written \
         with `+00:00`, with fractional seconds only when there are any.",
    );
    if !limits.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    if let Some(services) = services {
        builder = builder.data(services);
    }
    builder.finish()
}

/// The SDL with fields, arguments and enum values sorted: what `schema.graphql` holds.
pub fn export_sdl() -> String {
    build_schema(None, &Limits::default()).sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items()
            .include_specified_by(),
    )
}
