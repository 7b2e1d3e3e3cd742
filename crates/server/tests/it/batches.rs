//! A batch is one transaction, and nothing one operation does leaks into the others:
//! a failed operation rolls back its siblings (even when it is a refresh-token reuse,
//! whose family revocation commits on its own), and the platform-administration path
//! opened by one operation is closed before the next.

use axum::body::Body;
use axum::http::Request;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::support::TestApp;

async fn batch(app: &TestApp, token: Option<&str>, operations: &[Value]) -> Value {
    let mut request = Request::post("/graphql").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = Value::Array(operations.to_vec()).to_string();
    app.send(request.body(Body::from(body)).unwrap()).await.1
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.db
        .admin()
        .await
        .query_one(trellis_core::scope::stmt(sql, []))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

const REFRESH: &str = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken refreshToken } } }";

#[tokio::test]
async fn a_refresh_token_reuse_fails_its_batch_but_still_burns_the_family() {
    let app = TestApp::new().await;
    let owner = app.owner("reuse-batch").await;
    let rotated = app
        .ok(None, REFRESH, json!({ "t": owner.refresh_token }))
        .await;
    let newest = rotated["refreshSession"]["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // One request: a client is created, then the rotated token is presented again.
    let body = batch(
        &app,
        Some(&owner.token),
        &[
            json!({ "query": "mutation { createClient(input: {name: \"Sibling\"}) { client { id } } }" }),
            json!({ "query": REFRESH, "variables": { "t": owner.refresh_token } }),
        ],
    )
    .await;
    assert_eq!(
        body[1]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    // The sibling rolled back with the failed request ...
    let clients = scalar(&app, "SELECT count(*) FROM clients WHERE name = 'Sibling'").await;
    assert_eq!(clients, 0, "a failed batch committed its sibling");
    // ... but the family is revoked and the reuse audited.
    assert_eq!(
        app.error_code(None, REFRESH, json!({ "t": newest })).await,
        "UNAUTHENTICATED"
    );
    let audited = scalar(
        &app,
        "SELECT count(*) FROM audit_events WHERE action = 'session.refresh_token_reused'",
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn the_platform_admin_path_ends_with_its_operation() {
    let app = TestApp::new().await;
    let owner = app.owner("admin-batch").await;
    let root = app.sign_up("root@platform.test").await;
    app.db
        .admin()
        .await
        .execute_unprepared(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = 'root@platform.test'",
        )
        .await
        .unwrap();
    let peek = json!({ "query": "query($id: ID!) { nodes(ids: [$id]) { id } }", "variables": { "id": owner.tenant_id } });
    // Alone, the platform admin does not see another tenant through node lookups.
    let alone = batch(&app, Some(&root.token), std::slice::from_ref(&peek)).await;
    assert_eq!(alone[0]["data"]["nodes"], json!([null]), "{alone}");
    // After an operation on the admin path, the next operation is not widened by it.
    let body = batch(
        &app,
        Some(&root.token),
        &[json!({ "query": "{ tenants { totalCount } }" }), peek],
    )
    .await;
    assert_eq!(body[0]["data"]["tenants"]["totalCount"], 1, "{body}");
    assert_eq!(body[1]["data"]["nodes"], json!([null]), "{body}");
}
