//! Workflows: clients, workflows with versioned graphs of steps and transitions, and
//! the triggers that start their runs.

pub mod clients;
pub mod graph;
pub mod triggers;
pub mod workflow;
