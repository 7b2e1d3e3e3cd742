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
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("rate limited")]
    RateLimited,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
            Error::BadInput { .. } => "BAD_USER_INPUT",
            Error::Conflict { .. } => "CONFLICT",
            Error::RateLimited => "RATE_LIMITED",
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
                // check_violation
                (Some("23514"), Some((_, field, message))) => {
                    return Error::bad_input(*field, *message)
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
        Error::Internal(anyhow::Error::new(err))
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
