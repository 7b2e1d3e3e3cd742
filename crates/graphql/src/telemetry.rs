//! What the schema counts for operators, through the `metrics` facade (the server
//! exports it): operations by type and name with their latency, and errors by code.
//! Operation names come from clients, so only valid GraphQL names of at most 64
//! characters are labels, and at most [`MAX_NAMES`] distinct ones; the rest count as
//! `other`, and operations without a name as `anonymous`.
//!
//! Whether traces are on ([`tracing_enabled`]) is kept here too: the request path
//! creates its spans (request, dataloader batches) only then.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_graphql::{ServerError, Value};

static TRACING: AtomicBool = AtomicBool::new(false);

/// Turns on the spans of requests and dataloader batches (the server does, when an
/// OpenTelemetry exporter is configured).
pub fn enable_tracing() {
    TRACING.store(true, Ordering::Relaxed);
}

/// Whether requests create spans for traces.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Distinct operation names kept as labels.
pub const MAX_NAMES: usize = 200;

static NAMES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The label for an operation name.
fn name_label(name: Option<&str>) -> String {
    let Some(name) = name else {
        return "anonymous".to_owned();
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return "other".to_owned();
    }
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if !names.contains(name) {
        if names.len() >= MAX_NAMES {
            return "other".to_owned();
        }
        names.insert(name.to_owned());
    }
    name.to_owned()
}

/// Records one executed operation: its count and latency by type and name, and its
/// errors by `extensions.code` (`GRAPHQL` for the engine's own, which have none).
pub(crate) fn record_operation(
    kind: &'static str,
    name: Option<&str>,
    elapsed: Duration,
    errors: &[ServerError],
) {
    let name = name_label(name);
    metrics::counter!("trellis_graphql_operations_total", "type" => kind, "name" => name.clone())
        .increment(1);
    metrics::histogram!("trellis_graphql_operation_duration_seconds", "type" => kind, "name" => name)
        .record(elapsed.as_secs_f64());
    for error in errors {
        let code = match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.clone(),
            _ => "GRAPHQL".to_owned(),
        };
        metrics::counter!("trellis_graphql_errors_total", "code" => code).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::name_label;

    #[test]
    fn names_are_bounded_labels() {
        assert_eq!(name_label(None), "anonymous");
        assert_eq!(name_label(Some("RunsPage")), "RunsPage");
        assert_eq!(name_label(Some("not a name")), "other");
        assert_eq!(name_label(Some(&"a".repeat(65))), "other");
    }
}
