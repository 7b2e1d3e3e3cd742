#![doc = include_str!("../README.md")]

pub mod action;
pub mod api_key;
pub mod app;
pub mod app_version;
pub mod audit_event;
pub mod connection;
pub mod connection_secret;
pub mod enums;
pub mod id;
pub mod invitation;
pub mod membership;
pub mod refresh_token;
pub mod secret;
pub mod tenant;
pub mod tenant_data_key;
pub mod user;

pub use enums::{
    ActionKind, ActorType, AppCategory, InvitationStatus, PlatformRole, Role, Severity, TenantPlan,
    TenantStatus,
};
pub use id::{IdKind, PrefixedId};
