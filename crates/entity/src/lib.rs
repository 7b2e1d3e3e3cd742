#![doc = include_str!("../README.md")]

pub mod api_key;
pub mod audit_event;
pub mod enums;
pub mod id;
pub mod invitation;
pub mod membership;
pub mod refresh_token;
pub mod tenant;
pub mod user;

pub use enums::{
    ActorType, InvitationStatus, PlatformRole, Role, Severity, TenantPlan, TenantStatus,
};
pub use id::{IdKind, PrefixedId};
