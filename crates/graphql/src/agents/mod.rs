//! Agents: agents, their versions, labels and label history; templates and the skills
//! marketplace; usage, metrics and budgets; hosting (channels, activity, health).

pub mod hosting;
pub mod market;
pub mod mutation;
pub mod query;
pub mod types;
pub mod usage;

pub use hosting::{HostingMutation, HostingSubscription};
pub use market::{MarketMutation, MarketQuery};
pub use mutation::AgentsMutation;
pub use query::AgentsQuery;
pub use usage::UsageMutation;
