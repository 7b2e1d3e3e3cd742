//! Runs: executions of a workflow version and their step runs. Operators start,
//! cancel and retry them ([`start`]); workers holding a runner API key claim them
//! under a lease and move their steps ([`runner`]); jobs clear old payloads
//! ([`retention`]) and roll finished periods up for reports ([`reports`]); every
//! change is announced for live updates ([`events`]) and fanned out to this process's
//! subscriptions ([`live`]).

pub mod approvals;
pub mod events;
pub mod live;
pub mod reports;
pub mod retention;
pub mod runner;
pub mod start;
pub mod state;
pub(crate) mod triggered;
pub mod webhook;

use std::time::Duration;

/// Settings of the runs domain, read once at start-up.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// How long an idempotency key names its run (24 h by default).
    pub idempotency_ttl: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}
