//! The boundary between domain errors and GraphQL errors: a stable `extensions.code`,
//! the input field where there is one, and for internal errors only an opaque message
//! and the request id (the detail goes to the log).

use async_graphql::{ErrorExtensions, SimpleObject};
use trellis_core::Error;

/// A problem with a mutation's input, returned in its payload.
#[derive(Clone, Debug, SimpleObject)]
pub struct UserError {
    /// The input field at fault, as a path (`slug`, `steps.fetch.config/url`); null when
    /// the problem is not one field's.
    pub field: Option<String>,
    /// What is wrong, in words for the person who gave the input.
    pub message: String,
    /// What kind of problem: the input itself, or a clash with what exists.
    pub code: UserErrorCode,
}

/// The kinds of `UserError`, as the `extensions.code` of the same problems in queries.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserErrorCode {
    /// The input is invalid: fix the field and send it again.
    BadUserInput,
    /// The input clashes with what exists (a taken key or slug, a state that no longer
    /// allows the change); a concurrent change may have won.
    Conflict,
}

/// An error of a whole request (no path), refused before it runs, with `code` as its
/// `extensions.code`.
pub(crate) fn request_error(message: &str, code: &str) -> async_graphql::ServerError {
    let mut error = async_graphql::ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    error
}

/// Converts a domain error into a GraphQL error, logging internal ones.
pub fn to_graphql(err: &Error, request_id: &str) -> async_graphql::Error {
    let code = err.code();
    match err {
        Error::Internal(detail) => {
            tracing::error!(request_id, error = ?detail, "internal error");
            async_graphql::Error::new("internal error").extend_with(|_, e| {
                e.set("code", code);
                e.set("requestId", request_id);
            })
        }
        Error::BadInput { field, message } => {
            async_graphql::Error::new(message).extend_with(|_, e| {
                e.set("code", code);
                e.set("field", field.as_str());
            })
        }
        Error::Invalid(problems) => {
            let first = problems.first();
            let message = first.map_or("invalid input", |p| p.message.as_str());
            async_graphql::Error::new(message).extend_with(|_, e| {
                e.set("code", code);
                if let Some(first) = first {
                    e.set("field", first.field.as_str());
                }
            })
        }
        Error::LimitReached { field, message } => {
            async_graphql::Error::new(message).extend_with(|_, e| {
                e.set("code", code);
                e.set("field", field.as_str());
            })
        }
        Error::Conflict { field, message } => {
            async_graphql::Error::new(message).extend_with(|_, e| {
                e.set("code", code);
                if let Some(field) = field {
                    e.set("field", field.as_str());
                }
            })
        }
        Error::RateLimited {
            retry_after_seconds,
        } => async_graphql::Error::new(err.to_string()).extend_with(|_, e| {
            e.set("code", code);
            e.set("retryAfterSeconds", *retry_after_seconds);
        }),
        other => {
            async_graphql::Error::new(other.to_string()).extend_with(|_, e| e.set("code", code))
        }
    }
}

/// Splits input problems (shown as userErrors) from everything else (a GraphQL error).
pub fn user_errors(err: Error) -> Result<Vec<UserError>, Error> {
    match err {
        Error::BadInput { field, message } => Ok(vec![UserError {
            field: Some(field),
            message,
            code: UserErrorCode::BadUserInput,
        }]),
        Error::Invalid(problems) => Ok(problems
            .into_iter()
            .map(|p| UserError {
                field: Some(p.field),
                message: p.message,
                code: UserErrorCode::BadUserInput,
            })
            .collect()),
        Error::Conflict { field, message } => Ok(vec![UserError {
            field,
            message,
            code: UserErrorCode::Conflict,
        }]),
        other => Err(other),
    }
}
