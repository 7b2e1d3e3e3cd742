//! Rate limits and quotas of process calls: a call over a limit is refused with the
//! seconds to wait, logged as RATE_LIMITED, and nothing else happens; limits hold
//! exactly under concurrency and across server processes sharing one database.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::processes::{create_process, invoke, invoke_key, published_template, INVOKE, PROMOTE};
use crate::support::{serve_replicas, Member, TestApp};

const SET_LIMIT: &str = "mutation($key: ID, $p: ID, $r: Int, $t: Int, $w: Int, $mc: Int) { setRateLimit(input: {apiKeyId: $key, processId: $p, requestsPerWindow: $r, tokensPerWindow: $t, windowSeconds: $w, monthlyCalls: $mc}) { rateLimit { id } userErrors { field message code } } }";
const LIMITS: &str = "query { rateLimits { requestsPerWindow remainingRequests remainingTokens monthCalls monthTokens apiKey { name } process { key } } }";

async fn set_limit(app: &TestApp, owner: &Member, variables: Value) {
    let data = app.ok(Some(&owner.token), SET_LIMIT, variables).await;
    assert_eq!(data["setRateLimit"]["userErrors"], json!([]), "{data}");
}

/// A tenant with a published and promoted TEMPLATE process `greet` (and `other`).
async fn tenant(app: &TestApp, slug: &str) -> (Member, String) {
    let owner = app.owner(slug).await;
    let process = create_process(app, &owner, "greet", json!({})).await;
    let version = published_template(app, &owner, &process, "Hello {{ input.name }}").await;
    app.ok(Some(&owner.token), PROMOTE, json!({ "id": version }))
        .await;
    let other = create_process(app, &owner, "other", json!({})).await;
    let version = published_template(app, &owner, &other, "Bye {{ input.name }}").await;
    app.ok(Some(&owner.token), PROMOTE, json!({ "id": version }))
        .await;
    (owner, process)
}

fn call(process: &str, name: &str) -> Value {
    json!({ "p": process, "input": { "name": name }, "cache": "BYPASS" })
}

/// The error of an invocation, or `None` when it succeeded.
async fn try_invoke(app: &TestApp, token: &str, variables: Value) -> Option<Value> {
    let (_, body) = app.post(Some(token), INVOKE, variables).await;
    body.get("errors").map(|e| e[0].clone())
}

