//! Connections: a config is checked against its app version's schema and every secret
//! field points at one of the tenant's own secrets; only admins change connections;
//! `testConnection` makes one real request (to a loopback server here) and reports
//! its status. The threats: a connection that borrows another tenant's secret, a
//! config the connector cannot use, a builder rewiring credentials.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{json, Value};

use crate::support::{Member, TestApp};

/// One request the loopback server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub headers: HeaderMap,
}

/// An HTTP server on 127.0.0.1 that records every request: `/fail` answers 503,
/// everything else 204.
pub struct Loopback {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Loopback {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let handler = move |uri: Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    path: uri.path().to_owned(),
                    authorization: headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    headers,
                });
                if uri.path() == "/fail" {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            seen,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub const CREATE_SECRET: &str = "mutation($n: String!, $v: String!) { createSecret(input: {name: $n, value: $v}) { secret { id name version createdAt rotatedAt lastUsedAt } userErrors { field message code } } }";

/// Stores a secret as `admin`; returns its ID.
pub async fn create_secret(app: &TestApp, admin: &Member, name: &str, value: &str) -> String {
    let data = app
        .ok(
            Some(&admin.token),
            CREATE_SECRET,
            json!({ "n": name, "v": value }),
        )
        .await;
    assert_eq!(data["createSecret"]["userErrors"], json!([]), "{data}");
    data["createSecret"]["secret"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The newest published version of the app `key`, as `member` sees the catalog.
pub async fn latest_version(app: &TestApp, member: &Member, key: &str) -> String {
    let data = app
        .ok(
            Some(&member.token),
            "query($k: String!) { app(key: $k) { latestVersion { id } } }",
            json!({ "k": key }),
        )
        .await;
    data["app"]["latestVersion"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{key} has no published version: {data}"))
        .to_owned()
}

pub const CREATE_CONNECTION: &str = "mutation($v: ID!, $n: String!, $c: JSON!, $s: [ConnectionSecretInput!]!, $active: Boolean! = true) { createConnection(input: {appVersionId: $v, name: $n, config: $c, secrets: $s, isActive: $active}) { connection { id name isActive config rotatedAt app { key } appVersion { version } secrets { field secret { id name version } } } userErrors { field message code } } }";

/// Runs createConnection; returns the payload.
pub async fn connect(
    app: &TestApp,
    admin: &Member,
    version_id: &str,
    name: &str,
    config: Value,
    secrets: Value,
) -> Value {
    app.ok(
        Some(&admin.token),
        CREATE_CONNECTION,
        json!({ "v": version_id, "n": name, "c": config, "s": secrets }),
    )
    .await["createConnection"]
        .clone()
}

/// An http connection to `url`, with the authorization secret when given; its ID.
pub async fn http_connection(
    app: &TestApp,
    admin: &Member,
    name: &str,
    url: &str,
    authorization: Option<&str>,
) -> String {
    let version = latest_version(app, admin, "http").await;
    let secrets = match authorization {
        Some(id) => json!([{ "field": "authorization", "secretId": id }]),
        None => json!([]),
    };
    let payload = connect(
        app,
        admin,
        &version,
        name,
        json!({ "baseUrl": url, "defaultHeaders": { "x-trellis-test": "yes" }, "timeoutMs": 5000 }),
        secrets,
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["connection"]["id"].as_str().unwrap().to_owned()
}

pub const TEST_CONNECTION: &str = "mutation($id: ID!) { testConnection(input: {id: $id}) { ok status latencyMs message connection { id } userErrors { field message code } } }";

/// The first userError of a payload, asserting there is exactly one.
fn only_error(payload: &Value) -> &Value {
    let errors = payload["userErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{payload}");
    &errors[0]
}

#[tokio::test]
async fn config_and_secret_references_are_checked_against_the_manifest() {
    let app = TestApp::new().await;
    let admin = app.owner("conn-a").await;
    let other = app.owner("conn-b").await;
    let token = create_secret(&app, &admin, "slack-bot", "xoxb-1").await;
    let spare = create_secret(&app, &admin, "spare", "xoxb-2").await;
    let theirs = create_secret(&app, &other, "their-bot", "xoxb-3").await;
    let slack = latest_version(&app, &admin, "slack").await;
    let bot = |id: &str| json!([{ "field": "botToken", "secretId": id }]);

    // (config, secrets, expected field, expected code)
    let cases = [
        (json!({}), bot(&token), "config", "BAD_USER_INPUT"),
        (
            json!({ "workspace": 42 }),
            bot(&token),
            "config/workspace",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "workspace": "acme", "defaultChannel": "NOT A CHANNEL!" }),
            bot(&token),
            "config/defaultChannel",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "workspace": "acme", "surprise": true }),
            bot(&token),
            "config",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "workspace": "acme" }),
            json!([]),
            "secrets",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "workspace": "acme" }),
            json!([{ "field": "password", "secretId": token }]),
            "secrets[0].field",
            "BAD_USER_INPUT",
        ),
        (
            json!({ "workspace": "acme" }),
            json!([{ "field": "botToken", "secretId": token }, { "field": "botToken", "secretId": spare }]),
            "secrets[1].field",
            "BAD_USER_INPUT",
        ),
    ];
    for (config, secrets, field, code) in cases {
        let payload = connect(&app, &admin, &slack, "team", config.clone(), secrets).await;
        assert_eq!(payload["connection"], Value::Null, "{config}");
        let error = only_error(&payload);
        assert_eq!(error["field"], field, "{config}: {error}");
        assert_eq!(error["code"], code, "{config}: {error}");
    }
    // A config error names the path and the rule, never the value given.
    let payload = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme", "defaultChannel": "value-that-must-not-echo!" }),
        bot(&token),
    )
    .await;
    let message = only_error(&payload)["message"].as_str().unwrap().to_owned();
    assert!(!message.contains("value-that-must-not-echo"), "{message}");

    // Another tenant's secret behaves like one that does not exist.
    let made_up = format!("sec_{}", uuid::Uuid::now_v7().simple());
    for id in [&theirs, &made_up] {
        let (_, body) = app
            .post(
                Some(&admin.token),
                CREATE_CONNECTION,
                json!({ "v": slack, "n": "team", "c": { "workspace": "acme" }, "s": bot(id) }),
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{body}"
        );
        assert_eq!(body["errors"][0]["message"], "not found", "{body}");
        assert_eq!(body["data"], Value::Null, "{body}");
    }
    // A draft version cannot be connected.
    let builder = app.member(&admin, "builder@conn-a.test", "BUILDER").await;
    let app_id = app
        .ok(
            Some(&builder.token),
            crate::catalog::CREATE_APP,
            json!({ "key": "drafty", "public": false }),
        )
        .await["createApp"]["app"]["id"]
        .clone();
    let draft = app
        .ok(
            Some(&builder.token),
            crate::catalog::CREATE_VERSION,
            json!({ "app": app_id, "version": "0.1.0", "manifest": crate::catalog::crm_manifest(), "actions": [] }),
        )
        .await["createAppVersion"]["appVersion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload = connect(
        &app,
        &admin,
        &draft,
        "d",
        json!({ "region": "eu" }),
        json!([]),
    )
    .await;
    assert_eq!(only_error(&payload)["field"], "appVersionId");

    // Nothing was created by the refused attempts.
    let data = app
        .ok(
            Some(&admin.token),
            "{ connections { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["connections"]["totalCount"], 0);

    // A valid one: its app, version and secrets by name and version, never the value.
    let payload = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme", "defaultChannel": "#general" }),
        bot(&token),
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let connection = &payload["connection"];
    assert_eq!(connection["app"]["key"], "slack");
    assert_eq!(connection["appVersion"]["version"], "1.0.0");
    assert_eq!(connection["isActive"], true);
    assert_eq!(
        connection["config"],
        json!({ "workspace": "acme", "defaultChannel": "#general" })
    );
    assert_eq!(
        connection["secrets"],
        json!([{ "field": "botToken", "secret": { "id": token, "name": "slack-bot", "version": 1 } }])
    );
    assert!(!payload.to_string().contains("xoxb"));
    // The name is unique in the tenant (a CONFLICT) but not across tenants.
    let payload = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "x" }),
        bot(&token),
    )
    .await;
    assert_eq!(only_error(&payload)["code"], "CONFLICT");
    assert_eq!(only_error(&payload)["field"], "name");
    let their_slack = latest_version(&app, &other, "slack").await;
    let payload = connect(
        &app,
        &other,
        &their_slack,
        "team",
        json!({ "workspace": "b" }),
        bot(&theirs),
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");

    // Optional secret fields may be left out (http's authorization).
    let http = latest_version(&app, &admin, "http").await;
    let payload = connect(
        &app,
        &admin,
        &http,
        "api",
        json!({ "baseUrl": "https://api.example.com" }),
        json!([]),
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    assert_eq!(payload["connection"]["secrets"], json!([]));

    // An update is checked the same way and leaves the connection as it was.
    let id = connection["id"].as_str().unwrap();
    let update = "mutation($id: ID!, $c: JSON, $s: [ConnectionSecretInput!]) { updateConnection(input: {id: $id, config: $c, secrets: $s}) { connection { config rotatedAt secrets { field secret { name } } } userErrors { field code } } }";
    let data = app
        .ok(
            Some(&admin.token),
            update,
            json!({ "id": id, "c": { "workspace": "" } }),
        )
        .await;
    assert_eq!(
        data["updateConnection"]["userErrors"],
        json!([{ "field": "config/workspace", "code": "BAD_USER_INPUT" }])
    );
    let (_, body) = app
        .post(
            Some(&admin.token),
            update,
            json!({ "id": id, "s": bot(&theirs) }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let data = app
        .ok(
            Some(&admin.token),
            "query($id: ID!) { node(id: $id) { ... on Connection { config rotatedAt secrets { secret { name } } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["node"]["config"]["workspace"], "acme");
    assert_eq!(data["node"]["rotatedAt"], Value::Null);
    assert_eq!(data["node"]["secrets"][0]["secret"]["name"], "slack-bot");
    // A new secret marks it rotated.
    let data = app
        .ok(
            Some(&admin.token),
            update,
            json!({ "id": id, "s": bot(&spare) }),
        )
        .await;
    assert_eq!(data["updateConnection"]["userErrors"], json!([]));
    assert!(data["updateConnection"]["connection"]["rotatedAt"].is_string());
    assert_eq!(
        data["updateConnection"]["connection"]["secrets"],
        json!([{ "field": "botToken", "secret": { "name": "spare" } }])
    );
}

#[tokio::test]
async fn only_admins_change_connections_and_lists_filter_by_app_and_active() {
    let app = TestApp::new().await;
    let admin = app.owner("conn-roles").await;
    let builder = app
        .member(&admin, "builder@conn-roles.test", "BUILDER")
        .await;
    let viewer = app.member(&admin, "viewer@conn-roles.test", "VIEWER").await;
    let secret = create_secret(&app, &admin, "bot", "xoxb-secret").await;
    let slack = latest_version(&app, &admin, "slack").await;
    let http = latest_version(&app, &admin, "http").await;

    // A builder may not create, change or delete connections.
    assert_eq!(
        app.error_code(
            Some(&builder.token),
            CREATE_CONNECTION,
            json!({ "v": slack, "n": "team", "c": { "workspace": "acme" }, "s": [{ "field": "botToken", "secretId": secret }] })
        )
        .await,
        "FORBIDDEN"
    );
    let team = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme" }),
        json!([{ "field": "botToken", "secretId": secret }]),
    )
    .await;
    let team = team["connection"]["id"].as_str().unwrap().to_owned();
    let api = connect(
        &app,
        &admin,
        &http,
        "api",
        json!({ "baseUrl": "https://a.example.com" }),
        json!([]),
    )
    .await;
    let api = api["connection"]["id"].as_str().unwrap().to_owned();
    let off = app
        .ok(
            Some(&admin.token),
            CREATE_CONNECTION,
            json!({ "v": http, "n": "old-api", "c": { "baseUrl": "https://b.example.com" }, "s": [], "active": false }),
        )
        .await["createConnection"]["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for mutation in [
        "mutation($id: ID!) { updateConnection(input: {id: $id, name: \"renamed\"}) { connection { id } } }",
        "mutation($id: ID!) { updateConnection(input: {id: $id, isActive: false}) { connection { id } } }",
        "mutation($id: ID!) { deleteConnection(input: {id: $id}) { connection { id } } }",
    ] {
        for member in [&builder, &viewer] {
            assert_eq!(
                app.error_code(Some(&member.token), mutation, json!({ "id": team }))
                    .await,
                "FORBIDDEN",
                "{mutation}"
            );
        }
    }
    // Secrets are the admins' too.
    for member in [&builder, &viewer] {
        assert_eq!(
            app.error_code(
                Some(&member.token),
                CREATE_SECRET,
                json!({ "n": "x", "v": "y" })
            )
            .await,
            "FORBIDDEN"
        );
    }

    // Every member lists them, filtered by app and activity.
    let list = "query($f: ConnectionFilter) { connections(filter: $f) { totalCount edges { node { id name isActive app { key } secrets { field secret { name version } } } } } }";
    let ids = |data: &Value| -> Vec<String> {
        let mut ids: Vec<String> = data["connections"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<String>>()
    };
    let http_app = app
        .ok(
            Some(&viewer.token),
            "{ app(key: \"http\") { id } }",
            json!({}),
        )
        .await["app"]["id"]
        .clone();
    let slack_app = app
        .ok(
            Some(&viewer.token),
            "{ app(key: \"slack\") { id } }",
            json!({}),
        )
        .await["app"]["id"]
        .clone();
    for member in [&viewer, &builder, &admin] {
        let all = app.ok(Some(&member.token), list, json!({})).await;
        assert_eq!(all["connections"]["totalCount"], 3);
        assert_eq!(ids(&all), sorted(vec![&team, &api, &off]));
        let by_app = app
            .ok(
                Some(&member.token),
                list,
                json!({ "f": { "app": http_app } }),
            )
            .await;
        assert_eq!(ids(&by_app), sorted(vec![&api, &off]));
        for edge in by_app["connections"]["edges"].as_array().unwrap() {
            assert_eq!(edge["node"]["app"]["key"], "http");
        }
        let slack_only = app
            .ok(
                Some(&member.token),
                list,
                json!({ "f": { "app": slack_app } }),
            )
            .await;
        assert_eq!(ids(&slack_only), std::slice::from_ref(&team));
        assert_eq!(
            slack_only["connections"]["edges"][0]["node"]["secrets"],
            json!([{ "field": "botToken", "secret": { "name": "bot", "version": 1 } }])
        );
        let inactive = app
            .ok(
                Some(&member.token),
                list,
                json!({ "f": { "active": false } }),
            )
            .await;
        assert_eq!(ids(&inactive), std::slice::from_ref(&off));
        let active_http = app
            .ok(
                Some(&member.token),
                list,
                json!({ "f": { "app": http_app, "active": true } }),
            )
            .await;
        assert_eq!(ids(&active_http), std::slice::from_ref(&api));
    }

    // Admins change them; a deleted one leaves the lists and frees its secret.
    let data = app
        .ok(
            Some(&admin.token),
            "mutation($id: ID!) { updateConnection(input: {id: $id, isActive: false, name: \"api-paused\"}) { connection { name isActive } userErrors { field } } }",
            json!({ "id": api }),
        )
        .await;
    assert_eq!(
        data["updateConnection"]["connection"],
        json!({ "name": "api-paused", "isActive": false })
    );
    let inactive = app
        .ok(
            Some(&viewer.token),
            list,
            json!({ "f": { "active": false } }),
        )
        .await;
    assert_eq!(ids(&inactive), sorted(vec![&api, &off]));
    let uses = "query($id: ID!) { node(id: $id) { ... on Secret { usedBy { field connection { name } } } } }";
    let data = app
        .ok(Some(&admin.token), uses, json!({ "id": secret }))
        .await;
    assert_eq!(
        data["node"]["usedBy"],
        json!([{ "field": "botToken", "connection": { "name": "team" } }])
    );
    app.ok(
        Some(&admin.token),
        "mutation($id: ID!) { deleteConnection(input: {id: $id}) { connection { id } } }",
        json!({ "id": team }),
    )
    .await;
    let all = app.ok(Some(&viewer.token), list, json!({})).await;
    assert_eq!(ids(&all), sorted(vec![&api, &off]));
    let data = app
        .ok(Some(&admin.token), uses, json!({ "id": secret }))
        .await;
    assert_eq!(data["node"]["usedBy"], json!([]));
    // Soft-deleted: still reachable by ID (for restoring, as the project's soft deletes
    // are), inactive, and no longer changeable.
    let data = app
        .ok(
            Some(&admin.token),
            "query($id: ID!) { node(id: $id) { ... on Connection { isActive secrets { field } } } }",
            json!({ "id": team }),
        )
        .await;
    assert_eq!(data["node"], json!({ "isActive": false, "secrets": [] }));
    assert_eq!(
        app.error_code(
            Some(&admin.token),
            "mutation($id: ID!) { updateConnection(input: {id: $id, isActive: true}) { connection { id } } }",
            json!({ "id": team })
        )
        .await,
        "NOT_FOUND"
    );
    // The name is free again.
    let again = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme" }),
        json!([{ "field": "botToken", "secretId": secret }]),
    )
    .await;
    assert_eq!(again["userErrors"], json!([]), "{again}");
}

#[tokio::test]
async fn test_connection_reports_the_status_of_one_request() {
    let app = TestApp::new().await;
    let admin = app.owner("conn-test").await;
    let builder = app
        .member(&admin, "builder@conn-test.test", "BUILDER")
        .await;
    let viewer = app.member(&admin, "viewer@conn-test.test", "VIEWER").await;
    let server = Loopback::start().await;
    let secret = create_secret(&app, &admin, "api-auth", "Bearer loopback-token").await;

    let good = http_connection(
        &app,
        &admin,
        "good",
        &format!("{}/ping", server.base),
        Some(&secret),
    )
    .await;
    let failing = http_connection(
        &app,
        &admin,
        "failing",
        &format!("{}/fail", server.base),
        None,
    )
    .await;
    // A port nobody listens on (bound, then released).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        http_connection(
            &app,
            &admin,
            "closed",
            &format!("http://127.0.0.1:{port}/"),
            None,
        )
        .await
    };

    // Viewers may not test; builders may.
    assert_eq!(
        app.error_code(Some(&viewer.token), TEST_CONNECTION, json!({ "id": good }))
            .await,
        "FORBIDDEN"
    );
    assert!(server.requests().is_empty());

    let data = app
        .ok(Some(&builder.token), TEST_CONNECTION, json!({ "id": good }))
        .await;
    let result = &data["testConnection"];
    assert_eq!(result["userErrors"], json!([]));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["status"], 204);
    assert!(result["message"].as_str().unwrap().contains("204"));
    assert!(result["latencyMs"].as_i64().unwrap() >= 0);
    assert_eq!(result["connection"]["id"], good.as_str());
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "exactly one request");
    assert_eq!(seen[0].path, "/ping");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer loopback-token")
    );
    assert_eq!(seen[0].headers["x-trellis-test"], "yes");
    // The secret was used, and says so; its value is not in the answer.
    assert!(!data.to_string().contains("loopback-token"));
    let data = app
        .ok(
            Some(&admin.token),
            "query($id: ID!) { node(id: $id) { ... on Secret { lastUsedAt } } }",
            json!({ "id": secret }),
        )
        .await;
    assert!(data["node"]["lastUsedAt"].is_string(), "{data}");

    let data = app
        .ok(
            Some(&admin.token),
            TEST_CONNECTION,
            json!({ "id": failing }),
        )
        .await;
    assert_eq!(data["testConnection"]["ok"], false);
    assert_eq!(data["testConnection"]["status"], 503);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path, "/fail");
    assert_eq!(seen[1].authorization, None);

    let data = app
        .ok(Some(&admin.token), TEST_CONNECTION, json!({ "id": closed }))
        .await;
    assert_eq!(data["testConnection"]["ok"], false);
    assert_eq!(data["testConnection"]["status"], Value::Null);
    assert_eq!(data["testConnection"]["message"], "could not connect");

    // Apps without a test say so, without making a request.
    let bot = create_secret(&app, &admin, "bot", "xoxb").await;
    let slack = latest_version(&app, &admin, "slack").await;
    let team = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme" }),
        json!([{ "field": "botToken", "secretId": bot }]),
    )
    .await;
    let data = app
        .ok(
            Some(&admin.token),
            TEST_CONNECTION,
            json!({ "id": team["connection"]["id"] }),
        )
        .await;
    assert_eq!(data["testConnection"]["ok"], false);
    assert_eq!(data["testConnection"]["status"], Value::Null);
    assert!(data["testConnection"]["message"]
        .as_str()
        .unwrap()
        .contains("no connection test"));
    assert_eq!(server.requests().len(), 2);

    // Every test is in the audit log.
    let data = app
        .ok(
            Some(&admin.token),
            "{ tenant { auditEvents(filter: {action: \"connection.test\"}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenant"]["auditEvents"]["totalCount"], 3);
}
