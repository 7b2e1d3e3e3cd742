//! Domain errors. Each carries a stable code; `Internal` keeps its detail for the log
//! and is never shown to a client.

use sea_orm::DbErr;

/// What went wrong, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    BadInput { field: String, message: String },
    /// Several input problems found in one pass (a whole workflow graph), each with its
    /// field; never empty.
    #[error("{} problems with the input", .0.len())]
    Invalid(Vec<FieldProblem>),
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// A limit of the tenant's plan (or of its own settings) is reached: retrying does
    /// not help until something is removed or the plan changes.
    #[error("{message}")]
    LimitReached { field: String, message: String },
    /// Too many attempts: retry after the given seconds.
    #[error("too many attempts; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u32 },
    /// A model provider gave no answer; `code` says why (`PROVIDER_TIMEOUT`, …).
    #[error("{message}")]
    Provider { code: &'static str, message: String },
    /// The database cannot be reached (no connection within the pool's acquire timeout,
    /// or the connection broke): retry shortly.
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with one input field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Error {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Error::Conflict {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The stable code clients switch on (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::NotFound => "NOT_FOUND",
            Error::BadInput { .. } | Error::Invalid(_) => "BAD_USER_INPUT",
            Error::Conflict { .. } => "CONFLICT",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::LimitReached { .. } => "LIMIT_REACHED",
            Error::Provider { code, .. } => code,
            Error::Unavailable => "UNAVAILABLE",
            Error::Internal(_) => "INTERNAL",
        }
    }
}

/// Constraint names the API explains, with the input field they concern.
const CONSTRAINTS: &[(&str, &str, &str)] = &[
    ("tenants_slug_key", "slug", "a tenant with this slug already exists"),
    ("tenants_slug_format", "slug", "slug must be 3 to 64 lowercase letters, digits or dashes, not starting or ending with a dash"),
    ("tenants_name_length", "name", "name must be 1 to 200 characters"),
    ("users_email_key", "email", "a user with this email already exists"),
    ("users_email_format", "email", "not a valid email address"),
    ("memberships_tenant_user_key", "email", "this user is already a member"),
    ("invitations_pending_email_key", "email", "an invitation for this email is already pending"),
    ("api_keys_active_name_key", "name", "an API key with this name already exists"),
    ("apps_tenant_key_key", "key", "an app with this key already exists"),
    ("apps_key_format", "key", "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("apps_name_length", "name", "name must be 1 to 200 characters"),
    ("app_versions_app_version_key", "version", "this app already has this version"),
    ("app_versions_version_format", "version", "version must be MAJOR.MINOR.PATCH"),
    ("app_versions_published_immutable", "id", "this app version is published and cannot change"),
    ("actions_version_key_key", "actions", "another action of this version has this key"),
    ("secrets_tenant_name_key", "name", "a secret with this name already exists"),
    ("secrets_name_format", "name", "name must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter"),
    ("connections_tenant_name_key", "name", "a connection with this name already exists"),
    ("connections_name_length", "name", "name must be 1 to 200 characters"),
    ("clients_name_length", "name", "name must be 1 to 200 characters"),
    ("clients_email_format", "email", "not a valid email address"),
    ("workflows_tenant_key_key", "key", "a workflow with this key already exists"),
    ("workflows_key_format", "key", "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("workflows_name_length", "name", "name must be 1 to 200 characters"),
    ("workflows_active_version_published", "versionId", "the active version must be a published version of this workflow"),
    ("workflow_versions_number_key", "workflowId", "another version was created at the same time; try again"),
    ("workflow_versions_published_immutable", "versionId", "this workflow version is published and cannot change"),
    ("triggers_tenant_key_key", "key", "a trigger with this key already exists"),
    ("processes_tenant_key_key", "key", "a process with this key already exists"),
    ("processes_key_format", "key", "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("processes_name_length", "name", "name must be 1 to 200 characters"),
    ("process_versions_number_key", "processId", "another version was created at the same time; try again"),
    ("process_versions_published_immutable", "id", "this process version is published and cannot change"),
    ("process_versions_model_connection", "connectionId", "a model provider needs a connection and a model"),
    ("process_deployments_version_published", "versionId", "an environment serves only a published version promoted to it"),
    ("triggers_key_format", "key", "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("agents_tenant_slug_key", "slug", "an agent with this slug already exists"),
    ("agents_slug_format", "slug", "slug must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("agents_name_length", "name", "name must be 1 to 200 characters"),
    ("agents_tool_policy_shape", "toolPolicy", "a tool policy is {\"tools\": {\"<key>\": \"ALLOW\" | \"ASK\" | \"DENY\"}, \"default\": …}"),
    ("agents_budget_shape", "budget", "a budget has only monthlyCostLimit and monthlyTokenLimit, both numbers"),
    ("agents_active_version_active", "id", "an agent runs only one of its active versions"),
    ("agent_versions_number_key", "agentId", "another version was created at the same time; try again"),
    ("agent_versions_one_active_key", "id", "another version was activated at the same time; try again"),
    ("agent_versions_active_immutable", "id", "this agent version is not a draft and cannot change"),
    ("agent_versions_flow_published", "flowVersionId", "the flow of an active agent version must be a published workflow version"),
    ("agent_labels_name_key", "label", "this label was created at the same time; try again"),
    ("agent_labels_name_format", "label", "a label is 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("agent_channels_one_active_key", "type", "this agent already has an active channel of this type; deactivate it first"),
    ("agent_channels_config_shape", "config", "a channel's config has only its type's keys"),
    ("agent_activities_summary_length", "summary", "summary must be 1 to 1000 characters"),
    ("agent_activities_details_shape", "details", "details must be a JSON object of at most 64 KiB"),
    ("plans_limits_shape", "limits", "limits are whole numbers from 0 for agents, monthlyRuns, maxConcurrentRuns, logRetentionDays and auditRetentionDays"),
    ("skills_tenant_key_key", "key", "a skill with this key already exists"),
    ("skills_key_format", "key", "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("skills_name_length", "name", "name must be 1 to 200 characters"),
    ("skills_version_format", "version", "version must be MAJOR.MINOR.PATCH"),
    ("skills_permissions_format", "permissions", "a permission is 1 to 63 lowercase letters, digits, '_', '.', ':' or '-', starting with a letter"),
    ("skill_installations_agent_skill_key", "skillId", "this skill is already installed on this agent"),
    ("agent_templates_tenant_slug_key", "slug", "a template with this slug already exists"),
    ("agent_templates_slug_format", "slug", "slug must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter"),
    ("agent_templates_name_length", "name", "name must be 1 to 200 characters"),
    ("alert_rules_tenant_name_key", "name", "an alert rule with this name already exists"),
    ("alert_rules_name_length", "name", "name must be 1 to 200 characters"),
    ("alert_rules_shape", "threshold", "these settings do not fit the rule's kind"),
];

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        if let Some(db) = database_error(&err) {
            let constraint = db.constraint().unwrap_or_default();
            let known = CONSTRAINTS.iter().find(|(name, _, _)| *name == constraint);
            match (db.code().as_deref(), known) {
                // unique_violation
                (Some("23505"), Some((_, field, message))) => {
                    return Error::conflict(Some(field), *message)
                }
                (Some("23505"), None) => return Error::conflict(None, "already exists"),
                // check_violation: a start past the plan's runs this month (migration
                // 000037), then the checks that name a field.
                (Some("23514"), _) if constraint == "run_counts_within_plan" => {
                    return Error::LimitReached {
                        field: crate::plans::MONTHLY_RUNS_FIELD.into(),
                        message: "this tenant has started as many runs this month as its plan \
                                  allows; change plan or wait for the next month (UTC)"
                            .into(),
                    }
                }
                (Some("23514"), Some((_, field, message))) => {
                    return Error::bad_input(*field, *message)
                }
                // integrity_constraint_violation, raised by triggers that keep rows
                // immutable (a published app version).
                (Some("23000"), Some((_, field, message))) => {
                    return Error::conflict(Some(field), *message)
                }
                // foreign_key_violation on delete: the row is still referenced.
                (Some("23503"), _) if db.message().starts_with("update or delete on") => {
                    return Error::conflict(None, "this is still in use")
                }
                // foreign_key_violation: the referenced row is not visible to this tenant,
                // which is the same as not existing.
                (Some("23503"), _) => return Error::NotFound,
                // serialization_failure, deadlock_detected, lock_not_available
                (Some("40001" | "40P01" | "55P03"), _) => {
                    return Error::conflict(None, "a concurrent change won; try again")
                }
                _ => {}
            }
        }
        if is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return Error::Unavailable;
        }
        Error::Internal(anyhow::Error::new(err))
    }
}

/// Whether a database error means the server cannot be reached (rather than that a
/// statement was wrong): no connection from the pool, or a connection that broke.
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr::SqlxError;
    match err {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(SqlxError(_)) => true,
        DbErr::Query(SqlxError(e)) | DbErr::Exec(SqlxError(e)) => {
            matches!(
                e,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            ) || is_broken_connection(err)
        }
        _ => false,
    }
}

/// Whether a statement failed because its connection is broken: an I/O or protocol
/// error, or the server ended the session (class 08, or 57P01–57P03: shut down,
/// terminated by an administrator, cannot connect now).
pub(crate) fn is_broken_connection(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr::SqlxError;
    let (DbErr::Query(SqlxError(e)) | DbErr::Exec(SqlxError(e))) = err else {
        return false;
    };
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// The PostgreSQL error under a sea-orm error, if there is one.
pub fn database_error(err: &DbErr) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    let (DbErr::Query(runtime) | DbErr::Exec(runtime) | DbErr::Conn(runtime)) = err else {
        return None;
    };
    match runtime {
        sea_orm::RuntimeErr::SqlxError(sqlx::Error::Database(db)) => Some(db.as_ref()),
        _ => None,
    }
}
