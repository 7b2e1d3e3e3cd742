//! Integrations: the connector catalog, secrets and connections.

pub mod catalog;
pub mod connections;
pub mod manifest;
pub mod secrets;
