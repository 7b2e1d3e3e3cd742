//! Agents: agents, their versions, labels and label history; templates and the skills
//! marketplace; usage, metrics and budgets.

pub mod market;
pub mod mutation;
pub mod query;
pub mod types;
pub mod usage;

pub use market::{MarketMutation, MarketQuery};
pub use mutation::AgentsMutation;
pub use query::AgentsQuery;
pub use usage::UsageMutation;
