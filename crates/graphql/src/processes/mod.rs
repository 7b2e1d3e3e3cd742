//! Processes: prompt logic served as versioned APIs, their versions, promotions, calls
//! and usage; `invokeProcess` calls one.

pub mod limits;
pub mod mutation;
pub mod query;
pub mod types;

pub use limits::{RateLimitsMutation, RateLimitsQuery};
pub use mutation::ProcessesMutation;
pub use query::ProcessesQuery;
