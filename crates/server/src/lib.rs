#![doc = include_str!("../README.md")]

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
