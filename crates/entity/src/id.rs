//! Prefixed, type-tagged IDs: `ten_0192f3…` names a tenant, `usr_…` a user. The database
//! keeps plain UUIDv7s; the prefix exists only at the API edge.

use std::fmt;

use uuid::Uuid;

/// The kinds of object that have a global ID, with their prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    Tenant,
    User,
    Membership,
    Invitation,
    ApiKey,
    AuditEvent,
    App,
    AppVersion,
    Action,
    Secret,
    Connection,
    Client,
    Workflow,
    WorkflowVersion,
    WorkflowStep,
    WorkflowTransition,
    Trigger,
    WorkflowRun,
    StepRun,
    LogLine,
    Notification,
    Process,
    ProcessVersion,
    ProcessPromotion,
    CallLog,
    RateLimit,
    /// A signed-in session: a refresh-token family.
    Session,
    Agent,
    AgentVersion,
    AgentLabel,
    AgentLabelMove,
    AgentTemplate,
    Skill,
    SkillInstallation,
    Alert,
    AgentUsage,
    AgentChannel,
    AgentActivity,
    ContainerHealth,
    AlertRule,
}

impl IdKind {
    pub const ALL: [IdKind; 40] = [
        IdKind::Tenant,
        IdKind::User,
        IdKind::Membership,
        IdKind::Invitation,
        IdKind::ApiKey,
        IdKind::AuditEvent,
        IdKind::App,
        IdKind::AppVersion,
        IdKind::Action,
        IdKind::Secret,
        IdKind::Connection,
        IdKind::Client,
        IdKind::Workflow,
        IdKind::WorkflowVersion,
        IdKind::WorkflowStep,
        IdKind::WorkflowTransition,
        IdKind::Trigger,
        IdKind::WorkflowRun,
        IdKind::StepRun,
        IdKind::LogLine,
        IdKind::Notification,
        IdKind::Process,
        IdKind::ProcessVersion,
        IdKind::ProcessPromotion,
        IdKind::CallLog,
        IdKind::RateLimit,
        IdKind::Session,
        IdKind::Agent,
        IdKind::AgentVersion,
        IdKind::AgentLabel,
        IdKind::AgentLabelMove,
        IdKind::AgentTemplate,
        IdKind::Skill,
        IdKind::SkillInstallation,
        IdKind::Alert,
        IdKind::AgentUsage,
        IdKind::AgentChannel,
        IdKind::AgentActivity,
        IdKind::ContainerHealth,
        IdKind::AlertRule,
    ];

    /// The prefix, without its underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Tenant => "ten",
            IdKind::User => "usr",
            IdKind::Membership => "mem",
            IdKind::Invitation => "inv",
            IdKind::ApiKey => "key",
            IdKind::AuditEvent => "aud",
            IdKind::App => "app",
            IdKind::AppVersion => "apv",
            IdKind::Action => "act",
            IdKind::Secret => "sec",
            IdKind::Connection => "con",
            IdKind::Client => "cli",
            IdKind::Workflow => "wf",
            IdKind::WorkflowVersion => "wfv",
            IdKind::WorkflowStep => "stp",
            IdKind::WorkflowTransition => "trn",
            IdKind::Trigger => "trg",
            IdKind::WorkflowRun => "run",
            IdKind::StepRun => "srn",
            IdKind::LogLine => "log",
            IdKind::Notification => "ntf",
            IdKind::Process => "proc",
            IdKind::ProcessVersion => "prv",
            IdKind::ProcessPromotion => "prm",
            IdKind::CallLog => "call",
            IdKind::RateLimit => "rl",
            IdKind::Session => "ses",
            IdKind::Agent => "agt",
            IdKind::AgentVersion => "agv",
            IdKind::AgentLabel => "agl",
            IdKind::AgentLabelMove => "alm",
            IdKind::AgentTemplate => "tpl",
            IdKind::Skill => "skl",
            IdKind::SkillInstallation => "ski",
            IdKind::Alert => "alr",
            IdKind::AgentUsage => "agu",
            IdKind::AgentChannel => "chn",
            IdKind::AgentActivity => "acv",
            IdKind::ContainerHealth => "hlt",
            IdKind::AlertRule => "alrr",
        }
    }
}

/// A UUID together with the kind of object it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixedId {
    pub kind: IdKind,
    pub uuid: Uuid,
}

impl PrefixedId {
    pub fn new(kind: IdKind, uuid: Uuid) -> Self {
        Self { kind, uuid }
    }

    /// Parses `ten_<32 hex digits>`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (prefix, hex) = s.split_once('_')?;
        let kind = IdKind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            kind,
            uuid: Uuid::try_parse(hex).ok()?,
        })
    }

    /// Parses an ID that must be of `kind`.
    pub fn parse_as(s: &str, kind: IdKind) -> Option<Uuid> {
        Self::parse(s)
            .filter(|id| id.kind == kind)
            .map(|id| id.uuid)
    }
}

impl fmt::Display for PrefixedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.kind.prefix(), self.uuid.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_wrong_prefixes() {
        let uuid = Uuid::now_v7();
        let id = PrefixedId::new(IdKind::Tenant, uuid).to_string();
        assert!(id.starts_with("ten_"));
        assert_eq!(PrefixedId::parse_as(&id, IdKind::Tenant), Some(uuid));
        assert_eq!(PrefixedId::parse_as(&id, IdKind::User), None);
        assert_eq!(PrefixedId::parse("ten_xyz"), None);
        assert_eq!(PrefixedId::parse(&format!("zzz_{}", uuid.simple())), None);
        assert_eq!(PrefixedId::parse(&uuid.to_string()), None);
    }

    #[test]
    fn every_kind_has_its_own_prefix() {
        let mut prefixes: Vec<&str> = IdKind::ALL.iter().map(|k| k.prefix()).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), IdKind::ALL.len());
        let rule = PrefixedId::new(IdKind::AlertRule, Uuid::now_v7()).to_string();
        assert!(rule.starts_with("alrr_"));
        assert_eq!(
            PrefixedId::parse(&rule).map(|id| id.kind),
            Some(IdKind::AlertRule)
        );
        // An alert's ID is never read as a rule's, nor the other way round.
        assert_eq!(PrefixedId::parse_as(&rule, IdKind::Alert), None);
    }
}
