//! Processes: prompt logic served as versioned APIs, their versions, promotions, calls
//! and usage; `invokeProcess` calls one.

pub mod mutation;
pub mod query;
pub mod types;

pub use mutation::ProcessesMutation;
pub use query::ProcessesQuery;
