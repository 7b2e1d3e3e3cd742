//! The HTTP surface: GET runs queries but never mutations, health and readiness,
//! graphql-ws authentication in connection_init, and GraphiQL served offline and usable
//! in a real browser.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

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

fn urlencode(s: &str) -> String {
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
    let refused = ws_init(addr, json!({ "Authorization": "Bearer forged" })).await;
    assert_ne!(refused.as_deref(), Some("connection_ack"), "{refused:?}");
    let anonymous = ws_init(addr, json!({})).await;
    assert_ne!(
        anonymous.as_deref(),
        Some("connection_ack"),
        "{anonymous:?}"
    );
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
