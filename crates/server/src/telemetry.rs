//! Operators' view of a server: Prometheus metrics (the `metrics` facade recorded into
//! one process-wide exporter) and the logs' format.
//!
//! Metrics: GraphQL operations by type and name with latency histograms and errors by
//! code (recorded by `trellis_graphql::telemetry`), connections of the application pool
//! (open, idle, and requests waiting for one), SQL statements and GraphQL requests served, maintenance jobs by job,
//! and build info. `/metrics` is served on the main port in development, and on
//! `TRELLIS_METRICS_LISTEN` when that is set (in production only there).

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Latency buckets, in seconds: 1 ms to 10 s.
const SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's exporter, installed as the global recorder on first use.
pub fn exporter() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only its own");
        }
        handle
    })
}

/// The Prometheus text of `/metrics`: the recorded metrics, with the gauges that are
/// read at scrape time brought up to date first.
pub fn render(state: &AppState) -> String {
    let handle = exporter();
    let pool = state.db.pool().get_postgres_connection_pool();
    metrics::gauge!("trellis_db_pool_connections").set(f64::from(pool.size()));
    metrics::gauge!("trellis_db_pool_idle_connections").set(pool.num_idle() as f64);
    metrics::gauge!("trellis_db_pool_waiting").set(state.db.waiting() as f64);
    metrics::counter!("trellis_sql_statements_total")
        .absolute(state.statements.load(Ordering::Relaxed));
    metrics::counter!("trellis_graphql_requests_total")
        .absolute(state.requests.load(Ordering::Relaxed));
    metrics::gauge!("trellis_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    handle.render()
}

/// Counts one pass of a maintenance job and the rows it touched.
pub fn maintenance_pass(job: &'static str, rows: u64) {
    metrics::counter!("trellis_maintenance_passes_total", "job" => job).increment(1);
    metrics::counter!("trellis_maintenance_rows_total", "job" => job).increment(rows);
}

/// Counts a failed maintenance pass.
pub fn maintenance_failure(job: &'static str) {
    metrics::counter!("trellis_maintenance_failures_total", "job" => job).increment(1);
}

/// Counts the audit archive's files written (created or rewritten); its events are its
/// `trellis_maintenance_rows_total`.
pub fn audit_archive_files(files: u64) {
    metrics::counter!("trellis_audit_archive_files_total").increment(files);
}