#[tokio::test]
async fn calls_over_a_limit_are_refused_logged_and_change_nothing() {
    let app = TestApp::new().await;
    let (owner, process) = tenant(&app, "rl-basic").await;
    let t = owner.token.as_str();
    set_limit(&app, &owner, json!({ "p": process, "r": 3, "w": 3600 })).await;

    for i in 0..3 {
        invoke(&app, t, call("greet", &format!("n{i}"))).await;
    }
    let refused = try_invoke(&app, t, call("greet", "n3"))
        .await
        .expect("a fourth call is refused");
    assert_eq!(refused["extensions"]["code"], "RATE_LIMITED");
    let wait = refused["extensions"]["retryAfterSeconds"].as_i64().unwrap();
    assert!(
        (1100..=1200).contains(&wait),
        "a call refills every 1200 s: {wait}"
    );
    // Another process is not counted by this process's limit.
    invoke(&app, t, call("other", "x")).await;

    let data = app.ok(Some(t), LIMITS, json!({})).await;
    let limit = &data["rateLimits"][0];
    assert_eq!(
        (
            limit["monthCalls"].clone(),
            limit["remainingRequests"].clone()
        ),
        (json!(3), json!(0.0))
    );
    assert_eq!(limit["process"]["key"], "greet");
    let data = app
        .ok(Some(t), "query { calls(filter: {status: [RATE_LIMITED]}) { edges { node { errorCode input output process { key } } } } all: calls { edges { node { id } } } }", json!({}))
        .await;
    let limited = data["calls"]["edges"].as_array().unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["node"]["errorCode"], "RATE_LIMITED");
    assert_eq!(limited[0]["node"]["output"], Value::Null);
    assert_eq!(data["all"]["edges"].as_array().unwrap().len(), 5);

    // The REST route says the same with 429 and Retry-After.
    let (key, _) = invoke_key(&app, &owner, "").await;
    let request = Request::post("/v1/processes/greet/invoke")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(json!({ "input": { "name": "z" } }).to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = crate::support::retry_after(&response);
    assert!(retry_after >= 1000, "{retry_after}");

    // A monthly quota refuses until the next month; a key's limit only counts that key.
    set_limit(&app, &owner, json!({ "mc": 1 })).await;
    invoke(&app, t, call("other", "a")).await;
    let refused = try_invoke(&app, t, call("other", "b"))
        .await
        .expect("the month's one call is used");
    assert_eq!(refused["extensions"]["code"], "RATE_LIMITED");
    assert!(refused["extensions"]["retryAfterSeconds"].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn token_buckets_are_charged_after_each_call() {
    let app = TestApp::new().await;
    let (owner, _) = tenant(&app, "rl-tokens").await;
    let t = owner.token.as_str();
    // TEMPLATE counts words: "Hello x" is 2 prompt and 2 answer tokens.
    set_limit(&app, &owner, json!({ "t": 6, "w": 3600 })).await;
    invoke(&app, t, call("greet", "a")).await;
    invoke(&app, t, call("greet", "b")).await;
    let refused = try_invoke(&app, t, call("greet", "c"))
        .await
        .expect("8 tokens of 6 are spent");
    assert_eq!(refused["extensions"]["code"], "RATE_LIMITED");
    let data = app.ok(Some(t), LIMITS, json!({})).await;
    assert_eq!(data["rateLimits"][0]["monthTokens"], 8);
    assert!(data["rateLimits"][0]["remainingTokens"].as_f64().unwrap() < 0.0);
}

#[tokio::test]
async fn fifty_concurrent_calls_are_held_to_the_limit() {
    let app = TestApp::new().await;
    let (owner, _) = tenant(&app, "rl-burst").await;
    set_limit(&app, &owner, json!({ "r": 10, "w": 3600 })).await;
    let calls = (0..50).map(|i| try_invoke(&app, &owner.token, call("greet", &format!("n{i}"))));
    let outcomes = futures::future::join_all(calls).await;
    let admitted = outcomes.iter().filter(|o| o.is_none()).count();
    assert_eq!(admitted, 10, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .flatten()
        .all(|e| e["extensions"]["code"] == "RATE_LIMITED"));
}

#[tokio::test]
async fn two_servers_on_one_database_share_one_limit() {
    let app = TestApp::new().await;
    let (owner, _) = tenant(&app, "rl-replicas").await;
    set_limit(&app, &owner, json!({ "r": 12, "w": 3600 })).await;
    let (key, _) = invoke_key(&app, &owner, "").await;

    let (servers, urls) = serve_replicas(&app, 2).await;
    let client = reqwest::Client::new();
    // 40 calls, alternating between the two servers, 8 at a time.
    let calls = (0..40).map(|i| {
        let url = format!("{}/v1/processes/greet/invoke", urls[i % 2]);
        let client = client.clone();
        let key = key.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(
                    json!({ "input": { "name": format!("n{i}") }, "cache": "bypass" }).to_string(),
                )
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses: Vec<StatusCode> = futures::stream::iter(calls)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|s| StatusCode::from_u16(s.as_u16()).unwrap())
        .collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (12, 28), "{statuses:?}");
    drop(servers);
}

use futures::StreamExt;

/// Rate limits are tenant-owned: another tenant neither sees, changes, references nor
/// detects them (in SQL as the application role and through GraphQL), and a tenant's
/// limits never count another tenant's calls.
#[tokio::test]
async fn rate_limits_are_isolated_between_tenants() {
    use sea_orm::ConnectionTrait;
    use trellis_core::scope::stmt;

    use crate::isolation_workflows::{made_up, uuid};
    use crate::support::{as_app, is_rls_violation};

    let app = TestApp::new().await;
    let (a, a_process) = tenant(&app, "rl-iso-a").await;
    let (b, b_process) = tenant(&app, "rl-iso-b").await;
    // A's whole tenant gets one call an hour.
    let data = app
        .ok(Some(&a.token), SET_LIMIT, json!({ "r": 1, "w": 3600 }))
        .await;
    let limit = data["setRateLimit"]["rateLimit"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    invoke(&app, &a.token, call("greet", "x")).await;
    assert!(try_invoke(&app, &a.token, call("greet", "y"))
        .await
        .is_some());
    // B's calls are not counted by A's limit.
    for i in 0..3 {
        invoke(&app, &b.token, call("greet", &format!("b{i}"))).await;
    }

    // GraphQL: B lists none of A's limits; A's ids answer like made-up ones.
    let data = app.ok(Some(&b.token), LIMITS, json!({})).await;
    assert_eq!(data["rateLimits"], json!([]));
    let data = app.ok(Some(&a.token), LIMITS, json!({})).await;
    assert_eq!(data["rateLimits"].as_array().unwrap().len(), 1);
    let delete = "mutation($id: ID!) { deleteRateLimit(input: {id: $id}) { rateLimit { id } userErrors { code } } }";
    let theirs = app
        .post(Some(&b.token), delete, json!({ "id": limit }))
        .await
        .1;
    let nobodys = app
        .post(Some(&b.token), delete, json!({ "id": made_up(&limit) }))
        .await
        .1;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{theirs}"
    );
    assert_eq!(
        theirs["errors"][0]["message"],
        nobodys["errors"][0]["message"]
    );
    let theirs = app
        .post(Some(&b.token), SET_LIMIT, json!({ "p": a_process, "r": 5 }))
        .await
        .1;
    let nobodys = app
        .post(
            Some(&b.token),
            SET_LIMIT,
            json!({ "p": made_up(&a_process), "r": 5 }),
        )
        .await
        .1;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{theirs}"
    );
    assert_eq!(
        theirs["errors"][0]["message"],
        nobodys["errors"][0]["message"]
    );

    // SQL as the application role in B's tenant.
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(b.tenant_uuid()), None).await;
    let count = |sql: &'static str| {
        let tx = &tx;
        async move {
            tx.query_one(stmt(sql, []))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) AS n FROM rate_limits").await, 0);
    let changed = tx
        .execute(stmt(
            "UPDATE rate_limits SET requests_per_window = 1000 WHERE id = $1",
            [uuid(&limit).into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    let deleted = tx
        .execute(stmt(
            "DELETE FROM rate_limits WHERE id = $1",
            [uuid(&limit).into()],
        ))
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    let insert = "INSERT INTO rate_limits (id, tenant_id, process_id, requests_per_window) \
                  VALUES (gen_random_uuid(), $1, $2, 5)";
    let foreign_tenant = tx
        .execute(stmt(
            insert,
            [a.tenant_uuid().into(), uuid(&b_process).into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&foreign_tenant), "{foreign_tenant}");
    drop(tx);
    let reference = |process: uuid::Uuid| {
        let pool = &pool;
        let b = &b;
        async move {
            let tx = as_app(pool, Some(b.tenant_uuid()), None).await;
            tx.execute(stmt(insert, [b.tenant_uuid().into(), process.into()]))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let theirs = reference(uuid(&a_process)).await;
    let nobodys = reference(uuid::Uuid::now_v7()).await;
    assert!(theirs.contains("rate_limits_process_fkey"), "{theirs}");
    assert_eq!(theirs, nobodys);
    // A's limit is intact: its row is visible to A and still refuses.
    let tx = as_app(&pool, Some(a.tenant_uuid()), None).await;
    let row = tx
        .query_one(stmt("SELECT requests_per_window AS n FROM rate_limits", []))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i32>("", "n").unwrap(), 1);
}
