//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the real binary sends a trace
//! per GraphQL request to the collector, with child spans per dataloader batch and per
//! SQL statement.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use serde_json::{json, Value};

use crate::support::{TestApp, JWT_SECRET, TEST_MASTER_KEYS};

/// An OTLP/HTTP collector on loopback that keeps every JSON export it receives.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = store.clone();
            async move {
                if let Ok(export) = serde_json::from_slice::<Value>(&body) {
                    store.lock().unwrap().push(export);
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Every span of the exports received so far.
fn spans(received: &Mutex<Vec<Value>>) -> Vec<Value> {
    let mut all = Vec::new();
    for export in received.lock().unwrap().iter() {
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                all.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    all
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// The binary serving `app`'s database on a free port, with `env` set.
async fn serve_binary(app: &TestApp, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("TRELLIS_APP_DATABASE_URL", &app.db.app_url)
        .env("TRELLIS_JWT_SECRET", JWT_SECRET)
        .env("TRELLIS_MASTER_KEYS", TEST_MASTER_KEYS)
        .env("TRELLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRELLIS_MIGRATE_ON_START", "false")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, url)
}

async fn traced_request(url: &str, token: &str) {
    let body =
        json!({ "query": "query TraceMe { viewer { memberships { role tenant { name } } } }" });
    let bytes = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .header("x-request-id", "trace-me-1")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(response.get("errors").is_none(), "{response}");
}

#[tokio::test]
async fn a_request_is_a_trace_with_dataloader_and_sql_spans() {
    let app = TestApp::new().await;
    let owner = app.owner("traced").await;
    let (collector_url, received) = collector().await;
    let (mut server, url) = serve_binary(
        &app,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "trellis-under-test"),
        ],
    )
    .await;
    traced_request(&url, &owner.token).await;

    let started = Instant::now();
    let (http, request, children) = loop {
        let all = spans(&received);
        let http = all.iter().find(|s| s["name"] == "POST /graphql").cloned();
        let request = all.iter().find(|s| s["name"] == "query TraceMe").cloned();
        if let (Some(http), Some(request)) = (http, request) {
            let children: Vec<Value> = all
                .iter()
                .filter(|s| {
                    s["traceId"] == request["traceId"]
                        && s["spanId"] != request["spanId"]
                        && s["spanId"] != http["spanId"]
                })
                .cloned()
                .collect();
            if children.iter().any(|s| s["name"] == "dataloader batch") {
                break (http, request, children);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no complete trace arrived: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = |span: &Value, key: &str| {
        attribute(span, key).and_then(|v| v["stringValue"].as_str().map(str::to_owned))
    };
    assert_eq!(
        text(&request, "graphql.operation.name").as_deref(),
        Some("TraceMe")
    );
    assert_eq!(
        text(&request, "graphql.operation.type").as_deref(),
        Some("query")
    );
    // The operation is a child of the HTTP request's span, which carries the request id.
    assert_eq!(request["parentSpanId"], http["spanId"]);
    assert_eq!(request["traceId"], http["traceId"]);
    assert_eq!(
        text(&http, "trellis.request_id").as_deref(),
        Some("trace-me-1"),
        "{http:#}"
    );
    let batch = children
        .iter()
        .find(|s| s["name"] == "dataloader batch")
        .unwrap();
    assert_eq!(batch["parentSpanId"], request["spanId"], "{batch:#}");
    let sql: Vec<&Value> = children.iter().filter(|s| s["name"] == "SQL").collect();
    // The tenant context (set and checked in one statement), the memberships, the
    // tenants: each a span, under the operation or under the batch that sent it.
    assert!(sql.len() >= 3, "{children:#?}");
    assert!(
        sql.iter().any(|s| attribute(s, "db.query.text")
            .and_then(|v| v["stringValue"].as_str())
            .is_some_and(|t| t.contains("app.enter_request"))),
        "{children:#?}"
    );
    assert!(sql.iter().any(|s| s["parentSpanId"] == batch["spanId"]));
    for span in &sql {
        let text = attribute(span, "db.query.text").and_then(|v| v["stringValue"].as_str());
        assert!(text.is_some_and(|t| !t.is_empty()), "{span:#}");
        // COMMIT comes after the operation, under the HTTP request's span.
        let parent = &span["parentSpanId"];
        assert!(
            *parent == request["spanId"] || *parent == batch["spanId"] || *parent == http["spanId"],
            "{span:#}"
        );
    }
    server.kill().await.unwrap();
}
