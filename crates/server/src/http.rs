//! The axum router: GraphQL over HTTP and graphql-ws, GraphiQL, health and metrics.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Data};
use async_graphql_axum::GraphQLWebSocket;
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use trellis_core::runs::webhook::{self, Delivery, Refusal};
use trellis_core::{identity, Principal, RequestMeta, RequestScope};
use trellis_graphql::limits;

use crate::graphql_http::{self, error_response, Media};
use crate::state::AppState;

/// HTTP-level settings for the router.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
    /// Whether `/metrics` is served on this router (development without
    /// `TRELLIS_METRICS_LISTEN`); otherwise only [`metrics_router`] serves it.
    pub metrics_route: bool,
}

/// Builds the whole router.
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    let mut router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route(
            "/hooks/{id}",
            post(webhook).layer(DefaultBodyLimit::max(webhook::MAX_WEBHOOK_BODY)),
        )
        .route(
            "/v1/processes/{key}/invoke",
            post(crate::process_api::invoke),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if config.metrics_route {
        router = router.route("/metrics", get(metrics));
    }
    if let Some(graphiql) = state.graphiql.clone() {
        router = router
            .route("/graphiql", get(graphiql_page))
            .nest_service("/graphiql/static", ServeDir::new(&graphiql.1));
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::HeaderName::from_static("x-request-id")]);
    router.with_state(state).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http())
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(RequestBodyLimitLayer::new(config.body_limit))
            .layer(cors)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                config.request_timeout,
            )),
    )
}

/// The bearer credential of a request: an access token or an API key (`trl_…`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves a credential to a principal; any failure is `Unauthenticated`.
pub async fn authenticate(
    state: &AppState,
    credential: Option<&str>,
) -> trellis_core::Result<Principal> {
    authenticate_until(state, credential)
        .await
        .map(|(principal, _)| principal)
}

/// [`authenticate`], with the moment an access token stops being accepted (its expiry
/// plus the clock-skew leeway). API keys have none here: every request scope checks
/// again that the key is neither revoked nor expired.
async fn authenticate_until(
    state: &AppState,
    credential: Option<&str>,
) -> trellis_core::Result<(Principal, Option<SystemTime>)> {
    match credential {
        None | Some("") => Ok((Principal::Anonymous, None)),
        Some(key) if key.starts_with("trl_") => {
            let principal =
                identity::authenticate_api_key(state.db.pool(), &state.api_keys, key).await?;
            Ok((principal, None))
        }
        Some(token) => {
            let claims = state.jwt.verify(token)?;
            let leeway = state.jwt.config().leeway_seconds;
            let until = u64::try_from(claims.exp).ok().and_then(|exp| {
                UNIX_EPOCH.checked_add(Duration::from_secs(exp.saturating_add(leeway)))
            });
            let principal = Principal::User {
                user_id: claims.sub,
                tenant_id: claims.tid,
                session_id: claims.sid,
            };
            Ok((principal, until))
        }
    }
}

