//! Processes: prompt logic a tenant writes once and calls as an API. A process has
//! versions (prompt templates and model settings); each environment serves one
//! published version. Invocations are checked against the process's schemas, answered
//! from the response cache or a model provider, and logged with their usage. See
//! docs/processes.md.

pub mod calls;
pub mod invoke;
pub mod limits;
pub mod log_queue;
pub mod process;
pub mod prompt;
pub mod providers;
pub mod upkeep;
pub mod usage;
pub mod versions;
