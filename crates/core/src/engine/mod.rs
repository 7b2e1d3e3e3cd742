//! The engine: how a run moves through its graph ([`routing`]), the condition
//! language ([`condition`]), the run context and config templates ([`context`]), retry
//! policies ([`retry`]), the step types it runs itself ([`steps`]), the
//! [`executor`] that claims runs and carries those decisions out in each tenant's
//! transaction, and the [`scheduler`] that fires schedule triggers (docs/engine.md).

pub mod condition;
pub mod context;
pub mod events;
pub mod executor;
pub mod path;
pub mod people;
pub mod retry;
pub mod routing;
pub mod scheduler;
pub mod steps;
