//! The HTTP surface: GET runs queries but never mutations, health and readiness,
//! GraphQL over HTTP as its specification says (media types, status codes, the CSRF
//! hole of non-JSON posts closed), graphql-ws authentication in connection_init (both
//! payload shapes), and GraphiQL served offline and usable in a real browser.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

use crate::support::TestApp;

#[tokio::test]
async fn get_runs_queries_but_never_mutations() {
    let app = TestApp::new().await;
    let user = app.sign_up("get@x.test").await;
    let get = |q: &str| {
        let uri = format!("/graphql?query={}", urlencode(q));
        Request::get(uri)
            .header("authorization", format!("Bearer {}", user.token))
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = app.send(get("{ viewer { user { email } } }")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["viewer"]["user"]["email"], "get@x.test");
    let (status, _) = app
        .send(get(
            "mutation { createTenant(input: {slug: \"via-get\", name: \"x\"}) { tenant { id } } }",
        ))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
    let (status, _) = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

fn post_as(content_type: Option<&str>, accept: Option<&str>, body: &str) -> Request<Body> {
    let mut request = Request::post("/graphql");
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

/// A cross-site form or `text/plain` post (which a browser sends without a preflight)
/// must not run a mutation: only `application/json` bodies are read.
#[tokio::test]
async fn only_json_bodies_run_so_cross_site_posts_cannot_mutate() {
    let app = TestApp::new().await;
    let sign_up = r#"{"query":"mutation { signUp(input: {email: \"csrf@x.test\", name: \"x\", password: \"long enough pw\"}) { userErrors { code } } }"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=latin1"),
    ] {
        let (status, body) = app.send(post_as(content_type, None, sign_up)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UNSUPPORTED_MEDIA_TYPE"
        );
    }
    let admin = app.db.admin().await;
    let users: i64 = sea_orm::ConnectionTrait::query_one(
        &admin,
        trellis_core::scope::stmt("SELECT count(*) AS n FROM users", []),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap();
    assert_eq!(users, 0, "a refused post created a user");
    let (status, _) = app
        .send(post_as(
            Some("application/json; charset=utf-8"),
            None,
            sign_up,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Status codes and media types as the GraphQL-over-HTTP specification says.
#[tokio::test]
async fn status_codes_follow_the_accepted_media_type() {
    let app = TestApp::new().await;
    let json = Some("application/json");
    let gql = Some("application/graphql-response+json");
    let content_type = |response: &axum::response::Response| {
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // A parse error: 400 without data for the GraphQL media type, 200 for JSON.
    for (accept, status, media) in [
        (
            gql,
            StatusCode::BAD_REQUEST,
            "application/graphql-response+json",
        ),
        (json, StatusCode::OK, "application/json"),
        (None, StatusCode::OK, "application/json"),
    ] {
        for query in ["{", "{ noSuchField }"] {
            let body = json!({ "query": query }).to_string();
            let response = app
                .router
                .clone()
                .oneshot(post_as(json, accept, &body))
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{accept:?} {query}");
            assert!(content_type(&response).starts_with(media), "{accept:?}");
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(body.get("data").is_none(), "{body}");
            assert!(body["errors"][0]["message"].is_string(), "{body}");
        }
    }
    // A body that is not JSON, or has no query: 400 whatever is accepted.
    for body in [
        "{",
        "{}",
        r#"{"query": 1}"#,
        r#"{"query":"{ __typename }","variables":[]}"#,
    ] {
        let (status, _) = app.send(post_as(json, gql, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Null variables, operationName and extensions are allowed.
    let (status, body) = app
        .send(post_as(
            json,
            gql,
            r#"{"query":"{ __typename }","variables":null,"operationName":null,"extensions":null}"#,
        ))
        .await;
    assert_eq!(
        (status, &body["data"]),
        (StatusCode::OK, &json!({ "__typename": "Query" }))
    );
    // Neither media type acceptable: 406.
    let (status, _) = app
        .send(post_as(
            json,
            Some("text/html"),
            r#"{"query":"{ __typename }"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    // GET reads `operationName` as the specification spells it.
    let uri = format!(
        "/graphql?query={}&operationName=B",
        urlencode("query A { a: __typename } query B { b: __typename }")
    );
    let (status, body) = app
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (status, &body["data"]),
        (StatusCode::OK, &json!({ "b": "Query" }))
    );
    // Apollo's persisted-query hash without the query: the standard answer, so its link
    // sends the full query instead.
    let (_, body) = app
        .send(post_as(
            json,
            None,
            r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"}}}"#,
        ))
        .await;
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotSupported");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_SUPPORTED"
    );
}

#[tokio::test]
async fn cors_clients_can_read_the_request_id() {
    let app = TestApp::new().await;
    let http = trellis_server::http::HttpConfig {
        request_timeout: std::time::Duration::from_secs(30),
        body_limit: 1 << 20,
        cors_origins: vec!["https://dash.example".into()],
        metrics_route: true,
    };
    let router = trellis_server::http::router(app.state.clone(), &http);
    let response = router
        .oneshot(
            Request::post("/graphql")
                .header("origin", "https://dash.example")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"query":"{ __typename }"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert!(response.headers().contains_key("x-request-id"));
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The SDK build's manifest of trusted documents (`just clients` writes it) and the
/// Viewer operation's hash and text in it.
fn sdk_manifest() -> (String, String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/typescript/src/generated/persisted-documents.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run `just clients`, as `just test` does)"));
    let manifest: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let (hash, document) = manifest
        .iter()
        .find(|(_, document)| document.as_str().unwrap().starts_with("query Viewer"))
        .expect("the SDK has a Viewer query");
    (
        path.to_owned(),
        hash.clone(),
        document.as_str().unwrap().to_owned(),
    )
}

/// With the SDK's manifest, a client may send a `documentId` (or Apollo's hash) in
/// place of the text; enforced, nothing else runs, whatever the path (POST or GET).
#[tokio::test]
async fn trusted_documents_of_the_sdk_build_run_and_only_they_when_enforced() {
    let (path, hash, document) = sdk_manifest();
    let ok_viewer = |body: &serde_json::Value| {
        assert!(body.get("errors").is_none(), "{body}");
        // It ran: anonymous, the viewer is null.
        assert_eq!(body["data"], json!({ "viewer": null }), "{body}");
    };
    let code = |body: &serde_json::Value| body["errors"][0]["extensions"]["code"].clone();
    let json = Some("application/json");
    let unknown = "0".repeat(64);

    let enforced = TestApp::with_args(&[
        "--trusted-documents",
        &path,
        "--trusted-documents-only",
        "true",
    ])
    .await;
    let by_id = json!({ "documentId": format!("sha256:{hash}") }).to_string();
    let (status, body) = enforced.send(post_as(json, None, &by_id)).await;
    assert_eq!(status, StatusCode::OK);
    ok_viewer(&body);
    let apollo =
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    ok_viewer(
        &enforced
            .send(post_as(json, None, &apollo.to_string()))
            .await
            .1,
    );
    // The exact text of a trusted document runs too (clients that send text).
    ok_viewer(&enforced.post(None, &document, json!({})).await.1);
    let get = format!("/graphql?documentId=sha256%3A{hash}");
    ok_viewer(
        &enforced
            .send(Request::get(get).body(Body::empty()).unwrap())
            .await
            .1,
    );
    // Anything else is refused before it is parsed: other text, introspection, a
    // changed document, an unknown id.
    for query in [
        "{ __typename }",
        "{ __schema { types { name } } }",
        &format!("{document} "),
    ] {
        let (_, body) = enforced.post(None, query, json!({})).await;
        assert_eq!(code(&body), "TRUSTED_DOCUMENT_REQUIRED", "{query}: {body}");
        assert!(body.get("data").is_none_or(|d| d.is_null()), "{body}");
    }
    let strict = Some("application/graphql-response+json");
    let (status, _) = enforced
        .send(post_as(json, strict, r#"{"query":"{ __typename }"}"#))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let missing = json!({ "documentId": format!("sha256:{unknown}") }).to_string();
    let (_, body) = enforced.send(post_as(json, None, &missing)).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    let mismatch = json!({ "query": "{ __typename }", "documentId": format!("sha256:{hash}") });
    let (_, body) = enforced
        .send(post_as(json, None, &mismatch.to_string()))
        .await;
    assert_eq!(code(&body), "PERSISTED_QUERY_HASH_MISMATCH", "{body}");

    // Loaded but not enforced: ids work and so does any text.
    let open = TestApp::with_args(&["--trusted-documents", &path]).await;
    ok_viewer(&open.send(post_as(json, None, &by_id)).await.1);
    let (_, body) = open.post(None, "{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
}

/// Serves the app on a loopback port.
async fn serve(app: &TestApp) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    addr
}

async fn ws_init(addr: std::net::SocketAddr, payload: serde_json::Value) -> Option<String> {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .ok()??
        .ok()?;
    match reply {
        Message::Text(text) => Some(
            serde_json::from_str::<serde_json::Value>(&text).ok()?["type"]
                .as_str()?
                .to_owned(),
        ),
        Message::Close(frame) => Some(format!(
            "close {}",
            frame.map(|f| u16::from(f.code)).unwrap_or_default()
        )),
        _ => None,
    }
}

#[tokio::test]
async fn graphql_ws_authenticates_in_connection_init() {
    let app = TestApp::new().await;
    let user = app.sign_up("ws@x.test").await;
    let addr = serve(&app).await;
    assert_eq!(
        ws_init(
            addr,
            json!({ "Authorization": format!("Bearer {}", user.token) })
        )
        .await
        .as_deref(),
        Some("connection_ack")
    );
    // Apollo's and Hasura's shape: the header inside `headers`.
    assert_eq!(
        ws_init(
            addr,
            json!({ "headers": { "Authorization": format!("Bearer {}", user.token) } })
        )
        .await
        .as_deref(),
        Some("connection_ack")
    );
    let refused = ws_init(addr, json!({ "Authorization": "Bearer forged" })).await;
    assert_ne!(refused.as_deref(), Some("connection_ack"), "{refused:?}");
    let anonymous = ws_init(addr, json!({})).await;
    assert_ne!(
        anonymous.as_deref(),
        Some("connection_ack"),
        "{anonymous:?}"
    );
}

/// The `graphql-http` package's server audits (the GraphQL-over-HTTP specification's
/// MUSTs and SHOULDs), run with Node against the real server: every one must pass.
#[tokio::test]
async fn graphql_http_server_audits_pass() {
    let app = TestApp::new().await;
    let addr = serve(&app).await;
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
    let output = tokio::process::Command::new("node")
        .arg("e2e/http-audit.mjs")
        .current_dir(web)
        .env("TRELLIS_URL", format!("http://{addr}"))
        .output()
        .await
        .expect("node must be installed (just test installs web/node_modules)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "graphql-http audits failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 warn, 0 error"), "{stdout}");
}

/// Opens GraphiQL in headless Chromium, pastes a token into its headers editor, runs a
/// query and sees the answer; fails if the page loads anything from another host.
#[tokio::test]
async fn graphiql_runs_a_query_in_a_real_browser_offline() {
    let app = TestApp::new().await;
    let user = app.sign_up("browser@x.test").await;
    let addr = serve(&app).await;
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
    let output = tokio::process::Command::new("node")
        .arg("e2e/graphiql.mjs")
        .current_dir(web)
        .env("TRELLIS_URL", format!("http://{addr}"))
        .env("TRELLIS_TOKEN", &user.token)
        .env("TRELLIS_QUERY", "{ viewer { user { email } } }")
        .env("TRELLIS_EXPECT", "browser@x.test")
        // The docs explorer loads the schema by introspection at the default limits.
        .env("TRELLIS_DOCS_TYPE", "WorkflowRun")
        .env("TRELLIS_DOCS_EXPECT", "One execution of a workflow version")
        .output()
        .await
        .expect("node must be installed (just test installs the web assets and Chromium)");
    assert!(
        output.status.success(),
        "GraphiQL e2e failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// During a database outage requests fail fast with UNAVAILABLE and HTTP 503 (not after
/// a 10 s hang, not as a 500 that says nothing), `/readyz` answers 503 within a second,
/// and service resumes when the database is back.
#[tokio::test]
async fn a_database_outage_fails_fast_as_unavailable() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::with_args(&["--db-acquire-timeout", "1"]).await;
    let owner = app.owner("outage").await;
    let (key, _) = app.api_key(&owner, "READ").await;
    let admin = app.db.admin().await;
    let name = &app.db.name;
    admin
        .execute_unprepared(&format!(
            "REVOKE CONNECT ON DATABASE {name} FROM PUBLIC, trellis_app; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND usename = 'trellis_app'"
        ))
        .await
        .unwrap();
    // Termination is asynchronous: wait until the app role has no session left.
    for _ in 0..50 {
        let left = admin
            .query_one(trellis_core::scope::stmt(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'trellis_app'",
                [name.clone().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for token in [&owner.token, &key] {
        let started = std::time::Instant::now();
        let (status, body) = app
            .post(Some(token), "{ tenant { name } }", json!({}))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE");
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
    }
    let started = std::time::Instant::now();
    let (status, _) = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));

    admin
        .execute_unprepared(&format!("GRANT CONNECT ON DATABASE {name} TO trellis_app"))
        .await
        .unwrap();
    let data = app
        .ok(Some(&owner.token), "{ tenant { name } }", json!({}))
        .await;
    assert_eq!(data["tenant"]["name"], "outage");
}

/// `/metrics` in Prometheus text from the metrics exporter: operations by type and
/// name with latency histograms, errors by code, the pool, statements and build info.
/// Where it is not enabled on the main router (production, or TRELLIS_METRICS_LISTEN
/// set) the main port does not serve it.
/// `trellis_db_pool_waiting` counts the requests queued for a pooled connection (the
/// pool does not report them): with every connection taken, a request waits, and the
/// gauge says so until it gets one.
#[tokio::test]
async fn metrics_count_requests_waiting_for_a_connection() {
    let app = TestApp::with_args(&["--db-acquire-timeout", "20"]).await;
    let user = app.sign_up("waiting@x.test").await;
    let scrape = || async {
        let (_, body) = app
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        body.as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("trellis_db_pool_waiting "))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(scrape().await.as_deref(), Some("0"));
    let pool = app.state.db.pool().get_postgres_connection_pool().clone();
    let mut held = Vec::new();
    while held.len() < pool.options().get_max_connections() as usize {
        held.push(pool.acquire().await.unwrap());
    }
    let router = app.router.clone();
    let token = user.token.clone();
    let waiting = tokio::spawn(async move {
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(r#"{"query":"{ viewer { user { email } } }"}"#))
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    });
    let mut seen = None;
    for _ in 0..100 {
        seen = scrape().await;
        if seen.as_deref() == Some("1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen.as_deref(), Some("1"));
    drop(held);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    assert_eq!(scrape().await.as_deref(), Some("0"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_stay_off_the_main_port_when_asked() {
    let app = TestApp::new().await;
    app.post(None, "query MetricsProbe { __typename }", json!({}))
        .await;
    app.post(None, "{ noSuchField }", json!({})).await;
    let (status, body) = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for expected in [
        "trellis_graphql_operations_total{type=\"query\",name=\"MetricsProbe\"}",
        "trellis_graphql_operation_duration_seconds_bucket{type=\"query\",name=\"MetricsProbe\",le=\"0.005\"}",
        "trellis_graphql_errors_total{code=\"GRAPHQL\"}",
        "trellis_db_pool_connections ",
        "trellis_sql_statements_total ",
        "trellis_build_info{version=",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let http = trellis_server::http::HttpConfig {
        request_timeout: std::time::Duration::from_secs(30),
        body_limit: 1 << 20,
        cors_origins: vec![],
        metrics_route: false,
    };
    let main = trellis_server::http::router(app.state.clone(), &http);
    let response = main
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let own = trellis_server::http::metrics_router(app.state.clone());
    let response = own
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `trellis worker` serves `/metrics` on `TRELLIS_METRICS_LISTEN` too, so the SQL
/// statements its executor sends can be read apart from the servers' (the engine
/// benchmark sums them over its workers).
#[tokio::test]
async fn the_worker_serves_metrics_on_the_metrics_address() {
    let app = TestApp::new().await;
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut worker = crate::support::worker_command(&app)
        .env("TRELLIS_SCHEDULER", "false")
        .env("TRELLIS_METRICS_LISTEN", address.to_string())
        .spawn()
        .unwrap();
    let url = format!("http://{address}/metrics");
    let started = std::time::Instant::now();
    // The executor's idle passes are statements of the worker's pool.
    let statements = loop {
        let seen = match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => {
                let text = response.text().await.unwrap();
                text.lines()
                    .find_map(|l| l.strip_prefix("trellis_sql_statements_total "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            }
            _ => None,
        };
        if let Some(n) = seen.filter(|n| *n > 0.0) {
            break n;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no statements on the worker's /metrics: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(statements > 0.0);
    worker.kill().await.unwrap();
}
