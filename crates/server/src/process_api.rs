//! `POST /v1/processes/{key}/invoke`: a process called over plain HTTP, for API
//! clients. JSON in, JSON out, with the semantics of GraphQL's `invokeProcess`; the API
//! key (or an access token) in `Authorization: Bearer …`.
//!
//! The body is `{input, environment?, version?, cache?}` (`environment`: `production`,
//! the default, or `sandbox`; `cache`: `default`, `bypass` or `refresh`). A success is
//! 200 with `{output, callId, versionId, version, environment, cacheHit, latencyMs,
//! providerLatencyMs, usage: {inputTokens, outputTokens}, cost}`; a failure is
//! `{error: {code, message, field?}}` with 400, 401, 403, 404, 409, 429 (and
//! `Retry-After`), 502 or 504 (the provider), 503 or 500.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use trellis_core::processes::invoke::{CacheMode, Invocation, Invoker, Logging};
use trellis_core::Error;
use trellis_entity::{Environment, IdKind, PrefixedId};

use crate::http::{authenticate, bearer, meta};
use crate::state::AppState;

/// The body of an invocation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeBody {
    input: Value,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    cache: Option<String>,
}

fn parse_environment(value: Option<&str>) -> Result<Environment, Error> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("production") => Ok(Environment::Production),
        Some("sandbox") => Ok(Environment::Sandbox),
        Some(_) => Err(Error::bad_input(
            "environment",
            "environment is production or sandbox",
        )),
    }
}

fn parse_cache(value: Option<&str>) -> Result<CacheMode, Error> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("default") => Ok(CacheMode::Default),
        Some("bypass") => Ok(CacheMode::Bypass),
        Some("refresh") => Ok(CacheMode::Refresh),
        Some(_) => Err(Error::bad_input(
            "cache",
            "cache is default, bypass or refresh",
        )),
    }
}

/// `POST /v1/processes/{key}/invoke`.
pub async fn invoke(
    State(state): State<AppState>,
    Path(process): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let meta = meta(&headers, None);
    let request_id = meta.request_id.clone();
    let result = async {
        let principal = authenticate(&state, bearer(&headers)).await?;
        let body: InvokeBody = serde_json::from_slice(&body).map_err(|err| {
            Error::bad_input("body", format!("the body must be a JSON object {{input, environment?, version?, cache?}}: {err}"))
        })?;
        let call = Invocation {
            process: trellis_graphql::processes::mutation::process_ref(&process),
            environment: parse_environment(body.environment.as_deref())?,
            input: body.input,
            version: body.version,
            cache: parse_cache(body.cache.as_deref())?,
            logging: Logging::AfterAnswer,
        };
        let invoker = Invoker {
            db: state.db.clone(),
            vault: state.vault.clone(),
            egress: state.egress.clone(),
        };
        let (invoked, write) = invoker.invoke_answer_first(&principal, &meta, call).await?;
        if let Some(write) = write {
            let call_logs = state.call_logs.clone();
            state.shutdown.after_answer(async move {
                if let Err(err) = call_logs.write(write).await {
                    tracing::error!(error = %err, "logging a process call after its answer failed");
                }
            });
        }
        Ok(invoked)
    }
    .await;
    match result {
        Ok(invoked) => json_response(
            StatusCode::OK,
            &json!({
                "output": invoked.output,
                "callId": PrefixedId::new(IdKind::CallLog, invoked.call_id).to_string(),
                "versionId": PrefixedId::new(IdKind::ProcessVersion, invoked.version_id).to_string(),
                "version": invoked.version_number,
                "environment": match invoked.environment {
                    Environment::Sandbox => "sandbox",
                    Environment::Production => "production",
                },
                "cacheHit": invoked.cache_hit,
                "latencyMs": invoked.latency_ms,
                "providerLatencyMs": invoked.provider_latency_ms,
                "usage": {
                    "inputTokens": invoked.input_tokens,
                    "outputTokens": invoked.output_tokens,
                },
                "cost": invoked.cost_nanos as f64 / 1e9,
            }),
        ),
        Err(err) => {
            if let (Error::Unauthenticated, Some(key)) = (&err, bearer(&headers)) {
                state.api_keys.forget(key);
            }
            error_response(&err, &request_id)
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error as `{error: {code, message, field?}}` with its HTTP status; internal
/// errors are logged with their detail and answered without it.
fn error_response(err: &Error, request_id: &str) -> Response {
    let code = err.code();
    let status = match err {
        Error::Unauthenticated => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound => StatusCode::NOT_FOUND,
        Error::BadInput { .. } | Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::Conflict { .. } | Error::LimitReached { .. } => StatusCode::CONFLICT,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Provider {
            code: "PROVIDER_TIMEOUT",
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        Error::Provider { .. } => StatusCode::BAD_GATEWAY,
        Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(detail) => {
            tracing::error!(request_id, error = ?detail, "process invocation failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let message = match err {
        Error::Internal(_) => "internal error".to_owned(),
        other => other.to_string(),
    };
    let mut error = json!({ "code": code, "message": message, "requestId": request_id });
    if let Error::BadInput { field, .. } = err {
        error["field"] = json!(field);
    }
    let mut response = json_response(status, &json!({ "error": error }));
    if let Error::RateLimited {
        retry_after_seconds,
    } = err
    {
        error["retryAfterSeconds"] = json!(retry_after_seconds);
        response = json_response(status, &json!({ "error": error }));
        if let Ok(value) = retry_after_seconds.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
