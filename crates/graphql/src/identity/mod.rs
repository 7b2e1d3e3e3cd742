//! Identity and tenancy: viewer, tenants, members, invitations, API keys, audit log.

mod mutation;
mod query;
pub mod types;

pub use mutation::{IdInput, IdentityMutation};
pub use query::IdentityQuery;
