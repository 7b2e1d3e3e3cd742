//! Runs: listing and reading runs, starting, cancelling and retrying them, the
//! runner API for workers, and reports.

mod approvals;
pub mod logs;
mod mutation;
mod query;
pub mod reports;
pub(crate) mod subscription;
pub mod types;

pub use approvals::{ApprovalsMutation, ApprovalsQuery};
pub use mutation::RunsMutation;
pub use query::RunsQuery;
pub(crate) use query::{latest_runs_page, runs_page};
pub use subscription::{LogAppended, RunsSubscription};
