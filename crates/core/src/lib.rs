#![doc = include_str!("../README.md")]

pub mod accounts;
pub mod agents;
pub mod alert_rules;
pub mod alerts;
pub mod audit;
pub mod audit_archive;
pub mod auth;
pub mod crypto;
pub mod doctor;
pub mod egress;
pub mod email;
pub mod engine;
pub mod error;
pub mod identity;
pub mod input;
pub mod integrations;
pub mod logs;
pub mod mail;
pub mod notifications;
pub mod plans;
pub mod processes;
pub mod purge;
pub mod runs;
pub mod scope;
pub(crate) mod soft_delete;
pub mod throttle;
pub mod tx;
pub mod upkeep;
pub mod workflows;

pub use anyhow;
pub use error::{Error, Result};
pub use scope::{AppDb, Principal, RequestMeta, RequestScope, TenantCtx};