pub(crate) fn meta(headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestMeta {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestMeta {
        request_id: header_text("x-request-id").unwrap_or_default(),
        ip: peer.map(|p| p.ip().to_string()),
        user_agent: header_text("user-agent").map(|ua| ua.chars().take(512).collect()),
    }
}

/// Runs a batch in one request scope (one transaction), committing only on success;
/// with traces on, inside the request's span.
async fn execute(
    state: &AppState,
    method: &'static str,
    media: Media,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    batch: BatchRequest,
) -> Response {
    if !trellis_graphql::telemetry::tracing_enabled() {
        return run_batch(state, media, headers, peer, batch).await;
    }
    // Each operation of the request is a child span (`limits::execute`).
    let span = tracing::info_span!(
        target: "trellis::http",
        "graphql request",
        otel.name = %format_args!("{method} /graphql"),
        otel.kind = "server",
        http.request.method = method,
        trellis.request_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        span.record("trellis.request_id", id);
    }
    let response = tracing::Instrument::instrument(
        run_batch(state, media, headers, peer, batch),
        span.clone(),
    )
    .await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn run_batch(
    state: &AppState,
    media: Media,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    batch: BatchRequest,
) -> Response {
    let started = std::time::Instant::now();
    let batch_len = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len(),
    };
    if batch_len > state.max_batch {
        return error_response(
            media,
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            &format!("at most {} operations per batch", state.max_batch),
        );
    }
    let meta = meta(headers, peer);
    let principal = match authenticate(state, bearer(headers)).await {
        Ok(p) => p,
        Err(trellis_core::Error::Unauthenticated) => {
            return error_response(
                media,
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "invalid or expired credentials",
            )
        }
        Err(trellis_core::Error::Unavailable) => {
            return unavailable(media);
        }
        Err(err) => {
            tracing::error!(request_id = meta.request_id, error = ?err, "authentication failed");
            return error_response(
                media,
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            );
        }
    };
    // The access log's fields are gathered only when its line is written (the bench
    // and many deployments log at `warn`).
    let access_log = tracing::enabled!(target: "trellis::access", tracing::Level::INFO);
    let operation_names: Vec<String> = if access_log {
        batch
            .iter()
            .map(|r| r.operation_name.clone().unwrap_or_default())
            .collect()
    } else {
        Vec::new()
    };
    let scope = RequestScope::new(state.db.clone(), principal, meta);
    // The operations of a batch run one after another in the one scope, as
    // async-graphql's own execute_batch would.
    let response = match batch {
        BatchRequest::Single(request) => BatchResponse::Single(
            limits::execute(&state.schema, &state.limits, request, &scope).await,
        ),
        BatchRequest::Batch(requests) => {
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses
                    .push(limits::execute(&state.schema, &state.limits, request, &scope).await);
            }
            BatchResponse::Batch(responses)
        }
    };
    state.requests.fetch_add(1, Ordering::Relaxed);
    if scope.credential_ended() {
        // Revoked or expired since it was last verified: the same answer as an unknown
        // credential, and nothing of the request kept.
        if let Some(key) = bearer(headers).filter(|c| c.starts_with("trl_")) {
            state.api_keys.forget(key);
        }
        if let Err(err) = RequestScope::finish_shared(scope, false).await {
            tracing::warn!(error = ?err, "rolling back a request with an ended credential");
        }
        return error_response(
            media,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "invalid or expired credentials",
        );
    }
    let succeeded = response.is_ok();
    let logged = access_log.then(|| {
        let tenant = match scope.principal() {
            Principal::User { tenant_id, .. } => *tenant_id,
            Principal::ApiKey { tenant_id, .. }
            | Principal::Engine { tenant_id }
            | Principal::Upkeep { tenant_id } => Some(*tenant_id),
            Principal::Anonymous => None,
        };
        (scope.meta().request_id.clone(), tenant)
    });
    let finished = if scope.only_read() {
        // Nothing the client could see waits for this commit: answer first.
        tokio::spawn(RequestScope::end_read(scope, succeeded));
        Ok(())
    } else {
        RequestScope::finish_shared(scope, succeeded).await
    };
    let http = if finished.is_err() && succeeded {
        // The client must not believe that what it asked for was saved.
        error_response(
            media,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error: the request's changes were not saved",
        )
    } else {
        graphql_http::respond(media, &response)
    };
    if let Some((request_id, tenant)) = logged {
        let errors: usize = match &response {
            BatchResponse::Single(single) => single.errors.len(),
            BatchResponse::Batch(all) => all.iter().map(|r| r.errors.len()).sum(),
        };
        tracing::info!(
            target: "trellis::access",
            request_id,
            tenant = tenant.map(tracing::field::display),
            operations = ?operation_names,
            status = http.status().as_u16(),
            errors,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "graphql request"
        );
    }
    http
}

