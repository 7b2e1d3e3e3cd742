//! Runs: listing and reading runs, starting, cancelling and retrying them, the
//! runner API for workers, and reports.

mod mutation;
mod query;
mod subscription;
pub mod reports;
pub mod types;

pub use mutation::RunsMutation;
pub use query::RunsQuery;
pub use subscription::{LogAppended, RunsSubscription};
pub(crate) use query::{latest_runs_page, runs_page};
