//! OpenTelemetry traces over OTLP/HTTP, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Then every GraphQL request over HTTP is
//! a span (`graphql <operation names>`), with a child span per dataloader batch and one
//! per SQL statement (its text, never its parameters), so a trace shows where a slow
//! request spent its time.
//!
//! The standard variables apply: `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the
//! default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`
//! (default `trellis`), `OTEL_RESOURCE_ATTRIBUTES` and the batch processor's
//! `OTEL_BSP_*`. The collector is the operator's own endpoint, like the database, so it
//! is not subject to the egress guard that stands between tenants and the network.
//! Off, the request path creates no span at all ([`tracing_enabled`]).

use std::time::SystemTime;

use anyhow::{bail, Context as _, Result};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;
use trellis_graphql::telemetry::{enable_tracing, tracing_enabled};

/// The name of the tracer and of the spans' instrumentation scope.
const TRACER: &str = "trellis";

/// The longest statement text a span carries.
const MAX_STATEMENT_CHARS: usize = 4096;

/// The OTLP pipeline the environment asks for, installed as the global tracer provider;
/// `None` when no endpoint is set. Call [`SdkTracerProvider::shutdown`] on exit to send
/// what is still buffered.
pub fn from_env() -> Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let protocol = match protocol.as_str() {
        "" | "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other}: Trellis exports over http/protobuf or http/json"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .context("building the OTLP span exporter")?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(TRACER);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    global::set_tracer_provider(provider.clone());
    enable_tracing();
    Ok(Some(provider))
}

/// The layer that turns Trellis's own spans (targets `trellis…`) into OpenTelemetry
/// spans; other crates' spans stay out of traces.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER))
        .with_filter(Targets::new().with_target("trellis", LevelFilter::INFO))
}

/// Records a statement that just finished as a span under the current one (the
/// request's, or its dataloader batch's). Called for every statement of the
/// application pool; does nothing while tracing is off.
pub fn record_statement(info: &sea_orm::metric::Info<'_>) {
    if !tracing_enabled() {
        return;
    }
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        // Outside any request (maintenance, start-up): not part of a trace.
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(info.elapsed).unwrap_or(end);
    let sql: String = info
        .statement
        .sql
        .chars()
        .take(MAX_STATEMENT_CHARS)
        .collect();
    let tracer = global::tracer(TRACER);
    let mut span = tracer
        .span_builder("SQL")
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.query.text", sql),
        ])
        .start_with_context(&tracer, &parent);
    if info.failed {
        span.set_status(Status::error("statement failed"));
    }
    span.end_with_timestamp(end);
}
