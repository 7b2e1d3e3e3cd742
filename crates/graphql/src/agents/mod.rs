//! Agents: agents, their versions, labels and label history.

pub mod mutation;
pub mod query;
pub mod types;

pub use mutation::AgentsMutation;
pub use query::AgentsQuery;
