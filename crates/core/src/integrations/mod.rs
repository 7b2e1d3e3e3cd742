//! Integrations: the connector catalog, secrets and connections.

pub mod manifest;
