//! Identity and tenancy: viewer, tenants, members, invitations, API keys, audit log.

pub mod account;
mod mutation;
pub mod plans;
mod query;
pub mod types;

pub use account::AccountMutation;
pub use mutation::{IdInput, IdentityMutation};
pub use plans::{PlansMutation, PlansQuery};
pub use query::IdentityQuery;
