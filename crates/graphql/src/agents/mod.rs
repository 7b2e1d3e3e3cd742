//! Agents: agents, their versions, labels and label history; templates and the skills
//! marketplace.

pub mod market;
pub mod mutation;
pub mod query;
pub mod types;

pub use market::{MarketMutation, MarketQuery};
pub use mutation::AgentsMutation;
pub use query::AgentsQuery;
