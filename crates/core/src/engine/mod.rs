//! The engine's pure core: how a run moves through its graph ([`routing`]), the
//! condition language ([`condition`]), the run context and config templates
//! ([`context`]), and retry policies ([`retry`]). The executor that claims runs and
//! carries out these decisions in each tenant's transaction builds on them
//! (docs/engine.md).

pub mod condition;
pub mod context;
pub mod path;
pub mod retry;
pub mod routing;