/// `POST /graphql`: a request or a batch, as `application/json`.
async fn graphql_post(State(state): State<AppState>, request: Request) -> Response {
    let (headers, peer) = parts_of(&request);
    let Some(media) = Media::negotiate(&headers) else {
        return not_acceptable();
    };
    let Ok(body) = axum::body::to_bytes(request.into_body(), usize::MAX).await else {
        return error_response(
            media,
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_USER_INPUT",
            "the request body is too large",
        );
    };
    match graphql_http::read_post(&headers, &body) {
        Ok(batch) => execute(&state, "POST", media, &headers, peer, batch).await,
        Err(refusal) => refusal.into_response(media),
    }
}

/// `GET /graphql` runs queries only: a mutation over GET is 405, so links cannot
/// change state.
async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (headers, peer) = parts_of(&request);
    let Some(media) = Media::negotiate(&headers) else {
        return not_acceptable();
    };
    let batch = match graphql_http::read_get(request.uri()) {
        Ok(batch) => batch,
        Err(refusal) => return refusal.into_response(media),
    };
    let changes_state = batch
        .iter()
        .any(|r| operation_type(r).is_some_and(|ty| ty != OperationType::Query));
    if changes_state {
        let mut response = error_response(
            media,
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_USER_INPUT",
            "mutations need POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, "GET", media, &headers, peer, batch).await
}

/// 503 with `Retry-After`: the database cannot be reached.
fn unavailable(media: Media) -> Response {
    let mut response = error_response(
        media,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        &trellis_core::Error::Unavailable.to_string(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 406: the client accepts neither `application/graphql-response+json` nor JSON.
fn not_acceptable() -> Response {
    error_response(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        "BAD_USER_INPUT",
        "accept application/graphql-response+json or application/json",
    )
}

/// The type of the operation a request would run; `None` when its document does not
/// parse or names no such operation (execution then reports why).
fn operation_type(request: &async_graphql::Request) -> Option<OperationType> {
    trellis_graphql::limits::check_nesting(&request.query).ok()?;
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    let wanted = request.operation_name.as_deref();
    doc.operations
        .iter()
        .find(|(name, _)| wanted.is_none_or(|w| name.map(|n| n.as_str()) == Some(w)))
        .map(|(_, op)| op.node.ty)
}

fn parts_of(request: &Request) -> (HeaderMap, Option<SocketAddr>) {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    (request.headers().clone(), peer)
}

/// graphql-ws (graphql-transport-ws). The credential comes in `connection_init`'s
/// payload as `Authorization: Bearer …`; a bad one closes the connection, and so does
/// an access token's expiry ([`CREDENTIALS_EXPIRED`]): the client connects again with a
/// fresh one. The connection's data is a [`trellis_graphql::LiveSession`]: each
/// subscription opens request scopes of that principal, so tenant access (and an API
/// key's revocation) is checked like a request's.
async fn graphql_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let meta = meta(&headers, None);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let shutdown = state.shutdown.clone();
            shutdown.clone().track(async move {
                use futures::{SinkExt, StreamExt};
                let (mut sink, stream) = socket.split();
                let (until_tx, until_rx) = tokio::sync::oneshot::channel::<SystemTime>();
                let executor = LiveExecutor(state.clone());
                let connection =
                    GraphQLWebSocket::new_with_pair(&mut sink, stream, executor, protocol)
                        .on_connection_init(move |payload| async move {
                            let credential = init_credential(&payload);
                            let (principal, until) =
                                authenticate_until(&state, credential.as_deref())
                                    .await
                                    .map_err(|_| {
                                        async_graphql::Error::new("invalid or expired credentials")
                                    })?;
                            if principal == Principal::Anonymous {
                                return Err(async_graphql::Error::new("authentication required"));
                            }
                            if let Some(until) = until {
                                let _ = until_tx.send(until);
                            }
                            let mut data = Data::default();
                            data.insert(trellis_graphql::LiveSession {
                                db: state.db.clone(),
                                principal,
                                meta,
                                events: state.live.clone(),
                            });
                            Ok(data)
                        })
                        .serve();
                let expiry = async {
                    match until_rx.await {
                        Ok(until) => {
                            let left = until.duration_since(SystemTime::now()).unwrap_or_default();
                            tokio::time::sleep(left).await;
                        }
                        // No access token (an API key, or a refused init): no deadline.
                        Err(_) => std::future::pending().await,
                    }
                };
                let close = tokio::select! {
                    () = connection => None,
                    () = expiry => Some(CREDENTIALS_EXPIRED),
                    () = shutdown.begun() => Some(GOING_AWAY),
                };
                if let Some((code, reason)) = close {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                }
            })
        })
}

/// The close code and reason of graphql-ws connections when the server shuts down:
/// 1001 (Going Away), which clients treat as a cue to reconnect elsewhere.
pub const GOING_AWAY: (u16, &str) = (1001, "server shutting down");

/// The error of an operation that succeeded but whose transaction did not commit.
fn uncommitted_error() -> async_graphql::ServerError {
    let mut error = async_graphql::ServerError::new(
        "internal error: the request's changes were not saved",
        None,
    );
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "INTERNAL");
    error.extensions = Some(extensions);
    error
}

