//! Integrations: the connector catalog, secrets and connections.

mod mutation;
mod query;
pub mod types;

pub use mutation::IntegrationsMutation;
pub use query::IntegrationsQuery;
