//! Resource exhaustion and guessing: one request cannot run unbounded mutations (aliases
//! and batches count together), password guessing is throttled per account and per
//! client address, and anonymous writes per client address, all counted in PostgreSQL
//! so that failed (rolled back) requests count too.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::support::TestApp;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let admin = app.db.admin().await;
    admin
        .query_one(trellis_core::scope::stmt(sql, []))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// A POST from `ip`, as if it came over the network from there.
fn from(ip: &str, token: Option<&str>, body: &Value) -> Request<Body> {
    let mut request = Request::post("/graphql").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request.body(Body::from(body.to_string())).unwrap();
    let peer: SocketAddr = format!("{ip}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

#[tokio::test]
async fn mutations_per_request_are_bounded_across_aliases_and_batches() {
    let app = TestApp::new().await;
    let owner = app.owner("bounded").await;
    // 400 sign-ups through aliases: refused before any runs.
    let aliases: String = (0..400)
        .map(|i| {
            format!("s{i}: signUp(input: {{email: \"u{i}@x.test\", name: \"u\", password: \"long enough pw\"}}) {{ userErrors {{ code }} }} ")
        })
        .collect();
    let (status, body) = app
        .post(None, &format!("mutation {{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(body.get("data").is_none(), "{body}");
    let users = count(
        &app,
        "SELECT count(*) AS n FROM users WHERE email LIKE 'u%@x.test'",
    )
    .await;
    assert_eq!(users, 0);

    // 50 clients in one request are allowed; the 51st alias is not.
    let clients = |n: usize, prefix: &str| -> String {
        let fields: String = (0..n)
            .map(|i| {
                format!(
                    "c{i}: createClient(input: {{name: \"{prefix}{i}\"}}) {{ client {{ id }} }} "
                )
            })
            .collect();
        format!("mutation {{ {fields} }}")
    };
    app.ok(Some(&owner.token), &clients(50, "a"), json!({}))
        .await;
    assert_eq!(
        app.error_code(Some(&owner.token), &clients(51, "b"), json!({}))
            .await,
        "BAD_USER_INPUT"
    );
    // A batch shares one budget: six operations of ten clients each are 60. The
    // request fails as a whole, and its transaction with it.
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({ "query": clients(10, &format!("batch{i}-")) }))
        .collect();
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", owner.token))
        .body(Body::from(Value::Array(batch).to_string()))
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body[5]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    let saved = count(
        &app,
        "SELECT count(*) AS n FROM clients WHERE name LIKE 'batch%'",
    )
    .await;
    assert_eq!(saved, 0, "a failed batch saved its siblings");
}

const LOGIN: &str =
    "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }";

#[tokio::test]
async fn password_guessing_is_throttled_per_account() {
    let app = TestApp::new().await;
    let victim = app.sign_up("victim@x.test").await;
    // Five guesses per request (each login costs 10 of the 50), two requests: the
    // limit of ten per account is reached; every further try is RATE_LIMITED, even
    // with the right password and from another address.
    let guesses: String = (0..5)
        .map(|i| format!("g{i}: login(input: {{email: \"victim@x.test\", password: \"guess {i} wrong\"}}) {{ session {{ accessToken }} }} "))
        .collect();
    for _ in 0..2 {
        let (_, body) = app
            .send(from(
                "198.51.100.7",
                None,
                &json!({ "query": format!("mutation {{ {guesses} }}") }),
            ))
            .await;
        let codes: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["extensions"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, vec!["UNAUTHENTICATED"; 5], "{body}");
    }
    let right = json!({ "query": LOGIN, "variables": { "e": "victim@x.test", "p": "correct horse battery" } });
    for ip in ["198.51.100.7", "203.0.113.9"] {
        let (_, body) = app.send(from(ip, None, &right)).await;
        let error = &body["errors"][0]["extensions"];
        assert_eq!(error["code"], "RATE_LIMITED", "{body}");
        assert!(error["retryAfterSeconds"].as_u64().unwrap() > 0, "{body}");
    }
    // Another account is not affected.
    let other = app.sign_up("other@x.test").await;
    let data = app
        .ok(
            None,
            LOGIN,
            json!({ "e": "other@x.test", "p": "correct horse battery" }),
        )
        .await;
    assert!(data["login"]["session"]["accessToken"].is_string());
    assert!(!victim.token.is_empty() && !other.token.is_empty());
}

#[tokio::test]
async fn anonymous_mutations_are_throttled_per_client_address() {
    let app = TestApp::new().await;
    // Bogus refresh tokens: cheap anonymous mutations, 50 a request at most.
    let refreshes: String = (0..30)
        .map(|i| {
            format!(
                "r{i}: refreshSession(input: {{refreshToken: \"trr_bogus{i}\"}}) {{ session {{ accessToken }} }} "
            )
        })
        .collect();
    let query = json!({ "query": format!("mutation {{ {refreshes} }}") });
    for _ in 0..2 {
        let (status, body) = app.send(from("192.0.2.10", None, &query)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{body}"
        );
    }
    // 60 fields from this address within the minute; the next request is refused whole.
    let response = {
        use tower::ServiceExt;
        app.router
            .clone()
            .oneshot(from("192.0.2.10", None, &query))
            .await
            .unwrap()
    };
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = crate::support::retry_after(&response);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another address, and signed-in users, are not affected.
    let (status, _) = app.send(from("192.0.2.11", None, &query)).await;
    assert_eq!(status, StatusCode::OK);
    let user = app.sign_up("signed-in@x.test").await;
    let (status, body) = app
        .send(from(
            "192.0.2.10",
            Some(&user.token),
            &json!({ "query": "mutation { createTenant(input: {slug: \"ten-ok\", name: \"x\"}) { tenant { id } } }" }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
