//! The egress guard: a tenant cannot make Trellis call loopback, private, link-local or
//! metadata addresses, whether written as addresses, reached through a hostname, or
//! through a redirect; `TRELLIS_EGRESS_ALLOW` admits exactly what it lists.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use crate::connections::{http_connection, TEST_CONNECTION};
use crate::support::TestApp;

/// A server on `ip` that counts its requests; `/hop` redirects to `redirect_to`.
async fn counting_server(ip: &str, redirect_to: Option<String>) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let handler = move |uri: axum::http::Uri| {
        let count = count.clone();
        let redirect_to = redirect_to.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            match redirect_to {
                Some(to) if uri.path() == "/hop" => {
                    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
                }
                _ => StatusCode::NO_CONTENT.into_response(),
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
    (addr, hits)
}

#[tokio::test]
async fn private_addresses_are_refused_however_they_are_reached() {
    // Only 127.0.0.3 is admitted: every other loopback address stands for the
    // server's own network.
    let app = TestApp::with_args(&["--egress-allow", "127.0.0.3"]).await;
    let admin = app.owner("egress").await;
    let (private, private_hits) = counting_server("127.0.0.2", None).await;
    let (local, local_hits) = counting_server("127.0.0.1", None).await;
    let (allowed, allowed_hits) =
        counting_server("127.0.0.3", Some(format!("http://{private}/x"))).await;

    let refused = [
        ("literal", format!("http://{private}/")),
        ("hostname", format!("http://localhost:{}/", local.port())),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ),
        ("ipv6 loopback", format!("http://[::1]:{}/", local.port())),
        ("redirect", format!("http://{allowed}/hop")),
    ];
    for (what, url) in refused {
        let id = http_connection(&app, &admin, what, &url, None).await;
        let data = app
            .ok(Some(&admin.token), TEST_CONNECTION, json!({ "id": id }))
            .await;
        let result = &data["testConnection"];
        assert_eq!(result["ok"], false, "{what}: {result}");
        assert!(
            result["message"].as_str().unwrap().contains("egress guard"),
            "{what}: {result}"
        );
    }
    assert_eq!(
        private_hits.load(Ordering::SeqCst),
        0,
        "a refused address was reached"
    );
    assert_eq!(
        local_hits.load(Ordering::SeqCst),
        0,
        "a refused address was reached"
    );
    // The redirecting server was reached once; where it pointed was not.
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    // What the list admits is reachable.
    let id = http_connection(
        &app,
        &admin,
        "allowed",
        &format!("http://{allowed}/ok"),
        None,
    )
    .await;
    let data = app
        .ok(Some(&admin.token), TEST_CONNECTION, json!({ "id": id }))
        .await;
    assert_eq!(data["testConnection"]["status"], 204, "{data}");
}
