//! Agents: AI agents a tenant builds. An agent has numbered versions (a markdown spec,
//! a spec JSON checked against a published JSON Schema, and a flow that is a workflow
//! version); one version at a time is active and runs, and active versions never
//! change. Labels (production, staging, …) point at versions and keep the history of
//! every move. Templates snapshot a version for copying into a tenant; skills from
//! the marketplace are installed on agents. An agent runs as a run of its version's flow
//! (`runs`), under its tool policy frozen at the start and enforced by the engine
//! (`policy`). Runners report each run's usage, rolled into hourly and daily metrics;
//! budgets gate runs (runAgent asks `budget::admit`) and raise alerts. Hosting: channels
//! an agent speaks through, its activity feed, and the health its runner reports. See
//! docs/agents.md.

pub mod activity;
pub mod agent;
pub mod budget;
pub mod channels;
pub mod health;
pub mod labels;
pub mod policy;
pub mod runs;
pub mod settings;
pub mod skills;
pub mod spec;
pub mod templates;
pub mod usage;
pub mod versions;

use crate::{Error, Result};

/// An agent slug: 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter
/// (the table's CHECK constraint).
pub(crate) fn check_slug(slug: &str) -> Result<String> {
    let slug = slug.trim();
    let valid = (2..=63).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(slug.to_owned())
    } else {
        Err(Error::bad_input(
            "slug",
            "slug must be 2 to 63 lowercase letters, digits, '_' or '-', starting with a letter",
        ))
    }
}
