#![doc = include_str!("../README.md")]

pub mod action;
pub mod agent;
pub mod agent_activity;
pub mod agent_channel;
pub mod agent_label;
pub mod agent_label_move;
pub mod agent_template;
pub mod agent_version;
pub mod alert;
pub mod alert_rule;
pub mod api_key;
pub mod app;
pub mod app_version;
pub mod approval_decision;
pub mod audit_event;
pub mod call_log;
pub mod client;
pub mod columns;
pub mod connection;
pub mod connection_secret;
pub mod container_health;
pub mod enums;
pub mod id;
pub mod invitation;
pub mod membership;
pub mod notification;
pub mod plan;
pub mod process;
pub mod process_deployment;
pub mod process_promotion;
pub mod process_version;
pub mod rate_limit;
pub mod refresh_token;
pub mod secret;
pub mod skill;
pub mod skill_installation;
pub mod step_attempt;
pub mod step_run;
pub mod tenant;
pub mod tenant_data_key;
pub mod trigger;
pub mod user;
pub mod workflow;
pub mod workflow_run;
pub mod workflow_step;
pub mod workflow_transition;
pub mod workflow_version;

pub use enums::{
    ActionKind, ActivityType, ActorType, AgentRole, AgentStatus, AgentVersionStatus, AlertRuleKind,
    AppCategory, CallStatus, ChannelType, Environment, HealthStatus, InvitationStatus, ModelTier,
    PlatformRole, ProviderKind, ResponseFormat, Role, RunStatus, Severity, SkillCategory,
    SkillStatus, StepRunStatus, StepType, TemplateCategory, TenantStatus, ThinkingMode,
    TriggerType, VersionStatus, WorkflowStatus,
};
pub use id::{IdKind, PrefixedId};
