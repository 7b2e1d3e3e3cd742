#![doc = include_str!("../README.md")]
// The merged query root is deep enough that laying out its resolver futures in a
// release build needs more than the default 128 levels (as in trellis-graphql).
#![recursion_limit = "256"]

pub mod app;
pub mod bootstrap;
pub mod config;
pub mod embedded_pg;
pub mod graphql_http;
pub mod http;
pub mod otel;
pub mod process_api;
pub mod serve;
pub mod state;
pub mod telemetry;
