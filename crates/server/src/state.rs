//! What the HTTP handlers share, built once at start-up.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use trellis_core::auth::JwtKeys;
use trellis_core::integrations::secrets::Vault;
use trellis_core::logs::LogStore;
use trellis_core::runs::live::LiveEvents;
use trellis_core::runs::RunSettings;
use trellis_core::AppDb;
use trellis_graphql::ApiSchema;

/// Shared, immutable after start-up (the counters are atomics).
#[derive(Clone)]
pub struct AppState {
    pub schema: ApiSchema,
    /// The limits [`trellis_graphql::limits::execute`] checks on every operation.
    pub limits: trellis_graphql::Limits,
    pub db: AppDb,
    pub jwt: JwtKeys,
    /// API keys verified in the last seconds (their look-up skipped, never their check).
    pub api_keys: trellis_core::identity::VerifiedKeys,
    /// SQL statements sent by the application pool since start.
    pub statements: Arc<AtomicU64>,
    /// GraphQL requests served since start.
    pub requests: Arc<AtomicU64>,
    /// The rendered GraphiQL page and its asset folder; `None` in production.
    pub graphiql: Option<Arc<(String, std::path::PathBuf)>>,
    pub max_batch: usize,
    /// Seals and opens tenant secrets (webhook signatures).
    pub vault: Vault,
    /// Settings of runs (webhook intake starts runs).
    pub runs: RunSettings,
    /// The execution-log store (MongoDB or PostgreSQL).
    pub logs: LogStore,
    /// The one egress guard (and HTTP client) of outbound calls: the schema's and the
    /// executor's.
    pub egress: trellis_core::egress::Egress,
    /// Run and log changes from this process's database listener, for subscriptions.
    pub live: LiveEvents,
    /// Where the REST route's process calls queue their logs, written a few at a time
    /// right after their answers.
    pub call_logs: trellis_core::processes::log_queue::CallLogQueue,
    /// Tells live sockets to close when the server shuts down, and tracks them.
    pub shutdown: crate::serve::Shutdown,
}