/// The bearer credential of a graphql-ws `connection_init` payload:
/// `{"Authorization": "Bearer …"}`, or Apollo's and Hasura's shape,
/// `{"headers": {"Authorization": "Bearer …"}}` (either spelling of the name).
fn init_credential(payload: &serde_json::Value) -> Option<String> {
    fn authorization(map: &serde_json::Value) -> Option<&str> {
        map.get("Authorization")
            .or_else(|| map.get("authorization"))
            .and_then(|v| v.as_str())
    }
    let value =
        authorization(payload).or_else(|| payload.get("headers").and_then(authorization))?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The close code and reason of a graphql-ws connection whose access token expired:
/// graphql-ws's 4403 (Forbidden).
pub const CREDENTIALS_EXPIRED: (u16, &str) = (4403, "credentials expired");

/// Runs the operations of a graphql-ws connection. Subscriptions go to the schema with
/// the connection's [`LiveSession`](trellis_graphql::LiveSession), which opens a scope
/// per event; a query or mutation sent over the socket gets what an HTTP request gets:
/// a request scope of the connection's principal (one transaction, committed only on
/// success) and fresh dataloaders.
#[derive(Clone)]
struct LiveExecutor(AppState);

impl async_graphql::Executor for LiveExecutor {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        if let Err(error) = limits::check(&mut request, &self.0.limits) {
            return async_graphql::Response::from_errors(vec![error]);
        }
        self.0.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        use futures::StreamExt;
        let session = session_data
            .as_deref()
            .and_then(|data| data.get(&std::any::TypeId::of::<trellis_graphql::LiveSession>()))
            .and_then(|value| value.downcast_ref::<trellis_graphql::LiveSession>())
            .cloned();
        let one_shot = matches!(
            operation_type(&request),
            Some(OperationType::Query | OperationType::Mutation)
        );
        match session {
            Some(session) if one_shot => {
                let state = self.0.clone();
                futures::stream::once(async move {
                    let scope = session.scope();
                    let response =
                        limits::execute(&state.schema, &state.limits, request, &scope).await;
                    state.requests.fetch_add(1, Ordering::Relaxed);
                    let succeeded = response.is_ok();
                    match RequestScope::finish_shared(scope, succeeded).await {
                        Err(_) if succeeded => {
                            async_graphql::Response::from_errors(vec![uncommitted_error()])
                        }
                        _ => response,
                    }
                })
                .boxed()
            }
            _ => {
                let mut request = request;
                if let Err(error) = limits::check(&mut request, &self.0.limits) {
                    let refused = async_graphql::Response::from_errors(vec![error]);
                    return futures::stream::once(async move { refused }).boxed();
                }
                async_graphql::Executor::execute_stream(&self.0.schema, request, session_data)
            }
        }
    }
}

