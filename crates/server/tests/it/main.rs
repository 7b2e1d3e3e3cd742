//! The one integration-test binary: real PostgreSQL, the application role, the real
//! router. Each module's doc names the guarantee its tests defend.

mod abuse;
mod approvals;
mod audit;
mod auth;
mod batches;
mod catalog;
mod connections;
mod doctor;
mod egress;
mod engine;
mod events;
mod graphql_api;
mod http;
mod isolation_engine;
mod isolation_graphql;
mod isolation_integrations;
mod isolation_runs;
mod isolation_sql;
mod isolation_workflows;
mod limits;
mod logs;
mod migrations;
mod mongo;
mod reports;
mod runs;
mod scheduler;
mod schema_docs;
mod secrets;
mod serving;
mod signup;
mod subscriptions;
mod support;
mod traces;
mod triggers;
mod workflows;
