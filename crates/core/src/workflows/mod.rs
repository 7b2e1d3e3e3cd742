//! Workflows: clients, workflows with versioned graphs of steps and transitions, and
//! the triggers that start their runs.

pub mod clients;
pub mod graph;
pub mod triggers;
pub mod workflow;

use crate::{Error, Result};

/// A workflow or trigger key: 2 to 63 lowercase letters, digits, '_' or '-', starting
/// with a letter (the same rule as the tables' CHECK constraints).
pub(crate) fn check_key(key: &str) -> Result<String> {
    let key = key.trim();
    let valid = (2..=63).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(Error::bad_input(
            "key",
            "key must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter",
        ))
    }
}
