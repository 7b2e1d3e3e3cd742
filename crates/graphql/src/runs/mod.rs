//! Runs: listing and reading runs, starting, cancelling and retrying them, and the
//! runner API for workers.

mod mutation;
mod query;
pub mod types;

pub use mutation::RunsMutation;
pub use query::RunsQuery;
pub(crate) use query::{latest_runs_page, runs_page};
