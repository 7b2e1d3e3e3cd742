//! Workflows: clients, workflows and their versioned graphs, triggers.

mod mutation;
mod query;
pub mod types;

pub use mutation::WorkflowsMutation;
pub use query::WorkflowsQuery;