/// The header a webhook sender signs with: `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "x-trellis-signature";
/// The header naming a delivery; a redelivery with the same id never makes a second run.
pub const DELIVERY_HEADER: &str = "x-trellis-delivery";

/// `POST /hooks/{id}`: a signed delivery starts a run of the trigger's workflow and is
/// answered 202 with the run id. Refusals carry no detail: 404 unknown or inactive,
/// 401 bad signature, 403 suspended tenant, 400 not JSON, 409 a delivery id reused
/// with another body, 413 too large.
async fn webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scope = RequestScope::new(state.db.clone(), Principal::Anonymous, meta(&headers, None));
    let delivery = Delivery {
        path: &id,
        signature: text(SIGNATURE_HEADER),
        delivery_id: text(DELIVERY_HEADER),
        body: &body,
        now: chrono::Utc::now(),
    };
    let outcome = webhook::receive(&state.vault, &scope, &state.runs, delivery).await;
    let mut retry_after = None;
    let (status, body) = match outcome {
        Ok(Ok(started)) => (
            StatusCode::ACCEPTED,
            serde_json::json!({
                "runId": trellis_entity::PrefixedId::new(trellis_entity::IdKind::WorkflowRun, started.run.id).to_string(),
                "deduplicated": started.deduplicated,
            }),
        ),
        Ok(Err(refusal)) => {
            let (status, error) = match refusal {
                Refusal::NotFound => (StatusCode::NOT_FOUND, "not found"),
                Refusal::BadSignature => (StatusCode::UNAUTHORIZED, "invalid signature"),
                Refusal::Suspended => (StatusCode::FORBIDDEN, "forbidden"),
                Refusal::NotJson => (StatusCode::BAD_REQUEST, "the body must be JSON"),
                Refusal::DeliveryReused => (StatusCode::CONFLICT, "delivery id reused"),
                Refusal::OverBudget {
                    retry_after_seconds,
                } => {
                    retry_after = Some(retry_after_seconds);
                    (StatusCode::TOO_MANY_REQUESTS, "over budget")
                }
                Refusal::MonthlyRunsUsed {
                    retry_after_seconds,
                } => {
                    retry_after = Some(retry_after_seconds);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        "the plan's runs for this month are used",
                    )
                }
            };
            (status, serde_json::json!({ "error": error }))
        }
        Err(trellis_core::Error::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "unavailable, retry" }),
        ),
        Err(err) => {
            tracing::error!(request_id = scope.meta().request_id, error = ?err, "webhook intake failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": "internal error" }),
            )
        }
    };
    let accepted = status == StatusCode::ACCEPTED;
    if RequestScope::finish_shared(scope, accepted).await.is_err() && accepted {
        // Not saved: the sender must retry.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": "not saved, retry" }).to_string(),
        )
            .into_response();
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

/// 200 when the database answers `SELECT 1` within a second, 503 otherwise: a load
/// balancer's probe must not hang for the pool's acquire timeout.
async fn readyz(State(state): State<AppState>) -> Response {
    use sea_orm::ConnectionTrait;
    let check = state.db.pool().execute_unprepared("SELECT 1");
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => {
            tracing::warn!("readiness check took over a second");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = crate::telemetry::render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The router of `TRELLIS_METRICS_LISTEN`: `/metrics` only, on its own address, so the
/// port clients reach need not expose it.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn graphiql_page(State(state): State<AppState>) -> Response {
    match &state.graphiql {
        Some(page) => Html(page.0.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The GraphiQL page with its endpoints filled in.
pub fn render_graphiql() -> String {
    let json = |s: &str| {
        serde_json::to_string(s)
            .unwrap_or_default()
            .replace('<', "\\u003c")
    };
    include_str!("graphiql.html")
        .replace("{{STATIC_PATH}}", &json("/graphiql/static/"))
        .replace("{{ENDPOINT}}", &json("/graphql"))
        .replace("{{SUBSCRIPTION_ENDPOINT}}", &json("/graphql/ws"))
}
